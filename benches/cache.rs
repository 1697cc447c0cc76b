//! Result cache: the same read answered from Sluice's cache (memory tier,
//! Redis tier, both) and by the replica through Sluice, in one run and with
//! the same client concurrency.
//!
//! `cargo bench --bench cache`. The environment sets the sizes:
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `SLUICE_BENCH_SECS` | 2 | request phase per path, scenario and client count |
//! | `SLUICE_BENCH_CLIENTS` | 1,16 | concurrency levels |
//!
//! The backends are embedded iridium servers in this process: a primary
//! and a replica, two listeners over one engine. Each path is its own
//! Sluice process (the `sluice` release binary, log level `warn`, an admin
//! listener) in front of both; all run at once and take turns at each
//! client count:
//! - `replica`: no `[cache]`: the read goes to the replica.
//! - `memory`: `memory_bytes = 64 MiB`, no Redis: a hit is a memory lookup.
//! - `redis`: `memory_bytes = 0` and a `redis-server` this bench starts on a
//!   free loopback port: a hit is one round trip (the tables' generations
//!   and the entry in one pipeline).
//! - `memory+redis`: both tiers: a memory hit that checks the generations
//!   in Redis (one round trip, no entry transferred).
//!
//! Without `redis-server` on the `PATH` the last two are skipped, with a
//! line saying so. Each Redis path has its own key prefix, so neither
//! serves the other's entries; `redis_timeout_ms` is 1 s so that a stall of
//! this shared machine is not counted as a bypass (this measures hits, not
//! faults).
//!
//! Scenarios: `point` (`SELECT id, name FROM dbo.bench WHERE id = 3`, one
//! row) and `10kb` (`SELECT id, payload FROM dbo.bench_wide`, 10 rows of
//! `VARCHAR(1000)`). One `[[cache.rules]]` entry opts both in, with a
//! 10-minute TTL; it lists their tables (`tables = [...]`) because the
//! classifier does not name a statement's tables yet, and without them the
//! cache skips a statement as `tables_unknown`.
//!
//! Checked before measuring, per path and scenario: a client reads the
//! result through Sluice, the row is changed on the engine directly (behind
//! Sluice's back) and read again, then put back. A cached path must return
//! the old result and the replica path the new one; a path that does not
//! is marked INVALID. During the request phase, the admin endpoint's
//! `sluice_cache_lookups_total{result="hit",tier}` gives column `hits`: the
//! requests counted as hits in the path's tier (`memory` for
//! `memory+redis`), as a share of those completed.
//!
//! Columns: `req/s`, and `p50`/`p99` of every request's latency (µs), over
//! all clients of the phase (each logs in and runs the query once before
//! it starts); `×replica` is the path's requests/s over replica's at the
//! same client count. Then the issue's targets, on the point read at every
//! client count: a memory hit ≥ 5× the replica's throughput, a Redis hit's
//! p99 ≤ 1 ms.

#[path = "../tests/common/bench.rs"]
mod bench;
#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bench::{client_levels, closed_loop, env_or, warm_up, BenchClient};
use common::process::ChildProcess;
use common::redis::RedisServer;
use common::{Backend, PASSWORD, USER};
use hdrhistogram::Histogram;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const WIDE_ROWS: usize = 10;
const WIDE_CHARS: usize = 1000;
/// The issue's targets: memory-hit throughput over the replica's, and a
/// Redis hit's p99 in µs.
const MEMORY_OVER_REPLICA: f64 = 5.0;
const REDIS_P99_US: u64 = 1000;
const RULE: &str = r#"[[cache.rules]]
name = "bench"
match_sql = "^SELECT id, (name|payload) FROM dbo\\.bench"
tables = ["dbo.bench", "dbo.bench_wide"]
ttl_ms = 600000
"#;

struct Scenario {
    name: &'static str,
    query: &'static str,
    rows: usize,
    /// Changes the result, on the engine; `restore` undoes it.
    change: String,
    restore: String,
}

