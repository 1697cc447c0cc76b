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
