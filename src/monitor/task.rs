//! The background tasks: one per backend (check, measure the lag, feed the
//! state machine, publish) and one heartbeat writer per heartbeat table.

use std::future::Future;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use metrics::{Gauge, Histogram};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::health::{BackendHealth, BackendState};
use super::lag::{self, HeartbeatTable, HEALTH_CHECK_SQL};
use super::state_machine::{CheckResult, HealthPolicy, StateMachine, Transition};
use super::target::{connect, run, CheckError, CheckTarget};
use crate::backend::BackendConn;
use crate::tds::token::SqlValue;

/// tokio's interval panics on zero.
const MIN_INTERVAL: Duration = Duration::from_millis(1);

/// How a replica's lag is read, resolved from its [`super::LagSource`].
pub(crate) enum LagProbe {
    /// No lag source.
    None,
    /// The source cannot work (a bad heartbeat table name): lag unknown.
    Invalid(String),
    /// A query on the replica's own check connection returning milliseconds.
    OnReplica { sql: String },
    /// A query on the primary returning milliseconds (`azure_geo`).
    OnPrimary {
        target: Arc<CheckTarget>,
        sql: &'static str,
        conn: Option<Box<BackendConn>>,
        /// Kept while the primary cannot be reached: a primary that is
        /// down commits nothing, so the replica falls no further behind.
        last: Option<Duration>,
    },
    /// The heartbeat row as the replica shows it.
    Heartbeat {
        read_sql: String,
        clock: Arc<HeartbeatClock>,
    },
}

/// One backend's monitor.
pub(crate) struct BackendTask {
    target: Arc<CheckTarget>,
    health: Arc<BackendHealth>,
    machine: StateMachine,
    probe: LagProbe,
    conn: Option<BackendConn>,
    /// Why the lag could not be measured, last time; logged when it changes.
    lag_problem: Option<String>,
    metrics: MonitorMetrics,
}

/// What the monitor of one backend records, registered once.
struct MonitorMetrics {
    backend: Arc<str>,
    /// `sluice_backend_state`, one series per state, 1 for the current one.
    states: [(BackendState, Gauge); 3],
    lag: Gauge,
    check: Histogram,
}

impl MonitorMetrics {
    fn new(backend: &str, state: BackendState) -> MonitorMetrics {
        let backend: Arc<str> = Arc::from(backend);
        let states = [BackendState::Up, BackendState::Lagging, BackendState::Down].map(|s| {
            let gauge = metrics::gauge!(crate::metrics::BACKEND_STATE, "backend" => backend.clone(), "state" => s.as_str());
            (s, gauge)
        });
        let metrics = MonitorMetrics {
            lag: metrics::gauge!(crate::metrics::REPLICA_LAG, "backend" => backend.clone()),
            check: metrics::histogram!(crate::metrics::HEALTH_CHECK_DURATION, "backend" => backend.clone()),
            backend,
            states,
        };
        metrics.show_state(state);
        metrics
    }

    fn show_state(&self, current: BackendState) {
        for (state, gauge) in &self.states {
            gauge.set(if *state == current { 1.0 } else { 0.0 });
        }
    }

    fn changed(&self, to: BackendState) {
        self.show_state(to);
        metrics::counter!(crate::metrics::BACKEND_STATE_CHANGES, "backend" => self.backend.clone(), "to" => to.as_str())
            .increment(1);
    }
}

impl BackendTask {
    pub(crate) fn new(
        target: Arc<CheckTarget>,
        health: Arc<BackendHealth>,
        policy: HealthPolicy,
        probe: LagProbe,
    ) -> Self {
        let machine = StateMachine::new(policy);
        BackendTask {
            metrics: MonitorMetrics::new(&target.name, machine.state()),
            target,
            health,
            machine,
            probe,
            conn: None,
            lag_problem: None,
        }
    }