struct Path {
    name: &'static str,
    /// Where a hit comes from; `None`: the replica answers.
    tier: Option<&'static str>,
    sluice: ChildProcess,
    admin: SocketAddr,
}

struct Figures {
    requests: u64,
    elapsed: Duration,
    latency: Histogram<u64>,
    /// Hits counted in the path's tier during the phase.
    hits: Option<u64>,
}

impl Figures {
    fn rps(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }
    fn p(&self, q: f64) -> u64 {
        self.latency.value_at_quantile(q)
    }
}

fn main() {
    sluice::rlimit::raise_open_files().expect("raise the open-file limit");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(run());
}

async fn run() {
    let seconds: u64 = env_or("SLUICE_BENCH_SECS", 2);
    let levels = client_levels("1,16");
    let duration = Duration::from_secs(seconds);
    let primary = Backend::start().await;
    let replica = Backend::start_on(primary.engine.clone()).await;
    seed(&primary);
    let redis = match RedisServer::try_start().await {
        Ok(redis) => Some(redis),
        Err(e) => {
            println!("{e}: skipping the redis and memory+redis paths");
            None
        }
    };
    let mut paths = vec![
        start_path("replica", None, None, &primary, &replica),
        start_path(
            "memory",
            Some("memory"),
            Some("memory_bytes = 67108864\n".into()),
            &primary,
            &replica,
        ),
    ];
    if let Some(redis) = &redis {
        let shared = |memory: u64, prefix: &str| {
            format!(
                "memory_bytes = {memory}\nredis_url = \"{}\"\nredis_prefix = \"{prefix}\"\n\
                 redis_timeout_ms = 1000\n",
                redis.url()
            )
        };
        paths.push(start_path(
            "redis",
            Some("redis"),
            Some(shared(0, "bench-redis:")),
            &primary,
            &replica,
        ));
        paths.push(start_path(
            "memory+redis",
            Some("memory"),
            Some(shared(67_108_864, "bench-both:")),
            &primary,
            &replica,
        ));
    }
    for path in &mut paths {
        path.sluice.wait_listening().await;
    }
    println!(
        "primary {} and replica {} (iridium, one engine); redis {}; request phase {seconds} s",
        primary.addr,
        replica.addr,
        redis.as_ref().map_or("none".into(), RedisServer::url)
    );
    for path in &paths {
        println!(
            "{:<12} sluice pid {} on {}, admin {}",
            path.name,
            path.sluice.pid(),
            path.sluice.addr,
            path.admin
        );
    }
    println!(
        "{:<8} {:>5} {:<12} {:>9} {:>8} {:>8} {:>6} {:>9}",
        "scenario", "conns", "path", "req/s", "p50 µs", "p99 µs", "hits", "×replica"
    );
    let mut invalid: HashMap<(&str, &str), String> = HashMap::new();
    let mut point = Vec::new();
    for scenario in scenarios() {
        for path in &paths {
            if let Err(e) = check_hits(path, &scenario, &primary).await {
                println!("error: {} {}: {e}: INVALID", scenario.name, path.name);
                invalid.insert((scenario.name, path.name), e);
            }
        }
        for &clients in &levels {
            let mut replica_rps = f64::NAN;
            for path in &paths {
                let f = measure(path, &scenario, clients, duration).await;
                if path.tier.is_none() {
                    replica_rps = f.rps();
                }
                let valid = !invalid.contains_key(&(scenario.name, path.name));
                print_row(&scenario, clients, path, &f, replica_rps, valid);
                if scenario.name == "point" {
                    point.push((clients, path.name, f, valid));
                }
            }
        }
    }
    print_targets(&point, &levels, redis.is_some());
}

