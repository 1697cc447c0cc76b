//! Read/write routing seen from a real driver: the primary and the replica
//! hold different rows in `dbo.whereami`, so each answer says where the
//! request ran.
mod common;

use common::*;
use iridium_core::SessionManager;

const NO_RYW: &str = "read_your_writes_ms = 0\n";

#[tokio::test]
async fn plain_reads_go_to_the_replica_and_writes_to_the_primary() {
    let p = pair(NO_RYW).await;
    let mut c = connect(p.sluice).await;
    assert_eq!(
        whereami(&mut c, "SELECT v FROM dbo.whereami").await,
        "replica"
    );
    assert_eq!(
        whereami(&mut c, "SELECT TOP 1 v FROM dbo.whereami WITH (NOLOCK)").await,
        "replica"
    );
    run(&mut c, "INSERT INTO dbo.items (name) VALUES (N'written')").await;
    let written = |b: &Backend| {
        let s = b.engine.create_session();
        let r = iridium_core::StatementExecutor::execute_session_batch_sql(
            &b.engine,
            s,
            "SELECT name FROM dbo.items",
        );
        format!("{r:?}")
    };
    assert!(written(&p.primary).contains("written"));
    assert!(!written(&p.replica).contains("written"));
    // A batch with any write goes to the primary, reads included.
    assert_eq!(
        whereami(
            &mut c,
            "INSERT INTO dbo.items (name) VALUES (N'x'); SELECT v FROM dbo.whereami"
        )
        .await,
        "primary"
    );
}

#[tokio::test]
async fn parameterised_reads_follow_the_sql_text() {
    let p = pair(NO_RYW).await;
    let mut c = connect(p.sluice).await;
    let row = c
        .query("SELECT v FROM dbo.whereami WHERE v <> @P1", &[&"nothing"])
        .await
        .unwrap()
        .into_row()
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.get::<&str, _>("v"), Some("replica"));
}

#[tokio::test]
async fn transactions_keep_every_request_on_the_primary() {
    let p = pair(NO_RYW).await;
    let mut c = connect(p.sluice).await;
    // Each step, then where the next plain read must run.
    let steps = [
        ("BEGIN TRANSACTION", "primary"),
        ("COMMIT", "replica"),
        ("SET IMPLICIT_TRANSACTIONS ON", "primary"),
        ("SET IMPLICIT_TRANSACTIONS OFF", "replica"),
        ("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE", "primary"),
        ("SET TRANSACTION ISOLATION LEVEL READ COMMITTED", "replica"),
    ];
    for (step, expected) in steps {
        run(&mut c, step).await;
        assert_eq!(
            whereami(&mut c, "SELECT v FROM dbo.whereami").await,
            expected,
            "after {step}"
        );
    }
}

#[tokio::test]
async fn transaction_manager_transactions_stay_on_the_primary() {
    let p = pair(NO_RYW).await;
    let mut raw = common::raw::RawClient::login(p.sluice, USER, PASSWORD).await;
    raw.send_tm(0, 5, &[0, 0]).await;
    raw.read_response().await;
    raw.send_batch("SELECT v FROM dbo.whereami").await;
    let in_tx = raw.read_message().await;
    raw.send_tm(1, 7, &[0, 0]).await;
    raw.read_response().await;
    raw.send_batch("SELECT v FROM dbo.whereami").await;
    let after = raw.read_message().await;
    let utf16 = |s: &str| {
        s.encode_utf16()
            .flat_map(u16::to_le_bytes)
            .collect::<Vec<u8>>()
    };
    let contains = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).any(|w| w == needle);
    assert!(
        contains(&in_tx, &utf16("primary")),
        "read inside a TM transaction left the primary"
    );
    assert!(
        contains(&after, &utf16("replica")),
        "read after commit did not go to the replica"
    );
}

