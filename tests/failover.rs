//! Backends that die under load: reads never fail while some backend can
//! serve them, writes fail fast with a TDS error, and everything works
//! again after the backend returns. Backends "die" by having the TCP link
//! in front of them cut (tests/common/link.rs).
mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::link::Link;
use common::*;

struct Topology {
    _primary: Backend,
    _replica: Backend,
    primary_link: Link,
    replica_link: Link,
    sluice: std::net::SocketAddr,
}

async fn topology(extra: &str) -> Topology {
    let primary = Backend::start().await;
    let replica = Backend::start().await;
    for (backend, name) in [(&primary, "primary"), (&replica, "replica")] {
        backend.exec(&format!(
            "CREATE TABLE dbo.whereami (v NVARCHAR(20)); INSERT INTO dbo.whereami VALUES (N'{name}');
             CREATE TABLE dbo.items (id INT)"
        ));
    }
    let primary_link = Link::start(primary.addr).await;
    let replica_link = Link::start(replica.addr).await;
    let text = config_text(primary_link.addr, &[replica_link.addr])
        + "[routing]\nread_your_writes_ms = 0\n"
        + extra;
    let sluice = start_sluice(parse_config(&text)).await;
    Topology {
        _primary: primary,
        _replica: replica,
        primary_link,
        replica_link,
        sluice,
    }
}

async fn whereami(client: &mut TestClient) -> Result<String, tiberius::error::Error> {
    let row = client
        .simple_query("SELECT v FROM dbo.whereami")
        .await?
        .into_row()
        .await?;
    Ok(row
        .and_then(|r| r.get::<&str, _>("v").map(str::to_string))
        .unwrap_or_default())
}

