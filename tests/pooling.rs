//! Transaction-mode pooling: many clients over few backend connections,
//! with each client's transaction, pinned state, settings and prepared
//! statements where they belong. These tests set `[pool] mode =
//! "transaction"` themselves, whatever mode the rest of the suite runs in.

mod common;

use std::time::{Duration, Instant};

use common::fake::{self, Fake, FakeOptions};
use common::raw::{batch, call, RawClient, Reply};
use common::rpc;
use common::*;
use sluice::tds::packet::Status;

const PRIMARY: i32 = 1;

/// A fake primary and a transaction-mode Sluice with `pool` settings.
async fn sluice_with_pool(pool: &str) -> (Fake, std::net::SocketAddr) {
    let primary = fake::start_with(FakeOptions {
        answer: PRIMARY,
        ..FakeOptions::default()
    })
    .await;
    let text = config_text(primary.addr, &[])
        .replace(
            &format!("mode = \"{}\"", pool_mode()),
            "mode = \"transaction\"",
        )
        .replace("max_size = 8\n", pool);
    let sluice = start_sluice(parse_config(&text)).await;
    (primary, sluice)
}

/// 60 clients, each logged in for the whole test, take turns on two
/// backend connections: every request is answered, and the backend never
/// sees more than two connections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_clients_share_a_small_pool() {
    let (primary, sluice) = sluice_with_pool("max_size = 2\n").await;
    let mut clients = Vec::new();
    for _ in 0..60 {
        clients.push(RawClient::login(sluice, USER, PASSWORD).await);
    }
    let mut tasks = Vec::new();
    for (i, mut client) in clients.into_iter().enumerate() {
        tasks.push(tokio::spawn(async move {
            for round in 0..3 {
                let write = batch(&mut client, &format!("UPDATE t SET x = {i}")).await;
                write.assert_no_error("UPDATE");
                let read = batch(&mut client, "SELECT x FROM t").await;
                read.assert_no_error("SELECT");
                assert_eq!(read.answers, [PRIMARY], "client {i}, round {round}");
            }
        }));
    }
    for task in tasks {
        task.await.expect("client task");
    }
    // Two for the clients, one for the health monitor's checks.
    let opened = primary.connections().iter().filter(|c| c.logged_in).count();
    assert!(opened <= 3, "{opened} connections opened (max_size = 2)");
    assert_eq!(primary.ran("UPDATE t SET").len(), 180);
}

/// A pool whose connections are all busy answers 10928 (retryable, "the
/// request limit has been reached") after `checkout_timeout_ms`, not 40613:
/// a busy primary is not a primary that is down. Logins do not need a
/// connection and keep succeeding; the session that got 10928 works again
/// once a connection is free.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_pool_answers_10928_and_logins_still_succeed() {
    let (primary, sluice) = sluice_with_pool("max_size = 1\ncheckout_timeout_ms = 300\n").await;
    let mut holder = RawClient::login(sluice, USER, PASSWORD).await;
    batch(&mut holder, "BEGIN TRAN")
        .await
        .assert_no_error("BEGIN TRAN");
    batch(&mut holder, "UPDATE t SET x = 1")
        .await
        .assert_no_error("UPDATE in the transaction");

    let mut waiting = Vec::new();
    for _ in 0..5 {
        waiting.push(RawClient::login(sluice, USER, PASSWORD).await);
    }
    let started = Instant::now();
    let refused = batch(&mut waiting[0], "SELECT x FROM t").await;
    let waited = started.elapsed();
    let numbers: Vec<u32> = refused.errors().iter().map(|(n, _)| *n).collect();
    assert_eq!(numbers, [10928], "{:?}", refused.errors());
    assert!(
        waited >= Duration::from_millis(250) && waited < Duration::from_secs(5),
        "answered after {waited:?}, not after checkout_timeout_ms"
    );

    // The transaction stayed on its one connection, whole.
    batch(&mut holder, "COMMIT").await.assert_no_error("COMMIT");
    let in_transaction: Vec<u64> = primary
        .ran("UPDATE t SET x = 1")
        .iter()
        .chain(primary.ran("COMMIT").iter())
        .map(|(conn, _)| *conn)
        .collect();
    assert!(
        in_transaction.windows(2).all(|w| w[0] == w[1]),
        "{in_transaction:?}"
    );

    for client in &mut waiting {
        let read = batch(client, "SELECT x FROM t").await;
        read.assert_no_error("SELECT once the connection is free");
        assert_eq!(read.answers, [PRIMARY]);
    }
}