fn seed(primary: &Backend) {
    let payload = "x".repeat(WIDE_CHARS);
    let wide: Vec<String> = (1..=WIDE_ROWS)
        .map(|i| format!("({i}, '{payload}')"))
        .collect();
    primary.exec(&format!(
        "CREATE TABLE dbo.bench (id INT PRIMARY KEY, name NVARCHAR(50));
         INSERT INTO dbo.bench VALUES (1, N'one'), (2, N'two'), (3, N'three'), (4, N'four');
         CREATE TABLE dbo.bench_wide (id INT PRIMARY KEY, payload VARCHAR(1000));
         INSERT INTO dbo.bench_wide VALUES {};",
        wide.join(", ")
    ));
}

fn scenarios() -> Vec<Scenario> {
    let wide_row = |c: char| {
        format!(
            "UPDATE dbo.bench_wide SET payload = '{}' WHERE id = 1",
            c.to_string().repeat(WIDE_CHARS)
        )
    };
    vec![
        Scenario {
            name: "point",
            query: "SELECT id, name FROM dbo.bench WHERE id = 3",
            rows: 1,
            change: "UPDATE dbo.bench SET name = N'changed' WHERE id = 3".into(),
            restore: "UPDATE dbo.bench SET name = N'three' WHERE id = 3".into(),
        },
        Scenario {
            name: "10kb",
            query: "SELECT id, payload FROM dbo.bench_wide",
            rows: WIDE_ROWS,
            change: wide_row('y'),
            restore: wide_row('x'),
        },
    ]
}

/// A Sluice in front of `primary` and `replica`, with `cache` (keys of
/// `[cache]`, the bench's rule added) when given.
fn start_path(
    name: &'static str,
    tier: Option<&'static str>,
    cache: Option<String>,
    primary: &Backend,
    replica: &Backend,
) -> Path {
    let addr: SocketAddr = format!("127.0.0.1:{}", common::free_port())
        .parse()
        .expect("address");
    let admin: SocketAddr = format!("127.0.0.1:{}", common::free_port())
        .parse()
        .expect("address");
    let mut text = common::scale::config_text(
        &addr.to_string(),
        primary.addr,
        replica.addr,
        32,
        None,
        &common::scale::cheap_password_hash(),
    );
    // The health check may wait: a busy machine must not mark a backend down.
    text.push_str(&format!(
        "[admin]\naddress = \"{admin}\"\n[log]\nlevel = \"warn\"\n[health]\ntimeout_ms = 30000\n"
    ));
    if let Some(cache) = cache {
        text.push_str(&format!("[cache]\n{cache}{RULE}"));
    }
    let dir = std::env::temp_dir()
        .join(format!("sluice-cache-{}", std::process::id()))
        .join(name.replace('+', "-"));
    Path {
        name,
        tier,
        sluice: ChildProcess::sluice(&dir, &text, addr),
        admin,
    }
}

/// Reads the scenario's result through `path`, changes it behind Sluice's
/// back, reads it again and puts it back: a cached path must answer the
/// old result, the replica path the new one.
async fn check_hits(path: &Path, scenario: &Scenario, engine: &Backend) -> Result<(), String> {
    let mut client = bench::client(path.sluice.addr, USER, PASSWORD).await;
    let before = result_text(&mut client, scenario.query).await;
    engine.exec(&scenario.change);
    let after = result_text(&mut client, scenario.query).await;
    engine.exec(&scenario.restore);
    match (path.tier.is_some(), after == before) {
        (true, false) => Err(
            "a read after a change behind Sluice returned the new result: \
                              it was not served from the cache"
                .into(),
        ),
        (false, true) => Err(
            "a read after a change behind Sluice returned the old result: \
                              the replica path is cached"
                .into(),
        ),
        _ => Ok(()),
    }
}

async fn result_text(client: &mut BenchClient, query: &str) -> String {
    let rows = client
        .simple_query(query)
        .await
        .expect("query")
        .into_first_result()
        .await
        .expect("rows");
    let cells: Vec<String> = rows
        .iter()
        .flat_map(|row| row.cells().map(|(_, data)| format!("{data:?}")))
        .collect();
    cells.join("|")
}

