//! Every metric Sluice records, in one place (after pgdog's `stats/` and
//! pgcat's `prometheus.rs`): its name, its help text and unit, and the
//! bounded label values it may carry. The data path records through the
//! `metrics` facade; whoever installs a recorder (the admin server, a test)
//! decides where the numbers go. Without a recorder every call is a no-op.
//!
//! Labels are bounded: backend names from the configuration, and
//! `&'static str` values from closed enums (`Reason::label`,
//! `PinReason::label`, `Class::as_str`, ...). Never SQL text, user names or
//! client addresses. Metrics hit per request are registered once and kept
//! as handles ([`RequestCounters`], the pool's own), so the hot path
//! neither allocates nor looks a key up.
//!
//! docs/METRICS.md lists them for operators; keep the two in step.

use std::sync::{Arc, OnceLock};

use metrics::{Counter, Gauge, Histogram, Unit};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// Histogram buckets, in seconds: request and checkout times from half a
/// millisecond to ten seconds.
const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The Prometheus recorder's handle. The `metrics` facade has one recorder
/// per process, so it is installed on first use and shared: a second proxy
/// in the same process (tests) renders the same metrics. If another
/// recorder was installed first, a detached one serves, rendering nothing
/// that was recorded. Help texts are registered once it is installed.
pub fn prometheus_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new();
            let builder = match builder.set_buckets(&BUCKETS) {
                Ok(with_buckets) => with_buckets,
                Err(_) => PrometheusBuilder::new(),
            };
            match builder.install_recorder() {
                Ok(handle) => {
                    describe();
                    handle
                }
                Err(e) => {
                    tracing::warn!(error = %e, "another metrics recorder is installed; /metrics will be empty");
                    PrometheusBuilder::new().build_recorder().handle()
                }
            }
        })
        .clone()
}

pub const REQUESTS: &str = "sluice_requests_total";
pub const REQUEST_DURATION: &str = "sluice_request_duration_seconds";
pub const READ_RETRIES: &str = "sluice_read_retries_total";
pub const READ_YOUR_WRITES_HOLDS: &str = "sluice_read_your_writes_holds_total";
pub const CLASSIFICATIONS: &str = "sluice_classifications_total";
pub const CLASSIFIER_CACHE: &str = "sluice_classifier_cache_total";
pub const PINS: &str = "sluice_pins_total";
pub const PINNED_SESSIONS: &str = "sluice_pinned_sessions";
pub const TRANSACTIONS: &str = "sluice_transactions_total";
pub const CLIENTS: &str = "sluice_clients";
pub const LOGINS: &str = "sluice_logins_total";
pub const CONFIG_RELOADS: &str = "sluice_config_reloads_total";
pub const PROCEDURE_CALLS: &str = "sluice_procedure_calls_total";
pub const POOL_CONNECTIONS: &str = "sluice_pool_connections";
pub const POOL_CHECKOUT_WAIT: &str = "sluice_pool_checkout_wait_seconds";
pub const POOL_CHECKOUT_TIMEOUTS: &str = "sluice_pool_checkout_timeouts_total";
pub const BACKEND_STATE: &str = "sluice_backend_state";
pub const BACKEND_STATE_CHANGES: &str = "sluice_backend_state_changes_total";
pub const REPLICA_LAG: &str = "sluice_replica_lag_seconds";
pub const HEALTH_CHECK_DURATION: &str = "sluice_health_check_duration_seconds";
pub const ERRORS: &str = "sluice_errors_total";
pub const CLIENT_BYTES_RECEIVED: &str = "sluice_client_bytes_received_total";
pub const CLIENT_BYTES_SENT: &str = "sluice_client_bytes_sent_total";
pub const SHADOW_WOULD_ROUTE: &str = "sluice_shadow_would_route_total";
pub const SHADOW_RUNS: &str = "sluice_shadow_runs_total";
pub const SHADOW_DROPPED: &str = "sluice_shadow_dropped_total";
pub const CACHE_LOOKUPS: &str = "sluice_cache_lookups_total";
pub const CACHE_BYPASSES: &str = "sluice_cache_bypasses_total";
pub const CACHE_STORES: &str = "sluice_cache_stores_total";
pub const CACHE_EVICTIONS: &str = "sluice_cache_evictions_total";
pub const CACHE_INVALIDATIONS: &str = "sluice_cache_invalidations_total";
pub const CACHE_MEMORY_BYTES: &str = "sluice_cache_memory_bytes";
pub const CACHE_MEMORY_ENTRIES: &str = "sluice_cache_memory_entries";
pub const CACHE_REDIS_UP: &str = "sluice_cache_redis_up";