/// A session's SET options follow it to whichever pooled connection
/// serves it, and never reach another client: a connection carrying
/// settings a client lacks is reset first, and the isolation level, which
/// some builds keep across a reset, is set back explicitly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_follow_the_session_not_the_connection() {
    let (primary, sluice) = sluice_with_pool("max_size = 1\n").await;
    let mut a = RawClient::login(sluice, USER, PASSWORD).await;
    let mut b = RawClient::login(sluice, USER, PASSWORD).await;

    batch(&mut a, "SET DATEFORMAT dmy")
        .await
        .assert_no_error("SET");
    let resets = |fake: &Fake| fake.connections().iter().map(|c| c.resets).sum::<u32>();
    let before = resets(&primary);
    batch(&mut b, "SELECT 1")
        .await
        .assert_no_error("b's SELECT");
    assert_eq!(
        resets(&primary),
        before + 1,
        "b's request must reset the connection that carries a's DATEFORMAT"
    );
    batch(&mut a, "SELECT 2")
        .await
        .assert_no_error("a's SELECT");
    let formats = primary.ran("SET DATEFORMAT dmy");
    assert_eq!(
        formats.len(),
        2,
        "a's setting is applied again: {formats:?}"
    );
    let log = primary.statements();
    let set_at = log
        .iter()
        .rposition(|(_, s)| s.contains("SET DATEFORMAT dmy"));
    let select_at = log.iter().rposition(|(_, s)| s.contains("SELECT 2"));
    assert!(
        set_at < select_at,
        "the setting runs before a's request: {log:?}"
    );

    // The same settings need nothing: a's next request runs alone.
    batch(&mut a, "SELECT 3")
        .await
        .assert_no_error("a's SELECT");
    assert_eq!(primary.ran("SET DATEFORMAT dmy").len(), 2);

    batch(&mut a, "SET TRANSACTION ISOLATION LEVEL SNAPSHOT")
        .await
        .assert_no_error("isolation");
    batch(&mut b, "SELECT 4")
        .await
        .assert_no_error("b after a's isolation");
    let reasserted = primary.ran("SET TRANSACTION ISOLATION LEVEL READ COMMITTED");
    assert_eq!(reasserted.len(), 1, "{:?}", primary.statements());
}

/// The language a client's LOGIN7 names is part of its session: the login
/// reply says so, and every pooled connection serving it runs in it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_login_language_follows_the_client() {
    let (primary, sluice) = sluice_with_pool("max_size = 1\n").await;
    let mut login = sluice::tds::login7::Login7::new_client(USER, PASSWORD, "");
    login.language = "Deutsch".into();
    let mut german = RawClient::login_with(sluice, login).await;
    let mut other = RawClient::login(sluice, USER, PASSWORD).await;
    for _ in 0..2 {
        batch(&mut german, "SELECT 11")
            .await
            .assert_no_error("german");
        batch(&mut other, "SELECT 2").await.assert_no_error("other");
    }
    let log = primary.statements();
    let german_selects = primary.ran("SELECT 11").len();
    let languages = primary.ran("SET LANGUAGE [Deutsch]").len();
    assert_eq!(
        languages, german_selects,
        "each turn of the german client: {log:?}"
    );
    assert!(
        primary.connections().iter().map(|c| c.resets).sum::<u32>() >= 2,
        "{log:?}"
    );
}

