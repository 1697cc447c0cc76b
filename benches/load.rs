//! Load generator: CPU per request and added latency, direct to the backend,
//! through a plain TCP forwarder, and through Sluice, in the same run and
//! with the same client concurrency.
//!
//! `cargo bench --bench load`. The environment sets the sizes:
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `SLUICE_BENCH_SECS` | 2 | request phase per path, scenario and round |
//! | `SLUICE_BENCH_ROUNDS` | 3 | rounds per scenario, the paths taking turns |
//! | `SLUICE_BENCH_CLIENTS` | 1,32,1000 | concurrency levels of the point query |
//! | `SLUICE_BENCH_STREAM_MB` | 1000 | size of the streamed result (0: skip) |
//! | `SLUICE_BENCH_ONLY` | all | scenarios to run, comma-separated (`point,1mb,10k-rows`) |
//! | `SLUICE_BENCH_WORKERS` | 0 (one per core) | Sluice's `listen.workers`, and the forwarder's runtime threads |
//! | `SLUICE_BENCH_BIN` | this build's `sluice` | the Sluice binary to run (to compare two builds) |
//! | `SLUICE_BENCH_FORWARDER` | this executable | the forwarder to run instead of the tokio one: a program that reads the backend from `SLUICE_BENCH_FORWARD`, prints its address and relays |
//! | `SLUICE_BENCH_CALLGRIND` | off | `1`: run both proxies under valgrind's callgrind and add instructions per request (repeatable to the instruction; time and CPU figures are then meaningless) |
//!
//! The backend is an embedded iridium server in this process, and so are
//! the tiberius clients. Sluice runs as its own process (the `sluice`
//! release binary with a generated `proxy.toml`, log level `warn`), and so
//! does the forwarder (this executable again, with `SLUICE_BENCH_FORWARD`
//! set), so that each one's user+system CPU can be read from its process
//! CPU-time clock (`clock_getcpuclockid`: nanoseconds, every thread it ever
//! ran, exited ones too; `/proc/<pid>/stat` ticks where there is none)
//! right before and right after the request phase: every
//! client has logged in and run its query once (Sluice's pool is filled)
//! before the first reading, so logins are not counted.
//!
//! Scenarios:
//! - `point`: `SELECT id, name FROM dbo.bench WHERE id = 3`, one row.
//! - `1mb`: 1,024 rows of `VARCHAR(1000)`, about 1 MB.
//! - `10k-rows`: 10,000 rows of an `INT` and a short `VARCHAR`.
//! - `stream`: one client reads `SLUICE_BENCH_STREAM_MB` × 1 MB through
//!   Sluice (`dbo.wide` cross joined with a table of as many rows), while Sluice's VmRSS is sampled every 10 ms.
//!
//! Columns: `cpu µs/req` is the proxy's CPU over the request phase divided
//! by the requests completed, the median of the rounds'; `cpu ms/MB`
//! divides it by the megabytes of column data the clients received (median
//! round); `req/s` and the latency percentiles are over all rounds, and
//! `+p50`/`+p99` are those percentiles minus direct's. The ratio line gives
//! the median of the rounds' sluice/tcp-fwd CPU per request, then each
//! round's, sorted.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use iridium_core::{Database, SessionId, SessionManager, StatementExecutor};
use iridium_server::{ServerConfig, TdsServer};
use tokio::net::TcpStream;

#[path = "../tests/common/bench.rs"]
mod bench;
#[path = "../tests/common/process.rs"]
mod process;
use bench::{client, client_levels, closed_loop, env_or, run_query, warm_up};
use process::{callgrind_requested, clock_ticks_per_second, proxy_command, rss_kib, ChildProcess};

const PASSWORD: &str = "bench";
/// Set in the forwarder's environment: the backend address it forwards to.
const FORWARD_ENV: &str = "SLUICE_BENCH_FORWARD";
const WIDE_ROWS: usize = 1024;
const WIDE_CHARS: usize = 1000;
const MANY_ROWS: usize = 10_000;
const MB: f64 = 1_000_000.0;

struct Scenario {
    name: &'static str,
    query: String,
    rows: usize,
}

