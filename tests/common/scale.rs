//! The scale workload `tests/scale.rs` and `benches/scale.rs` share: a
//! seeded table, many clients logged in with bounded concurrency, some of
//! them running point reads and writes until a deadline, one more query
//! from every client, and a pool of direct connections to compare with.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use hdrhistogram::Histogram;
use tokio::sync::{mpsc, Mutex};

use super::{connect_with, Backend, TestClient, PASSWORD, USER};

/// Rows in `dbo.scale`; point reads and updates pick ids in `1..=ROWS`.
/// Small on purpose: iridium finds a row by scanning its table and its
/// writes cost more as the database grows, so a large or growing database
/// would make the backend, not the path to it, what the numbers measure.
pub const ROWS: i32 = 100;

/// No login, query or pool checkout waits longer than this: a stuck one
/// counts as a failure instead of hanging the run.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

const READ: &str = "SELECT id, n, name FROM dbo.scale WHERE id = @P1";
const UPDATE: &str = "UPDATE dbo.scale SET n = n + 1 WHERE id = @P1";
const INSERT: &str = "INSERT INTO dbo.scale_log (id, worker) VALUES (@P1, @P2)";

const DELETE: &str = "DELETE FROM dbo.scale_log WHERE id = @P1";

/// Creates `dbo.scale` (`ROWS` rows) and the empty `dbo.scale_log`.
pub fn seed(backend: &Backend) {
    let values: Vec<String> = (1..=ROWS)
        .map(|id| format!("({id}, 0, N'row {id}')"))
        .collect();
    backend.exec(&format!(
        "CREATE TABLE dbo.scale (id INT PRIMARY KEY, n INT NOT NULL, name NVARCHAR(50) NOT NULL);
         CREATE TABLE dbo.scale_log (id INT PRIMARY KEY, worker INT NOT NULL);
         INSERT INTO dbo.scale VALUES {};",
        values.join(", ")
    ));
}

/// A PHC hash of [`PASSWORD`] with argon2's smallest cost, for tests
/// about pooling rather than login cost (Sluice verifies with the cost the
/// hash names).
pub fn cheap_password_hash() -> String {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let params = argon2::Params::new(8, 1, 1, None).expect("argon2 params");
    let argon2 = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let salt = SaltString::encode_b64(b"sluice-scale-tst").expect("salt");
    argon2
        .hash_password(PASSWORD.as_bytes(), &salt)
        .expect("hash")
        .to_string()
}

/// proxy.toml for Sluice on `listen` in front of `primary` and one replica,
/// `pool_size` connections per backend, [`USER`] logging in with
/// `password_hash`. Read-your-writes is off so that
/// every read goes to the replica and every write to the primary, the same
/// split [`DirectPools`] makes. `pool_mode` sets `pool.mode` only when given,
/// so the default mode is what runs otherwise.
pub fn config_text(
    listen: &str,
    primary: SocketAddr,
    replica: SocketAddr,
    pool_size: usize,
    pool_mode: Option<&str>,
    password_hash: &str,
) -> String {
    let mode = pool_mode
        .map(|m| format!("mode = \"{m}\"\n"))
        .unwrap_or_default();
    format!(
        r#"
[listen]
address = "{listen}"
[[users]]
name = "{USER}"
password_hash = "{password_hash}"
[primary]
address = "{primary}"
user = "sa"
password = "unused-by-iridium"
transaction_requests = "emulate"
[[replicas]]
name = "replica-1"
address = "{replica}"
user = "sa"
password = "unused-by-iridium"
transaction_requests = "emulate"
[pool]
max_size = {pool_size}
{mode}[routing]
read_your_writes_ms = 0
"#
    )
}

/// One request of the workload.
#[derive(Debug, Clone, Copy)]
pub enum Op {
    Read(i32),
    Update(i32),
    Insert { id: i32, worker: i32 },
    Delete(i32),
}

impl Op {
    pub fn is_write(self) -> bool {
        !matches!(self, Op::Read(_))
    }
}