/// A pooled driver reuses its connection with RESETCONNECTION on its next
/// request: the reset must run before the settings Sluice applies for the
/// session (the login's language), or it undoes them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clients_own_reset_runs_before_its_settings() {
    let (primary, sluice) = sluice_with_pool("max_size = 1\n").await;
    let mut login = sluice::tds::login7::Login7::new_client(USER, PASSWORD, "");
    login.language = "Deutsch".into();
    let mut german = RawClient::login_with(sluice, login).await;
    batch(&mut german, "SELECT 11")
        .await
        .assert_no_error("first");
    for reset in [Status::RESET_CONNECTION, Status::RESET_CONNECTION_SKIP_TRAN] {
        german.send_batch_with_status("SELECT 12", reset).await;
        Reply::read(&mut german)
            .await
            .assert_no_error("after a reset");
        let log: Vec<String> = primary.statements().into_iter().map(|(_, s)| s).collect();
        let select = log.iter().rposition(|s| s == "SELECT 12").expect("ran");
        let language = log[..select]
            .iter()
            .rposition(|s| s.contains("SET LANGUAGE [Deutsch]"));
        let reset_at = log[..select].iter().rposition(|s| s == fake::RESET_IN_LOG);
        assert!(
            reset_at.is_some() && language > reset_at,
            "{reset:?}: the language must be set after the reset: {log:?}"
        );
    }
}

/// Prepared statements in transaction mode: a statement is prepared on
/// whichever connection runs it, each connection keeps at most
/// `prepared_statements_per_connection` and unprepares what it lets go,
/// and no client ever gets "Could not find prepared statement".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepared_statements_move_between_pooled_connections() {
    let (primary, sluice) =
        sluice_with_pool("max_size = 1\nprepared_statements_per_connection = 1\n").await;
    let mut a = RawClient::login(sluice, USER, PASSWORD).await;
    let mut b = RawClient::login(sluice, USER, PASSWORD).await;
    let prepared = call(&mut a, &rpc::sp_prepare("", "SELECT x FROM t")).await;
    prepared.assert_no_error("a's prepare");
    let first = prepared.handle().expect("a handle");
    let prepared = call(&mut b, &rpc::sp_prepare("@x int", "UPDATE t SET x = @x")).await;
    prepared.assert_no_error("b's prepare");
    let second = prepared.handle().expect("a handle");

    for _ in 0..3 {
        let read = call(&mut a, &rpc::sp_execute(first, &[])).await;
        read.assert_no_error("a's execute");
        assert_eq!(read.answers, [PRIMARY]);
        let write = call(&mut b, &rpc::sp_execute(second, &[("@x", 3)])).await;
        write.assert_no_error("b's execute");
        assert!(write.answers.is_empty(), "b's handle ran a's SELECT");
    }
    // What a connection lets go is unprepared before its next request.
    batch(&mut a, "SELECT 1").await.assert_no_error("a batch");
    for conn in primary.connections() {
        assert!(
            conn.handles.len() <= 1,
            "connection keeps {:?}",
            conn.handles
        );
    }
    let foreign: Vec<_> = primary
        .executions()
        .into_iter()
        .filter(|e| e.statement.is_none())
        .collect();
    assert!(
        foreign.is_empty(),
        "handles the server never issued: {foreign:?}"
    );
    assert_eq!(primary.ran("UPDATE t SET x = @x").len(), 3);
}

