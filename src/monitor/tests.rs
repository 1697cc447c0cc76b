//! The monitor against embedded iridium engines on port 0: the `query` and
//! `heartbeat` lag sources, failed and hung backends, data-path reports.
//! Every wait polls a `BackendHealth` every 10 ms with a bound; none sleeps
//! to assert.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use iridium_core::{Database, SessionManager, StatementExecutor};
use iridium_server::{ServerConfig, TdsServer};

use super::target::connect;
use super::*;
use crate::backend::BackendConn;
use crate::config::BackendTls;
use crate::tds::token::BatchReply;

/// An iridium listener on an ephemeral port, stopped on drop.
struct Listener {
    addr: SocketAddr,
    _task: task::AbortOnDrop<()>,
}

async fn listen(engine: Database) -> Listener {
    let mut server =
        TdsServer::new_with_database(engine, ServerConfig::default().port(0).disable_tls());
    let addr = server.bind().await.expect("bind iridium");
    let task = tokio::spawn(async move {
        let _ = server.run().await;
    });
    Listener {
        addr,
        _task: task::AbortOnDrop(task),
    }
}

/// Runs T-SQL on the engine directly, as the test's "replication".
fn exec(engine: &Database, sql: &str) {
    let session = engine.create_session();
    engine
        .execute_session_batch_sql(session, sql)
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    let _ = engine.close_session(session);
}

fn target(name: &str, addr: SocketAddr) -> CheckTarget {
    CheckTarget {
        name: name.to_string(),
        host: "127.0.0.1".to_string(),
        port: addr.port(),
        user: "sa".to_string(),
        password: "unused-by-iridium".to_string(),
        database: "master".to_string(),
        tls: BackendTls::Off,
        trust_server_certificate: true,
        ca_file: None,
        read_only_intent: false,
        application_name: "Sluice monitor tests".to_string(),
    }
}

fn policy(max_lag_ms: Option<u64>) -> HealthPolicy {
    HealthPolicy {
        interval: Duration::from_millis(20),
        timeout: Duration::from_secs(2),
        failures_to_down: 2,
        recovery: Duration::from_millis(100),
        max_lag: max_lag_ms.map(Duration::from_millis),
        lag_margin: Duration::from_millis(200),
    }
}