/// Registers the help text and unit of every metric with the installed
/// recorder (call once, after installing it; harmless without one).
pub fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        REQUESTS,
        Unit::Count,
        "Requests routed, by target (primary, replica), backend and routing reason"
    );
    describe_histogram!(
        REQUEST_DURATION,
        Unit::Seconds,
        "Time from routing a request to the end of its response, by the target and backend it was routed to"
    );
    describe_counter!(
        READ_RETRIES,
        Unit::Count,
        "Reads whose replica failed before replying, run again on the primary"
    );
    describe_counter!(
        READ_YOUR_WRITES_HOLDS,
        Unit::Count,
        "Reads kept on the primary because the session wrote shortly before"
    );
    describe_counter!(
        CLASSIFICATIONS,
        Unit::Count,
        "SQL batches classified, by class"
    );
    describe_counter!(
        CLASSIFIER_CACHE,
        Unit::Count,
        "Classifier cache lookups, by result (hit, miss)"
    );
    describe_counter!(
        PINS,
        Unit::Count,
        "Session state started that pins a session to the primary, by pin reason"
    );
    describe_gauge!(
        PINNED_SESSIONS,
        Unit::Count,
        "Client sessions pinned to the primary now"
    );
    describe_counter!(
        TRANSACTIONS,
        Unit::Count,
        "Transactions begun by clients (seen in the SQL or from the server)"
    );
    describe_gauge!(
        CLIENTS,
        Unit::Count,
        "Logged-in clients by state: idle, active (a request in flight); waiting counts requests waiting for a pooled connection"
    );
    describe_counter!(LOGINS, Unit::Count, "Client logins, by result");
    describe_counter!(
        PROCEDURE_CALLS,
        Unit::Count,
        "Requests calling procedures not in routing.read_only_procedures, with routing.detect_read_only_procedures on, by verdict: detected_read_only, not_read_only"
    );
    describe_counter!(
        CONFIG_RELOADS,
        Unit::Count,
        "Configuration reloads (SIGHUP, POST /reload), by result: ok, error (the file was refused)"
    );
    describe_gauge!(
        POOL_CONNECTIONS,
        Unit::Count,
        "Backend connections by backend and state: open (or being opened), idle"
    );
    describe_histogram!(
        POOL_CHECKOUT_WAIT,
        Unit::Seconds,
        "Time to get a pooled backend connection (waiting, and opening one), by backend"
    );
    describe_counter!(
        POOL_CHECKOUT_TIMEOUTS,
        Unit::Count,
        "Checkouts that waited pool.checkout_timeout_ms for a connection and failed, by backend"
    );
    describe_gauge!(
        BACKEND_STATE,
        Unit::Count,
        "1 for the backend's current health state (up, lagging, down), 0 for the others"
    );
    describe_counter!(
        BACKEND_STATE_CHANGES,
        Unit::Count,
        "Health state changes, by backend and the state entered"
    );
    describe_gauge!(
        REPLICA_LAG,
        Unit::Seconds,
        "Replica lag last measured (absent or NaN when unknown), by backend"
    );
    describe_histogram!(
        HEALTH_CHECK_DURATION,
        Unit::Seconds,
        "Duration of a health check (connect if needed, SELECT 1, lag), by backend"
    );
    describe_counter!(ERRORS, Unit::Count, "Errors on the data path, by kind");
    describe_counter!(
        CLIENT_BYTES_RECEIVED,
        Unit::Bytes,
        "TDS bytes received from clients after login"
    );
    describe_counter!(
        CLIENT_BYTES_SENT,
        Unit::Bytes,
        "TDS bytes sent to clients after login"
    );
    describe_counter!(
        SHADOW_WOULD_ROUTE,
        Unit::Count,
        "Shadow mode: requests sent to the primary that split mode would have sent to a replica, by routing reason"
    );
    describe_counter!(
        SHADOW_RUNS,
        Unit::Count,
        "Shadow mode: sampled reads run on a replica too, by replica and result (match, mismatch, error)"
    );
    describe_counter!(
        SHADOW_DROPPED,
        Unit::Count,
        "Shadow mode: sampled reads not run on a replica, by reason (queue_full, too_large)"
    );
    describe_cache();
}

