//! Scale: many clients over few backend connections, in one run.
//!
//! `cargo bench --bench scale`. Sizes come from the environment:
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `SCALE_CLIENTS` | 10000 | clients logged in to Sluice (no TLS) |
//! | `SCALE_ACTIVE` | 1000 | of them, clients running the workload; the rest stay idle |
//! | `SCALE_SECONDS` | 30 | how long the active clients run, and the direct run too |
//! | `SCALE_POOL` | 32 | `pool.max_size`, per backend |
//! | `SCALE_LOGINS_IN_FLIGHT` | 256 | logins (and final queries) under way at once |
//! | `SCALE_POOL_MODE` | unset | `pool.mode`; unset leaves Sluice's default |
//!
//! The backends are embedded iridium servers in this process: a primary and
//! a replica, two listeners over one engine with `dbo.scale` seeded. Sluice
//! runs as its own process (the `sluice` binary, release build) so that its
//! resident memory and CPU time can be read from `/proc`; `RUST_LOG` passes
//! through to it, and its log goes to a file next to its generated
//! `proxy.toml` (the path is printed).
//!
//! The phases, each printed as one line:
//! 1. `login`: every client logs in, `SCALE_LOGINS_IN_FLIGHT` at a time
//!    (so the phase measures Sluice, not a SYN flood): total time, logins/s,
//!    p50/p99 of one login, Sluice CPU seconds.
//! 2. `memory`: Sluice's RSS before the first login and after the last, and
//!    the difference per logged-in (idle) client. It includes what login
//!    left behind: each argon2 verification allocates the hash's memory
//!    cost (19 MiB by default) on a blocking thread, and the allocator may
//!    keep it.
//! 3. `active`: `SCALE_ACTIVE` clients run point reads by primary key with
//!    one write in ten (UPDATE, INSERT, UPDATE, DELETE of that row, so the
//!    database does not grow) for `SCALE_SECONDS` while the others stay
//!    connected and idle: requests/s, p50/p99, errors.
//! 4. `idle`: every client, idle or not, runs one more point read.
//! 5. `direct`: the denominator. Sluice is stopped; the same number of
//!    workers run the same mix for the same time over `SCALE_POOL` direct
//!    connections to the primary and `SCALE_POOL` to the replica, writes on
//!    the primary and reads on the replica: the split Sluice makes (the
//!    generated config turns read-your-writes off so it routes by statement
//!    alone) and the same backend connection budget (`pool.max_size` is per
//!    backend). A worker borrows a connection per request from a first come,
//!    first served free list; latency includes the wait for it, as Sluice's
//!    includes its pool wait.
//! 6. `ratio`: Sluice's requests/s over the direct run's.
//!
//! iridium does not wait for locks (its `LOCK_TIMEOUT` starts at 0), so
//! concurrent writes collide on either path; the workload runs a refused
//! statement again and counts it as a lock conflict, not as an error.
//!
//! Then each target of the issue is printed as met or MISSED. Everything
//! shares this machine's cores: during the Sluice run, Sluice's own CPU
//! time comes out of what the clients and backends would otherwise get.

#[path = "../tests/common/mod.rs"]
mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::process::ChildProcess;
use common::scale::{self, DirectPool, DirectPools, Tally, Via};
use common::{Backend, TestClient};

/// The targets.
const RSS_PER_IDLE_CLIENT_KIB: f64 = 16.0;
const THROUGHPUT_OF_DIRECT: f64 = 0.90;

struct Settings {
    clients: usize,
    active: usize,
    seconds: u64,
    pool: usize,
    in_flight: usize,
    pool_mode: Option<String>,
}

impl Settings {
    fn from_env() -> Settings {
        let number = |name: &str, default: usize| match std::env::var(name) {
            Ok(text) => text
                .parse()
                .unwrap_or_else(|_| panic!("{name}={text}: give a whole number")),
            Err(_) => default,
        };
        let clients = number("SCALE_CLIENTS", 10_000);
        Settings {
            clients,
            active: number("SCALE_ACTIVE", 1_000).min(clients),
            seconds: number("SCALE_SECONDS", 30) as u64,
            pool: number("SCALE_POOL", 32),
            in_flight: number("SCALE_LOGINS_IN_FLIGHT", 256),
            pool_mode: std::env::var("SCALE_POOL_MODE").ok(),
        }
    }
}