/// `dbo.scale_log` ids, unique across every worker of the process.
static NEXT_LOG_ID: AtomicI32 = AtomicI32::new(1);

/// A worker's requests: a write, then nine point reads, over ids from a
/// small per-worker generator. The writes cycle through UPDATE, INSERT,
/// UPDATE, DELETE of the row just inserted, so `dbo.scale_log` holds at
/// most one row per worker and the database does not grow.
pub struct Mix {
    worker: i32,
    step: u64,
    writes: u64,
    inserted: Option<i32>,
    state: u64,
}

impl Mix {
    pub fn new(worker: i32) -> Mix {
        Mix {
            worker,
            step: 0,
            writes: 0,
            inserted: None,
            state: 0x9E37_79B9_7F4A_7C15 ^ (worker as u64).wrapping_mul(0x2545_F491_4F6C_DD1D),
        }
    }

    fn next_id(&mut self) -> i32 {
        // xorshift64: reproducible, no dependency.
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        (self.state % ROWS as u64) as i32 + 1
    }

    pub fn next_op(&mut self) -> Op {
        self.step += 1;
        let id = self.next_id();
        // Steps 1, 11, 21, … write: even a worker that gets few requests
        // through writes.
        if self.step % 10 != 1 {
            return Op::Read(id);
        }
        self.writes += 1;
        match (self.writes % 4, self.inserted.take()) {
            (2, None) => {
                let id = NEXT_LOG_ID.fetch_add(1, Ordering::Relaxed);
                self.inserted = Some(id);
                Op::Insert {
                    id,
                    worker: self.worker,
                }
            }
            (0, Some(inserted)) => Op::Delete(inserted),
            (_, inserted) => {
                self.inserted = inserted;
                Op::Update(id)
            }
        }
    }
}

/// Why a request failed, whether the connection can still be used, and
/// whether running it again is the answer.
#[derive(Debug)]
pub struct Failure {
    pub message: String,
    pub connection_lost: bool,
    pub lock_conflict: bool,
}

impl From<tiberius::error::Error> for Failure {
    fn from(e: tiberius::error::Error) -> Failure {
        use tiberius::error::Error;
        let connection_lost = matches!(e, Error::Io { .. } | Error::Protocol(_) | Error::Tls(_));
        let lock_conflict =
            matches!(&e, Error::Server(token) if token.message().contains("lock conflict"));
        Failure {
            message: e.to_string(),
            connection_lost,
            lock_conflict,
        }
    }
}

impl Failure {
    fn wrong(message: String) -> Failure {
        Failure {
            message,
            connection_lost: false,
            lock_conflict: false,
        }
    }

    fn timed_out(what: &str) -> Failure {
        Failure {
            message: format!("{what}: no answer within {REQUEST_TIMEOUT:?}"),
            connection_lost: true,
            lock_conflict: false,
        }
    }
}

/// Runs `op` on `client`, again each time iridium refuses it for a lock
/// conflict, and returns how many times it was refused. iridium does not
/// wait for a lock held by another session (its `LOCK_TIMEOUT` starts at 0
/// where SQL Server's waits), so concurrent writers collide on any path;
/// running the statement again is what waiting would have done.
pub async fn run_op(client: &mut TestClient, op: Op) -> Result<u64, Failure> {
    let outcome = tokio::time::timeout(REQUEST_TIMEOUT, async {
        let mut conflicts = 0;
        loop {
            match attempt(client, op).await {
                Err(failure) if failure.lock_conflict => {
                    conflicts += 1;
                    tokio::task::yield_now().await;
                }
                outcome => return outcome.map(|()| conflicts),
            }
        }
    })
    .await;
    outcome.unwrap_or_else(|_| Err(Failure::timed_out("request")))
}