/// Polls `check` every 10 ms until it holds or `limit` passes.
async fn eventually<F, Fut>(limit: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

#[derive(Default)]
struct Tally {
    replica: AtomicUsize,
    primary: AtomicUsize,
    failed: AtomicUsize,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_dying_under_read_load_fails_no_read() {
    let t = topology("").await;
    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let mut readers = Vec::new();
    for _ in 0..4 {
        let (tally, stop, sluice) = (tally.clone(), stop.clone(), t.sluice);
        readers.push(tokio::spawn(async move {
            let mut client = connect(sluice).await;
            for _ in 0..100_000 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                match whereami(&mut client).await.as_deref() {
                    Ok("replica") => tally.replica.fetch_add(1, Ordering::Relaxed),
                    Ok(_) => tally.primary.fetch_add(1, Ordering::Relaxed),
                    Err(_) => {
                        tally.failed.fetch_add(1, Ordering::Relaxed);
                        client = connect(sluice).await;
                        0
                    }
                };
            }
        }));
    }
    let served = |tally: &Arc<Tally>| {
        let tally = tally.clone();
        move || {
            let tally = tally.clone();
            async move { tally.replica.load(Ordering::Relaxed) > 200 }
        }
    };
    assert!(
        eventually(Duration::from_secs(10), served(&tally)).await,
        "reads never reached the replica"
    );
    t.replica_link.kill();
    let on_primary = tally.primary.load(Ordering::Relaxed);
    let moved = eventually(Duration::from_secs(10), || {
        let tally = tally.clone();
        async move { tally.primary.load(Ordering::Relaxed) > on_primary + 200 }
    })
    .await;
    assert!(moved, "reads did not move to the primary");
    t.replica_link.restore();
    let on_replica = tally.replica.load(Ordering::Relaxed);
    let back = eventually(Duration::from_secs(15), || {
        let tally = tally.clone();
        async move { tally.replica.load(Ordering::Relaxed) > on_replica + 200 }
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        r.await.unwrap();
    }
    assert!(
        back,
        "reads did not return to the replica after it came back"
    );
    let failed = tally.failed.load(Ordering::Relaxed);
    println!(
        "reads: {} on the replica, {} on the primary, {failed} failed",
        tally.replica.load(Ordering::Relaxed),
        tally.primary.load(Ordering::Relaxed)
    );
    assert_eq!(failed, 0, "a read failed while the primary could serve it");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_primary_leaves_reads_working_and_fails_writes_fast() {
    let t = topology("").await;
    let mut client = connect(t.sluice).await;
    assert_eq!(whereami(&mut client).await.unwrap(), "replica");
    t.primary_link.kill();
    assert_eq!(whereami(&mut client).await.unwrap(), "replica");
    for _ in 0..2 {
        let started = Instant::now();
        let err = client
            .simple_query("INSERT INTO dbo.items VALUES (1)")
            .await
            .err();
        let elapsed = started.elapsed();
        let err = match err {
            Some(e) => e.to_string(),
            None => client
                .simple_query("SELECT 1")
                .await
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default(),
        };
        assert!(
            err.contains("primary"),
            "the write error must name the primary: {err:?}"
        );
        assert!(
            !err.contains(&t.primary_link.addr.to_string()),
            "the write error must not show the primary's address: {err:?}"
        );
        assert!(
            elapsed < Duration::from_secs(2),
            "the write took {elapsed:?} to fail"
        );
    }
    // A new client can still log in and read.
    let mut fresh = connect(t.sluice).await;
    assert_eq!(whereami(&mut fresh).await.unwrap(), "replica");
    t.primary_link.restore();
    let writes_again = eventually(Duration::from_secs(10), || {
        let sluice = t.sluice;
        async move {
            let mut c = connect(sluice).await;
            let ok = c
                .simple_query("INSERT INTO dbo.items VALUES (2)")
                .await
                .is_ok();
            ok
        }
    })
    .await;
    assert!(
        writes_again,
        "writes did not work again after the primary returned"
    );
}

/// Figures for the closing note come from these prints
/// (`cargo test --test failover -- --nocapture`).
fn figure(what: &str, value: impl std::fmt::Display) {
    println!("FIGURE {what}: {value}");
}

async fn served_by(
    sluice: std::net::SocketAddr,
    client: &mut TestClient,
    failed: &AtomicUsize,
) -> String {
    match whereami(client).await {
        Ok(v) => v,
        Err(_) => {
            failed.fetch_add(1, Ordering::Relaxed);
            *client = connect(sluice).await;
            String::new()
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lag_over_the_limit_moves_reads_to_the_primary_and_back() {
    const INTERVAL_MS: u64 = 200;
    const RECOVERY_MS: u64 = 600;
    let extra = format!(
        "[health]\ninterval_ms = {INTERVAL_MS}\nrecovery_ms = {RECOVERY_MS}\nlag_margin_ms = 200\n"
    );
    // The replica's lag comes from a one-row table on the replica the test updates.
    let primary = Backend::start().await;
    let replica = Backend::start().await;
    for (backend, name) in [(&primary, "primary"), (&replica, "replica")] {
        backend.exec(&format!(
            "CREATE TABLE dbo.whereami (v NVARCHAR(20)); INSERT INTO dbo.whereami VALUES (N'{name}');"
        ));
    }
    replica
        .exec("CREATE TABLE dbo.replica_lag (lag_ms INT); INSERT INTO dbo.replica_lag VALUES (0);");
    let text = config_text(primary.addr, &[replica.addr])
        + "max_lag_ms = 1000\nlag_source = \"query\"\nlag_query = \"SELECT lag_ms FROM dbo.replica_lag\"\n"
        + "[routing]\nread_your_writes_ms = 0\n"
        + &extra;
    let sluice = start_sluice(parse_config(&text)).await;
    let failed = AtomicUsize::new(0);
    let mut client = connect(sluice).await;
    let mut ready = false;
    for _ in 0..500 {
        if served_by(sluice, &mut client, &failed).await == "replica" {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(ready, "reads never reached the replica");

    replica.exec("UPDATE dbo.replica_lag SET lag_ms = 5000");
    let breach = Instant::now();
    let mut moved = None;
    while breach.elapsed() < Duration::from_secs(5) {
        if served_by(sluice, &mut client, &failed).await == "primary" {
            moved = Some(breach.elapsed());
            break;
        }
    }
    let moved = moved.expect("reads never left the lagging replica");
    figure(
        "lag breach to first read on the primary (ms)",
        moved.as_millis(),
    );
    assert!(
        moved <= Duration::from_millis(2 * INTERVAL_MS + 150),
        "took {moved:?}, more than two check intervals"
    );

    replica.exec("UPDATE dbo.replica_lag SET lag_ms = 0");
    let recovered = Instant::now();
    let mut back = None;
    while recovered.elapsed() < Duration::from_secs(10) {
        if served_by(sluice, &mut client, &failed).await == "replica" {
            back = Some(recovered.elapsed());
            break;
        }
    }
    let back = back.expect("reads never returned to the replica");
    figure(
        "lag recovery to first read on the replica (ms)",
        back.as_millis(),
    );
    assert!(
        back >= Duration::from_millis(RECOVERY_MS),
        "returned after {back:?}, before the hold time"
    );
    assert!(
        back <= Duration::from_millis(RECOVERY_MS + 3 * INTERVAL_MS + 300),
        "returned after {back:?}"
    );
    let failed = failed.load(Ordering::Relaxed);
    figure(
        "failed client requests during lag breach and recovery",
        failed,
    );
    assert_eq!(failed, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_leave_a_dead_replica_quickly() {
    let t = topology("[health]\ninterval_ms = 100\nrecovery_ms = 500\n").await;
    let failed = AtomicUsize::new(0);
    let mut client = connect(t.sluice).await;
    assert_eq!(served_by(t.sluice, &mut client, &failed).await, "replica");
    t.replica_link.kill();
    let died = Instant::now();
    let mut elsewhere = None;
    while died.elapsed() < Duration::from_secs(5) {
        if served_by(t.sluice, &mut client, &failed).await == "primary" {
            elsewhere = Some(died.elapsed());
            break;
        }
    }
    let elsewhere = elsewhere.expect("reads were not served elsewhere");
    figure(
        "replica death to first read served by the primary (ms)",
        elsewhere.as_millis(),
    );
    // Then the monitor marks it down: reads stop trying it at all.
    let down = eventually(Duration::from_secs(5), || async {
        let mut c = connect(t.sluice).await;
        let started = Instant::now();
        let v = whereami(&mut c).await.unwrap_or_default();
        v == "primary" && started.elapsed() < Duration::from_millis(200)
    })
    .await;
    assert!(down, "reads kept trying the dead replica");
    figure(
        "replica death: failed client requests",
        failed.load(Ordering::Relaxed),
    );
    assert_eq!(failed.load(Ordering::Relaxed), 0);
}

/// The heartbeat lag source end to end against the embedded engine: Sluice
/// creates the table on the primary and writes its clock there every
/// interval; the replica (a second listener over the same engine, so
/// replication is instant) shows a small lag and stays up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeat_lag_is_measured_through_the_primary() {
    let engine = iridium_core::Database::new();
    let primary = Backend::start_on(engine.clone()).await;
    let replica = Backend::start_on(engine).await;
    let text = config_text(primary.addr, &[replica.addr])
        + "max_lag_ms = 600\nlag_source = \"heartbeat\"\n"
        + "[health]\ninterval_ms = 100\nrecovery_ms = 300\nlag_margin_ms = 100\n";
    let proxy = sluice::server::Proxy::new(parse_config(&text)).expect("proxy");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    tokio::spawn(proxy.clone().serve(listener));
    let health = proxy.cluster().replicas()[0].health().clone();
    let measured = eventually(Duration::from_secs(5), || {
        let health = health.clone();
        async move {
            health
                .lag()
                .is_some_and(|lag| lag < Duration::from_millis(400))
                && health.is_available()
        }
    })
    .await;
    assert!(
        measured,
        "no small heartbeat lag measured: {:?} {:?}",
        health.state(),
        health.lag()
    );
    figure(
        "heartbeat lag of an in-sync replica (ms)",
        health.lag().unwrap_or_default().as_millis(),
    );
}