fn main() {
    let settings = Settings::from_env();
    // One socket per client, plus the backends' side of Sluice's connections.
    let limits = sluice::rlimit::raise_open_files().expect("raise the open-file limit");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run(&settings, limits));
}

async fn run(settings: &Settings, limits: sluice::rlimit::OpenFiles) {
    let primary = Backend::start().await;
    let replica = Backend::start_on(primary.engine.clone()).await;
    scale::seed(&primary);
    let mut sluice = start_sluice(&scale::config_text(
        &format!("127.0.0.1:{}", common::free_port()),
        primary.addr,
        replica.addr,
        settings.pool,
        settings.pool_mode.as_deref(),
        common::password_hash(),
    ));
    sluice.wait_listening().await;
    println!(
        "scale: {} clients ({} active for {} s), pool.max_size = {} per backend, pool.mode = {}",
        settings.clients,
        settings.active,
        settings.seconds,
        settings.pool,
        settings.pool_mode.as_deref().unwrap_or("(default)")
    );
    println!(
        "setup    primary {} and replica {} (iridium, one engine, {} rows); sluice pid {} on {}, log {}",
        primary.addr,
        replica.addr,
        scale::ROWS,
        sluice.pid(),
        sluice.addr,
        sluice.log.as_deref().unwrap_or(Path::new("-")).display()
    );
    println!(
        "files    open-file limit: bench {} (was {}), sluice {}",
        limits.now,
        limits.before,
        open_file_limit(&sluice)
    );

    let rss_before = sluice.rss_kib();
    let cpu_before = sluice.cpu_seconds();
    let config = common::tiberius_config(sluice.addr, common::USER, common::PASSWORD);
    let logins = scale::log_in(config, settings.clients, settings.in_flight).await;
    let rss_logged_in = sluice.rss_kib();
    let logged_in = logins.clients.len();
    println!(
        "login    {} of {} clients in {:.1} s, {} in flight: {:.0} logins/s, p50 {:.1} ms, p99 {:.1} ms, {} failed{}; sluice CPU {:.1} s",
        logged_in,
        settings.clients,
        logins.elapsed.as_secs_f64(),
        settings.in_flight,
        logged_in as f64 / logins.elapsed.as_secs_f64(),
        logins.latency.value_at_quantile(0.5) as f64 / 1000.0,
        logins.latency.value_at_quantile(0.99) as f64 / 1000.0,
        logins.failures,
        first_error(&logins.first_error),
        sluice.cpu_seconds() - cpu_before
    );
    let per_idle_client = (rss_logged_in as f64 - rss_before as f64) / logged_in.max(1) as f64;
    println!(
        "memory   sluice RSS {} before, {} with {} clients: {:.1} KiB per idle client",
        mib(rss_before),
        mib(rss_logged_in),
        logged_in,
        per_idle_client
    );

    let mut idle = logins.clients;
    let active: Vec<TestClient> = idle.drain(..settings.active.min(logged_in)).collect();
    // Fewer when logins failed; the direct run then uses as many workers.
    let active_count = active.len();
    let workers = active
        .into_iter()
        .map(|client| Via::Client(Box::new(client)))
        .collect();
    let idle_count = idle.len();
    let cpu_before = sluice.cpu_seconds();
    let (proxied, clients) = run_workers(workers, settings.seconds).await;
    let cpu = sluice.cpu_seconds() - cpu_before;
    idle.extend(clients);
    print_run(
        "active",
        &format!("{active_count} clients through sluice, {idle_count} idle"),
        settings.seconds,
        &proxied,
    );
    println!(
        "         sluice CPU {:.0} % of one core, RSS {}",
        100.0 * cpu / settings.seconds as f64,
        mib(sluice.rss_kib())
    );

    let answers = scale::everyone_answers(idle, settings.in_flight).await;
    println!(
        "idle     every client runs one more query: {} answered, {} failed in {:.1} s{}",
        answers.answered,
        answers.failed,
        answers.elapsed.as_secs_f64(),
        first_error(&answers.first_error)
    );
    drop(sluice);

    let pools = Arc::new(DirectPools {
        primary: DirectPool::open(direct_config(primary.addr), settings.pool).await,
        replica: DirectPool::open(direct_config(replica.addr), settings.pool).await,
    });
    let workers = (0..active_count)
        .map(|_| Via::Pools(pools.clone()))
        .collect();
    let (direct, _) = run_workers(workers, settings.seconds).await;
    print_run(
        "direct",
        &format!(
            "{} workers over {}+{} direct connections (primary+replica)",
            active_count, settings.pool, settings.pool
        ),
        settings.seconds,
        &direct,
    );
    let ratio = rps(&proxied, settings.seconds) / rps(&direct, settings.seconds);
    println!(
        "ratio    sluice / direct requests/s = {:.2}, p50 {:.2}x, p99 {:.2}x",
        ratio,
        proxied.ms(0.5) / direct.ms(0.5),
        proxied.ms(0.99) / direct.ms(0.99)
    );

    println!("targets");
    verdict(
        &format!("{} clients logged in", settings.clients),
        logged_in == settings.clients,
        &format!("{logged_in}"),
    );
    verdict(
        &format!("{} active, 0 errors", settings.active),
        proxied.errors == 0 && active_count == settings.active && active_count > 0,
        &format!("{active_count} active, {} errors", proxied.errors),
    );
    verdict(
        "every client answers one more query",
        answers.answered == settings.clients as u64,
        &format!("{} of {}", answers.answered, settings.clients),
    );
    verdict(
        &format!("RSS <= {RSS_PER_IDLE_CLIENT_KIB} KiB per idle client"),
        per_idle_client <= RSS_PER_IDLE_CLIENT_KIB,
        &format!("{per_idle_client:.1} KiB"),
    );
    verdict(
        &format!(
            "requests/s >= {:.0} % of direct",
            THROUGHPUT_OF_DIRECT * 100.0
        ),
        ratio >= THROUGHPUT_OF_DIRECT,
        &format!("{:.0} %", ratio * 100.0),
    );
}