#[tokio::test]
async fn session_bound_work_stays_on_the_primary() {
    let p = pair(NO_RYW).await;
    let mut c = connect(p.sluice).await;
    assert_eq!(
        whereami(&mut c, "SELECT v FROM dbo.whereami WITH (UPDLOCK)").await,
        "primary"
    );
    let row = c
        .simple_query("INSERT INTO dbo.items (name) VALUES (N'a'); SELECT CAST(SCOPE_IDENTITY() AS INT) AS id")
        .await
        .unwrap()
        .into_row()
        .await
        .unwrap();
    assert!(
        row.is_some(),
        "SCOPE_IDENTITY after an insert must run where the insert ran"
    );
    // A temp table pins the session to the primary (until it is dropped:
    // tests/pins.rs).
    run(&mut c, "CREATE TABLE #scratch (n INT)").await;
    assert_eq!(
        whereami(&mut c, "SELECT v FROM dbo.whereami").await,
        "primary"
    );
}

#[tokio::test]
async fn settings_are_replayed_on_the_replica() {
    let p = pair(NO_RYW).await;
    let mut c = connect(p.sluice).await;
    run(&mut c, "SET DATEFIRST 3").await;
    let row = c
        .simple_query("SELECT @@DATEFIRST AS d, v FROM dbo.whereami")
        .await
        .unwrap()
        .into_row()
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.get::<&str, _>("v"), Some("replica"));
    let d = row
        .cells()
        .next()
        .map(|(_, v)| format!("{v:?}"))
        .unwrap_or_default();
    assert!(d.contains('3'), "DATEFIRST on the replica: {d}");
}

#[tokio::test]
async fn hints_and_rules_steer_reads() {
    let rules = format!(
        "{NO_RYW}[[routing.rules]]\nname = \"whereami-on-primary\"\nmatch_sql = \"(?i)from\\\\s+dbo\\\\.whereami\\\\s+where\"\ntarget = \"primary\"\n"
    );
    let p = pair(&rules).await;
    let mut c = connect(p.sluice).await;
    assert_eq!(
        whereami(&mut c, "/* sluice:primary */ SELECT v FROM dbo.whereami").await,
        "primary"
    );
    assert_eq!(
        whereami(&mut c, "SELECT v FROM dbo.whereami WHERE 1 = 1").await,
        "primary"
    );
    assert_eq!(
        whereami(&mut c, "SELECT v FROM dbo.whereami").await,
        "replica"
    );
}

#[tokio::test]
async fn reads_stay_on_the_primary_after_a_write_for_the_window() {
    let p = pair("read_your_writes_ms = 60000\n").await;
    let mut c = connect(p.sluice).await;
    assert_eq!(
        whereami(&mut c, "SELECT v FROM dbo.whereami").await,
        "replica"
    );
    run(&mut c, "INSERT INTO dbo.items (name) VALUES (N'w')").await;
    assert_eq!(
        whereami(&mut c, "SELECT v FROM dbo.whereami").await,
        "primary"
    );
    // Another client is not affected.
    let mut other = connect(p.sluice).await;
    assert_eq!(
        whereami(&mut other, "SELECT v FROM dbo.whereami").await,
        "replica"
    );
}

/// The same story through pytds (a real Python driver, installed by
/// `.ci/install-interop.sh`): reads on the replica, writes and
/// Transaction Manager transactions on the primary, settings replayed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pytds_requests_land_where_expected() {
    let p = pair(NO_RYW).await;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let python = root.join(".venv/bin/python");
    assert!(
        python.exists(),
        "pytds is not installed: run `bash .ci/install-interop.sh`"
    );
    let script = root.join("tests/interop/pytds_routing.py");
    let port = p.sluice.port().to_string();
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new("timeout")
            .args(["60"])
            .arg(python)
            .arg(script)
            .args(["--port", &port, "--user", USER, "--password", PASSWORD])
            .output()
            .expect("run pytds")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "pytds failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines,
        [
            "read replica",
            "datefirst 3 replica",
            "locking primary",
            "transaction primary"
        ],
        "{stdout}"
    );
    let s = p.primary.engine.create_session();
    let rows = iridium_core::StatementExecutor::execute_session_batch_sql(
        &p.primary.engine,
        s,
        "SELECT name FROM dbo.items",
    );
    assert!(
        format!("{rows:?}").contains("from pytds"),
        "the INSERT did not reach the primary"
    );
}
