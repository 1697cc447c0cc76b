use super::*;

fn router(rules: Vec<Rule>) -> Router {
    Router::new(
        Classifier::new(64, &["dbo.GetOrderSummary".to_string()]),
        rules,
        Duration::from_millis(500),
    )
}

fn replicas(n: usize) -> Vec<ReplicaView> {
    (0..n)
        .map(|_| ReplicaView {
            available: true,
            weight: 1,
            outstanding: 0,
            lag: None,
        })
        .collect()
}

fn route(r: &Router, sql: &str, session: &SessionView<'_>) -> Decision {
    r.route(Request::Sql(sql), session, &replicas(1), Instant::now())
}

fn rule(name: &str, action: RuleAction) -> Rule {
    Rule {
        name: name.into(),
        action,
        sql: None,
        procedure: None,
        user: None,
        application: None,
        database: None,
    }
}

#[test]
fn reads_go_to_a_replica_and_writes_to_the_primary() {
    let r = router(vec![]);
    let s = SessionView::default();
    assert_eq!(
        route(&r, "SELECT * FROM dbo.t", &s).target,
        Target::Replica(0)
    );
    assert_eq!(
        route(&r, "UPDATE dbo.t SET a = 1", &s).target,
        Target::Primary
    );
    assert_eq!(
        route(&r, "SELECT 1; DELETE FROM dbo.t", &s).target,
        Target::Primary
    );
}

#[test]
fn session_state_holds_the_primary_first() {
    let r = router(vec![rule("everything-to-replica", RuleAction::Replica)]);
    for session in [
        SessionView {
            in_transaction: true,
            ..Default::default()
        },
        SessionView {
            implicit_transactions: true,
            ..Default::default()
        },
        SessionView {
            strict_isolation: true,
            ..Default::default()
        },
        SessionView {
            pin: Some(PinReason::TempTable),
            ..Default::default()
        },
    ] {
        let d = route(&r, "/* sluice:replica */ SELECT 1", &session);
        assert_eq!(d.target, Target::Primary, "{session:?}: {}", d.reason);
    }
}

#[test]
fn hints_come_before_rules_and_never_send_a_write_to_a_replica() {
    let r = router(vec![rule("all-primary", RuleAction::Primary)]);
    let s = SessionView::default();
    let d = route(&r, "/* sluice:replica */ SELECT 1", &s);
    assert_eq!(d.target, Target::Replica(0), "{}", d.reason);
    let d = route(&r, "-- sluice:replica\nINSERT INTO t VALUES (1)", &s);
    assert_eq!(d.target, Target::Primary);
    assert!(d.reason.to_string().contains("overridden"), "{}", d.reason);
    let d = route(&router(vec![]), "/* sluice:primary */ SELECT 1", &s);
    assert_eq!(
        (d.target, d.reason.to_string().as_str()),
        (Target::Primary, "hint sluice:primary")
    );
}

/// A read that leaves pinned state (a global cursor, an impersonation)
/// runs where the session keeps its pins, whatever a hint or rule says.
#[test]
fn hints_and_rules_never_send_a_pin_to_a_replica() {
    let r = router(vec![rule("all-replica", RuleAction::Replica)]);
    let s = SessionView::default();
    for sql in [
        "/* sluice:replica */ DECLARE c CURSOR FOR SELECT 1; OPEN c",
        "EXECUTE AS USER = 'u'; SELECT * FROM t",
    ] {
        let d = route(&r, sql, &s);
        assert_eq!(d.target, Target::Primary, "{sql}: {}", d.reason);
        assert_eq!(d.reason.label(), "not_a_read");
    }
    let d = r.route(
        Request::Procedure("sp_set_session_context"),
        &s,
        &replicas(1),
        Instant::now(),
    );
    assert_eq!(d.target, Target::Primary, "{}", d.reason);
    // A local cursor ends with its batch: the rule may send it on.
    let d = route(&r, "DECLARE c CURSOR LOCAL FOR SELECT 1", &s);
    assert_eq!(d.target, Target::Replica(0), "{}", d.reason);
}

