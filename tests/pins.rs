//! Pins seen through the proxy: state a request leaves on the primary
//! connection holds the session's reads there, and each piece lets go on
//! its own when the SQL provably ends it. The primary and the replica hold
//! different rows in `dbo.whereami`, so each answer says where a read ran.
mod common;

use common::raw::RawClient;
use common::rpc;
use common::*;
use sluice::tds::packet::{PacketType, Status};
use sluice::tds::request::proc_id;

const NO_RYW: &str = "read_your_writes_ms = 0\n";
const WHEREAMI: &str = "SELECT v FROM dbo.whereami";

async fn reads_from(c: &mut TestClient) -> String {
    whereami(c, WHEREAMI).await
}

#[tokio::test]
async fn a_temp_table_holds_reads_on_the_primary_until_it_is_dropped() {
    let p = pair(NO_RYW).await;
    let mut c = connect(p.sluice).await;
    assert_eq!(reads_from(&mut c).await, "replica");
    run(&mut c, "CREATE TABLE #work (n INT)").await;
    assert_eq!(reads_from(&mut c).await, "primary");
    run(&mut c, "INSERT INTO #work VALUES (1), (2)").await;
    assert_eq!(
        scalar_i32(&mut c, "SELECT COUNT(*) FROM #work").await,
        Some(2)
    );
    assert_eq!(reads_from(&mut c).await, "primary");
    run(&mut c, "DROP TABLE #work").await;
    assert_eq!(reads_from(&mut c).await, "replica");
}

/// Several pins at once: each ends on its own, and reads leave the primary
/// only when the last one has.
#[tokio::test]
async fn each_pin_ends_on_its_own() {
    let p = pair(NO_RYW).await;
    let mut c = connect(p.sluice).await;
    run(&mut c, "CREATE TABLE #a (n INT)").await;
    run(
        &mut c,
        "DECLARE c CURSOR FOR SELECT v FROM dbo.whereami; OPEN c",
    )
    .await;
    run(&mut c, "SET IDENTITY_INSERT dbo.items ON").await;
    run(&mut c, "CREATE PROCEDURE #p AS SELECT 1").await;
    for end in [
        "DROP TABLE #a",
        "CLOSE c; DEALLOCATE c",
        "SET IDENTITY_INSERT dbo.items OFF",
    ] {
        run(&mut c, end).await;
        assert_eq!(reads_from(&mut c).await, "primary", "after {end}");
    }
    run(&mut c, "DROP PROCEDURE #p").await;
    assert_eq!(reads_from(&mut c).await, "replica");
}

/// A batch that fails proves nothing ended: the pin stays until a request
/// that succeeds ends it.
#[tokio::test]
async fn a_failed_drop_keeps_the_pin() {
    let p = pair(NO_RYW).await;
    let mut c = connect(p.sluice).await;
    run(&mut c, "CREATE TABLE #t (n INT)").await;
    let ran = succeeds(&mut c, "DROP TABLE #t; SELECT n FROM dbo.no_such_table").await;
    assert!(!ran, "the batch must fail");
    assert_eq!(reads_from(&mut c).await, "primary");
    run(
        &mut c,
        "IF OBJECT_ID('tempdb..#t') IS NOT NULL DROP TABLE #t",
    )
    .await;
    assert_eq!(reads_from(&mut c).await, "replica");
}

/// A conditional DROP may not run: it ends nothing.
#[tokio::test]
async fn a_conditional_drop_ends_nothing() {
    let p = pair(NO_RYW).await;
    let mut c = connect(p.sluice).await;
    run(&mut c, "CREATE TABLE #t (n INT)").await;
    run(&mut c, "IF 1 = 0 DROP TABLE #t").await;
    assert_eq!(reads_from(&mut c).await, "primary");
    assert_eq!(scalar_i32(&mut c, "SELECT COUNT(*) FROM #t").await, Some(0));
}

/// An untracked SET option pins until it is back OFF; a tracked one never
/// pins (it is replayed on the replica).
#[tokio::test]
async fn an_untracked_set_option_pins_until_it_is_off_again() {
    let p = pair(NO_RYW).await;
    let mut c = connect(p.sluice).await;
    run(&mut c, "SET NOCOUNT ON").await;
    assert_eq!(reads_from(&mut c).await, "replica");
    run(&mut c, "SET FIPS_FLAGGER 'ENTRY'").await;
    assert_eq!(reads_from(&mut c).await, "primary");
    run(&mut c, "SET FIPS_FLAGGER OFF").await;
    assert_eq!(reads_from(&mut c).await, "replica");
}

/// Session context lasts until the client resets its connection.
#[tokio::test]
async fn session_context_pins_until_the_client_resets() {
    let p = pair(NO_RYW).await;
    let mut raw = RawClient::login(p.sluice, USER, PASSWORD).await;
    raw.send_batch("EXEC sp_set_session_context @key = N'tenant', @value = 7")
        .await;
    raw.read_response().await;
    assert_eq!(raw_reads_from(&mut raw, Status::EOM).await, "primary");
    let reset = Status::EOM.with(Status::RESET_CONNECTION);
    assert_eq!(raw_reads_from(&mut raw, reset).await, "replica");
}

