//! Shadow mode (`routing.mode = "shadow"`): every request runs on the
//! primary; a sampled share of the reads the router would have sent to a
//! replica also runs there, in the background, and its answer is compared
//! with the primary's by row count and an order-insensitive checksum of the
//! rows ([`RowsDigest`]). A rollout learns what split mode would do to its
//! results before any client depends on a replica.
//!
//! The client never waits for a shadow read: the session hands it to a
//! bounded queue without blocking (a full queue drops it, counted), the
//! primary's rows are digested while they are relayed, and the primary's
//! answer reaches the waiting shadow run through a oneshot channel after
//! the client has its response. A dispatcher task runs at most
//! [`SHADOW_CONCURRENCY`] shadow reads at once, each on a pooled replica
//! connection brought to the session's database and settings, within
//! [`SHADOW_TIMEOUT`].

use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};

use crate::backend::ResponseSummary;
use crate::backend::{plan_settings, BackendLogin, Consumed, PooledBackend, Replica, Settings};
use crate::config::Routing;
use crate::metrics::{ShadowDrop, ShadowMetrics, ShadowResult};
use crate::tds::packet::{PacketType, Status};
use crate::tds::request::{encode_all_headers, split_all_headers};
use crate::tds::token::{BatchReply, RowsDigest};
use crate::transport::Request;

/// Shadow reads running on replicas at once; the queue holds the rest.
pub const SHADOW_CONCURRENCY: usize = 4;
/// Longest a shadow read may take on a replica (checkout included); its
/// connection is closed past it, which cancels the query.
pub const SHADOW_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest request payload copied for a shadow read. With the queue bound
/// this bounds the memory held by waiting shadow reads (an ORM statement is
/// a few hundred bytes).
pub const MAX_SHADOW_REQUEST_BYTES: usize = 16 * 1024;

/// What a response came to, as far as comparing two servers goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answer {
    pub rows: RowsDigest,
    /// It carried an ERROR token.
    pub error: bool,
}

impl Answer {
    /// The primary's answer, if the response can stand comparison: read in
    /// full, its rows digested, and no transaction left open (a shadow copy
    /// never runs inside one).
    pub fn of_primary(summary: &ResponseSummary) -> Option<Answer> {
        let comparable =
            !summary.unreadable && !summary.interrupted && summary.transaction != Some(true);
        Some(Answer {
            rows: summary.rows.filter(|_| comparable)?,
            error: summary.error,
        })
    }

    fn of_replica(consumed: &Consumed) -> Answer {
        Answer {
            rows: consumed.rows,
            error: consumed.error.is_some(),
        }
    }
}

/// A read the session asks to shadow, as it stands at routing time.
pub struct ShadowRead<'a> {
    pub replica: Arc<Replica>,
    /// The client's login database: the pool to take a connection from.
    pub database: &'a str,
    pub login: Option<Arc<BackendLogin>>,
    /// The session's settings (its current database among them).
    pub settings: &'a Settings,
    /// The client's request, whole (it was classified).
    pub request: &'a Request,
    /// The SQL text (or `EXEC procedure`), fingerprinted only if the
    /// answers differ.
    pub statement: String,
}

/// One queued shadow read.
struct ShadowJob {
    replica: Arc<Replica>,
    database: String,
    login: Option<Arc<BackendLogin>>,
    settings: Settings,
    ty: PacketType,
    payload: Vec<u8>,
    statement: String,
    primary: oneshot::Receiver<Option<Answer>>,
}

/// Where the session sends the primary's answer once the client has it.
pub struct PrimaryAnswer(oneshot::Sender<Option<Answer>>);

impl PrimaryAnswer {
    /// `None`: the request failed before a response came; the shadow run
    /// then counts as an error.
    pub fn send(self, summary: Option<&ResponseSummary>) {
        // The shadow run may have ended already (timed out): nothing to tell.
        self.0.send(summary.and_then(Answer::of_primary)).ok();
    }
}

/// Samples, queues and runs shadow reads; shared by every session.
pub struct ShadowRunner {
    jobs: mpsc::Sender<ShadowJob>,
    sampler: Sampler,
    metrics: ShadowMetrics,
}