    pub(crate) async fn run(mut self) {
        let policy = self.machine.policy().clone();
        let mut ticker = crate::timer::Interval::new(policy.interval.max(MIN_INTERVAL));
        // A data-path failure asks for a check at once, but never more
        // often than this, so a dead primary under write load is not
        // hammered with connection attempts.
        let min_gap = (policy.interval / 4).max(Duration::from_millis(10));
        let mut last_check: Option<tokio::time::Instant> = None;
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = self.health.failed_request_reported() => {
                    if let Some(last) = last_check {
                        crate::timer::sleep_until(last + min_gap).await;
                    }
                }
            }
            last_check = Some(tokio::time::Instant::now());
            if self.health.take_failed_requests() {
                let reason = "a request on the data path lost its connection".to_string();
                self.apply(Instant::now(), CheckResult::Failed { reason });
            }
            let started = Instant::now();
            let result = self.check().await;
            self.metrics.check.record(started.elapsed().as_secs_f64());
            self.apply(Instant::now(), result);
            self.health.note_check();
        }
    }

    /// One check: connect if needed and `SELECT 1` within the timeout; then
    /// the lag, within the timeout again.
    async fn check(&mut self) -> CheckResult {
        let timeout = self.machine.policy().timeout;
        let conn = self.conn.take();
        let target = self.target.clone();
        match guarded(timeout, async move {
            let mut conn = match conn {
                Some(conn) => conn,
                None => connect(&target, timeout).await?,
            };
            first_value(&mut conn, HEALTH_CHECK_SQL).await?;
            Ok(conn)
        })
        .await
        {
            Ok(conn) => self.conn = Some(conn),
            Err(e) => {
                return CheckResult::Failed {
                    reason: e.to_string(),
                }
            }
        }
        let lag = match self.measure_lag(timeout).await {
            Ok(lag) => {
                self.note_lag_problem(None);
                lag
            }
            Err(problem) => {
                self.note_lag_problem(Some(problem));
                None
            }
        };
        CheckResult::Healthy { lag }
    }

    /// The replica's lag; `Ok(None)` without a lag source, `Err` with the
    /// reason when the source leaves it unknown (an error, NULL, no row).
    async fn measure_lag(&mut self, timeout: Duration) -> Result<Option<Duration>, String> {
        match &mut self.probe {
            LagProbe::None => Ok(None),
            LagProbe::Invalid(reason) => Err(reason.clone()),
            LagProbe::OnReplica { sql } => {
                let sql = sql.clone();
                let value = self.replica_value(sql, timeout).await?;
                lag_in(value)
            }
            LagProbe::OnPrimary {
                target,
                sql,
                conn,
                last,
            } => {
                let (conn_in, target, sql) = (conn.take().map(|c| *c), target.clone(), *sql);
                let result = guarded(timeout, async move {
                    let mut conn = match conn_in {
                        Some(conn) => conn,
                        None => connect(&target, timeout).await?,
                    };
                    let value = keep_on_sql_error(first_value(&mut conn, sql).await)?;
                    Ok((conn, value))
                })
                .await;
                match result {
                    Ok((new_conn, value)) => {
                        *conn = Some(Box::new(new_conn));
                        let value =
                            value.map_err(|e| format!("the lag query failed on the primary: {e}"));
                        let lag = value.and_then(lag_in);
                        *last = lag.clone().ok().flatten();
                        lag
                    }
                    // The primary is unreachable: it commits nothing new, so
                    // the last lag measured still holds.
                    Err(e) => match *last {
                        Some(lag) => Ok(Some(lag)),
                        None => Err(format!("cannot reach the primary for the lag: {e}")),
                    },
                }
            }
            LagProbe::Heartbeat { read_sql, clock } => {
                let (read_sql, clock) = (read_sql.clone(), clock.clone());
                // On start-up, let the writer put a fresh value first.
                let _ = tokio::time::timeout(timeout, clock.first_attempt()).await;
                let value = self.replica_value(read_sql, timeout).await?;
                let now = epoch_ms_now();
                match value.as_ref().map(lag::epoch_ms_from_column).transpose()? {
                    Some(Some(visible)) => Ok(Some(lag::heartbeat_lag(
                        now,
                        visible,
                        clock.failing_since(),
                    ))),
                    _ => Err("no heartbeat row on the replica yet".to_string()),
                }
            }
        }
    }

    /// The first value `sql` returns on the replica's check connection.
    async fn replica_value(
        &mut self,
        sql: String,
        timeout: Duration,
    ) -> Result<Option<SqlValue>, String> {
        let Some(mut conn) = self.conn.take() else {
            return Err("no connection".to_string());
        };
        let result = guarded(timeout, async move {
            let value = keep_on_sql_error(first_value(&mut conn, &sql).await)?;
            Ok((conn, value))
        })
        .await;
        match result {
            Ok((conn, value)) => {
                self.conn = Some(conn);
                value.map_err(|e| format!("the lag query failed: {e}"))
            }
            // The connection may be mid-reply: the next check reconnects.
            Err(e) => Err(format!("the lag query failed: {e}")),
        }
    }

    fn note_lag_problem(&mut self, problem: Option<String>) {
        if problem == self.lag_problem {
            return;
        }
        match &problem {
            Some(p) => {
                tracing::warn!(backend = %self.target.name, problem = %p, "replica lag unknown")
            }
            None => tracing::info!(backend = %self.target.name, "replica lag measured again"),
        }
        self.lag_problem = problem;
    }

    fn apply(&mut self, now: Instant, result: CheckResult) {
        let lag = match &result {
            CheckResult::Healthy { lag } => *lag,
            CheckResult::Failed { .. } => None,
        };
        self.health.set_lag(lag);
        self.metrics
            .lag
            .set(lag.map_or(f64::NAN, |lag| lag.as_secs_f64()));
        if let Some(transition) = self.machine.observe(now, result) {
            self.health.set_state(transition.to);
            self.metrics.changed(transition.to);
            log_transition(&self.target.name, &transition, self.lag_problem.as_deref());
        }
    }
}

