//! Read-only procedures found from the primary's catalog
//! (`routing.detect_read_only_procedures`): each procedure returns the
//! `whereami` row of the backend it ran on, and primary and replica hold
//! different rows.
mod common;

use std::time::Duration;

use common::*;

const LIMIT: Duration = Duration::from_secs(20);

/// The same procedures on both backends (as replication would have them).
/// (iridium refuses SET options inside procedures; the unit tests of
/// `catalog::analysis` cover them.)
const PROCEDURES: &[&str] = &[
    "CREATE PROCEDURE dbo.GetWhere @id INT = 1 AS BEGIN SELECT v FROM dbo.whereami; END",
    "CREATE PROCEDURE dbo.OuterRead AS EXEC dbo.GetWhere",
    "CREATE PROCEDURE dbo.WriteLog AS BEGIN INSERT INTO dbo.calls (n) VALUES (1); SELECT v FROM dbo.whereami; END",
    "CREATE PROCEDURE dbo.CallsWriter AS EXEC dbo.WriteLog",
    "CREATE PROCEDURE dbo.Dynamic AS BEGIN DECLARE @s NVARCHAR(100) = N'SELECT v FROM dbo.whereami'; EXEC (@s); END",
];

async fn backend(name: &str) -> Backend {
    let backend = Backend::start().await;
    backend.exec(&format!(
        "CREATE TABLE dbo.whereami (v NVARCHAR(20)); INSERT INTO dbo.whereami VALUES (N'{name}');
         CREATE TABLE dbo.calls (n INT);"
    ));
    for procedure in PROCEDURES {
        backend.exec(procedure);
    }
    backend
}

async fn detecting(primary: &Backend, replica: &Backend) -> std::net::SocketAddr {
    let text = config_text(primary.addr, &[replica.addr])
        + "[routing]\nread_your_writes_ms = 0\ndetect_read_only_procedures = true\nprocedure_refresh_ms = 1000\n";
    start_sluice(parse_config(&text)).await
}

