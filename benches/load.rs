//! Load generator: requests/s and p50/p99 latency, direct to the backend,
//! through a plain TCP forwarder, and through Sluice, in the same run and
//! with the same client concurrency.
//!
//! `cargo bench --bench load` (set SLUICE_BENCH_SECS to change the 5 s per
//! scenario). Everything runs in this process on loopback: an embedded
//! iridium backend, Sluice, and tiberius clients.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use iridium_core::{Database, SessionManager, StatementExecutor};
use iridium_server::{ServerConfig, TdsServer};
use tiberius::{AuthMethod, Client, EncryptionLevel};
use tokio::net::TcpStream;
use tokio_util::compat::{Compat, TokioAsyncWriteCompatExt};

const QUERY: &str = "SELECT id, name FROM dbo.bench WHERE id = 3";
const PASSWORD: &str = "bench";

struct Figures {
    requests: u64,
    elapsed: Duration,
    latency: Histogram<u64>,
}

impl Figures {
    fn rps(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }
    fn p(&self, q: f64) -> f64 {
        self.latency.value_at_quantile(q) as f64 / 1000.0
    }
}

fn main() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(run());
}

async fn run() {
    let seconds: u64 = std::env::var("SLUICE_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let duration = Duration::from_secs(seconds);
    let backend = start_backend().await;
    let sluice = start_sluice(backend).await;
    let forwarder = start_forwarder(backend).await;
    println!("query: {QUERY}");
    println!(
        "{:<10} {:>5} {:>12} {:>10} {:>10}",
        "path", "conns", "requests/s", "p50 ms", "p99 ms"
    );
    for concurrency in [1usize, 32] {
        let direct = measure(backend, "sa", "x", concurrency, duration).await;
        let tcp = measure(forwarder, "sa", "x", concurrency, duration).await;
        let proxied = measure(sluice, "bench", PASSWORD, concurrency, duration).await;
        print_row("direct", concurrency, &direct);
        print_row("tcp-fwd", concurrency, &tcp);
        print_row("sluice", concurrency, &proxied);
        print_ratio("vs direct", concurrency, &proxied, &direct);
        print_ratio("vs tcp-fwd", concurrency, &proxied, &tcp);
    }
}

fn print_ratio(label: &str, concurrency: usize, a: &Figures, b: &Figures) {
    println!(
        "{:<10} {:>5} {:>11.2}x {:>9.2}x {:>9.2}x",
        label,
        concurrency,
        a.rps() / b.rps(),
        a.p(0.5) / b.p(0.5),
        a.p(0.99) / b.p(0.99)
    );
}

/// A plain TCP forwarder (one extra hop, no TDS awareness): the floor any
/// proxy's overhead should be compared with on the same machine.
async fn start_forwarder(backend: SocketAddr) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind forwarder");
    let addr = listener.local_addr().expect("forwarder address");
    tokio::spawn(async move {
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
    addr
}

fn print_row(path: &str, concurrency: usize, f: &Figures) {
    println!(
        "{:<10} {:>5} {:>12.0} {:>10.3} {:>10.3}",
        path,
        concurrency,
        f.rps(),
        f.p(0.5),
        f.p(0.99)
    );
}

async fn start_backend() -> SocketAddr {
    let engine = Database::new();
    let session = engine.create_session();
    engine
        .execute_session_batch_sql(
            session,
            "CREATE TABLE dbo.bench (id INT PRIMARY KEY, name NVARCHAR(50));
             INSERT INTO dbo.bench VALUES (1, N'one'), (2, N'two'), (3, N'three'), (4, N'four');",
        )
        .expect("seed");
    let mut server =
        TdsServer::new_with_database(engine, ServerConfig::default().port(0).disable_tls());
    let addr = server.bind().await.expect("bind backend");
    tokio::spawn(async move {
        let _ = server.run().await;
    });
    addr
}

async fn start_sluice(backend: SocketAddr) -> SocketAddr {
    let hash = sluice::frontend::hash_password(PASSWORD).expect("hash");
    let text = format!(
        "[listen]\naddress = \"127.0.0.1:0\"\n[[users]]\nname = \"bench\"\npassword_hash = \"{hash}\"\n\
         [primary]\naddress = \"{backend}\"\nuser = \"sa\"\npassword = \"x\"\n[pool]\nmax_size = 64\n"
    );
    let config =
        sluice::config::Config::parse(&text, std::path::Path::new("<bench>")).expect("config");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    sluice::server::spawn(config, listener)
        .await
        .expect("start")
        .0
}

async fn client(addr: SocketAddr, user: &str, password: &str) -> Client<Compat<TcpStream>> {
    let mut config = tiberius::Config::new();
    config.host("127.0.0.1");
    config.port(addr.port());
    config.authentication(AuthMethod::sql_server(user, password));
    config.encryption(EncryptionLevel::NotSupported);
    let tcp = TcpStream::connect(addr).await.expect("connect");
    tcp.set_nodelay(true).ok();
    Client::connect(config, tcp.compat_write())
        .await
        .expect("login")
}

async fn measure(
    addr: SocketAddr,
    user: &str,
    password: &str,
    concurrency: usize,
    duration: Duration,
) -> Figures {
    let mut clients = Vec::new();
    for _ in 0..concurrency {
        clients.push(client(addr, user, password).await);
    }
    let started = Instant::now();
    let deadline = started + duration;
    let tasks: Vec<_> = clients
        .into_iter()
        .map(|mut c| {
            tokio::spawn(async move {
                let mut h = Histogram::<u64>::new(3).expect("histogram");
                let mut n = 0u64;
                while Instant::now() < deadline {
                    let t = Instant::now();
                    let rows = c
                        .simple_query(QUERY)
                        .await
                        .expect("query")
                        .into_first_result()
                        .await
                        .expect("rows");
                    assert_eq!(rows.len(), 1);
                    h.record(t.elapsed().as_micros() as u64).ok();
                    n += 1;
                }
                (n, h)
            })
        })
        .collect();
    let mut latency = Histogram::<u64>::new(3).expect("histogram");
    let mut requests = 0;
    for task in tasks {
        let (n, h) = task.await.expect("client task");
        requests += n;
        latency.add(h).ok();
    }
    Figures {
        requests,
        elapsed: started.elapsed(),
        latency,
    }
}
