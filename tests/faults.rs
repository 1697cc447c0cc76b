//! Cancels, clients that vanish mid-result, malformed input, timeouts.
mod common;

use std::time::Duration;

use common::raw::RawClient;
use common::*;
use sluice::tds::packet::PacketType;
use sluice::tds::token::done::DoneStatus;
use sluice::tds::token::walker::{TokenEvent, TokenWalker};

const BIG_QUERY: &str = "SELECT a.d + 10*b.d + 100*c.d + 1000*e.d AS n, REPLICATE(N'z', 200) AS pad
     FROM dbo.digits a CROSS JOIN dbo.digits b CROSS JOIN dbo.digits c CROSS JOIN dbo.digits e";

async fn seeded(pool_size: u32) -> (Backend, std::net::SocketAddr) {
    let primary = Backend::start().await;
    primary.exec("CREATE TABLE dbo.digits (d INT); INSERT INTO dbo.digits VALUES (0),(1),(2),(3),(4),(5),(6),(7),(8),(9);");
    let text =
        config_text(primary.addr, &[]).replace("max_size = 8", &format!("max_size = {pool_size}"));
    let sluice = start_sluice(parse_config(&text)).await;
    (primary, sluice)
}

fn done_statuses(events: &[TokenEvent]) -> Vec<DoneStatus> {
    events
        .iter()
        .filter_map(|e| match e {
            TokenEvent::Done(d) => Some(d.status),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn cancel_mid_result_then_query_again() {
    let (_primary, sluice) = seeded(1).await;
    let mut client = RawClient::login(sluice, USER, PASSWORD).await;
    client.send_batch(BIG_QUERY).await;
    let first = client.read_packet().await;
    assert_eq!(first.ty(), PacketType::TABULAR_RESULT);
    client.send_attention().await;
    // Read to the attention acknowledgement: a DONE with the ATTN bit at the
    // end of a message (in the same message as the result, or a later one).
    let mut walker = TokenWalker::new();
    let mut events = Vec::new();
    walker.feed(first.payload(), &mut events).unwrap();
    let mut acked = false;
    let mut packet = first;
    for _ in 0..100_000 {
        if packet.is_eom() {
            walker.reset();
            if done_statuses(&events)
                .iter()
                .any(|s| s.contains(DoneStatus::ATTN))
            {
                acked = true;
                break;
            }
        }
        packet = client.read_packet().await;
        walker.feed(packet.payload(), &mut events).unwrap();
    }
    assert!(acked, "attention was never acknowledged");
    client.send_batch("SELECT 7 AS n").await;
    let events = client.read_response().await;
    assert!(
        !events.iter().any(|e| matches!(e, TokenEvent::Error(_))),
        "{events:?}"
    );
    let done = done_statuses(&events);
    assert!(
        done.iter().all(|s| !s.contains(DoneStatus::ATTN)),
        "{done:?}"
    );
}

#[tokio::test]
async fn client_dropping_mid_result_leaves_a_clean_connection() {
    // One pooled connection: whatever the first client leaves behind, the next one gets.
    let (_primary, sluice) = seeded(1).await;
    {
        let mut client = RawClient::login(sluice, USER, PASSWORD).await;
        client.send_batch(BIG_QUERY).await;
        client.read_packet().await;
        // Dropped here, with most of the result unread.
    }
    // The pool has one connection; this client gets it only after Sluice
    // cancelled and drained it (or replaced it).
    let mut next = connect(sluice).await;
    assert_eq!(
        scalar_i32(&mut next, "SELECT COUNT(*) FROM dbo.digits").await,
        Some(10)
    );
    assert_eq!(scalar_i32(&mut next, "SELECT 5").await, Some(5));
}

#[tokio::test]
async fn malformed_packets_close_only_their_connection() {
    let (_primary, sluice) = seeded(8).await;
    let mut healthy = connect(sluice).await;
    assert_eq!(scalar_i32(&mut healthy, "SELECT 1").await, Some(1));

    // A header whose length is shorter than the header itself.
    let mut bad = RawClient::connect(sluice).await;
    bad.send_raw(&[0x12, 0x01, 0x00, 0x04, 0, 0, 1, 0])
        .await
        .unwrap();
    assert!(bad.closed_within(Duration::from_secs(5)).await);

    // A LOGIN7 whose offsets point outside the record.
    let mut bad = RawClient::connect(sluice).await;
    let mut prelogin = Vec::new();
    sluice::tds::prelogin::PreLogin {
        encryption: Some(sluice::tds::prelogin::encryption::NOT_SUP),
        ..Default::default()
    }
    .encode(&mut prelogin);
    bad.send(PacketType::PRELOGIN, &prelogin).await;
    bad.read_message().await;
    let mut login = vec![0u8; 94];
    login[0..4].copy_from_slice(&94u32.to_le_bytes());
    login[4..8].copy_from_slice(&0x7400_0004u32.to_le_bytes());
    login[36..40].copy_from_slice(&[0xF0, 0xFF, 0x40, 0x00]); // hostname at 0xFFF0, 64 chars
    bad.send(PacketType::LOGIN7, &login).await;
    let events = bad.read_response().await;
    assert!(
        events
            .iter()
            .any(|e| matches!(e, TokenEvent::Error(m) if m.message.contains("LOGIN7"))),
        "a malformed LOGIN7 gets a TDS error: {events:?}"
    );
    assert!(bad.closed_within(Duration::from_secs(5)).await);

    // A LOGIN7 far over the size limit.
    let mut bad = RawClient::connect(sluice).await;
    bad.send(PacketType::PRELOGIN, &prelogin).await;
    bad.read_message().await;
    let huge = vec![0u8; 200 * 1024];
    let _ = tokio::time::timeout(Duration::from_secs(5), bad.send(PacketType::LOGIN7, &huge)).await;
    assert!(bad.closed_within(Duration::from_secs(5)).await);

    // After login: garbage where a request should be gets an error, then the close.
    let mut bad = RawClient::login(sluice, USER, PASSWORD).await;
    bad.send_raw(&[0x01, 0x01, 0xFF, 0xFF, 0, 0, 1, 0, 1, 2, 3])
        .await
        .unwrap();
    let events = bad.read_response().await;
    assert!(
        events.iter().any(|e| matches!(e, TokenEvent::Error(_))),
        "{events:?}"
    );
    assert!(bad.closed_within(Duration::from_secs(5)).await);

    // A packet type that is not a request.
    let mut bad = RawClient::login(sluice, USER, PASSWORD).await;
    bad.send(PacketType::PRELOGIN, &prelogin).await;
    let events = bad.read_response().await;
    assert!(
        events.iter().any(|e| matches!(e, TokenEvent::Error(_))),
        "{events:?}"
    );
    assert!(bad.closed_within(Duration::from_secs(5)).await);

    // The healthy client never noticed.
    assert_eq!(scalar_i32(&mut healthy, "SELECT 2").await, Some(2));
}

#[tokio::test]
async fn silent_client_is_dropped_at_the_login_timeout() {
    let primary = Backend::start().await;
    let text =
        config_text(primary.addr, &[]).replace("login_timeout_ms = 5000", "login_timeout_ms = 300");
    let sluice = start_sluice(parse_config(&text)).await;
    let mut silent = RawClient::connect(sluice).await;
    let started = std::time::Instant::now();
    assert!(silent.closed_within(Duration::from_secs(5)).await);
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "closed too early: {:?}",
        started.elapsed()
    );
}

/// A backend that dies while a result is streaming: the client already has
/// part of it, so the request cannot be retried. Between two tokens, Sluice
/// finishes the message with a clear error and the session goes on; in the
/// middle of a token, it can only close the client's connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_dying_mid_result_gives_a_clear_error() {
    let backend = common::fake::start().await;
    let sluice = start_sluice(parse_config(&config_text(backend, &[]))).await;
    let mut client = connect(sluice).await;
    assert_eq!(scalar_i32(&mut client, "SELECT 42").await, Some(42));
    let sql = format!("SELECT n FROM t /* {} */", common::fake::DIE_BETWEEN_ROWS);
    let error = match client.simple_query(sql).await {
        Ok(stream) => stream.into_first_result().await.err(),
        Err(e) => Some(e),
    }
    .expect("the broken result must fail");
    let text = error.to_string();
    assert!(
        text.contains("backend primary failed") && text.contains("while sending this result"),
        "{text}"
    );
    // The same client carries on, on a new backend connection.
    assert_eq!(scalar_i32(&mut client, "SELECT 42").await, Some(42));

    let sql = format!("SELECT n FROM t /* {} */", common::fake::DIE_MID_ROW);
    let failed = match client.simple_query(sql).await {
        Ok(stream) => stream.into_first_result().await.is_err(),
        Err(_) => true,
    };
    assert!(failed, "half a row cannot pass as a result");
    let mut next = connect(sluice).await;
    assert_eq!(scalar_i32(&mut next, "SELECT 42").await, Some(42));
}