/// Waits until `sql` runs on `expected` (the catalog is read in the
/// background).
async fn eventually_on(client: &mut TestClient, sql: &str, expected: &str) {
    let deadline = std::time::Instant::now() + LIMIT;
    loop {
        let on = whereami(client, sql).await;
        if on == expected {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{sql} still runs on {on}, not {expected}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn procedures_are_routed_by_their_definitions() {
    let (primary, replica) = (backend("primary").await, backend("replica").await);
    let sluice = detecting(&primary, &replica).await;
    let mut client = connect(sluice).await;
    eventually_on(&mut client, "EXEC dbo.GetWhere 5", "replica").await;
    // Read-only, nested read-only, as a bare name and through sp_executesql.
    assert_eq!(whereami(&mut client, "EXEC dbo.OuterRead").await, "replica");
    assert_eq!(
        whereami(&mut client, "EXECUTE GetWhere @id = 2").await,
        "replica"
    );
    let row = client
        .query("EXEC dbo.GetWhere @id = @P1", &[&7i32])
        .await
        .expect("sp_executesql")
        .into_row()
        .await
        .expect("row")
        .expect("a row");
    assert_eq!(row.get::<&str, _>("v"), Some("replica"));
    // Writing, read-only calling writing, dynamic SQL: the primary.
    for call in [
        "EXEC dbo.WriteLog",
        "EXEC dbo.CallsWriter",
        "EXEC dbo.Dynamic",
    ] {
        assert_eq!(whereami(&mut client, call).await, "primary", "{call}");
    }
    // A batch with more than the call is classified as a whole.
    assert_eq!(
        whereami(&mut client, "UPDATE dbo.calls SET n = 2; EXEC dbo.GetWhere").await,
        "primary"
    );
    // Both writes ran on the primary (the replica's table stays empty).
    let count = "/* sluice:primary */ SELECT COUNT(*) FROM dbo.calls";
    assert_eq!(scalar_i32(&mut client, count).await, Some(2));
}

/// A procedure redefined through Sluice is routed by its new definition
/// from the next call; one redefined behind Sluice's back, from the next
/// refresh. (iridium has no ALTER PROCEDURE: DROP and CREATE.)
#[tokio::test]
async fn an_altered_procedure_is_routed_by_its_new_definition() {
    let (primary, replica) = (backend("primary").await, backend("replica").await);
    let sluice = detecting(&primary, &replica).await;
    let mut client = connect(sluice).await;
    eventually_on(&mut client, "EXEC dbo.GetWhere", "replica").await;

    run(&mut client, "DROP PROCEDURE dbo.GetWhere").await;
    run(
        &mut client,
        "CREATE PROCEDURE dbo.GetWhere @id INT = 1 AS BEGIN INSERT INTO dbo.calls (n) VALUES (@id); SELECT v FROM dbo.whereami; END",
    )
    .await;
    assert_eq!(whereami(&mut client, "EXEC dbo.GetWhere").await, "primary");
    assert_eq!(whereami(&mut client, "EXEC dbo.GetWhere").await, "primary");

    // Made read-only again directly on the primary: found by a refresh.
    primary.exec("DROP PROCEDURE dbo.GetWhere");
    primary.exec("CREATE PROCEDURE dbo.GetWhere @id INT = 1 AS SELECT v FROM dbo.whereami");
    eventually_on(&mut client, "EXEC dbo.GetWhere", "replica").await;
}

/// Off by default: every procedure call goes to the primary.
#[tokio::test]
async fn without_detection_calls_stay_on_the_primary() {
    let (primary, replica) = (backend("primary").await, backend("replica").await);
    let text = config_text(primary.addr, &[replica.addr]) + "[routing]\nread_your_writes_ms = 0\n";
    let sluice = start_sluice(parse_config(&text)).await;
    let mut client = connect(sluice).await;
    assert_eq!(whereami(&mut client, "EXEC dbo.GetWhere").await, "primary");
}

/// `sluice procedures` lists every verdict; `sluice explain` says why a
/// call goes where it goes.
#[tokio::test]
async fn the_command_line_shows_each_verdict() {
    let (primary, replica) = (backend("primary").await, backend("replica").await);
    let text = config_text(primary.addr, &[replica.addr])
        + "[routing]\ndetect_read_only_procedures = true\n";
    let dir = std::env::temp_dir().join(format!("sluice-procedures-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("proxy.toml");
    std::fs::write(&path, text).expect("write proxy.toml");

    let listing = sluice(&path, &["procedures"]).await;
    for expected in [
        "dbo.getwhere",
        "read-only (detected from its definition)",
        "dbo.callswriter  not read-only: calls dbo.writelog, which is not read-only",
        "dbo.dynamic      not read-only: dynamic SQL",
        "5 procedure(s), 2 read-only",
    ] {
        assert!(listing.contains(expected), "{expected:?} in:\n{listing}");
    }
    let explained = sluice(&path, &["explain", "EXEC dbo.OuterRead"]).await;
    assert!(
        explained.contains("target: replica (replica-1)"),
        "{explained}"
    );
    assert!(
        explained.contains("read-only procedure (detected from its definition)"),
        "{explained}"
    );
    let explained = sluice(&path, &["explain", "EXEC dbo.CallsWriter"]).await;
    assert!(explained.contains("target: primary"), "{explained}");
    assert!(
        explained.contains("procedure dbo.CallsWriter: not read-only: calls dbo.writelog"),
        "{explained}"
    );
}

/// Runs the `sluice` binary off the test's runtime (the backends run on it).
async fn sluice(config: &std::path::Path, args: &[&str]) -> String {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"));
    command.arg("--config").arg(config).args(args);
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .expect("join")
        .expect("run sluice");
    let text = String::from_utf8_lossy(&output.stdout).to_string()
        + &String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "sluice {args:?}: {text}");
    text
}