fn describe_cache() {
    use metrics::{describe_counter, describe_gauge};
    describe_counter!(
        CACHE_LOOKUPS,
        Unit::Count,
        "Result cache lookups of opted-in reads, by result (hit, miss) and tier (memory, redis, none)"
    );
    describe_counter!(
        CACHE_BYPASSES,
        Unit::Count,
        "Opted-in requests the result cache did not serve or store, by reason"
    );
    describe_counter!(
        CACHE_STORES,
        Unit::Count,
        "Responses stored in the result cache, by tier"
    );
    describe_counter!(
        CACHE_EVICTIONS,
        Unit::Count,
        "Entries the memory tier evicted to stay within cache.memory_bytes"
    );
    describe_counter!(
        CACHE_INVALIDATIONS,
        Unit::Count,
        "Table generations bumped by writes, by scope (table, all) and origin (local, peer)"
    );
    describe_gauge!(
        CACHE_MEMORY_BYTES,
        Unit::Bytes,
        "Bytes the result cache's memory tier holds"
    );
    describe_gauge!(
        CACHE_MEMORY_ENTRIES,
        Unit::Count,
        "Entries in the result cache's memory tier"
    );
    describe_gauge!(
        CACHE_REDIS_UP,
        Unit::Count,
        "1 while the result cache's Redis answers, 0 while the cache is bypassed for it"
    );
}

/// Increments a gauge while it lives; decrements it when dropped, however
/// the holder ends. The only way Sluice moves a gauge that counts things
/// held at once (clients, pinned sessions, waiters).
#[derive(Debug)]
pub struct GaugeGuard(Gauge);

impl GaugeGuard {
    pub fn new(gauge: Gauge) -> GaugeGuard {
        gauge.increment(1.0);
        GaugeGuard(gauge)
    }
}

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}

/// What a client's session is doing, for [`CLIENTS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientState {
    /// Logged in, no request in flight.
    Idle,
    /// A request in flight.
    Active,
    /// A request waiting for a pooled backend connection.
    Waiting,
}

impl ClientState {
    pub fn label(self) -> &'static str {
        match self {
            ClientState::Idle => "idle",
            ClientState::Active => "active",
            ClientState::Waiting => "waiting",
        }
    }

    /// The gauge of this state. Literal labels: the key is static.
    pub fn gauge(self) -> Gauge {
        match self {
            ClientState::Idle => metrics::gauge!(CLIENTS, "state" => "idle"),
            ClientState::Active => metrics::gauge!(CLIENTS, "state" => "active"),
            ClientState::Waiting => metrics::gauge!(CLIENTS, "state" => "waiting"),
        }
    }

    /// A guard counting one client in this state.
    pub fn enter(self) -> GaugeGuard {
        GaugeGuard::new(self.gauge())
    }
}

/// A session's handles on [`CLIENTS`], registered once per client, so the
/// request loop moves them without a lookup.
pub struct ClientGauges {
    idle: Gauge,
    active: Gauge,
}