impl ShadowRunner {
    /// Starts the dispatcher on the current Tokio runtime. Outside one
    /// (no caller does that) every sampled read is dropped, and counted.
    pub fn start(routing: &Routing) -> Arc<ShadowRunner> {
        let (jobs, queue) = mpsc::channel(routing.shadow_queue.max(1));
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(dispatch(
                    queue,
                    Arc::new(Semaphore::new(SHADOW_CONCURRENCY)),
                ));
            }
            Err(_) => tracing::warn!(
                "shadow mode started outside a Tokio runtime; no shadow reads will run"
            ),
        }
        Arc::new(ShadowRunner {
            jobs,
            sampler: Sampler::new(routing.shadow_sample),
            metrics: ShadowMetrics::new(),
        })
    }

    /// Counts a request that split mode would have sent to a replica.
    pub fn would_route(&self, reason: &'static str) {
        self.metrics.would_route(reason);
    }

    /// Whether this read is in the sample.
    pub fn sampled(&self) -> bool {
        self.sampler.sample()
    }

    /// Queues a shadow read without waiting; `None` when it was dropped
    /// (queue full, request too large, or a payload it cannot copy).
    pub fn submit(&self, read: ShadowRead<'_>) -> Option<PrimaryAnswer> {
        // Measured before the packets are joined: an oversized request is
        // never copied.
        let size: usize = read
            .request
            .packets()
            .iter()
            .map(|p| p.payload().len())
            .sum();
        if size > MAX_SHADOW_REQUEST_BYTES {
            self.metrics.dropped(ShadowDrop::TooLarge);
            return None;
        }
        let payload = outside_any_transaction(&read.request.payload())?;
        let (answer, primary) = oneshot::channel();
        let job = ShadowJob {
            replica: read.replica,
            database: read.database.to_string(),
            login: read.login,
            settings: read.settings.clone(),
            ty: read.request.ty(),
            payload,
            statement: read.statement,
            primary,
        };
        if self.jobs.try_send(job).is_err() {
            self.metrics.dropped(ShadowDrop::QueueFull);
            return None;
        }
        Some(PrimaryAnswer(answer))
    }
}

/// The request's payload with its ALL_HEADERS replaced by an auto-commit
/// transaction descriptor: the copy runs on a connection of its own, never
/// in the client's transaction (there is none, or it would not be shadowed).
fn outside_any_transaction(payload: &[u8]) -> Option<Vec<u8>> {
    let (_, body) = split_all_headers(payload).ok()?;
    let mut copy = Vec::with_capacity(body.len() + 22);
    encode_all_headers(&mut copy, 0, 1);
    copy.extend_from_slice(body);
    Some(copy)
}

/// Takes queued jobs in order and starts each once a run slot is free;
/// while none is, the queue fills and further reads are dropped.
async fn dispatch(mut queue: mpsc::Receiver<ShadowJob>, slots: Arc<Semaphore>) {
    while let Some(job) = queue.recv().await {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        tokio::spawn(run(job, slot));
    }
}

/// Runs one shadow read, waits for the primary's answer, compares, counts.
async fn run(job: ShadowJob, slot: OwnedSemaphorePermit) {
    let lag = job.replica.lag();
    let replica = tokio::time::timeout(SHADOW_TIMEOUT, run_on_replica(&job))
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {} s", SHADOW_TIMEOUT.as_secs())));
    drop(slot);
    let ShadowJob {
        replica: backend,
        statement,
        primary,
        ..
    } = job;
    let primary = primary.await.ok().flatten();
    let result = compare(&backend, lag, &statement, replica, primary);
    result.record(backend.name());
}

/// Runs the copy on a replica connection at the session's settings and
/// reads its answer. The connection goes back to its pool when dropped, to
/// be reset before its next use (or closed, if the read did not end).
async fn run_on_replica(job: &ShadowJob) -> Result<Consumed, String> {
    let fingerprint = job.settings.fingerprint();
    let mut conn = job
        .replica
        .pools()
        .get_preferring(&job.database, job.login.as_deref(), fingerprint)
        .await
        .map_err(|e| e.to_string())?;
    bring_to_settings(&mut conn, &job.settings).await?;
    let request = Request::from_payload(job.ty, Status::NORMAL, &job.payload);
    conn.send(&request).await.map_err(|e| e.to_string())?;
    // Not vouched for afterwards: a read may still carry a SET of its own
    // (`SET NOCOUNT ON; SELECT ...`), which the connection does not track,
    // so it is reset before its next use.
    conn.consume_response().await
}

/// Brings a replica connection to the session's settings (the session's
/// own step, without a client's reset bits to carry). A batch the server
/// refused leaves the settings unknown: the connection is not vouched for,
/// so it is reset before its next use.
async fn bring_to_settings(conn: &mut PooledBackend, settings: &Settings) -> Result<(), String> {
    let Some(plan) = plan_settings(conn.settings(), settings) else {
        return Ok(());
    };
    if plan.reset {
        conn.reset_on_next_request();
    }
    if !plan.batch.is_empty() {
        let reply = conn
            .run_batch(&plan.batch)
            .await
            .map_err(|e| format!("applying the session's settings: {e}"))?;
        let refused = BatchReply::decode(&reply).map_or(true, |r| !r.errors.is_empty());
        if refused {
            return Err("the replica refused the session's settings".into());
        }
    }
    conn.set_settings(settings);
    Ok(())
}