/// Logged once per change: warn when a backend gets worse, info when it
/// gets better.
fn log_transition(name: &str, t: &Transition, lag_problem: Option<&str>) {
    let (from, to, reason) = (t.from.as_str(), t.to.as_str(), t.reason.as_str());
    let worse = t.to == BackendState::Down || t.from == BackendState::Up;
    match (worse, lag_problem) {
        (true, Some(problem)) => {
            tracing::warn!(backend = %name, from, to, reason, lag_problem = problem, "backend is {to}")
        }
        (true, None) => tracing::warn!(backend = %name, from, to, reason, "backend is {to}"),
        (false, _) => tracing::info!(backend = %name, from, to, reason, "backend is {to}"),
    }
}

/// Writes the heartbeat on the primary every interval.
pub(crate) struct HeartbeatWriter {
    pub(crate) target: Arc<CheckTarget>,
    pub(crate) table: HeartbeatTable,
    pub(crate) interval: Duration,
    pub(crate) timeout: Duration,
    pub(crate) clock: Arc<HeartbeatClock>,
}

impl HeartbeatWriter {
    pub(crate) async fn run(self) {
        let mut ticker = crate::timer::Interval::new(self.interval.max(MIN_INTERVAL));
        let mut conn: Option<BackendConn> = None;
        let mut table_ready = false;
        let mut problem: Option<String> = None;
        loop {
            ticker.tick().await;
            let now = epoch_ms_now();
            let (conn_in, target, timeout) = (conn.take(), self.target.clone(), self.timeout);
            let create = (conn_in.is_none() || !table_ready).then(|| self.table.create_sql());
            let write = self.table.write_sql(now);
            let result = guarded(self.timeout, async move {
                let mut conn = match conn_in {
                    Some(conn) => conn,
                    None => connect(&target, timeout).await?,
                };
                // Created if missing, on every new connection.
                if let Some(create) = create {
                    if let Err(e) = keep_on_sql_error(drain(&mut conn, &create).await)? {
                        return Ok((conn, false, Err(e)));
                    }
                }
                let written = keep_on_sql_error(drain(&mut conn, &write).await)?;
                Ok((conn, true, written))
            })
            .await;
            let outcome = match result {
                Ok((new_conn, ready, written)) => {
                    conn = Some(new_conn);
                    table_ready = ready;
                    written
                }
                Err(e) => Err(e.to_string()),
            };
            match outcome {
                Ok(()) => {
                    self.clock.succeeded();
                    if problem.take().is_some() {
                        tracing::info!(backend = %self.target.name, "heartbeat written again");
                    }
                }
                Err(e) => {
                    self.clock.failed(now);
                    if problem.as_deref() != Some(e.as_str()) {
                        tracing::warn!(backend = %self.target.name, problem = %e, "cannot write the heartbeat");
                        problem = Some(e);
                    }
                }
            }
            self.clock.attempted();
        }
    }
}