impl ClientGauges {
    pub fn new() -> ClientGauges {
        ClientGauges {
            idle: ClientState::Idle.gauge(),
            active: ClientState::Active.gauge(),
        }
    }

    pub fn idle(&self) -> GaugeGuard {
        GaugeGuard::new(self.idle.clone())
    }

    pub fn active(&self) -> GaugeGuard {
        GaugeGuard::new(self.active.clone())
    }
}

impl Default for ClientGauges {
    fn default() -> Self {
        ClientGauges::new()
    }
}

/// How a client's login ended, for [`LOGINS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginResult {
    Ok,
    /// Unknown user or wrong password.
    BadPassword,
    /// The address is locked out after failed logins.
    LockedOut,
    /// Password verification is saturated (error 17810-style busy).
    Busy,
    /// Over `listen.max_clients`.
    MaxClients,
    /// Integrated (SSPI) or empty login: Sluice takes SQL logins only.
    Unsupported,
    /// The backend refused or could not be reached for the login values.
    BackendUnavailable,
    /// PRELOGIN, TLS or LOGIN7 failed.
    Handshake,
    /// Past `listen.login_timeout_ms`.
    Timeout,
    /// The client went away while its login reply was written.
    ClientGone,
}

impl LoginResult {
    pub fn label(self) -> &'static str {
        match self {
            LoginResult::Ok => "ok",
            LoginResult::BadPassword => "bad_password",
            LoginResult::LockedOut => "locked_out",
            LoginResult::Busy => "busy",
            LoginResult::MaxClients => "max_clients",
            LoginResult::Unsupported => "unsupported",
            LoginResult::BackendUnavailable => "backend_unavailable",
            LoginResult::Handshake => "handshake_failed",
            LoginResult::Timeout => "timeout",
            LoginResult::ClientGone => "client_gone",
        }
    }

    pub fn record(self) {
        metrics::counter!(LOGINS, "result" => self.label()).increment(1);
    }
}

/// An error on the data path, for [`ERRORS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// No connection could be had (backend down, connect failed).
    BackendUnavailable,
    /// The pool stayed full for `pool.checkout_timeout_ms`.
    PoolExhausted,
    /// A backend connection failed before its response reached the client.
    BackendFailed,
    /// A backend failed after part of its response reached the client.
    BackendLostMidResponse,
    /// The connection holding a transaction or pinned state was lost.
    StateLost,
    /// The client broke the protocol.
    Protocol,
    /// The client went away or stopped reading.
    ClientGone,
    /// A request was still running when the drain's time ran out.
    ShuttingDown,
}

impl ErrorKind {
    pub fn label(self) -> &'static str {
        match self {
            ErrorKind::BackendUnavailable => "backend_unavailable",
            ErrorKind::PoolExhausted => "pool_exhausted",
            ErrorKind::BackendFailed => "backend_failed",
            ErrorKind::BackendLostMidResponse => "backend_lost_mid_response",
            ErrorKind::StateLost => "state_lost",
            ErrorKind::Protocol => "protocol",
            ErrorKind::ClientGone => "client_gone",
            ErrorKind::ShuttingDown => "shutting_down",
        }
    }

    pub fn record(self) {
        metrics::counter!(ERRORS, "kind" => self.label()).increment(1);
    }
}

/// Every routing reason label (`Reason::label`), so a backend's request
/// counters can be registered once per reason and found without a lookup.
const REASONS: [&str; 20] = [
    "primary_only",
    "open_transaction",
    "implicit_transactions",
    "strict_isolation",
    "pinned",
    "hint",
    "rule",
    "not_a_read",
    "read_needs_primary",
    "write",
    "transaction_control",
    "session_state",
    "unknown",
    "not_classified",
    "no_replica_available",
    "read_your_writes",
    "read",
    "prepared_on_replica",
    "handle_not_followable",
    "executesql_in_transaction",
];

/// Counters with a `reason` label from [`REASONS`], each registered on
/// first use, so that the hot path finds its counter without a lookup.
struct ReasonCounters {
    by_reason: [OnceLock<Counter>; REASONS.len()],
}

