//! Admission control: `listen.max_clients`, `listen.max_pending_logins`,
//! the verified-credential cache, failed-login lockout per address and
//! `listen.idle_client_timeout_ms`, through real drivers.
mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::raw::RawClient;
use common::*;
use sluice::tds::token::walker::TokenEvent;

const WAIT: Duration = Duration::from_secs(10);

/// A primary and Sluice with `listen_extra` added to `[listen]`.
async fn proxy_with(listen_extra: &str) -> (Backend, Arc<sluice::server::Proxy>, SocketAddr) {
    proxy_with_users(listen_extra, "").await
}

async fn proxy_with_users(
    listen_extra: &str,
    users: &str,
) -> (Backend, Arc<sluice::server::Proxy>, SocketAddr) {
    let primary = Backend::start().await;
    let text = config_text(primary.addr, &[]).replace(
        "login_timeout_ms = 5000\n",
        &format!("login_timeout_ms = 5000\n{listen_extra}\n"),
    ) + users;
    let (proxy, addr) = start_proxy(parse_config(&text)).await;
    (primary, proxy, addr)
}

/// Waits (at most `WAIT`) until the proxy's admission counters satisfy `holds`.
async fn admission_reaches(
    proxy: &sluice::server::Proxy,
    holds: impl Fn(&sluice::frontend::Admission) -> bool,
) -> bool {
    eventually(WAIT, || {
        let reached = holds(&proxy.admission);
        async move { reached }
    })
    .await
}

/// The server error a login got; panics if it succeeded or failed otherwise.
async fn refusal(login: tiberius::Result<TestClient>) -> tiberius::error::TokenError {
    match login {
        Ok(_) => panic!("the login must be refused"),
        Err(tiberius::error::Error::Server(token)) => token,
        Err(other) => panic!("expected a server error, got {other:?}"),
    }
}

fn host(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
}

#[tokio::test]
async fn a_client_over_max_clients_gets_17809_and_the_others_keep_working() {
    let (_primary, proxy, sluice) = proxy_with("max_clients = 2").await;
    let mut first = connect(sluice).await;
    let mut second = connect(sluice).await;
    assert_eq!(proxy.admission.connected(), 2);

    let token = refusal(connect_with(tiberius_config(sluice, USER, PASSWORD)).await).await;
    assert_eq!((token.code(), token.class()), (17809, 20));
    assert!(
        token
            .message()
            .starts_with("Could not connect because the maximum number of '2' user connections has already been reached."),
        "{}",
        token.message()
    );
    // A refused client never held a place, and never cost a password check.
    assert_eq!(proxy.admission.connected(), 2);
    assert_eq!(proxy.current().users.argon2_runs(), 1);

    assert_eq!(scalar_i32(&mut first, "SELECT 1").await, Some(1));
    assert_eq!(scalar_i32(&mut second, "SELECT 2").await, Some(2));

    // A client that leaves gives its place back.
    drop(first);
    assert!(admission_reaches(&proxy, |a| a.connected() < 2).await);
    let mut third = connect(sluice).await;
    assert_eq!(scalar_i32(&mut third, "SELECT 3").await, Some(3));
}

#[tokio::test]
async fn logins_wait_for_a_handshake_turn_instead_of_being_refused() {
    let (_primary, proxy, sluice) = proxy_with("max_pending_logins = 1").await;
    // A connection that sends nothing holds the only handshake turn.
    let silent = tokio::net::TcpStream::connect(sluice).await.unwrap();
    assert!(admission_reaches(&proxy, |a| a.handshakes() == 1).await);
    let login = tokio::spawn(connect_with(tiberius_config(sluice, USER, PASSWORD)));
    assert!(
        admission_reaches(&proxy, |a| a.waiting_for_handshake() == 1).await,
        "the second login never queued for a turn"
    );
    assert!(
        !login.is_finished(),
        "a login went past a full handshake bound"
    );
    // The silent client leaves: the waiting login proceeds and succeeds.
    drop(silent);
    let mut client = tokio::time::timeout(WAIT, login)
        .await
        .expect("the waiting login finishes")
        .unwrap()
        .expect("the waiting login succeeds");
    assert_eq!(scalar_i32(&mut client, "SELECT 1").await, Some(1));
    assert_eq!(proxy.admission.waiting_for_handshake(), 0);
    assert_eq!(proxy.admission.handshakes(), 0);
}