/// sp_executesql runs its statement in a nested scope: a temp table it
/// creates is gone when it returns, so it pins nothing. (tiberius sends
/// every `execute` as sp_executesql.)
#[tokio::test]
async fn a_temp_table_made_by_sp_executesql_does_not_pin() {
    let p = pair(NO_RYW).await;
    let mut c = connect(p.sluice).await;
    c.execute("CREATE TABLE #scoped (n INT)", &[])
        .await
        .expect("sp_executesql");
    assert_eq!(reads_from(&mut c).await, "replica");
}

/// An RPC to sp_getapplock by name pins only when the lock is the
/// session's (the embedded engine has no sp_getapplock: the call fails,
/// and a failed start still pins, since the server may have taken it).
#[tokio::test]
async fn app_locks_called_by_rpc_pin_when_the_session_owns_them() {
    let p = pair(NO_RYW).await;
    let mut raw = RawClient::login(p.sluice, USER, PASSWORD).await;
    let transaction_lock = rpc::by_name(
        "sp_getapplock",
        &[("@Resource", "orders"), ("@LockMode", "Exclusive")],
    );
    raw.send(PacketType::RPC, &transaction_lock).await;
    raw.read_response().await;
    assert_eq!(raw_reads_from(&mut raw, Status::EOM).await, "replica");
    let session_lock = rpc::by_name(
        "dbo.sp_getapplock",
        &[("", "orders"), ("", "Exclusive"), ("@LockOwner", "Session")],
    );
    raw.send(PacketType::RPC, &session_lock).await;
    raw.read_response().await;
    assert_eq!(raw_reads_from(&mut raw, Status::EOM).await, "primary");
}

/// API server cursors pin from their open.
#[tokio::test]
async fn an_api_cursor_pins_from_its_open() {
    let p = pair(NO_RYW).await;
    let mut raw = RawClient::login(p.sluice, USER, PASSWORD).await;
    raw.send(PacketType::RPC, &rpc::cursor_call(proc_id::SP_CURSORFETCH))
        .await;
    raw.read_response().await;
    assert_eq!(raw_reads_from(&mut raw, Status::EOM).await, "replica");
    raw.send(PacketType::RPC, &rpc::cursor_call(proc_id::SP_CURSOROPEN))
        .await;
    raw.read_response().await;
    assert_eq!(raw_reads_from(&mut raw, Status::EOM).await, "primary");
}

/// A connection left with state a reset does not undo is discarded when
/// its client leaves, not pooled. A batch Sluice cannot read (a bare CR in
/// a line comment) may hold anything, so it counts as such state. With a
/// pool of one, the next client gets the same backend session or a new
/// one; a temp table tells which, because the embedded engine ignores the
/// RESETCONNECTION bit (SQL Server would drop the table on reset).
#[tokio::test]
async fn a_connection_a_reset_cannot_clean_is_discarded() {
    let primary = Backend::start().await;
    let text = config_text(primary.addr, &[]).replace("max_size = 8", "max_size = 1");
    let sluice = start_sluice(parse_config(&text)).await;
    let mut c = connect(sluice).await;
    run(&mut c, "CREATE TABLE #kept (n INT)").await;
    drop(c);
    let mut c = connect(sluice).await;
    assert!(
        succeeds(&mut c, "SELECT n FROM #kept").await,
        "a connection whose pins a reset clears goes back to the pool"
    );
    run(&mut c, "CREATE TABLE #left (n INT)").await;
    succeeds(&mut c, "SELECT 1 --x\rSELECT 2").await;
    drop(c);
    let mut c = connect(sluice).await;
    assert!(
        !succeeds(&mut c, "SELECT n FROM #left").await,
        "the connection was pooled again"
    );
}

/// Runs `sql`, reading all its results; whether it ran without an error.
async fn succeeds(c: &mut TestClient, sql: &str) -> bool {
    match c.simple_query(sql).await {
        Ok(stream) => stream.into_results().await.is_ok(),
        Err(_) => false,
    }
}

async fn raw_reads_from(raw: &mut RawClient, status: Status) -> String {
    raw.send_batch_with_status(WHEREAMI, status).await;
    let message = raw.read_message().await;
    let utf16 = |s: &str| {
        s.encode_utf16()
            .flat_map(u16::to_le_bytes)
            .collect::<Vec<u8>>()
    };
    let has = |needle: &[u8]| message.windows(needle.len()).any(|w| w == needle);
    match (has(&utf16("primary")), has(&utf16("replica"))) {
        (true, false) => "primary".into(),
        (false, true) => "replica".into(),
        _ => panic!("no single answer: {message:?}"),
    }
}
