//! Session integrity under faults: a lost transaction is never half
//! committed, a client's reset keeps what it says it keeps, a client that
//! stops reading cannot hold a backend connection, and a client's own
//! faults never count against a replica.
mod common;

use std::time::{Duration, Instant};

use common::fake::{self, FakeOptions};
use common::link::Link;
use common::raw::RawClient;
use common::*;
use sluice::tds::packet::Status;
use sluice::tds::token::walker::TokenEvent;

/// Polls `check` every 10 ms until it holds or `limit` passes.
async fn eventually<F, Fut>(limit: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while start.elapsed() < limit {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

fn has_error(events: &[TokenEvent]) -> bool {
    events.iter().any(|e| matches!(e, TokenEvent::Error(_)))
}

/// pytds' sequence from issue 7: BEGIN TRAN; INSERT (1); the primary
/// restarts; INSERT (2) fails, the driver retries it (40613 is transient by
/// contract), then COMMIT. Before the fix the retry autocommitted on a
/// fresh connection: one row of a two-row transaction committed. Now the
/// client gets a severity-20 error and its connection is closed.
#[tokio::test]
async fn a_primary_lost_mid_transaction_commits_nothing() {
    let primary = Backend::start().await;
    primary.exec("CREATE TABLE dbo.t (id INT)");
    let link = Link::start(primary.addr).await;
    let sluice = start_sluice(parse_config(&config_text(link.addr, &[]))).await;
    let mut client = connect(sluice).await;
    client.simple_query("BEGIN TRAN").await.expect("begin");
    client
        .execute("INSERT INTO dbo.t VALUES (1)", &[])
        .await
        .expect("first insert");
    link.kill();
    link.restore();
    let second = client.execute("INSERT INTO dbo.t VALUES (2)", &[]).await;
    assert!(
        second.is_err(),
        "the insert on a lost transaction must fail"
    );
    let retry = client.execute("INSERT INTO dbo.t VALUES (2)", &[]).await;
    assert!(retry.is_err(), "the retry must not autocommit: {retry:?}");
    let commit = client.simple_query("COMMIT").await;
    assert!(commit.is_err(), "COMMIT of a lost transaction must fail");
    let mut checker = connect(sluice).await;
    assert_eq!(
        scalar_i32(&mut checker, "SELECT COUNT(*) FROM dbo.t WHERE id = 2").await,
        Some(0),
        "the second insert of the lost transaction was committed"
    );
}

/// RESETCONNECTIONSKIPTRAN (0x10) resets the session but keeps its
/// transaction [MS-TDS 2.2.3.1.2]: the request after it still runs in the
/// transaction, on the primary. Before the fix the session's routing state
/// was cleared as by a full reset, and the read went to the replica.
#[tokio::test]
async fn reset_skip_tran_keeps_the_transaction_on_the_primary() {
    let primary = Backend::start().await;
    let replica = Backend::start().await;
    primary.exec("CREATE TABLE dbo.only_on_primary (id INT)");
    let text = config_text(primary.addr, &[replica.addr]) + "[routing]\nread_your_writes_ms = 0\n";
    let sluice = start_sluice(parse_config(&text)).await;
    let mut client = RawClient::login(sluice, USER, PASSWORD).await;
    // Without a transaction the read goes to the replica, which lacks the table.
    client
        .send_batch("SELECT id FROM dbo.only_on_primary")
        .await;
    assert!(
        has_error(&client.read_response().await),
        "read left the primary"
    );
    client.send_batch("BEGIN TRAN").await;
    assert!(!has_error(&client.read_response().await));
    let skip_tran = Status::EOM.with(Status::RESET_CONNECTION_SKIP_TRAN);
    client
        .send_batch_with_status("SELECT id FROM dbo.only_on_primary", skip_tran)
        .await;
    let events = client.read_response().await;
    assert!(
        !has_error(&events),
        "after RESETCONNECTIONSKIPTRAN the transaction's read must stay on the primary: {events:?}"
    );
    // A full reset ends the transaction: reads may leave the primary again.
    let full_reset = Status::EOM.with(Status::RESET_CONNECTION);
    client
        .send_batch_with_status("SELECT id FROM dbo.only_on_primary", full_reset)
        .await;
    assert!(
        has_error(&client.read_response().await),
        "a full reset ends the transaction"
    );
}

/// A client that sends a query and never reads the result is dropped after
/// `limits.client_write_timeout_ms`, which frees its backend connection:
/// with a pool of one, the next client can work. Before the fix Sluice
/// waited on the write forever.
#[tokio::test]
async fn a_client_that_stops_reading_frees_its_backend_connection() {
    let primary = Backend::start().await;
    primary.exec("CREATE TABLE dbo.digits (d INT); INSERT INTO dbo.digits VALUES (0),(1),(2),(3),(4),(5),(6),(7),(8),(9);");
    let text = config_text(primary.addr, &[])
        .replace("max_size = 8", "max_size = 1")
        .replace(
            "login_timeout_ms = 5000",
            "login_timeout_ms = 20000\n[limits]\nclient_write_timeout_ms = 300\ndrain_timeout_ms = 2000",
        );
    let sluice = start_sluice(parse_config(&text)).await;
    let mut stalled = RawClient::login(sluice, USER, PASSWORD).await;
    // About 8 MB of result: far more than the socket buffers hold.
    stalled
        .send_batch(
            "SELECT a.d + 10*b.d + 100*c.d + 1000*e.d AS n, REPLICATE(N'z', 400) AS pad
             FROM dbo.digits a CROSS JOIN dbo.digits b CROSS JOIN dbo.digits c CROSS JOIN dbo.digits e",
        )
        .await;
    let mut next = tokio::time::timeout(Duration::from_secs(15), connect(sluice))
        .await
        .expect("the stalled client's connection is freed");
    assert_eq!(scalar_i32(&mut next, "SELECT 7").await, Some(7));
    drop(stalled);
}

/// A client that resets its TCP connection while its read runs on a replica
/// is a client fault: the replica stays up. Before the fix the reset was
/// reported as a replica failure, and with `failures_before_down = 1` the
/// replica went down for `recovery_ms`. The replica is the fake backend,
/// which stalls mid-result until an ATTENTION, so the reset reaches Sluice
/// while it waits for the replica.
#[tokio::test]
async fn a_client_reset_is_not_a_replica_failure() {
    let primary = fake::start_with(FakeOptions::default()).await;
    let replica = fake::start_with(FakeOptions::default()).await;
    let text = config_text(primary.addr, &[replica.addr])
        + "[routing]\nread_your_writes_ms = 0\n[health]\ninterval_ms = 50\nfailures_before_down = 1\nrecovery_ms = 60000\n";
    let proxy = sluice::server::Proxy::new(parse_config(&text)).expect("proxy");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sluice = listener.local_addr().unwrap();
    tokio::spawn(proxy.clone().serve(listener));
    let health = proxy.cluster().replicas()[0].health().clone();
    for i in 0..3 {
        let mut client = RawClient::login(sluice, USER, PASSWORD).await;
        client
            .send_batch(&format!(
                "SELECT n FROM dbo.t /* {} */",
                fake::STALL_MID_RESULT
            ))
            .await;
        client.read_packet().await;
        let RawClient { reader, writer } = client;
        let tcp = reader.into_parts().0.reunite(writer).unwrap();
        // RST instead of FIN: Sluice's read of the client fails with a reset.
        socket2::SockRef::from(&tcp)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        drop(tcp);
        let served = replica
            .wait_until(Duration::from_secs(5), |f| {
                f.ran(fake::STALL_MID_RESULT).len() == i + 1
            })
            .await;
        assert!(
            served,
            "read {} never reached the replica: an earlier client reset took it down",
            i + 1
        );
        // Let the monitor look (checks run every 50 ms) before the next read.
        let checks = health.checks_completed();
        assert!(
            eventually(Duration::from_secs(10), || {
                let health = health.clone();
                async move { health.checks_completed() >= checks + 2 }
            })
            .await,
            "health checks stopped"
        );
    }
    assert_eq!(
        health.state(),
        sluice::monitor::BackendState::Up,
        "a client's reset counted against the replica"
    );
}