#[tokio::test]
async fn a_verified_user_logs_in_again_without_argon2() {
    let (_primary, proxy, sluice) = proxy_with("").await;
    let mut client = connect(sluice).await;
    assert_eq!(proxy.current().users.argon2_runs(), 1);
    for _ in 0..5 {
        drop(client);
        client = connect(sluice).await;
        assert_eq!(scalar_i32(&mut client, "SELECT 1").await, Some(1));
    }
    assert_eq!(
        proxy.current().users.argon2_runs(),
        1,
        "a cached login ran argon2"
    );
}

#[tokio::test]
async fn a_wrong_password_is_never_accepted_after_the_right_one_was_cached() {
    let (_primary, proxy, sluice) = proxy_with("max_failed_logins = 0").await;
    let _cached = connect(sluice).await;
    let wrong = [
        (USER, "wrong"),
        (USER, ""),
        (USER, &PASSWORD[..PASSWORD.len() - 1]),
        (USER, &format!("{PASSWORD} ")),
        (USER, &PASSWORD.to_uppercase()),
        ("APP", PASSWORD),
        ("nobody", PASSWORD),
    ];
    for (user, password) in wrong {
        let runs = proxy.current().users.argon2_runs();
        let token = refusal(connect_with(tiberius_config(sluice, user, password)).await).await;
        assert_eq!(token.code(), 18456, "{user}/{password}");
        // The refusal was a real check: a wrong password costs what it did.
        assert_eq!(
            proxy.current().users.argon2_runs(),
            runs + 1,
            "{user}/{password}"
        );
    }
    let mut again = connect(sluice).await;
    assert_eq!(scalar_i32(&mut again, "SELECT 1").await, Some(1));
}

#[tokio::test]
async fn an_address_with_many_failures_is_locked_out_while_others_log_in() {
    let other_hash = sluice::frontend::hash_password("other-password").unwrap();
    let (_primary, proxy, sluice) = proxy_with_users(
        "max_failed_logins = 3\nfailed_login_lockout_ms = 60000",
        &format!("[[users]]\nname = \"other\"\npassword_hash = \"{other_hash}\"\n"),
    )
    .await;
    let attacker = host(2);
    for _ in 0..3 {
        let login = connect_from(attacker, sluice, USER, "guess").await;
        assert_eq!(refusal(login).await.code(), 18456);
    }
    assert_eq!(proxy.current().users.argon2_runs(), 3);
    // Locked out: refused at once, with no password check, even with the
    // right password, and with the same error as a wrong one.
    let started = Instant::now();
    let token = refusal(connect_from(attacker, sluice, USER, PASSWORD).await).await;
    assert_eq!(
        (token.code(), token.message()),
        (18456, format!("Login failed for user '{USER}'.").as_str())
    );
    assert_eq!(proxy.current().users.argon2_runs(), 3);
    assert!(started.elapsed() < WAIT);
    // Other addresses are not affected.
    let mut other = connect_from(host(3), sluice, "other", "other-password")
        .await
        .expect("another host's user logs in");
    assert_eq!(scalar_i32(&mut other, "SELECT 1").await, Some(1));
    let mut same_user = connect_from(host(4), sluice, USER, PASSWORD)
        .await
        .expect("the user logs in from another host");
    assert_eq!(scalar_i32(&mut same_user, "SELECT 1").await, Some(1));
}

