use super::*;
use crate::classify::Classifier;

fn config(extra: &str) -> CacheConfig {
    crate::testing::config_with(&format!("[cache]\n{extra}"))
        .cache
        .expect("[cache]")
}

/// Everything is opted in by a catch-all rule, so only the never-cache
/// list decides.
fn everything() -> Policy {
    Policy::new(&config(
        "[[cache.rules]]\nname = \"all\"\nmatch_sql = \"(?s).\"\nttl_ms = 60000\n",
    ))
    .expect("compiles")
}

fn decide_as(policy: &Policy, sql: &str, in_transaction: bool) -> Verdict {
    let classifier = Classifier::new(0, &["dbo.ReadOnlyReport".to_string()]);
    let c = classifier.classify(sql);
    policy.decide(&Statement {
        request: Request::Sql(sql),
        classification: Some(&c),
        class: Some(c.class),
        user: "app",
        application: "web",
        database: "Shop",
        in_transaction,
    })
}

fn decide(policy: &Policy, sql: &str) -> Verdict {
    decide_as(policy, sql, false)
}

fn skip_label(verdict: &Verdict) -> &'static str {
    match verdict {
        Verdict::Skip(skip) => skip.label(),
        Verdict::Cache(_) => "cached",
        Verdict::NotOptedIn => "not_opted_in",
    }
}

#[test]
fn nothing_on_the_never_cache_list_is_cached_whatever_a_rule_says() {
    let policy = everything();
    let table: &[(&str, &str)] = &[
        ("UPDATE orders SET total = 1 WHERE id = 1", "not_a_read"),
        ("INSERT INTO orders (id) VALUES (1)", "not_a_read"),
        ("DELETE FROM orders", "not_a_read"),
        ("SELECT * INTO archive FROM orders", "not_a_read"),
        ("EXEC dbo.Unknown", "not_a_read"),
        ("BEGIN TRANSACTION", "not_a_read"),
        ("SELECT GETDATE()", "non_deterministic"),
        (
            "SELECT id FROM orders WHERE at < SYSDATETIME()",
            "non_deterministic",
        ),
        ("SELECT NEWID(), id FROM orders", "non_deterministic"),
        ("SELECT RAND()", "non_deterministic"),
        ("SELECT CURRENT_TIMESTAMP", "non_deterministic"),
        ("SELECT @@ROWCOUNT", "non_deterministic"),
        ("SELECT @@SPID", "non_deterministic"),
        ("SELECT SCOPE_IDENTITY()", "non_deterministic"),
        ("SELECT * FROM #work", "temp_table"),
        ("SELECT * FROM orders WITH (UPDLOCK)", "server_side_effect"),
        ("SELECT NEXT VALUE FOR dbo.seq", "not_a_read"),
        ("EXEC dbo.ReadOnlyReport", "tables_unknown"),
    ];
    for (sql, expected) in table {
        assert_eq!(skip_label(&decide(&policy, sql)), *expected, "{sql}");
    }
    // Session state: whatever the class, never cached.
    for sql in [
        "SET DATEFORMAT dmy",
        "USE other",
        "SET DATEFORMAT dmy; SELECT 1",
    ] {
        assert!(
            matches!(decide(&policy, sql), Verdict::Skip(_)),
            "{sql}: {:?}",
            decide(&policy, sql)
        );
    }
    assert_eq!(
        skip_label(&decide_as(&policy, "SELECT * FROM orders", true)),
        "in_transaction"
    );
}

#[test]
fn a_plain_read_is_cached_with_its_tables_in_the_session_database() {
    let Verdict::Cache(plan) = decide(
        &everything(),
        "SELECT o.id FROM dbo.Orders o JOIN [sales].[Customers] c ON c.id = o.customer",
    ) else {
        panic!("a plain read is cached");
    };
    assert_eq!(plan.tables, vec!["shop.orders", "shop.customers"]);
    assert_eq!(plan.ttl, Duration::from_secs(60));
    assert_eq!(&*plan.source, "all");
    let Verdict::Cache(plan) = decide(&everything(), "SELECT * FROM Archive.dbo.Orders") else {
        panic!("a three-part name is cached");
    };
    assert_eq!(plan.tables, vec!["archive.orders"]);
}

#[test]
fn nothing_is_cached_without_a_rule_or_a_hint() {
    let policy = Policy::new(&config("")).expect("compiles");
    assert_eq!(decide(&policy, "SELECT * FROM orders"), Verdict::NotOptedIn);
    let Verdict::Cache(plan) = decide(&policy, "/* sluice:cache ttl=600s */ SELECT * FROM orders")
    else {
        panic!("a hint opts in");
    };
    assert_eq!(
        (plan.ttl, &*plan.source),
        (Duration::from_secs(600), "hint")
    );
    // A hint does not override the never-cache list.
    assert_eq!(
        skip_label(&decide(&policy, "/* sluice:cache */ SELECT GETDATE()")),
        "non_deterministic"
    );
    let no_hints = Policy::new(&config("hints = false")).expect("compiles");
    assert_eq!(
        decide(
            &no_hints,
            "/* sluice:cache ttl=600s */ SELECT * FROM orders"
        ),
        Verdict::NotOptedIn
    );
}