/// Polls `condition` every 10 ms for up to 5 s.
async fn wait_for(what: &str, mut condition: impl FnMut() -> bool) {
    for _ in 0..500 {
        if condition() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}

fn ms(n: u64) -> Option<Duration> {
    Some(Duration::from_millis(n))
}

/// A primary and one replica with `source`; returns the replica's health
/// and the primary's.
async fn monitor(
    primary: SocketAddr,
    replica: SocketAddr,
    source: LagSource,
    replica_policy: HealthPolicy,
) -> (MonitorHandle, Arc<BackendHealth>, Arc<BackendHealth>) {
    let primary_health = Arc::new(BackendHealth::new());
    let replica_health = Arc::new(BackendHealth::new());
    let handle = spawn(
        (
            target("primary", primary),
            primary_health.clone(),
            policy(None),
        ),
        vec![(
            target("replica-1", replica),
            replica_health.clone(),
            replica_policy,
            source,
        )],
    );
    (handle, replica_health, primary_health)
}

#[tokio::test]
async fn query_source_moves_a_replica_out_and_back_with_hysteresis() {
    let primary_engine = Database::new();
    let replica_engine = Database::new();
    exec(&replica_engine, "CREATE TABLE dbo.replica_lag (lag_ms INT)");
    exec(
        &replica_engine,
        "INSERT INTO dbo.replica_lag (lag_ms) VALUES (25)",
    );
    let primary = listen(primary_engine).await;
    let replica = listen(replica_engine.clone()).await;
    let source = LagSource::Query("SELECT lag_ms FROM dbo.replica_lag".to_string());
    let (handle, health, primary_health) =
        monitor(primary.addr, replica.addr, source, policy(Some(1000))).await;
    assert_eq!(handle.task_count(), 2);

    wait_for("lag 25 ms", || health.lag() == ms(25)).await;
    assert_eq!(health.state(), BackendState::Up);
    assert_eq!(primary_health.state(), BackendState::Up);
    assert_eq!(primary_health.lag(), None, "the primary has no lag");

    exec(&replica_engine, "UPDATE dbo.replica_lag SET lag_ms = 5000");
    wait_for("lagging", || health.state() == BackendState::Lagging).await;
    assert!(!health.is_available());
    assert_eq!(health.lag(), ms(5000));

    // Under max_lag (1000) but not under max_lag - margin (800): stays out.
    exec(&replica_engine, "UPDATE dbo.replica_lag SET lag_ms = 900");
    wait_for("lag 900 ms", || health.lag() == ms(900)).await;
    assert_eq!(health.state(), BackendState::Lagging);

    let back_under = Instant::now();
    exec(&replica_engine, "UPDATE dbo.replica_lag SET lag_ms = 10");
    wait_for("up again", || health.state() == BackendState::Up).await;
    assert!(
        back_under.elapsed() >= Duration::from_millis(100),
        "returned after {:?}, before the 100 ms hold time",
        back_under.elapsed()
    );
    assert_eq!(health.lag(), ms(10));
    drop(handle);
}

#[tokio::test]
async fn query_source_lag_from_decimal_and_null() {
    let replica_engine = Database::new();
    exec(
        &replica_engine,
        "CREATE TABLE dbo.replica_lag (lag_ms DECIMAL(10,2))",
    );
    exec(
        &replica_engine,
        "INSERT INTO dbo.replica_lag (lag_ms) VALUES (12.6)",
    );
    let primary = listen(Database::new()).await;
    let replica = listen(replica_engine.clone()).await;
    let source = LagSource::Query("SELECT lag_ms FROM dbo.replica_lag".to_string());
    let (_handle, health, _) =
        monitor(primary.addr, replica.addr, source, policy(Some(1000))).await;
    wait_for("lag 13 ms", || health.lag() == ms(13)).await;
    assert_eq!(health.state(), BackendState::Up);

    // NULL: unknown, which a lag limit treats as over it.
    exec(&replica_engine, "UPDATE dbo.replica_lag SET lag_ms = NULL");
    wait_for("lagging", || health.state() == BackendState::Lagging).await;
    assert_eq!(health.lag(), None);
}

#[tokio::test]
async fn a_failing_lag_query_makes_the_replica_lagging_not_down() {
    let primary = listen(Database::new()).await;
    let replica = listen(Database::new()).await;
    let source = LagSource::Query("SELECT lag_ms FROM dbo.no_such_table".to_string());
    let (_handle, health, _) =
        monitor(primary.addr, replica.addr, source, policy(Some(1000))).await;
    wait_for("lagging", || health.state() == BackendState::Lagging).await;
    // Three more checks (two failed ones would take it down): each one
    // overwrites the lag the test plants.
    for _ in 0..3 {
        health.set_lag(ms(1));
        wait_for("another check", || health.lag().is_none()).await;
    }
    assert_eq!(health.state(), BackendState::Lagging);
}

#[tokio::test]
async fn dmv_sources_without_an_availability_group_leave_the_lag_unknown() {
    // iridium has an empty sys.dm_hadr_database_replica_states and no
    // sys.dm_geo_replication_link_status: no row, and a SQL error.
    let primary = listen(Database::new()).await;
    let replica = listen(Database::new()).await;
    for source in [
        LagSource::AlwaysOn,
        LagSource::AzureGeo,
        LagSource::AzureReadScaleOut,
    ] {
        let (_handle, health, primary_health) = monitor(
            primary.addr,
            replica.addr,
            source.clone(),
            policy(Some(1000)),
        )
        .await;
        wait_for(source.as_str(), || health.state() == BackendState::Lagging).await;
        assert_eq!(health.lag(), None, "{}", source.as_str());
        assert_eq!(primary_health.state(), BackendState::Up);
    }
}

#[tokio::test]
async fn heartbeat_through_one_engine_reads_a_small_lag() {
    // Two listeners over one engine: a replica that is never behind.
    let engine = Database::new();
    let primary = listen(engine.clone()).await;
    let replica = listen(engine.clone()).await;
    let source = LagSource::Heartbeat {
        table: "dbo.sluice_heartbeat".to_string(),
    };
    let (handle, health, _) = monitor(primary.addr, replica.addr, source, policy(Some(1000))).await;
    assert_eq!(handle.task_count(), 3, "primary, replica, heartbeat writer");
    wait_for("a measured lag", || health.lag().is_some()).await;
    let lag = health.lag().expect("measured");
    // An upper bound of the true lag (0 here): at most one write interval
    // plus scheduling, far under the limit.
    assert!(lag < Duration::from_millis(1000), "lag {lag:?}");
    assert_eq!(health.state(), BackendState::Up);

    // The writer created the table and keeps the one row fresh.
    let mut client = connect(&target("reader", primary.addr), Duration::from_secs(5))
        .await
        .expect("connect");
    let read = "SELECT ts_ms FROM dbo.sluice_heartbeat WHERE id = 1";
    let first = first_ms(&mut client, read).await;
    let mut latest = first;
    for _ in 0..500 {
        latest = first_ms(&mut client, read).await;
        if latest > first {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(latest > first, "the heartbeat did not move from {first}");
    let count = "SELECT COUNT(*) FROM dbo.sluice_heartbeat";
    assert_eq!(first_ms(&mut client, count).await, 1);
}

#[tokio::test]
async fn heartbeat_on_a_replica_that_falls_behind_and_catches_up() {
    // Separate engines: the replica sees only what the test copies over.
    let primary_engine = Database::new();
    let replica_engine = Database::new();
    let stale = epoch_ms() - 60_000;
    exec(
        &replica_engine,
        "CREATE TABLE dbo.beat (id INT NOT NULL PRIMARY KEY, ts_ms BIGINT NOT NULL)",
    );
    exec(
        &replica_engine,
        &format!("INSERT INTO dbo.beat (id, ts_ms) VALUES (1, {stale})"),
    );
    let primary = listen(primary_engine.clone()).await;
    let replica = listen(replica_engine.clone()).await;
    let source = LagSource::Heartbeat {
        table: "dbo.beat".to_string(),
    };
    let (_handle, health, _) =
        monitor(primary.addr, replica.addr, source, policy(Some(1000))).await;
    wait_for("lagging", || health.state() == BackendState::Lagging).await;
    let lag = health.lag().expect("measured");
    assert!(lag >= Duration::from_secs(60), "lag {lag:?}");

    // "Replication" catches up: copy the primary's row to the replica.
    let mut client = connect(&target("reader", primary.addr), Duration::from_secs(5))
        .await
        .expect("connect");
    let written = first_ms(&mut client, "SELECT ts_ms FROM dbo.beat WHERE id = 1").await;
    assert!(written > stale);
    exec(
        &replica_engine,
        &format!("UPDATE dbo.beat SET ts_ms = {written} WHERE id = 1"),
    );
    wait_for("lag under a minute", || {
        health
            .lag()
            .is_some_and(|lag| lag < Duration::from_secs(60))
    })
    .await;
    // Copied once, the value ages: past 1 s the replica is out again, as it
    // must be when replication stops.
    wait_for("lag over the limit again", || {
        health
            .lag()
            .is_some_and(|lag| lag > Duration::from_millis(1000))
    })
    .await;
    wait_for("lagging again", || health.state() == BackendState::Lagging).await;
}

#[tokio::test]
async fn a_bad_heartbeat_table_name_leaves_the_lag_unknown() {
    let primary = listen(Database::new()).await;
    let replica = listen(Database::new()).await;
    let source = LagSource::Heartbeat {
        table: "beat; DROP TABLE x".to_string(),
    };
    let (handle, health, _) = monitor(primary.addr, replica.addr, source, policy(Some(1000))).await;
    assert_eq!(handle.task_count(), 2, "no writer for an unusable table");
    wait_for("lagging", || health.state() == BackendState::Lagging).await;
    assert!(check_heartbeat_table("beat; DROP TABLE x").is_err());
    assert!(check_heartbeat_table("dbo.sluice_heartbeat").is_ok());
}

#[tokio::test]
async fn an_unreachable_backend_goes_down() {
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr")
    };
    let health = Arc::new(BackendHealth::new());
    let _handle = spawn(
        (target("primary", closed), health.clone(), policy(None)),
        Vec::new(),
    );
    wait_for("down", || health.state() == BackendState::Down).await;
    assert_eq!(health.lag(), None);
}

#[tokio::test]
async fn a_backend_that_never_answers_times_out_and_goes_down() {
    // Accepts connections and never says a word.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = silent.local_addr().expect("addr");
    let _accept = task::AbortOnDrop(tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            held.push(socket);
        }
    }));
    let health = Arc::new(BackendHealth::new());
    let started = Instant::now();
    let _handle = spawn(
        (
            target("primary", addr),
            health.clone(),
            HealthPolicy {
                timeout: Duration::from_millis(100),
                ..policy(None)
            },
        ),
        Vec::new(),
    );
    wait_for("down", || health.state() == BackendState::Down).await;
    // Two checks of 100 ms each, not a TCP timeout.
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_data_path_failure_triggers_an_immediate_check() {
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr")
    };
    let health = Arc::new(BackendHealth::new());
    // A 60 s interval: only the first check runs on its own.
    let _handle = spawn(
        (
            target("primary", closed),
            health.clone(),
            HealthPolicy {
                interval: Duration::from_secs(60),
                failures_to_down: 3,
                ..policy(None)
            },
        ),
        Vec::new(),
    );
    // The first check fails once; the report counts as one failure and the
    // check it triggers as another: down, long before a second interval.
    health.mark_failed_request();
    wait_for("down", || health.state() == BackendState::Down).await;
}

async fn first_ms(client: &mut BackendConn, sql: &str) -> i64 {
    let reply = client.run_batch(sql).await.expect("query");
    let value = BatchReply::decode(&reply)
        .expect("a readable reply")
        .first_value()
        .expect("one row");
    lag::epoch_ms_from_column(&value)
        .expect("an integer")
        .expect("not NULL")
}

fn epoch_ms() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970");
    i64::try_from(now.as_millis()).expect("fits")
}