/// One try of `op`; a read must find its one row. (iridium reports no row
/// counts, so writes are checked by their effect at the end.)
async fn attempt(client: &mut TestClient, op: Op) -> Result<(), Failure> {
    match op {
        Op::Read(id) => {
            let rows = client
                .query(READ, &[&id])
                .await?
                .into_first_result()
                .await?;
            if rows.len() != 1 {
                return Err(Failure::wrong(format!("id {id}: {} rows", rows.len())));
            }
        }
        Op::Update(id) => {
            client.execute(UPDATE, &[&id]).await?;
        }
        Op::Insert { id, worker } => {
            client.execute(INSERT, &[&id, &worker]).await?;
        }
        Op::Delete(id) => {
            client.execute(DELETE, &[&id]).await?;
        }
    }
    Ok(())
}

/// Requests, failures and latency (µs) of one worker or of many.
pub struct Tally {
    pub requests: u64,
    pub updates: u64,
    pub inserts: u64,
    pub deletes: u64,
    /// Lock conflicts run again (see [`run_op`]); not errors.
    pub lock_conflicts: u64,
    pub errors: u64,
    pub connections_lost: u64,
    pub first_error: Option<String>,
    pub latency: Histogram<u64>,
}

impl Default for Tally {
    fn default() -> Tally {
        Tally {
            requests: 0,
            updates: 0,
            inserts: 0,
            deletes: 0,
            lock_conflicts: 0,
            errors: 0,
            connections_lost: 0,
            first_error: None,
            latency: Histogram::new(3).expect("histogram"),
        }
    }
}

impl Tally {
    /// Counts one request; false when its connection is gone.
    fn record(&mut self, op: Op, started: Instant, result: Result<u64, Failure>) -> bool {
        match result {
            Ok(conflicts) => {
                self.requests += 1;
                self.lock_conflicts += conflicts;
                match op {
                    Op::Read(_) => {}
                    Op::Update(_) => self.updates += 1,
                    Op::Insert { .. } => self.inserts += 1,
                    Op::Delete(_) => self.deletes += 1,
                }
                self.latency
                    .record(started.elapsed().as_micros() as u64)
                    .ok();
                true
            }
            Err(failure) => {
                self.errors += 1;
                self.first_error.get_or_insert(failure.message);
                self.connections_lost += u64::from(failure.connection_lost);
                !failure.connection_lost
            }
        }
    }

    pub fn merge(&mut self, other: Tally) {
        self.requests += other.requests;
        self.updates += other.updates;
        self.inserts += other.inserts;
        self.deletes += other.deletes;
        self.lock_conflicts += other.lock_conflicts;
        self.errors += other.errors;
        self.connections_lost += other.connections_lost;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
        self.latency.add(other.latency).ok();
    }

    pub fn writes(&self) -> u64 {
        self.updates + self.inserts + self.deletes
    }

    /// Latency at quantile `q`, in milliseconds.
    pub fn ms(&self, q: f64) -> f64 {
        self.latency.value_at_quantile(q) as f64 / 1000.0
    }
}

/// How a worker reaches the database: its own client (through Sluice), or
/// a connection borrowed per request from shared direct pools.
pub enum Via {
    Client(Box<TestClient>),
    Pools(Arc<DirectPools>),
}

/// Runs `worker`'s [`Mix`] until `until`; gives the client back for the
/// final query.
pub async fn work(mut via: Via, worker: i32, until: Instant) -> (Tally, Via) {
    let mut tally = Tally::default();
    let mut mix = Mix::new(worker);
    while Instant::now() < until {
        let op = mix.next_op();
        let started = Instant::now();
        let result = match &mut via {
            Via::Client(client) => run_op(client, op).await,
            Via::Pools(pools) => pools.run_op(op).await,
        };
        if !tally.record(op, started, result) {
            break;
        }
    }
    (tally, via)
}

/// Clients logged in, and what logging them in took.
pub struct Logins {
    pub clients: Vec<TestClient>,
    pub failures: u64,
    pub first_error: Option<String>,
    pub elapsed: Duration,
    /// Per login, µs.
    pub latency: Histogram<u64>,
}