/// A pinned session (a temp table) keeps its connection until the client
/// leaves; that connection is reset before anyone else uses it, and other
/// clients are served meanwhile by the rest of the pool.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pinned_session_keeps_its_connection_which_is_reset_after() {
    let (primary, sluice) = sluice_with_pool("max_size = 2\n").await;
    let mut pinned = RawClient::login(sluice, USER, PASSWORD).await;
    let mut other = RawClient::login(sluice, USER, PASSWORD).await;
    batch(&mut pinned, "CREATE TABLE #work (x INT)")
        .await
        .assert_no_error("CREATE TABLE #work");
    for i in 0..3 {
        batch(&mut pinned, &format!("INSERT INTO #work VALUES ({i})"))
            .await
            .assert_no_error("INSERT");
        batch(&mut other, "SELECT 1")
            .await
            .assert_no_error("other's SELECT");
    }
    let conns: Vec<u64> = primary.ran("#work").iter().map(|(c, _)| *c).collect();
    assert!(conns.windows(2).all(|w| w[0] == w[1]), "{conns:?}");
    let pinned_conn = conns[0];
    assert!(
        primary
            .ran("SELECT 1")
            .iter()
            .all(|(c, _)| *c != pinned_conn),
        "another client ran on the pinned connection"
    );
    let resets_before = primary.connection(pinned_conn).expect("conn").resets;
    drop(pinned);
    // Once the pinned client is gone its connection serves others: keep
    // asking until a request lands there.
    let deadline = Instant::now() + Duration::from_secs(5);
    let on_pinned = |fake: &Fake| {
        fake.ran("UPDATE t SET x = 9")
            .iter()
            .any(|(c, _)| *c == pinned_conn)
    };
    while !on_pinned(&primary) {
        assert!(
            Instant::now() < deadline,
            "the pinned connection never came back"
        );
        let mut a = RawClient::login(sluice, USER, PASSWORD).await;
        let mut b = RawClient::login(sluice, USER, PASSWORD).await;
        // a's transaction holds one connection, so b gets the other.
        batch(&mut a, "BEGIN TRAN")
            .await
            .assert_no_error("BEGIN TRAN");
        batch(&mut a, "UPDATE t SET x = 9")
            .await
            .assert_no_error("UPDATE");
        batch(&mut b, "UPDATE t SET x = 9")
            .await
            .assert_no_error("UPDATE");
        batch(&mut a, "COMMIT").await.assert_no_error("COMMIT");
    }
    let after = primary.connection(pinned_conn).expect("conn").resets;
    assert!(
        after > resets_before,
        "the pinned connection was reused without a reset"
    );
}

/// `[[users]] backend_user`: a client logs in to the backends with its own
/// login instead of the shared one (pools are per login). In session mode
/// its connections are its own and carry its application and host name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_can_have_its_own_backend_login() {
    std::env::set_var("SLUICE_TEST_ALICE_BACKEND_PASSWORD", "alice-secret");
    for mode in ["transaction", "session"] {
        let primary = fake::start_with(FakeOptions::default()).await;
        let text = config_text(primary.addr, &[])
            .replace(&format!("mode = \"{}\"", pool_mode()), &format!("mode = \"{mode}\""))
            + &format!(
                "[[users]]\nname = \"alice\"\npassword_hash = \"{}\"\n\
                 backend_user = \"alice_db\"\nbackend_password_env = \"SLUICE_TEST_ALICE_BACKEND_PASSWORD\"\n",
                password_hash()
            );
        let sluice = start_sluice(parse_config(&text)).await;
        let mut login = sluice::tds::login7::Login7::new_client("alice", PASSWORD, "");
        login.app_name = "billing".into();
        login.hostname = "app-host-7".into();
        let mut alice = RawClient::login_with(sluice, login).await;
        let mut shared = RawClient::login(sluice, USER, PASSWORD).await;
        batch(&mut alice, "UPDATE t SET x = 1")
            .await
            .assert_no_error("alice");
        batch(&mut shared, "UPDATE t SET x = 2")
            .await
            .assert_no_error("shared");
        let user_of = |needle: &str| {
            let (conn, _) = primary.ran(needle)[0].clone();
            primary.connection(conn).expect("a connection")
        };
        let alice_conn = user_of("x = 1");
        assert_eq!(alice_conn.user, "alice_db", "{mode}: {alice_conn:?}");
        assert_eq!(user_of("x = 2").user, "sa", "{mode}");
        let (application, host) = match mode {
            "session" => ("billing", "app-host-7"),
            _ => ("sluice", alice_conn.host.as_str()),
        };
        assert_eq!(alice_conn.application, application, "{mode}");
        assert_eq!(alice_conn.host, host, "{mode}");
        if mode == "transaction" {
            assert_ne!(
                alice_conn.host, "app-host-7",
                "shared connections carry Sluice's host"
            );
        }
    }
}