async fn measure(path: &Path, scenario: &Scenario, clients: usize, duration: Duration) -> Figures {
    let logged_in = bench::clients(path.sluice.addr, USER, PASSWORD, clients).await;
    let logged_in = warm_up(logged_in, scenario.query).await;
    let hits_before = hits(path).await;
    let started = Instant::now();
    let run = closed_loop(logged_in, scenario.query, scenario.rows, started + duration).await;
    let elapsed = started.elapsed();
    let hits_after = hits(path).await;
    Figures {
        requests: run.requests,
        elapsed,
        latency: run.latency,
        hits: hits_after
            .zip(hits_before)
            .map(|(after, before)| after.saturating_sub(before)),
    }
}

/// `sluice_cache_lookups_total{result="hit"}` of the path's tier, from its
/// admin endpoint (`None` for the replica path).
async fn hits(path: &Path) -> Option<u64> {
    let tier = format!("tier=\"{}\"", path.tier?);
    let mut stream = tokio::net::TcpStream::connect(path.admin)
        .await
        .expect("connect to the admin endpoint");
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .await
        .expect("ask for /metrics");
    let mut text = String::new();
    stream
        .read_to_string(&mut text)
        .await
        .expect("read /metrics");
    let count = text
        .lines()
        .filter(|line| {
            line.starts_with("sluice_cache_lookups_total{")
                && line.contains("result=\"hit\"")
                && line.contains(&tier)
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>();
    Some(count as u64)
}

fn print_row(
    scenario: &Scenario,
    clients: usize,
    path: &Path,
    f: &Figures,
    replica_rps: f64,
    valid: bool,
) {
    let hits = f.hits.map_or("-".into(), |h| {
        format!("{:.0}%", 100.0 * h as f64 / f.requests.max(1) as f64)
    });
    println!(
        "{:<8} {:>5} {:<12} {:>9.0} {:>8} {:>8} {:>6} {:>8.2}x{}",
        scenario.name,
        clients,
        path.name,
        f.rps(),
        f.p(0.5),
        f.p(0.99),
        hits,
        f.rps() / replica_rps,
        if valid { "" } else { "  INVALID" }
    );
}

/// The issue's targets, on the point read at every client count.
fn print_targets(point: &[(usize, &str, Figures, bool)], levels: &[usize], redis: bool) {
    let find = |clients: usize, name: &str| {
        point
            .iter()
            .find(|(c, n, _, _)| *c == clients && *n == name)
            .map(|(_, _, f, valid)| (f, *valid))
    };
    let mut memory_met = true;
    let mut ratios = Vec::new();
    for &clients in levels {
        let (Some((replica, replica_valid)), Some((memory, memory_valid))) =
            (find(clients, "replica"), find(clients, "memory"))
        else {
            continue;
        };
        let ratio = memory.rps() / replica.rps();
        memory_met &= replica_valid && memory_valid && ratio >= MEMORY_OVER_REPLICA;
        ratios.push(format!("{clients} conns {ratio:.2}x"));
    }
    println!(
        "target: memory ≥ {MEMORY_OVER_REPLICA}× replica: {} (point read: {})",
        met(memory_met),
        ratios.join(", ")
    );
    if !redis {
        println!("target: redis p99 ≤ 1 ms: not measured (no redis-server)");
        return;
    }
    let mut redis_met = true;
    let mut p99s = Vec::new();
    for &clients in levels {
        if let Some((f, valid)) = find(clients, "redis") {
            redis_met &= valid && f.p(0.99) <= REDIS_P99_US;
            p99s.push(format!("{clients} conns {} µs", f.p(0.99)));
        }
    }
    println!(
        "target: redis p99 ≤ 1 ms: {} (point read: {})",
        met(redis_met),
        p99s.join(", ")
    );
}

fn met(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "not met"
    }
}