impl ReasonCounters {
    fn new() -> ReasonCounters {
        ReasonCounters {
            by_reason: std::array::from_fn(|_| OnceLock::new()),
        }
    }

    /// Increments the counter of `reason`, made by `register` the first
    /// time.
    fn increment(&self, reason: &'static str, register: impl Fn(&'static str) -> Counter) {
        match REASONS.iter().position(|r| *r == reason) {
            Some(i) => self.by_reason[i]
                .get_or_init(|| register(reason))
                .increment(1),
            // A label not in the table: correct, only slower.
            None => register(reason).increment(1),
        }
    }
}

/// Why a sampled shadow read was not run, for [`SHADOW_DROPPED`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShadowDrop {
    /// The queue of shadow reads was full.
    QueueFull,
    /// The request is larger than a shadow copy may be.
    TooLarge,
}

impl ShadowDrop {
    pub fn label(self) -> &'static str {
        match self {
            ShadowDrop::QueueFull => "queue_full",
            ShadowDrop::TooLarge => "too_large",
        }
    }
}

/// How a shadow read ended, for [`SHADOW_RUNS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShadowResult {
    Match,
    Mismatch,
    /// No comparison: the replica (or the primary's response) failed.
    Error,
}

impl ShadowResult {
    pub fn label(self) -> &'static str {
        match self {
            ShadowResult::Match => "match",
            ShadowResult::Mismatch => "mismatch",
            ShadowResult::Error => "error",
        }
    }

    /// Counts one run on `backend` (off the client's path: a lookup is fine).
    pub fn record(self, backend: &Arc<str>) {
        metrics::counter!(SHADOW_RUNS, "backend" => backend.clone(), "result" => self.label())
            .increment(1);
    }
}

/// The per-request shadow counters ([`SHADOW_WOULD_ROUTE`],
/// [`SHADOW_DROPPED`]), registered once.
pub struct ShadowMetrics {
    would_route: ReasonCounters,
    queue_full: Counter,
    too_large: Counter,
}

impl ShadowMetrics {
    pub fn new() -> ShadowMetrics {
        let dropped = |why: ShadowDrop| metrics::counter!(SHADOW_DROPPED, "reason" => why.label());
        ShadowMetrics {
            would_route: ReasonCounters::new(),
            queue_full: dropped(ShadowDrop::QueueFull),
            too_large: dropped(ShadowDrop::TooLarge),
        }
    }

    /// A request split mode would have sent to a replica, for `reason`.
    pub fn would_route(&self, reason: &'static str) {
        self.would_route.increment(
            reason,
            |reason| metrics::counter!(SHADOW_WOULD_ROUTE, "reason" => reason),
        );
    }

    pub fn dropped(&self, why: ShadowDrop) {
        match why {
            ShadowDrop::QueueFull => self.queue_full.increment(1),
            ShadowDrop::TooLarge => self.too_large.increment(1),
        }
    }
}

impl Default for ShadowMetrics {
    fn default() -> Self {
        ShadowMetrics::new()
    }
}

/// [`REQUESTS`] of one backend, one counter per routing reason,
/// registered on first use, and its [`REQUEST_DURATION`].
pub struct RequestMetrics {
    backend: Arc<str>,
    target: &'static str,
    by_reason: ReasonCounters,
    duration: Histogram,
}

impl RequestMetrics {
    /// `target`: "primary" or "replica".
    pub fn new(backend: Arc<str>, target: &'static str) -> RequestMetrics {
        RequestMetrics {
            duration: metrics::histogram!(
                REQUEST_DURATION,
                "target" => target,
                "backend" => backend.clone()
            ),
            backend,
            target,
            by_reason: ReasonCounters::new(),
        }
    }

    /// A request that took `seconds`, from routing to its response's end.
    pub fn record_duration(&self, seconds: f64) {
        self.duration.record(seconds);
    }

    pub fn record(&self, reason: &'static str) {
        self.by_reason
            .increment(reason, |reason| self.register(reason));
    }

