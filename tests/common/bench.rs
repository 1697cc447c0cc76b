//! The closed loop the request benchmarks share (`benches/load.rs`,
//! `benches/cache.rs`): tiberius clients log in, run the query once each
//! (warm-up), then run it back to back until a deadline, each request's
//! latency recorded in microseconds.
// Each benchmark uses a part of it.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Instant;

use futures_util::TryStreamExt;
use hdrhistogram::Histogram;
use tiberius::{AuthMethod, Client, ColumnData, EncryptionLevel, QueryItem};
use tokio::net::TcpStream;
use tokio_util::compat::{Compat, TokioAsyncWriteCompatExt};

pub type BenchClient = Client<Compat<TcpStream>>;

/// `name` from the environment, parsed; `default` when unset or unparsable.
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// The concurrency levels `SLUICE_BENCH_CLIENTS` lists (comma-separated).
pub fn client_levels(default: &str) -> Vec<usize> {
    std::env::var("SLUICE_BENCH_CLIENTS")
        .unwrap_or_else(|_| default.into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect()
}

pub async fn client(addr: SocketAddr, user: &str, password: &str) -> BenchClient {
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

/// `count` clients of `addr`, logged in at once.
pub async fn clients(
    addr: SocketAddr,
    user: &str,
    password: &str,
    count: usize,
) -> Vec<BenchClient> {
    let logins: Vec<_> = (0..count)
        .map(|_| {
            let (user, password) = (user.to_string(), password.to_string());
            tokio::spawn(async move { client(addr, &user, &password).await })
        })
        .collect();
    let mut clients = Vec::new();
    for login in logins {
        clients.push(login.await.expect("login task"));
    }
    clients
}

/// Runs `query` and reads every row as it arrives; returns the rows and the
/// bytes of column data received.
pub async fn run_query(client: &mut BenchClient, query: &str) -> (usize, u64) {
    let mut stream = client.simple_query(query).await.expect("query");
    let mut rows = 0;
    let mut bytes = 0u64;
    while let Some(item) = stream.try_next().await.expect("rows") {
        if let QueryItem::Row(row) = item {
            rows += 1;
            bytes += row.cells().map(|(_, data)| data_bytes(data)).sum::<u64>();
        }
    }
    (rows, bytes)
}

fn data_bytes(data: &ColumnData<'_>) -> u64 {
    match data {
        ColumnData::I32(_) => 4,
        ColumnData::String(Some(s)) => s.len() as u64,
        _ => 0,
    }
}

/// One query per client, all at once (a proxy's pool fills up here).
pub async fn warm_up(clients: Vec<BenchClient>, query: &str) -> Vec<BenchClient> {
    let warm: Vec<_> = clients
        .into_iter()
        .map(|mut c| {
            let query = query.to_string();
            tokio::spawn(async move {
                run_query(&mut c, &query).await;
                c
            })
        })
        .collect();
    let mut clients = Vec::new();
    for task in warm {
        clients.push(task.await.expect("warm-up task"));
    }
    clients
}

/// What the clients of [`closed_loop`] did, and the clients, still logged in.
pub struct Run {
    pub requests: u64,
    pub bytes: u64,
    /// Microseconds per request.
    pub latency: Histogram<u64>,
    pub clients: Vec<BenchClient>,
}

/// Every client runs `query` back to back until `deadline`; each response
/// must have `rows` rows.
pub async fn closed_loop(
    clients: Vec<BenchClient>,
    query: &str,
    rows: usize,
    deadline: Instant,
) -> Run {
    let tasks: Vec<_> = clients
        .into_iter()
        .map(|mut c| {
            let query = query.to_string();
            tokio::spawn(async move {
                let mut h = Histogram::<u64>::new(3).expect("histogram");
                let (mut n, mut bytes) = (0u64, 0u64);
                while Instant::now() < deadline {
                    let t = Instant::now();
                    let (got, b) = run_query(&mut c, &query).await;
                    assert_eq!(got, rows);
                    h.record(t.elapsed().as_micros() as u64).ok();
                    n += 1;
                    bytes += b;
                }
                (n, bytes, h, c)
            })
        })
        .collect();
    let mut run = Run {
        requests: 0,
        bytes: 0,
        latency: Histogram::<u64>::new(3).expect("histogram"),
        clients: Vec::new(),
    };
    for task in tasks {
        let (n, b, h, c) = task.await.expect("client task");
        run.requests += n;
        run.bytes += b;
        run.latency.add(h).ok();
        run.clients.push(c);
    }
    run
}