#[test]
fn rules_match_in_order_on_their_conditions() {
    let mut reports = rule("reports-user", RuleAction::Primary);
    reports.user = Some("reporting".into());
    let mut orders = rule("orders-sql", RuleAction::Primary);
    orders.sql = Some(Regex::new("(?i)from\\s+dbo\\.orders").unwrap());
    let mut proc_rule = rule("summary-proc", RuleAction::Replica);
    proc_rule.procedure = Some("GetDailyTotals".into());
    let r = router(vec![reports, orders, proc_rule]);
    let plain = SessionView::default();
    let reporting = SessionView {
        user: "Reporting",
        ..Default::default()
    };
    assert_eq!(
        route(&r, "SELECT 1", &reporting).reason.to_string(),
        "rule reports-user"
    );
    assert_eq!(
        route(&r, "SELECT * FROM dbo.Orders", &plain)
            .reason
            .to_string(),
        "rule orders-sql"
    );
    assert_eq!(
        route(&r, "SELECT * FROM dbo.items", &plain).target,
        Target::Replica(0)
    );
    let d = r.route(
        Request::Procedure("[dbo].[GetDailyTotals]"),
        &plain,
        &replicas(1),
        Instant::now(),
    );
    assert_eq!(
        (d.target, d.reason.to_string().as_str()),
        (Target::Replica(0), "rule summary-proc")
    );
    let d = r.route(
        Request::Procedure("dbo.Other"),
        &plain,
        &replicas(1),
        Instant::now(),
    );
    assert_eq!(d.target, Target::Primary);
}

#[test]
fn read_your_writes_keeps_reads_on_the_primary_for_the_window() {
    let r = router(vec![]);
    let now = Instant::now();
    let s = SessionView {
        last_write: Some(now),
        ..Default::default()
    };
    let d = r.route(
        Request::Sql("SELECT 1"),
        &s,
        &replicas(1),
        now + Duration::from_millis(100),
    );
    assert_eq!(d.target, Target::Primary);
    assert!(
        d.reason.to_string().starts_with("read-your-writes"),
        "{}",
        d.reason
    );
    let d = r.route(
        Request::Sql("SELECT 1"),
        &s,
        &replicas(1),
        now + Duration::from_millis(600),
    );
    assert_eq!(d.target, Target::Replica(0));
}

#[test]
fn replicas_are_chosen_by_weight_and_outstanding_requests() {
    let mut views = replicas(3);
    views[0].outstanding = 4;
    views[1].outstanding = 4;
    views[1].weight = 4;
    views[2].available = false;
    assert_eq!(pick_replica(&views), Some(1));
    views[0].outstanding = 0;
    assert_eq!(pick_replica(&views), Some(0));
    for v in &mut views {
        v.available = false;
    }
    assert_eq!(pick_replica(&views), None);
    let d = router(vec![]).route(
        Request::Sql("SELECT 1"),
        &SessionView::default(),
        &views,
        Instant::now(),
    );
    assert_eq!(d.target, Target::Primary);
    assert!(
        d.reason.to_string().contains("no replica available"),
        "{}",
        d.reason
    );
}

#[test]
fn procedures_need_a_rule_or_the_read_only_list() {
    let r = router(vec![]);
    let s = SessionView::default();
    assert_eq!(
        route(&r, "EXEC dbo.GetOrderSummary 1", &s).target,
        Target::Replica(0)
    );
    assert_eq!(
        route(&r, "EXEC dbo.PlaceOrder 1", &s).target,
        Target::Primary
    );
    let rpc = |name| {
        r.route(Request::Procedure(name), &s, &replicas(1), Instant::now())
            .target
    };
    assert_eq!(rpc("[dbo].[GetOrderSummary]"), Target::Replica(0));
    assert_eq!(rpc("dbo.PlaceOrder"), Target::Primary);
    let d = r.route(
        Request::PrimaryOnly("bulk load"),
        &s,
        &replicas(1),
        Instant::now(),
    );
    assert_eq!(
        (d.target, d.reason.to_string().as_str()),
        (Target::Primary, "bulk load")
    );
}