/// Logs `count` clients in with `config`, at most `in_flight` at a time.
pub async fn log_in(config: tiberius::Config, count: usize, in_flight: usize) -> Logins {
    let started = Instant::now();
    let mut logins = Logins {
        clients: Vec::with_capacity(count),
        failures: 0,
        first_error: None,
        elapsed: Duration::ZERO,
        latency: Histogram::new(3).expect("histogram"),
    };
    let mut attempts = futures_util::stream::iter(0..count)
        .map(|_| {
            let config = config.clone();
            async move {
                let t = Instant::now();
                let client = tokio::time::timeout(REQUEST_TIMEOUT, connect_with(config)).await;
                (client, t.elapsed())
            }
        })
        .buffer_unordered(in_flight.max(1));
    while let Some((client, took)) = attempts.next().await {
        match client {
            Ok(Ok(client)) => {
                logins.clients.push(client);
                logins.latency.record(took.as_micros() as u64).ok();
            }
            Ok(Err(e)) => {
                logins.failures += 1;
                logins.first_error.get_or_insert(e.to_string());
            }
            Err(_) => {
                logins.failures += 1;
                logins.first_error.get_or_insert("login timed out".into());
            }
        }
    }
    logins.elapsed = started.elapsed();
    logins
}

/// One point read from every client, at most `in_flight` at a time.
pub struct Answers {
    pub answered: u64,
    pub failed: u64,
    pub first_error: Option<String>,
    pub elapsed: Duration,
}

pub async fn everyone_answers(clients: Vec<TestClient>, in_flight: usize) -> Answers {
    let started = Instant::now();
    let mut answers = Answers {
        answered: 0,
        failed: 0,
        first_error: None,
        elapsed: Duration::ZERO,
    };
    let mut queries = futures_util::stream::iter(clients.into_iter().enumerate())
        .map(|(i, mut client)| async move {
            let id = i as i32 % ROWS + 1;
            run_op(&mut client, Op::Read(id)).await
        })
        .buffer_unordered(in_flight.max(1));
    while let Some(result) = queries.next().await {
        match result {
            Ok(_) => answers.answered += 1,
            Err(failure) => {
                answers.failed += 1;
                answers.first_error.get_or_insert(failure.message);
            }
        }
    }
    answers.elapsed = started.elapsed();
    answers
}

/// Direct connections shared by many workers: a free list that hands out
/// connections first come, first served.
pub struct DirectPool {
    give_back: mpsc::UnboundedSender<TestClient>,
    free: Mutex<mpsc::UnboundedReceiver<TestClient>>,
}

impl DirectPool {
    pub async fn open(config: tiberius::Config, size: usize) -> DirectPool {
        let (give_back, free) = mpsc::unbounded_channel();
        let logins = log_in(config, size, size).await;
        assert_eq!(
            logins.failures, 0,
            "direct connections: {:?}",
            logins.first_error
        );
        for client in logins.clients {
            give_back.send(client).expect("receiver is alive");
        }
        DirectPool {
            give_back,
            free: Mutex::new(free),
        }
    }

    async fn run_op(&self, op: Op) -> Result<u64, Failure> {
        // Waiters queue on the mutex in order; the one holding it takes the
        // next connection given back.
        let checkout = async { self.free.lock().await.recv().await };
        let mut client = tokio::time::timeout(REQUEST_TIMEOUT, checkout)
            .await
            .ok()
            .flatten()
            .ok_or_else(|| Failure::timed_out("direct pool checkout"))?;
        let result = run_op(&mut client, op).await;
        // A connection whose request failed mid-way is not reused.
        if !matches!(&result, Err(f) if f.connection_lost) {
            let _ = self.give_back.send(client);
        }
        result
    }
}

/// Direct pools split as Sluice splits: writes to the primary, reads to
/// the replica.
pub struct DirectPools {
    pub primary: DirectPool,
    pub replica: DirectPool,
}

impl DirectPools {
    async fn run_op(&self, op: Op) -> Result<u64, Failure> {
        if op.is_write() {
            self.primary.run_op(op).await
        } else {
            self.replica.run_op(op).await
        }
    }
}