#[tokio::test]
async fn an_idle_client_is_disconnected_and_an_active_one_is_not() {
    let (_primary, proxy, sluice) = proxy_with("idle_client_timeout_ms = 500").await;
    let started = Instant::now();
    let mut idle = RawClient::login(sluice, USER, PASSWORD).await;
    let mut active = connect(sluice).await;
    // The active client keeps sending requests until the idle one is gone.
    let stop = Arc::new(AtomicBool::new(false));
    let requests = Arc::new(AtomicU64::new(0));
    let worker = {
        let (stop, requests) = (stop.clone(), requests.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                assert_eq!(scalar_i32(&mut active, "SELECT 1").await, Some(1));
                requests.fetch_add(1, Ordering::SeqCst);
            }
            active
        })
    };
    // The idle client is told why, then disconnected.
    let events = idle.read_response().await;
    let idle_for = started.elapsed();
    assert!(
        events.iter().any(|e| matches!(
            e,
            TokenEvent::Error(m) if m.class == 20 && m.message.contains("client_idle_timeout")
        )),
        "{events:?}"
    );
    assert!(
        idle.closed_within(WAIT).await,
        "the idle client stayed connected"
    );
    stop.store(true, Ordering::SeqCst);
    let mut active = worker
        .await
        .expect("the active client's requests all succeed");
    assert!(
        idle_for >= Duration::from_millis(500),
        "closed after {idle_for:?}"
    );
    assert!(requests.load(Ordering::SeqCst) > 0);
    assert_eq!(scalar_i32(&mut active, "SELECT 2").await, Some(2));
    assert!(
        admission_reaches(&proxy, |a| a.connected() == 1).await,
        "the idle client's place was not given back"
    );
}