    fn register(&self, reason: &'static str) -> Counter {
        metrics::counter!(
            REQUESTS,
            "target" => self.target,
            "backend" => self.backend.clone(),
            "reason" => reason
        )
    }
}

/// Counts a configuration reload in [`CONFIG_RELOADS`].
pub fn record_reload(ok: bool) {
    let result = if ok { "ok" } else { "error" };
    metrics::counter!(CONFIG_RELOADS, "result" => result).increment(1);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::Class;

    #[test]
    fn every_classified_reason_label_has_a_counter_slot() {
        for class in [
            Class::Read,
            Class::Write,
            Class::TransactionControl,
            Class::SessionState,
            Class::Unknown,
        ] {
            let classification = crate::classify::Classifier::new(0, &[]).classify(match class {
                Class::Read => "SELECT 1",
                Class::Write => "DELETE FROM t",
                Class::TransactionControl => "BEGIN TRAN",
                Class::SessionState => "SET NOCOUNT ON",
                Class::Unknown => "WAITFOR DELAY '0:0:1'",
            });
            let label = crate::router::Reason::Classified(classification).label();
            assert!(REASONS.contains(&label), "{label} missing from REASONS");
        }
    }

    #[test]
    fn every_routing_reason_label_has_a_counter_slot() {
        use crate::router::{PinReason, Reason, ReplicaGrounds};
        let read = crate::classify::Classifier::new(0, &[]).classify("SELECT 1");
        let grounds = || {
            [
                ReplicaGrounds::Hint,
                ReplicaGrounds::Rule(Arc::from("r")),
                ReplicaGrounds::Read(read.clone()),
            ]
        };
        let mut reasons = vec![
            Reason::PrimaryOnly("bulk load"),
            Reason::OpenTransaction,
            Reason::ImplicitTransactions,
            Reason::StrictIsolation,
            Reason::Pinned(PinReason::TempTable),
            Reason::HintPrimary,
            Reason::RulePrimary(Arc::from("r")),
            Reason::NotClassified,
            Reason::ReadYourWrites {
                since_write: std::time::Duration::ZERO,
                replica_lag: None,
            },
            Reason::PreparedOnReplica,
            Reason::HandleNotFollowable,
            Reason::ExecutesqlInTransaction,
        ];
        reasons.extend(grounds().map(Reason::NotARead));
        reasons.extend(grounds().map(Reason::NoReplicaAvailable));
        reasons.extend(grounds().map(Reason::Replica));
        for reason in reasons {
            let label = reason.label();
            assert!(REASONS.contains(&label), "{label} missing from REASONS");
        }
    }

    #[test]
    fn a_gauge_guard_gives_back_what_it_took() {
        let recorder = crate::testing::TestRecorder::default();
        let idle = "sluice_clients{state=idle}";
        metrics::with_local_recorder(&recorder, || {
            let first = ClientState::Idle.enter();
            let second = ClientState::Idle.enter();
            assert_eq!(recorder.value(idle, true), 2.0);
            drop(first);
            assert_eq!(recorder.value(idle, true), 1.0);
            drop(second);
            assert_eq!(recorder.value(idle, true), 0.0);
        });
    }

    #[test]
    fn request_counters_are_per_backend_target_and_reason() {
        let recorder = crate::testing::TestRecorder::default();
        metrics::with_local_recorder(&recorder, || {
            let counters = RequestMetrics::new(Arc::from("replica-1"), "replica");
            counters.record("read");
            counters.record("read");
            counters.record("hint");
            counters.record("a_label_not_in_the_table");
        });
        let key = |reason| {
            format!("sluice_requests_total{{backend=replica-1,reason={reason},target=replica}}")
        };
        assert_eq!(recorder.value(&key("read"), false), 2.0);
        assert_eq!(recorder.value(&key("hint"), false), 1.0);
        assert_eq!(recorder.value(&key("a_label_not_in_the_table"), false), 1.0);
    }
}