fn main() {
    if let Ok(backend) = std::env::var(FORWARD_ENV) {
        forwarder_main(&backend);
        return;
    }
    // 1,000 clients through Sluice, the forwarder and direct at once.
    sluice::rlimit::raise_open_files().expect("raise the open-file limit");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(run());
}

async fn run() {
    let seconds: u64 = env_or("SLUICE_BENCH_SECS", 2);
    let rounds: usize = env_or("SLUICE_BENCH_ROUNDS", 3).max(1);
    let stream_mb: usize = env_or("SLUICE_BENCH_STREAM_MB", 1000);
    let levels = client_levels("1,32,1000");
    let duration = Duration::from_secs(seconds);
    let backend = start_backend(stream_mb).await;
    let mut sluice = start_sluice_process(backend);
    sluice.wait_listening().await;
    let mut forwarder = start_forwarder_process(backend);
    forwarder.wait_listening().await;
    println!("sluice: {} (pid {})", sluice.program, sluice.pid());
    println!("forwarder: pid {} ({})", forwarder.pid(), forwarder.program);
    println!(
        "request phase {seconds} s per path and round, {rounds} rounds; CPU from the process CPU clock (ns), else {} Hz ticks",
        clock_ticks_per_second()
    );

    let scenarios = [
        Scenario {
            name: "point",
            query: "SELECT id, name FROM dbo.bench WHERE id = 3".into(),
            rows: 1,
        },
        Scenario {
            name: "1mb",
            query: "SELECT id, payload FROM dbo.wide".into(),
            rows: WIDE_ROWS,
        },
        Scenario {
            name: "10k-rows",
            query: "SELECT id, name FROM dbo.many".into(),
            rows: MANY_ROWS,
        },
    ];
    println!(
        "{:<9} {:>5} {:<7} {:>9} {:>8} {:>8} {:>7} {:>7} {:>10} {:>9} {:>8}",
        "scenario",
        "conns",
        "path",
        "req/s",
        "p50 ms",
        "p99 ms",
        "+p50µs",
        "+p99µs",
        "cpu µs/req",
        "cpu ms/MB",
        "Ir/req"
    );
    if callgrind_requested() {
        println!(
            "both proxies under callgrind: Ir/req is exact; req/s, latency and CPU are valgrind's, not comparable; no stream"
        );
    }
    let only = std::env::var("SLUICE_BENCH_ONLY").ok();
    for scenario in scenarios.iter().filter(|s| {
        only.as_deref()
            .is_none_or(|o| o.split(',').any(|n| n == s.name))
    }) {
        let scenario_levels: &[usize] = if scenario.name == "point" {
            &levels
        } else {
            &[1, 32]
        };
        for &clients in scenario_levels {
            // Rounds interleave the paths, so that a burst of load from
            // elsewhere on the machine lands on one round, not one path.
            let (mut direct, mut tcp, mut proxied) = (Vec::new(), Vec::new(), Vec::new());
            for _ in 0..rounds {
                direct.push(measure(backend, "sa", "x", clients, duration, scenario, None).await);
                tcp.push(
                    measure(
                        forwarder.addr,
                        "sa",
                        "x",
                        clients,
                        duration,
                        scenario,
                        Some(&forwarder),
                    )
                    .await,
                );
                proxied.push(
                    measure(
                        sluice.addr,
                        "bench",
                        PASSWORD,
                        clients,
                        duration,
                        scenario,
                        Some(&sluice),
                    )
                    .await,
                );
            }
            let mut ratios: Vec<f64> = proxied
                .iter()
                .zip(&tcp)
                .map(|(s, t)| s.cpu_per_request() / t.cpu_per_request())
                .collect();
            let (direct, tcp, proxied) = (merge(direct), merge(tcp), merge(proxied));
            print_row(scenario.name, clients, "direct", &direct, &direct);
            print_row(scenario.name, clients, "tcp-fwd", &tcp, &direct);
            print_row(scenario.name, clients, "sluice", &proxied, &direct);
            if let (Some(s), Some(t)) = (
                proxied.instructions_per_request(),
                tcp.instructions_per_request(),
            ) {
                println!(
                    "{:<9} {:>5} sluice/tcp-fwd instructions per request: {:.2}x ({s:.0} / {t:.0})",
                    scenario.name,
                    clients,
                    s / t
                );
            }
            ratios.sort_by(f64::total_cmp);
            println!(
                "{:<9} {:>5} sluice/tcp-fwd CPU per request: {:.2}x (rounds {})",
                scenario.name,
                clients,
                median(&ratios),
                ratios
                    .iter()
                    .map(|r| format!("{r:.2}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            );
        }
    }
    if stream_mb > 0 && !callgrind_requested() {
        stream(&sluice, stream_mb).await;
    }
}

struct Figures {
    requests: u64,
    bytes: u64,
    elapsed: Duration,
    latency: Histogram<u64>,
    /// The proxy's CPU seconds over the request phase (direct: none).
    cpu: Option<f64>,
    /// Under callgrind, the instructions the proxy executed in it.
    instructions: Option<u64>,
    /// Merged rounds: each round's CPU per request and per MB.
    rounds: Vec<(f64, f64)>,
}

/// Rounds of one path as one: requests, bytes, time and latency summed,
/// CPU per request and per MB the median round's.
fn merge(rounds: Vec<Figures>) -> Figures {
    let per_round: Vec<(f64, f64)> = rounds
        .iter()
        .map(|f| (f.cpu_per_request(), f.cpu_per_mb()))
        .collect();
    let mut rounds = rounds.into_iter();
    let mut merged = rounds.next().expect("one round at least");
    for f in rounds {
        merged.requests += f.requests;
        merged.bytes += f.bytes;
        merged.elapsed += f.elapsed;
        merged.latency.add(f.latency).ok();
        merged.cpu = merged.cpu.zip(f.cpu).map(|(a, b)| a + b);
        merged.instructions = merged.instructions.zip(f.instructions).map(|(a, b)| a + b);
    }
    merged.rounds = per_round;
    merged
}

/// The middle of `values` (the mean of the two middle ones).
fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

impl Figures {
    fn rps(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }
    /// Microseconds.
    fn p(&self, q: f64) -> f64 {
        self.latency.value_at_quantile(q) as f64
    }
    /// µs; for merged rounds, the median round's.
    fn cpu_per_request(&self) -> f64 {
        if !self.rounds.is_empty() {
            return median(&self.rounds.iter().map(|r| r.0).collect::<Vec<_>>());
        }
        self.cpu.unwrap_or(f64::NAN) * 1e6 / self.requests as f64
    }
    /// Under callgrind; over all rounds (the count repeats, so no median).
    fn instructions_per_request(&self) -> Option<f64> {
        Some(self.instructions? as f64 / self.requests as f64)
    }
    /// ms; for merged rounds, the median round's.
    fn cpu_per_mb(&self) -> f64 {
        if !self.rounds.is_empty() {
            return median(&self.rounds.iter().map(|r| r.1).collect::<Vec<_>>());
        }
        self.cpu.unwrap_or(f64::NAN) * 1e3 / (self.bytes as f64 / MB)
    }
}

fn print_row(scenario: &str, clients: usize, path: &str, f: &Figures, direct: &Figures) {
    let (added50, added99, cpu_req, cpu_mb) = match f.cpu {
        Some(_) => (
            format!("{:.0}", f.p(0.5) - direct.p(0.5)),
            format!("{:.0}", f.p(0.99) - direct.p(0.99)),
            format!("{:.1}", f.cpu_per_request()),
            // Per MB only where a request carries at least a kilobyte.
            if f.bytes >= 1000 * f.requests {
                format!("{:.2}", f.cpu_per_mb())
            } else {
                "-".into()
            },
        ),
        None => ("-".into(), "-".into(), "-".into(), "-".into()),
    };
    let instructions = f
        .instructions_per_request()
        .map_or_else(|| "-".into(), |n| format!("{n:.0}"));
    println!(
        "{:<9} {:>5} {:<7} {:>9.0} {:>8.3} {:>8.3} {:>7} {:>7} {:>10} {:>9} {:>8}",
        scenario,
        clients,
        path,
        f.rps(),
        f.p(0.5) / 1000.0,
        f.p(0.99) / 1000.0,
        added50,
        added99,
        cpu_req,
        cpu_mb,
        instructions
    );
}

/// `stream_mb`: rows of `dbo.k`, each one copy of `dbo.wide` in the
/// streamed cross join.
async fn start_backend(stream_mb: usize) -> SocketAddr {
    let engine = Database::new();
    let session = engine.create_session();
    engine
        .execute_session_batch_sql(
            session,
            "CREATE TABLE dbo.bench (id INT PRIMARY KEY, name NVARCHAR(50));
             INSERT INTO dbo.bench VALUES (1, N'one'), (2, N'two'), (3, N'three'), (4, N'four');
             CREATE TABLE dbo.wide (id INT PRIMARY KEY, payload VARCHAR(1000));
             CREATE TABLE dbo.many (id INT PRIMARY KEY, name VARCHAR(20));
             CREATE TABLE dbo.k (id INT PRIMARY KEY);",
        )
        .expect("create tables");
    let payload = "x".repeat(WIDE_CHARS);
    insert_rows(&engine, session, "dbo.wide", WIDE_ROWS, |i| {
        format!("({i}, '{payload}')")
    });
    insert_rows(&engine, session, "dbo.many", MANY_ROWS, |i| {
        format!("({i}, 'row number {i}')")
    });
    insert_rows(&engine, session, "dbo.k", stream_mb, |i| format!("({i})"));
    // Sessions for 1,000 direct and 1,000 forwarded clients, and Sluice's pool.
    let config = ServerConfig::default()
        .port(0)
        .disable_tls()
        .pool_max_size(4096);
    let mut server = TdsServer::new_with_database(engine, config);
    let addr = server.bind().await.expect("bind backend");
    tokio::spawn(async move {
        let _ = server.run().await;
    });
    addr
}

fn insert_rows(
    engine: &Database,
    session: SessionId,
    table: &str,
    rows: usize,
    row: impl Fn(usize) -> String,
) {
    for chunk in (1..=rows).collect::<Vec<_>>().chunks(500) {
        let values: Vec<String> = chunk.iter().map(|&i| row(i)).collect();
        engine
            .execute_session_batch_sql(
                session,
                &format!("INSERT INTO {table} VALUES {}", values.join(", ")),
            )
            .unwrap_or_else(|e| panic!("seed {table}: {e:?}"));
    }
}

async fn measure(
    addr: SocketAddr,
    user: &str,
    password: &str,
    concurrency: usize,
    duration: Duration,
    scenario: &Scenario,
    proxy: Option<&ChildProcess>,
) -> Figures {
    let clients = bench::clients(addr, user, password, concurrency).await;
    // Warm-up: one query each, at once, so that Sluice's pool holds its
    // connections before the CPU is read.
    let clients = warm_up(clients, &scenario.query).await;
    if let Some(proxy) = proxy {
        proxy.start_counting();
    }
    let cpu_before = proxy.map(ChildProcess::cpu_seconds);
    let started = Instant::now();
    let run = closed_loop(clients, &scenario.query, scenario.rows, started + duration).await;
    let elapsed = started.elapsed();
    let cpu = proxy.map(ChildProcess::cpu_seconds);
    let instructions = proxy.and_then(ChildProcess::instructions_since_start);
    // Log off after the reading.
    drop(run.clients);
    Figures {
        requests: run.requests,
        bytes: run.bytes,
        elapsed,
        latency: run.latency,
        cpu: cpu.zip(cpu_before).map(|(after, before)| after - before),
        instructions,
        rounds: Vec::new(),
    }
}

/// One client streams `mb` × ~1 MB through Sluice; Sluice's VmRSS is read
/// before the query and every 10 ms until the last row.
async fn stream(sluice: &ChildProcess, mb: usize) {
    let mut c = client(sluice.addr, "bench", PASSWORD).await;
    run_query(&mut c, "SELECT id, name FROM dbo.bench WHERE id = 3").await;
    let rss_before = sluice.rss_kib();
    let peak = Arc::new(AtomicU64::new(rss_before));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, done) = (peak.clone(), done.clone());
        let pid = sluice.pid();
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                if let Some(rss) = rss_kib(pid) {
                    peak.fetch_max(rss, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };
    let cpu_before = sluice.cpu_seconds();
    let started = Instant::now();
    let query = "SELECT w.payload FROM dbo.wide AS w CROSS JOIN dbo.k AS k";
    let (rows, bytes) = run_query(&mut c, query).await;
    let elapsed = started.elapsed();
    let cpu = sluice.cpu_seconds() - cpu_before;
    done.store(true, Ordering::Relaxed);
    sampler.join().expect("sampler");
    let peak = peak.load(Ordering::Relaxed);
    assert_eq!(rows, WIDE_ROWS * mb);
    let growth = peak.saturating_sub(rss_before);
    println!(
        "stream: {rows} rows, {:.1} MB of column data in {:.1} s ({:.0} MB/s) through sluice; \
         sluice CPU {:.2} ms/MB; VmRSS {} KiB before, {} KiB peak, growth {} KiB ({})",
        bytes as f64 / MB,
        elapsed.as_secs_f64(),
        bytes as f64 / MB / elapsed.as_secs_f64(),
        cpu * 1e3 / (bytes as f64 / MB),
        rss_before,
        peak,
        growth,
        if growth < 10 * 1024 {
            "< 10 MB: met"
        } else {
            ">= 10 MB: NOT met"
        }
    );
}

/// The `sluice` release binary with a generated `proxy.toml`: transaction
/// pooling (the default) over 32 backend connections. The health check may
/// wait 30 s: 32 clients reading 10,000 rows keep the embedded backend busy
/// for longer than the default 1 s, and a primary marked down would fail
/// the run.
fn start_sluice_process(backend: SocketAddr) -> ChildProcess {
    let hash = sluice::frontend::hash_password(PASSWORD).expect("hash");
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let admin = free_port();
    let workers = proxy_threads();
    let text = format!(
        "[listen]\naddress = \"{addr}\"\nworkers = {workers}\n[admin]\naddress = \"127.0.0.1:{admin}\"\n\
         [log]\nlevel = \"warn\"\n[[users]]\nname = \"bench\"\npassword_hash = \"{hash}\"\n\
         [primary]\naddress = \"{backend}\"\nuser = \"sa\"\npassword = \"x\"\n\
         transaction_requests = \"emulate\"\n[pool]\nmax_size = 32\n\
         [health]\ntimeout_ms = 30000\n"
    );
    let dir = std::env::temp_dir().join(format!("sluice-load-{}", std::process::id()));
    ChildProcess::sluice(&dir, &text, addr)
}

/// The forwarder: this executable again, or `SLUICE_BENCH_FORWARDER`'s
/// program, given the backend in `SLUICE_BENCH_FORWARD`; it prints its
/// address first.
fn start_forwarder_process(backend: SocketAddr) -> ChildProcess {
    let program = std::env::var_os("SLUICE_BENCH_FORWARDER")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::env::current_exe().expect("current executable"));
    let dir = std::env::temp_dir().join(format!("sluice-load-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let (mut command, callgrind) = proxy_command(
        &program.display().to_string(),
        &dir.join("forwarder.callgrind.out"),
    );
    let mut child = command
        .env(FORWARD_ENV, backend.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the forwarder");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("forwarder stdout"))
        .read_line(&mut line)
        .expect("forwarder address");
    let addr = line.trim().parse().expect("forwarder address");
    ChildProcess {
        child,
        addr,
        program: program.display().to_string(),
        log: None,
        callgrind,
    }
}

/// `SLUICE_BENCH_WORKERS`: Sluice's `listen.workers`, and the
/// forwarder's worker threads, so that both run on as many.
fn proxy_threads() -> u16 {
    env_or("SLUICE_BENCH_WORKERS", 0)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// The forwarder process: a plain TCP relay (one extra hop, no TDS
/// awareness) on tokio's default multi-threaded runtime, as Sluice runs; it
/// prints its address on stdout, then serves until killed.
fn forwarder_main(backend: &str) {
    let backend: SocketAddr = backend.parse().expect("backend address");
    sluice::rlimit::raise_open_files().expect("raise the open-file limit");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(sluice::config::worker_threads(proxy_threads()))
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind forwarder");
        let addr = listener.local_addr().expect("forwarder address");
        let mut out = std::io::stdout();
        writeln!(out, "{addr}").expect("print address");
        out.flush().expect("flush");
        while let Ok((mut client, _)) = listener.accept().await {
            tokio::spawn(async move {
                if let Ok(mut server) = TcpStream::connect(backend).await {
                    client.set_nodelay(true).ok();
                    server.set_nodelay(true).ok();
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                }
            });
        }
    });
}