/// Figures for the closing note, not a pass/fail test:
/// `cargo test --test admission -- --ignored --nocapture --test-threads 1`.
/// Logins per second of an already-verified user with `CONCURRENT_LOGINS`
/// clients logging in and out in a loop, through tiberius and through the
/// tests' bare TDS client (which costs the client side far less).
#[tokio::test(flavor = "multi_thread")]
#[ignore = "a measurement; run by hand"]
async fn measure_login_rate_of_a_verified_user() {
    const CONCURRENT_LOGINS: usize = 16;
    let (_primary, proxy, sluice) = measurement_proxy("").await;
    drop(connect(sluice).await);
    for driver in ["tiberius", "bare TDS client"] {
        let logins = Arc::new(AtomicU64::new(0));
        let until = Instant::now() + Duration::from_secs(3);
        let workers: Vec<_> = (0..CONCURRENT_LOGINS)
            .map(|_| {
                let logins = logins.clone();
                tokio::spawn(async move {
                    while Instant::now() < until {
                        match driver {
                            "tiberius" => drop(connect(sluice).await),
                            _ => drop(RawClient::login(sluice, USER, PASSWORD).await),
                        }
                        logins.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        let started = Instant::now();
        for worker in workers {
            worker.await.unwrap();
        }
        let rate = logins.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64();
        println!(
            "verified-user logins via {driver}: {rate:.0}/s with {CONCURRENT_LOGINS} concurrent clients; argon2 runs so far: {}",
            proxy.current().users.argon2_runs()
        );
    }
}

/// Login latency of a verified user from one address, alone and while
/// another address floods wrong passwords at `FLOOD_RATE` attempts per
/// second (open loop: a new attempt every tick, whatever became of the
/// others), with the lockout on (the defaults) and off (every wrong password
/// pays for argon2, as a flood spread over many addresses would).
#[tokio::test(flavor = "multi_thread")]
#[ignore = "a measurement; run by hand"]
async fn measure_wrong_password_flood_against_other_logins() {
    const FLOOD_RATE: u64 = 500;
    let second_hash = sluice::frontend::hash_password("second-password").unwrap();
    for (label, listen) in [
        ("lockout on (defaults)", ""),
        ("lockout off", "max_failed_logins = 0"),
    ] {
        let (_primary, proxy, sluice) = measurement_proxy(&format!(
            "{listen}\n[[users]]\nname = \"second\"\npassword_hash = \"{second_hash}\"\n"
        ))
        .await;
        drop(connect(sluice).await);
        let quiet = login_latencies(sluice, 2000).await;
        let stop = Arc::new(AtomicBool::new(false));
        let (attempts, busy) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let flood = {
            let (stop, attempts, busy) = (stop.clone(), attempts.clone(), busy.clone());
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / FLOOD_RATE));
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    tick.tick().await;
                    n += 1;
                    let (attempts, busy) = (attempts.clone(), busy.clone());
                    tokio::spawn(async move {
                        let login = connect_from(host(2), sluice, USER, &format!("guess{n}")).await;
                        if let Err(tiberius::error::Error::Server(t)) = &login {
                            if t.code() == 40501 {
                                busy.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        attempts.fetch_add(1, Ordering::Relaxed);
                    });
                }
            })
        };
        // Let the flood reach its steady state (the lockout, if on) first.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let (runs_before, flood_started) = (proxy.current().users.argon2_runs(), Instant::now());
        let (attempts_before, busy_before) = (
            attempts.load(Ordering::Relaxed),
            busy.load(Ordering::Relaxed),
        );
        let flooded = login_latencies(sluice, 2000).await;
        let first_login = match connect_from(host(3), sluice, "second", "second-password").await {
            Ok(_) => "succeeds".to_string(),
            Err(e) => format!("fails: {e}"),
        };
        let flood_secs = flood_started.elapsed().as_secs_f64();
        let per_second = |total: u64, before: u64| (total - before) as f64 / flood_secs;
        let flood_rate = per_second(attempts.load(Ordering::Relaxed), attempts_before);
        let busy_rate = per_second(busy.load(Ordering::Relaxed), busy_before);
        let argon2_rate = per_second(proxy.current().users.argon2_runs(), runs_before);
        stop.store(true, Ordering::Relaxed);
        flood.await.unwrap();
        println!(
            "{label}: verified-user login p50/p99 {:?}/{:?} quiet, {:?}/{:?} during a flood of \
             {flood_rate:.0} wrong-password logins/s ({argon2_rate:.1} argon2/s, {busy_rate:.0}/s \
             refused as busy); another user's first login during the flood {first_login}",
            quiet.0, quiet.1, flooded.0, flooded.1,
        );
    }
    println!("peak RSS of the test process: {} MiB", rss_mib("VmHWM:"));
}

/// Memory of 200 simultaneous logins that all need argon2 (distinct wrong
/// passwords, lockout off, a queue long enough for all of them): the peak
/// growth of this process's RSS while they run. Before the gate, each ran
/// at once with its own 19 MiB.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "a measurement; run by hand"]
async fn measure_memory_of_a_burst_of_argon2_logins() {
    const LOGINS: usize = 200;
    let (_primary, proxy, sluice) =
        measurement_proxy("max_failed_logins = 0\nmax_queued_verifications = 256").await;
    drop(connect(sluice).await);
    let before = rss_mib("VmRSS:");
    let peak = Arc::new(AtomicU64::new(before));
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, stop) = (peak.clone(), stop.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                peak.fetch_max(rss_mib("VmRSS:"), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    let started = Instant::now();
    let logins: Vec<_> = (0..LOGINS)
        .map(|i| {
            tokio::spawn(async move {
                connect_from(host(2), sluice, USER, &format!("guess{i}"))
                    .await
                    .is_err()
            })
        })
        .collect();
    for login in logins {
        assert!(login.await.unwrap(), "a wrong password was accepted");
    }
    let took = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    sampler.await.unwrap();
    println!(
        "{LOGINS} simultaneous argon2 logins: {} argon2 runs in {took:?}, RSS {before} MiB before, \
         peak {} MiB (+{} MiB)",
        proxy.current().users.argon2_runs() - 1,
        peak.load(Ordering::Relaxed),
        peak.load(Ordering::Relaxed) - before
    );
}

/// Sluice for measurements: a pool large enough for the concurrent clients.
/// `extra` goes at the end of `[listen]`, and may start further tables.
async fn measurement_proxy(extra: &str) -> (Backend, Arc<sluice::server::Proxy>, SocketAddr) {
    let primary = Backend::start().await;
    let text = config_text(primary.addr, &[])
        .replace(
            "login_timeout_ms = 5000\n",
            &format!("login_timeout_ms = 30000\n{extra}\n"),
        )
        .replace("max_size = 8", "max_size = 64");
    let (proxy, addr) = start_proxy(parse_config(&text)).await;
    (primary, proxy, addr)
}

/// p50 and p99 of `count` sequential logins from 127.0.0.3.
async fn login_latencies(sluice: SocketAddr, count: usize) -> (Duration, Duration) {
    let mut times = Vec::with_capacity(count);
    for _ in 0..count {
        let started = Instant::now();
        let client = connect_from(host(3), sluice, USER, PASSWORD)
            .await
            .expect("the verified user logs in");
        times.push(started.elapsed());
        drop(client);
    }
    times.sort();
    (times[count / 2], times[count * 99 / 100])
}

/// A memory figure of this process from /proc/self/status, in MiB.
fn rss_mib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kib| kib / 1024)
}