/// Runs each worker's mix for `seconds`; the clients come back for the
/// final query.
async fn run_workers(workers: Vec<Via>, seconds: u64) -> (Tally, Vec<TestClient>) {
    let until = Instant::now() + Duration::from_secs(seconds);
    let tasks: Vec<_> = workers
        .into_iter()
        .enumerate()
        .map(|(i, via)| tokio::spawn(scale::work(via, i as i32, until)))
        .collect();
    let mut total = Tally::default();
    let mut clients = Vec::new();
    for task in tasks {
        let (tally, via) = task.await.expect("worker task");
        total.merge(tally);
        if let Via::Client(client) = via {
            clients.push(*client);
        }
    }
    (total, clients)
}

fn rps(tally: &Tally, seconds: u64) -> f64 {
    tally.requests as f64 / seconds as f64
}

fn print_run(label: &str, what: &str, seconds: u64, tally: &Tally) {
    println!(
        "{label:<8} {what} for {seconds} s: {:.0} requests/s, p50 {:.2} ms, p99 {:.2} ms, {} errors{} ({:.1} % writes, {} backend lock conflicts retried)",
        rps(tally, seconds),
        tally.ms(0.5),
        tally.ms(0.99),
        tally.errors,
        first_error(&tally.first_error),
        100.0 * tally.writes() as f64 / tally.requests.max(1) as f64,
        tally.lock_conflicts
    );
}

fn verdict(target: &str, met: bool, measured: &str) {
    let word = if met { "met" } else { "MISSED" };
    println!("  {target:<40} {word:<7} ({measured})");
}

fn first_error(error: &Option<String>) -> String {
    error
        .as_ref()
        .map(|e| format!(" (first: {e})"))
        .unwrap_or_default()
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

fn direct_config(addr: SocketAddr) -> tiberius::Config {
    common::tiberius_config(addr, "sa", "unused-by-iridium")
}

/// The `sluice` binary running with a generated config.
fn start_sluice(config: &str) -> ChildProcess {
    let dir = std::env::temp_dir().join(format!("sluice-scale-{}", std::process::id()));
    let parsed = common::parse_config(config);
    let addr = parsed.listen.address.parse().expect("listen address");
    ChildProcess::sluice(&dir, config, addr)
}

/// "Max open files" soft limit of the running process.
fn open_file_limit(process: &ChildProcess) -> String {
    let path = format!("/proc/{}/limits", process.pid());
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .lines()
        .find(|line| line.starts_with("Max open files"))
        .and_then(|line| line.split_whitespace().nth(3))
        .unwrap_or("?")
        .to_string()
}