#[test]
fn hints_read_their_ttl_in_any_unit_and_ignore_what_they_cannot_read() {
    let default = Duration::from_secs(60);
    let cases: &[(&str, Option<Duration>)] = &[
        ("/* sluice:cache */ SELECT 1", Some(default)),
        (
            "/* sluice:cache ttl=250ms */ SELECT 1",
            Some(Duration::from_millis(250)),
        ),
        (
            "/* sluice:cache ttl=10s */ SELECT 1",
            Some(Duration::from_secs(10)),
        ),
        (
            "/* sluice:cache ttl=5m */ SELECT 1",
            Some(Duration::from_secs(300)),
        ),
        (
            "/* sluice:cache ttl=2h */ SELECT 1",
            Some(Duration::from_secs(7200)),
        ),
        (
            "-- sluice:cache ttl=3s\nSELECT 1",
            Some(Duration::from_secs(3)),
        ),
        (
            "/* app */ /* sluice:cache ttl=3s */ SELECT 1",
            Some(Duration::from_secs(3)),
        ),
        ("/* sluice:cache ttl=10 */ SELECT 1", None),
        ("/* sluice:cache ttl=0s */ SELECT 1", None),
        ("/* sluice:cache ttl=99999h */ SELECT 1", None),
        ("SELECT 1 /* sluice:cache ttl=10s */", None),
        ("SELECT '/* sluice:cache ttl=10s */'", None),
    ];
    for (sql, expected) in cases {
        assert_eq!(hint_ttl(sql, default), *expected, "{sql}");
    }
}

#[test]
fn the_first_matching_rule_decides_and_ttl_zero_keeps_out() {
    let policy = Policy::new(&config(
        r#"
[[cache.rules]]
name = "no-audit"
match_sql = "(?i)audit"
ttl_ms = 0
[[cache.rules]]
name = "reference"
tables = ["dbo.countries", "currencies"]
ttl_ms = 300000
[[cache.rules]]
name = "reports"
user = "app"
application = "web"
match_sql = "(?i)from orders"
ttl_ms = 1000
"#,
    ))
    .expect("compiles");
    assert_eq!(
        skip_label(&decide(&policy, "SELECT * FROM audit_log")),
        "excluded_by_rule"
    );
    let Verdict::Cache(plan) = decide(&policy, "SELECT * FROM Countries JOIN currencies ON 1=1")
    else {
        panic!("reference tables are cached");
    };
    assert_eq!(&*plan.source, "reference");
    // Not every table is one of the rule's: the next rule is asked.
    assert_eq!(
        decide(&policy, "SELECT * FROM countries JOIN cities ON 1=1"),
        Verdict::NotOptedIn
    );
    let Verdict::Cache(plan) = decide(&policy, "SELECT * FROM orders") else {
        panic!("the user's reads of orders are cached");
    };
    assert_eq!(
        (&*plan.source, plan.ttl),
        ("reports", Duration::from_secs(1))
    );
}

#[test]
fn a_procedure_rule_names_the_tables_its_result_depends_on() {
    let policy = Policy::new(&config(
        "[[cache.rules]]\nprocedure = \"dbo.ReadOnlyReport\"\ntables = [\"orders\"]\nttl_ms = 5000\n",
    ))
    .expect("compiles");
    let Verdict::Cache(plan) = decide(&policy, "EXEC dbo.ReadOnlyReport") else {
        panic!("the procedure is cached");
    };
    assert_eq!(plan.tables, vec!["shop.orders"]);
    let classifier = Classifier::new(0, &["dbo.ReadOnlyReport".to_string()]);
    let c = classifier.classify("EXEC ReadOnlyReport");
    let rpc = Statement {
        request: Request::Procedure("ReadOnlyReport"),
        classification: Some(&c),
        class: Some(c.class),
        user: "app",
        application: "web",
        database: "Shop",
        in_transaction: false,
    };
    assert!(matches!(policy.decide(&rpc), Verdict::Cache(_)));
}

#[test]
fn table_ttl_bounds_the_entries_that_read_the_table() {
    let policy = Policy::new(&config(
        "[cache.table_ttl_ms]\n\"dbo.stock\" = 2000\n[[cache.rules]]\nmatch_sql = \".\"\nttl_ms = 60000\n",
    ))
    .expect("compiles");
    let ttl = |sql| match decide(&policy, sql) {
        Verdict::Cache(plan) => plan.ttl,
        other => panic!("{sql}: {other:?}"),
    };
    assert_eq!(ttl("SELECT * FROM stock"), Duration::from_secs(2));
    assert_eq!(ttl("SELECT * FROM orders"), Duration::from_secs(60));
}

#[test]
fn table_names_lose_brackets_case_and_schema() {
    assert_eq!(table_name("[dbo].[Orders]"), "orders");
    assert_eq!(table_name("Sales.\"Orders\""), "orders");
    assert_eq!(table_name("Shop.dbo.Orders"), "shop.orders");
    assert_eq!(qualify("orders", "Shop"), "shop.orders");
    assert_eq!(qualify("archive.orders", "Shop"), "archive.orders");
}