/// What the heartbeat readers need to know about the writer.
pub(crate) struct HeartbeatClock {
    /// Time (epoch ms) of the first failed write since the last success;
    /// `NOT_FAILING` while writes succeed.
    failing_since: AtomicI64,
    attempted: watch::Sender<bool>,
}

const NOT_FAILING: i64 = i64::MIN;

impl HeartbeatClock {
    pub(crate) fn new() -> Self {
        HeartbeatClock {
            failing_since: AtomicI64::new(NOT_FAILING),
            attempted: watch::Sender::new(false),
        }
    }

    fn succeeded(&self) {
        self.failing_since.store(NOT_FAILING, Ordering::Release);
    }

    fn failed(&self, at_ms: i64) {
        // Keep the first failure's time.
        let _ = self.failing_since.compare_exchange(
            NOT_FAILING,
            at_ms,
            Ordering::AcqRel,
            Ordering::Acquire,
        );
    }

    fn attempted(&self) {
        self.attempted.send_replace(true);
    }

    fn failing_since(&self) -> Option<i64> {
        match self.failing_since.load(Ordering::Acquire) {
            NOT_FAILING => None,
            t => Some(t),
        }
    }

    /// Resolves once the writer has tried at least once.
    async fn first_attempt(&self) {
        let mut rx = self.attempted.subscribe();
        let _ = rx.wait_for(|attempted| *attempted).await;
    }
}

fn epoch_ms_now() -> i64 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_millis()).unwrap_or(i64::MAX),
    }
}

/// Runs `check` in a task of its own, within `timeout`: a driver panic or a
/// hang becomes a failed check instead of a dead monitor. Dropping the
/// returned future (the monitor stopping) aborts the task.
async fn guarded<T: Send + 'static>(
    timeout: Duration,
    check: impl Future<Output = Result<T, CheckError>> + Send + 'static,
) -> Result<T, CheckError> {
    let mut task = AbortOnDrop(tokio::spawn(check));
    match tokio::time::timeout(timeout, &mut task.0).await {
        Ok(Ok(result)) => result,
        Ok(Err(join)) if join.is_panic() => Err(CheckError::Panicked),
        Ok(Err(_)) | Err(_) => Err(CheckError::Timeout(timeout.as_millis())),
    }
}

/// A task aborted when its handle is dropped.
pub(crate) struct AbortOnDrop<T>(pub(crate) JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The first column of the first row, if any; the rest is discarded.
async fn first_value(conn: &mut BackendConn, sql: &str) -> Result<Option<SqlValue>, CheckError> {
    Ok(run(conn, sql).await?.first_value())
}

/// The lag in a lag query's first value; no row, or NULL, is a problem
/// worth a log line (an availability database that is not one, a geo link
/// not caught up), and an unknown lag.
fn lag_in(value: Option<SqlValue>) -> Result<Option<Duration>, String> {
    let Some(value) = value else {
        return Err("the lag query returned no row".to_string());
    };
    match lag::lag_from_column(&value)? {
        Some(lag) => Ok(Some(lag)),
        None => Err("the lag query returned NULL".to_string()),
    }
}

/// Splits a query's outcome: a SQL error (an ERROR token) leaves the
/// connection usable and becomes the inner `Err`; anything else (I/O,
/// protocol) means the connection is done.
fn keep_on_sql_error<T>(result: Result<T, CheckError>) -> Result<Result<T, String>, CheckError> {
    match result {
        Ok(value) => Ok(Ok(value)),
        Err(CheckError::Query(e)) => Ok(Err(e)),
        Err(e) => Err(e),
    }
}

/// Runs a batch and reads its reply to the end.
async fn drain(conn: &mut BackendConn, sql: &str) -> Result<(), CheckError> {
    run(conn, sql).await.map(|_| ())
}