/// Judges a shadow run; a mismatch is logged with what tells it apart.
fn compare(
    replica: &Replica,
    lag: Option<Duration>,
    statement: &str,
    shadow: Result<Consumed, String>,
    primary: Option<Answer>,
) -> ShadowResult {
    let consumed = match shadow {
        Ok(consumed) => consumed,
        Err(error) => {
            tracing::debug!(backend = %replica.name(), %error, "shadow read failed");
            return ShadowResult::Error;
        }
    };
    let Some(primary) = primary else {
        tracing::debug!(backend = %replica.name(), "shadow read not compared: the primary's response was not read in full");
        return ShadowResult::Error;
    };
    let shadow = Answer::of_replica(&consumed);
    if shadow == primary {
        return ShadowResult::Match;
    }
    tracing::warn!(
        backend = %replica.name(),
        lag_ms = lag.map(|l| l.as_millis() as u64),
        statement = %crate::classify::fingerprint(statement),
        primary_rows = primary.rows.rows,
        replica_rows = shadow.rows.rows,
        same_checksum = primary.rows.checksum == shadow.rows.checksum,
        primary_error = primary.error,
        replica_error = consumed.error.as_ref().map(|e| e.number),
        "shadow read: the replica's answer differs from the primary's"
    );
    ShadowResult::Mismatch
}

/// Picks a share of calls, spread evenly and unpredictably: SplitMix64
/// over a shared counter (seeded at random), lock-free. Drawn rather than
/// taken every n-th, so that a workload repeating a cycle of statements is
/// not always sampled at the same one.
struct Sampler {
    /// Calls are sampled when their draw is below this.
    threshold: u64,
    /// A share of 1: every call, whatever the draw.
    every: bool,
    state: AtomicU64,
}

impl Sampler {
    fn new(share: f64) -> Sampler {
        let share = if share.is_finite() {
            share.clamp(0.0, 1.0)
        } else {
            0.0
        };
        Sampler {
            // Saturating float-to-int conversion; exact at both ends.
            threshold: (share * u64::MAX as f64) as u64,
            every: share >= 1.0,
            state: AtomicU64::new(std::hash::RandomState::new().build_hasher().finish()),
        }
    }

    fn sample(&self) -> bool {
        if self.every || self.threshold == 0 {
            return self.every;
        }
        const GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut z = self
            .state
            .fetch_add(GAMMA, Ordering::Relaxed)
            .wrapping_add(GAMMA);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (z ^ (z >> 31)) < self.threshold
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sampler_takes_about_its_share() {
        for share in [0.1, 0.5, 0.9] {
            let sampler = Sampler::new(share);
            let taken = (0..100_000).filter(|_| sampler.sample()).count();
            let expected = share * 100_000.0;
            assert!(
                (taken as f64 - expected).abs() < 1_500.0,
                "share {share}: {taken}"
            );
        }
    }

    #[test]
    fn the_sampler_is_exact_at_none_and_all() {
        let none = Sampler::new(0.0);
        let all = Sampler::new(1.0);
        assert!((0..10_000).all(|_| !none.sample() && all.sample()));
    }

    #[test]
    fn a_copy_runs_outside_the_clients_transaction() {
        let mut payload = Vec::new();
        encode_all_headers(&mut payload, 0x1122_3344, 1);
        payload.extend_from_slice(b"S\0E\0L\0");
        let copy = outside_any_transaction(&payload).expect("ALL_HEADERS split");
        let (headers, body) = split_all_headers(&copy).expect("ALL_HEADERS split");
        assert_eq!(headers.transaction_descriptor, Some(0));
        assert_eq!(body, b"S\0E\0L\0");
        assert!(outside_any_transaction(b"\x02").is_none());
    }

    fn summary(rows: u64) -> ResponseSummary {
        ResponseSummary {
            rows: Some(RowsDigest { rows, checksum: 7 }),
            ..ResponseSummary::default()
        }
    }

    #[test]
    fn only_a_whole_response_outside_a_transaction_is_compared() {
        assert_eq!(
            Answer::of_primary(&summary(2)),
            Some(Answer {
                rows: RowsDigest {
                    rows: 2,
                    checksum: 7
                },
                error: false
            })
        );
        let interrupted = ResponseSummary {
            interrupted: true,
            ..summary(2)
        };
        let unreadable = ResponseSummary {
            unreadable: true,
            ..summary(2)
        };
        let in_transaction = ResponseSummary {
            transaction: Some(true),
            ..summary(2)
        };
        let undigested = ResponseSummary::default();
        for summary in [interrupted, unreadable, in_transaction, undigested] {
            assert_eq!(Answer::of_primary(&summary), None, "{summary:?}");
        }
    }
}