use regex::Regex;

#[test]
fn every_reason_has_its_text_and_a_bounded_snake_case_label() {
    let mut to_primary = rule("to-primary", RuleAction::Primary);
    to_primary.database = Some("reports".into());
    let mut to_replica = rule("to-replica", RuleAction::Replica);
    to_replica.database = Some("replicated".into());
    let r = router(vec![to_primary, to_replica]);
    let now = Instant::now();
    let plain = SessionView::default();
    let session = |f: fn(&mut SessionView<'static>)| {
        let mut s = SessionView::default();
        f(&mut s);
        s
    };
    let in_db = |database| SessionView {
        database,
        ..Default::default()
    };
    let cases: Vec<(Decision, &str, &str)> = vec![
        (
            r.route(Request::PrimaryOnly("bulk load"), &plain, &replicas(1), now),
            "bulk load",
            "primary_only",
        ),
        (
            route(&r, "SELECT 1", &session(|s| s.in_transaction = true)),
            "open transaction",
            "open_transaction",
        ),
        (
            route(&r, "SELECT 1", &session(|s| s.implicit_transactions = true)),
            "IMPLICIT_TRANSACTIONS ON",
            "implicit_transactions",
        ),
        (
            route(&r, "SELECT 1", &session(|s| s.strict_isolation = true)),
            "isolation level needs the primary",
            "strict_isolation",
        ),
        (
            route(
                &r,
                "SELECT 1",
                &session(|s| s.pin = Some(PinReason::Cursor)),
            ),
            "pinned: cursor",
            "pinned",
        ),
        (
            route(&r, "/* sluice:primary */ SELECT 1", &plain),
            "hint sluice:primary",
            "hint",
        ),
        (
            route(&r, "/* sluice:replica */ SELECT 1", &plain),
            "hint sluice:replica",
            "hint",
        ),
        (
            route(&r, "SELECT 1", &in_db("reports")),
            "rule to-primary",
            "rule",
        ),
        (
            route(&r, "SELECT 1", &in_db("replicated")),
            "rule to-replica",
            "rule",
        ),
        (
            route(&r, "DELETE FROM dbo.t", &in_db("replicated")),
            "rule to-replica overridden: not a read",
            "not_a_read",
        ),
        (
            route(&r, "/* sluice:replica */ DELETE FROM dbo.t", &plain),
            "hint sluice:replica overridden: not a read",
            "not_a_read",
        ),
        (
            route(&r, "SELECT * FROM dbo.t", &plain),
            "read: SELECT",
            "read",
        ),
        (
            route(&r, "UPDATE dbo.t SET a = 1", &plain),
            "write: UPDATE (dbo.t)",
            "write",
        ),
        (
            route(&r, "SELECT * FROM #t", &plain),
            "read: temp table #t",
            "read_needs_primary",
        ),
        (
            r.route(Request::Sql("SELECT 1"), &plain, &[], now),
            "read: SELECT; no replica available",
            "no_replica_available",
        ),
        (
            r.route(
                Request::Sql("SELECT 1"),
                &SessionView {
                    last_write: Some(now),
                    ..Default::default()
                },
                &replicas(1),
                now + Duration::from_millis(100),
            ),
            "read-your-writes: last write 100 ms ago, replica lag unknown",
            "read_your_writes",
        ),
    ];
    for (decision, text, label) in cases {
        assert_eq!(
            (
                decision.reason.to_string().as_str(),
                decision.reason.label()
            ),
            (text, label)
        );
        assert!(label.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'));
    }
}
