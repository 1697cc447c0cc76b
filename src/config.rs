//! `proxy.toml`: the schema, its defaults and validation. Unknown keys and bad
//! values stop start-up with a message naming the key and the fix.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

mod cache;
pub use cache::{redacted as redacted_redis_url, Cache, CacheRuleConfig};

/// A configuration problem, phrased for the operator: which key, what is
/// wrong with it, and how to fix it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{key} = {value}: {problem}; fix: {fix}")]
    Invalid {
        key: String,
        value: String,
        problem: String,
        fix: String,
    },
}

fn invalid(key: &str, value: impl std::fmt::Display, problem: &str, fix: &str) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_string(),
        value: value.to_string(),
        problem: problem.to_string(),
        fix: fix.to_string(),
    }
}

/// Longest duration any `*_ms` key accepts: one day. Far beyond any useful
/// timeout or interval, and far from where `Instant + Duration` overflows.
pub const MAX_DURATION_MS: u64 = 24 * 60 * 60 * 1000;
/// Most connections per pool: SQL Server's own limit on user connections.
pub const MAX_POOL_SIZE: u32 = 32_767;
/// Largest replica weight; weights are relative, so this is fine enough.
pub const MAX_WEIGHT: u32 = 10_000;
/// Most consecutive failed checks before a backend is down.
pub const MAX_FAILURES_BEFORE_DOWN: u32 = 1_000;
/// Most classifier cache entries (each holds at most 16 KiB of text).
pub const MAX_CLASSIFIER_CACHE_ENTRIES: usize = 1 << 20;
/// Largest LOGIN7 the spec allows [MS-TDS 2.2.6.4]; also bounds PRELOGIN.
pub const MAX_LOGIN_BYTES: usize = 128 * 1024;
/// Largest request head held in memory per session.
pub const MAX_REQUEST_BUFFER_BYTES: usize = 256 * 1024 * 1024;
/// Most statements kept prepared on one backend connection.
pub const MAX_PREPARED_PER_CONNECTION: usize = 65_536;
/// Most connected clients: each holds a socket and a task, so beyond this
/// the operating system's descriptor limit is the real bound anyway.
pub const MAX_CLIENTS: usize = 1_000_000;
/// Most handshakes in flight, and most password checks queued.
pub const MAX_LOGIN_QUEUE: usize = 65_536;
/// Most runtime worker threads (`listen.workers`): more than cores only
/// adds switching.
pub const MAX_WORKERS: u16 = 1_024;
/// Most failed logins an address may have before it is locked out.
pub const MAX_FAILED_LOGINS: u32 = 1_000_000;
/// Most shadow reads waiting for a replica (`routing.shadow_queue`).
pub const MAX_SHADOW_QUEUE: usize = 65_536;

/// A numeric key outside its allowed range: the error names the key, the
/// value, the range and the fix.
fn check_range<T>(
    key: &str,
    value: T,
    range: std::ops::RangeInclusive<T>,
    fix: &str,
) -> Result<(), ConfigError>
where
    T: PartialOrd + std::fmt::Display,
{
    if range.contains(&value) {
        return Ok(());
    }
    Err(invalid(
        key,
        &value,
        &format!(
            "outside the allowed range {}..={}",
            range.start(),
            range.end()
        ),
        fix,
    ))
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub listen: Listen,
    #[serde(default)]
    pub users: Vec<User>,
    pub primary: Backend,
    #[serde(default)]
    pub replicas: Vec<Backend>,
    #[serde(default)]
    pub pool: Pool,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub routing: Routing,
    #[serde(default)]
    pub health: Health,
    /// The admin HTTP API; absent: none.
    pub admin: Option<Admin>,
    #[serde(default)]
    pub log: Log,
    /// The result cache; absent: nothing is cached.
    pub cache: Option<Cache>,
    /// Where this configuration came from (not a key of the file).
    #[serde(skip)]
    pub origin: ConfigOrigin,
}

/// The file a configuration was read from, a hash of its bytes and when it
/// was loaded, for `/status`: which configuration is running.
#[derive(Debug, Clone)]
pub struct ConfigOrigin {
    pub path: PathBuf,
    /// BLAKE2s-256 of the file's bytes, in hex.
    pub hash: String,
    pub loaded_at: std::time::SystemTime,
}

impl Default for ConfigOrigin {
    fn default() -> Self {
        ConfigOrigin::of(Path::new(""), b"")
    }
}

impl ConfigOrigin {
    fn of(path: &Path, bytes: &[u8]) -> ConfigOrigin {
        use blake2::{Blake2s256, Digest};
        let digest = Blake2s256::digest(bytes);
        ConfigOrigin {
            path: path.to_path_buf(),
            hash: digest.iter().map(|b| format!("{b:02x}")).collect(),
            loaded_at: std::time::SystemTime::now(),
        }
    }
}

/// `[admin]`: the HTTP API for metrics, status and health probes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Admin {
    #[serde(default = "default_admin_address")]
    pub address: String,
    /// Environment variable holding the bearer token every endpoint but
    /// `/healthz` and `/readyz` requires; absent: no token.
    pub token_env: Option<String>,
}

fn default_admin_address() -> String {
    "127.0.0.1:9930".into()
}

impl Admin {
    fn validate(&self) -> Result<(), ConfigError> {
        parse_socket_addr("admin.address", &self.address)?;
        if self.token_env.is_some() {
            self.token().map(drop)?;
        }
        Ok(())
    }

    /// The bearer token, read from `token_env` (`None` without one).
    pub fn token(&self) -> Result<Option<String>, ConfigError> {
        let Some(var) = &self.token_env else {
            return Ok(None);
        };
        match std::env::var(var) {
            Ok(token) if !token.is_empty() => Ok(Some(token)),
            _ => Err(invalid(
                "admin.token_env",
                var,
                &format!("environment variable {var} is not set or empty"),
                "export the token in that variable before starting sluice, or remove token_env",
            )),
        }
    }
}

/// `[log]`: how Sluice writes its log (to standard output).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Log {
    #[serde(default)]
    pub format: LogFormat,
    /// A level (`info`), or a level and per-module levels
    /// (`info,sluice::frontend::session=debug`). `RUST_LOG`, when set,
    /// takes its place.
    #[serde(default = "default_log_level")]
    pub level: String,
}

impl Default for Log {
    fn default() -> Self {
        Log {
            format: LogFormat::default(),
            level: default_log_level(),
        }
    }
}

fn default_log_level() -> String {
    "info".into()
}

/// One line per event: for people, or one JSON object per line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

const LOG_LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];

impl Log {
    /// `level` as a `tracing` filter: each directive trimmed, levels in
    /// lower case.
    pub fn filter_directives(&self) -> String {
        let directive = |d: &str| match d.trim().split_once('=') {
            None => d.trim().to_ascii_lowercase(),
            Some((target, level)) => {
                format!("{}={}", target.trim(), level.trim().to_ascii_lowercase())
            }
        };
        self.level
            .split(',')
            .map(directive)
            .collect::<Vec<_>>()
            .join(",")
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let is_level = |s: &str| LOG_LEVELS.iter().any(|l| l.eq_ignore_ascii_case(s));
        let is_target = |s: &str| {
            !s.is_empty()
                && s.split("::").all(|part| {
                    !part.is_empty() && part.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                })
        };
        let valid = |directive: &str| match directive.trim().split_once('=') {
            None => is_level(directive.trim()),
            Some((target, level)) => is_target(target.trim()) && is_level(level.trim()),
        };
        if !self.level.is_empty() && self.level.split(',').all(valid) {
            return Ok(());
        }
        Err(invalid(
            "log.level",
            format!("{:?}", self.level),
            "not a log level",
            "use one of off, error, warn, info, debug, trace, optionally followed by \
             per-module levels: \"info,sluice::frontend::session=debug\"",
        ))
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Routing {
    /// Split reads off to replicas, or only shadow them there.
    #[serde(default)]
    pub mode: RoutingMode,
    /// Shadow mode: the share (0–1) of would-be replica reads also run on
    /// the replica and compared with the primary's answer.
    #[serde(default = "default_shadow_sample")]
    pub shadow_sample: f64,
    /// Shadow mode: sampled reads waiting for a replica; past it they are
    /// dropped (and counted).
    #[serde(default = "default_shadow_queue")]
    pub shadow_queue: usize,
    /// After a client's write, its reads stay on the primary this long.
    #[serde(default = "default_read_your_writes_ms")]
    pub read_your_writes_ms: u64,
    /// Procedures whose EXEC (or RPC call) is a read and may run on a replica.
    #[serde(default)]
    pub read_only_procedures: Vec<String>,
    /// Procedures never treated as read-only, whatever their definition
    /// says (they win over detection).
    #[serde(default)]
    pub write_procedures: Vec<String>,
    /// Read each database's procedure definitions from the primary's
    /// catalog and route calls of provably read-only ones to replicas.
    #[serde(default)]
    pub detect_read_only_procedures: bool,
    /// How often the procedure catalog is read again.
    #[serde(default = "default_procedure_refresh_ms")]
    pub procedure_refresh_ms: u64,
    /// Distinct statement texts whose classification is cached.
    #[serde(default = "default_classifier_cache_entries")]
    pub classifier_cache_entries: usize,
    #[serde(default)]
    pub rules: Vec<RuleConfig>,
}

impl Default for Routing {
    fn default() -> Self {
        Routing {
            mode: RoutingMode::default(),
            shadow_sample: default_shadow_sample(),
            shadow_queue: default_shadow_queue(),
            read_your_writes_ms: default_read_your_writes_ms(),
            read_only_procedures: Vec::new(),
            write_procedures: Vec::new(),
            detect_read_only_procedures: false,
            procedure_refresh_ms: default_procedure_refresh_ms(),
            classifier_cache_entries: default_classifier_cache_entries(),
            rules: Vec::new(),
        }
    }
}

/// `routing.mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RoutingMode {
    /// Reads the router finds fit for a replica go there.
    #[default]
    Split,
    /// Every request goes to the primary; reads the router would send to a
    /// replica are counted, and a sample of them also runs there in the
    /// background and is compared with the primary's answer.
    Shadow,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleTarget {
    Primary,
    Replica,
}

/// One `[[routing.rules]]` entry: every condition given must match.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    pub name: Option<String>,
    pub match_sql: Option<String>,
    pub procedure: Option<String>,
    pub user: Option<String>,
    pub application: Option<String>,
    pub database: Option<String>,
    pub target: RuleTarget,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listen {
    pub address: String,
    #[serde(default)]
    pub tls: ListenTls,
    /// Time a client has to finish PRELOGIN, TLS and LOGIN7.
    #[serde(default = "default_login_timeout_ms")]
    pub login_timeout_ms: u64,
    /// Name the proxy reports as the server in messages it writes itself.
    #[serde(default = "default_server_name")]
    pub server_name: String,
    /// Connected clients (accepted connection to session end); past it a
    /// client gets error 17809 and is disconnected.
    #[serde(default = "default_max_clients")]
    pub max_clients: usize,
    /// Handshakes (PRELOGIN to login reply) in flight at once; the others
    /// wait for a turn within `login_timeout_ms`.
    #[serde(default = "default_max_pending_logins")]
    pub max_pending_logins: usize,
    /// Password verifications waiting for a core; past it a login fails
    /// at once with "server busy".
    #[serde(default = "default_max_queued_verifications")]
    pub max_queued_verifications: usize,
    /// Failed logins from one address within `failed_login_window_ms`
    /// before that address is locked out (0: never).
    #[serde(default = "default_max_failed_logins")]
    pub max_failed_logins: u32,
    #[serde(default = "default_failed_login_window_ms")]
    pub failed_login_window_ms: u64,
    /// How long a locked-out address is refused without a password check.
    #[serde(default = "default_failed_login_lockout_ms")]
    pub failed_login_lockout_ms: u64,
    /// A logged-in client that sends no request for this long is
    /// disconnected (0: never).
    #[serde(default)]
    pub idle_client_timeout_ms: u64,
    /// On SIGTERM/SIGINT, how long requests in flight and open transactions
    /// get to finish before their clients are disconnected.
    #[serde(default = "default_shutdown_timeout_ms")]
    pub shutdown_timeout_ms: u64,
    /// Worker threads of the runtime that serves sessions (0: one per
    /// core the process may use).
    #[serde(default)]
    pub workers: u16,
}

fn default_shutdown_timeout_ms() -> u64 {
    30_000
}

/// How long a client keeps a backend connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum PoolMode {
    /// For one request, or until its transaction or pin ends: many clients
    /// share few connections.
    #[default]
    Transaction,
    /// From its first request until it logs off.
    Session,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ListenTlsMode {
    #[default]
    Off,
    Optional,
    Required,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ListenTls {
    #[serde(default)]
    pub mode: ListenTlsMode,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    pub name: String,
    pub password_hash: String,
    /// A backend login of this user's own, instead of each backend's
    /// shared `user`; its password comes from `backend_password_env`.
    pub backend_user: Option<String>,
    pub backend_password_env: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum BackendTls {
    #[default]
    Off,
    Required,
    Strict,
}

/// How Transaction Manager requests (packet type 0x0E) reach a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum TransactionRequests {
    /// Forwarded as they are (SQL Server, Azure SQL).
    #[default]
    Forward,
    /// Run as the equivalent T-SQL, for TDS servers that do not implement them.
    Emulate,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Backend {
    /// Present for replicas; the primary is always called "primary".
    pub name: Option<String>,
    pub address: String,
    pub user: String,
    pub password: Option<String>,
    pub password_env: Option<String>,
    #[serde(default = "default_database")]
    pub database: String,
    #[serde(default)]
    pub tls: BackendTls,
    #[serde(default)]
    pub trust_server_certificate: bool,
    pub ca_file: Option<PathBuf>,
    #[serde(default = "default_application_name")]
    pub application_name: String,
    #[serde(default)]
    pub transaction_requests: TransactionRequests,
    /// Share of reads relative to other replicas (replicas only).
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// Replicas only: reads leave the replica when its lag exceeds this.
    #[serde(default = "default_max_lag_ms")]
    pub max_lag_ms: u64,
    /// Replicas only: where the lag is measured.
    #[serde(default)]
    pub lag_source: LagSourceKind,
    /// The operator's query for `lag_source = "query"`.
    pub lag_query: Option<String>,
    /// `read_only` sets the LOGIN7 read-only intent bit (Azure SQL read scale-out).
    #[serde(default)]
    pub application_intent: ApplicationIntent,
}

/// How a replica's lag is measured (CONFIG.md explains each and its permissions).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum LagSourceKind {
    /// Health checks only; the lag is unknown.
    #[default]
    None,
    AzureReadScaleOut,
    AlwaysOn,
    AzureGeo,
    Heartbeat,
    Query,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ApplicationIntent {
    #[default]
    ReadWrite,
    ReadOnly,
}

/// `[health]`: checks of every backend, and the hysteresis of their state.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Health {
    #[serde(default = "default_health_interval_ms")]
    pub interval_ms: u64,
    #[serde(default = "default_health_timeout_ms")]
    pub timeout_ms: u64,
    /// Consecutive failed checks before a backend is down.
    #[serde(default = "default_failures_before_down")]
    pub failures_before_down: u32,
    /// How long a backend must be healthy (and under max_lag - margin)
    /// before it takes reads again.
    #[serde(default = "default_recovery_ms")]
    pub recovery_ms: u64,
    #[serde(default = "default_lag_margin_ms")]
    pub lag_margin_ms: u64,
    /// Table the heartbeat lag source writes on the primary and reads on replicas.
    #[serde(default = "default_heartbeat_table")]
    pub heartbeat_table: String,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            interval_ms: default_health_interval_ms(),
            timeout_ms: default_health_timeout_ms(),
            failures_before_down: default_failures_before_down(),
            recovery_ms: default_recovery_ms(),
            lag_margin_ms: default_lag_margin_ms(),
            heartbeat_table: default_heartbeat_table(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pool {
    /// How long a client keeps a backend connection: one request, or its
    /// whole session.
    #[serde(default)]
    pub mode: PoolMode,
    /// Most connections per backend and database.
    #[serde(default = "default_pool_max_size")]
    pub max_size: u32,
    /// Idle connections kept open per backend and database once it is used.
    #[serde(default)]
    pub min_idle: u32,
    /// The wait for a connection when all `max_size` are in use; past it the
    /// client gets the retryable error 10928.
    #[serde(default = "default_checkout_timeout_ms")]
    pub checkout_timeout_ms: u64,
    /// Connections older than this are closed when they come back idle (0: never).
    #[serde(default = "default_max_lifetime_ms")]
    pub max_lifetime_ms: u64,
    /// Statements kept prepared on one backend connection; the least
    /// recently used is unprepared past it.
    #[serde(default = "default_prepared_per_connection")]
    pub prepared_statements_per_connection: usize,
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    #[serde(default = "default_idle_timeout_ms")]
    pub idle_timeout_ms: u64,
    /// Packet size Sluice asks the backend for in its own LOGIN7.
    #[serde(default = "default_backend_packet_size")]
    pub packet_size: u32,
}

impl Default for Pool {
    fn default() -> Self {
        Pool {
            mode: PoolMode::default(),
            max_size: default_pool_max_size(),
            min_idle: 0,
            checkout_timeout_ms: default_checkout_timeout_ms(),
            max_lifetime_ms: default_max_lifetime_ms(),
            prepared_statements_per_connection: default_prepared_per_connection(),
            connect_timeout_ms: default_connect_timeout_ms(),
            idle_timeout_ms: default_idle_timeout_ms(),
            packet_size: default_backend_packet_size(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Largest PRELOGIN or LOGIN7 message accepted from a client.
    #[serde(default = "default_max_login_bytes")]
    pub max_login_bytes: usize,
    /// Request bytes held in memory before the request is forwarded; the
    /// rest of a larger request streams through.
    #[serde(default = "default_request_buffer_bytes")]
    pub request_buffer_bytes: usize,
    /// Time allowed to cancel and drain a backend connection whose client left mid-result.
    #[serde(default = "default_drain_timeout_ms")]
    pub drain_timeout_ms: u64,
    /// A client that reads nothing of a response for this long is
    /// disconnected, so it cannot hold a backend connection forever.
    #[serde(default = "default_client_write_timeout_ms")]
    pub client_write_timeout_ms: u64,
    /// TCP keepalive idle time on client and backend sockets (0: off), so a
    /// peer that vanished without a FIN or RST is noticed.
    #[serde(default = "default_tcp_keepalive_ms")]
    pub tcp_keepalive_ms: u64,
}

impl Limits {
    pub fn drain_timeout(&self) -> Duration {
        Duration::from_millis(self.drain_timeout_ms)
    }

    pub fn client_write_timeout(&self) -> Duration {
        Duration::from_millis(self.client_write_timeout_ms)
    }

    pub fn tcp_keepalive(&self) -> Option<Duration> {
        (self.tcp_keepalive_ms > 0).then(|| Duration::from_millis(self.tcp_keepalive_ms))
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_login_bytes: default_max_login_bytes(),
            request_buffer_bytes: default_request_buffer_bytes(),
            drain_timeout_ms: default_drain_timeout_ms(),
            client_write_timeout_ms: default_client_write_timeout_ms(),
            tcp_keepalive_ms: default_tcp_keepalive_ms(),
        }
    }
}

fn default_max_lag_ms() -> u64 {
    1_000
}
fn default_health_interval_ms() -> u64 {
    500
}
fn default_health_timeout_ms() -> u64 {
    1_000
}
fn default_failures_before_down() -> u32 {
    2
}
fn default_recovery_ms() -> u64 {
    2_000
}
fn default_lag_margin_ms() -> u64 {
    200
}
fn default_heartbeat_table() -> String {
    "dbo.sluice_heartbeat".to_string()
}
fn default_read_your_writes_ms() -> u64 {
    1_000
}
fn default_shadow_sample() -> f64 {
    1.0
}
fn default_shadow_queue() -> usize {
    1024
}
fn default_classifier_cache_entries() -> usize {
    4096
}
fn default_weight() -> u32 {
    1
}
fn default_login_timeout_ms() -> u64 {
    10_000
}
fn default_server_name() -> String {
    "sluice".to_string()
}
fn default_max_clients() -> usize {
    10_000
}
fn default_max_pending_logins() -> usize {
    1024
}
fn default_max_queued_verifications() -> usize {
    64
}
fn default_max_failed_logins() -> u32 {
    10
}
fn default_failed_login_window_ms() -> u64 {
    60_000
}
fn default_failed_login_lockout_ms() -> u64 {
    60_000
}
fn default_database() -> String {
    "master".to_string()
}
fn default_application_name() -> String {
    "sluice".to_string()
}
fn default_pool_max_size() -> u32 {
    32
}
fn default_connect_timeout_ms() -> u64 {
    5_000
}
fn default_idle_timeout_ms() -> u64 {
    600_000
}
fn default_checkout_timeout_ms() -> u64 {
    5_000
}
fn default_max_lifetime_ms() -> u64 {
    3_600_000
}
fn default_prepared_per_connection() -> usize {
    256
}
fn default_backend_packet_size() -> u32 {
    4096
}
fn default_max_login_bytes() -> usize {
    // LOGIN7 may be at most 128 KiB [MS-TDS 2.2.6.4].
    128 * 1024
}
fn default_request_buffer_bytes() -> usize {
    1024 * 1024
}
fn default_drain_timeout_ms() -> u64 {
    5_000
}
fn default_procedure_refresh_ms() -> u64 {
    60_000
}
fn default_client_write_timeout_ms() -> u64 {
    30_000
}
fn default_tcp_keepalive_ms() -> u64 {
    30_000
}

impl Config {
    /// Reads, parses and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        config.validate()?;
        Ok(Config {
            origin: ConfigOrigin::of(path, text.as_bytes()),
            ..config
        })
    }

    /// Checks what serde cannot: addresses, files, secrets, ranges.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.listen.validate()?;
        for (i, user) in self.users.iter().enumerate() {
            user.validate(i)?;
        }
        if self.users.is_empty() {
            return Err(invalid(
                "users",
                "[]",
                "no client could log in",
                "add a [[users]] table with name and password_hash (see `sluice hash-password`)",
            ));
        }
        self.primary.validate("primary")?;
        let mut names = std::collections::HashSet::new();
        for (i, replica) in self.replicas.iter().enumerate() {
            let key = format!("replicas[{i}]");
            replica.validate(&key)?;
            replica.validate_lag(&key)?;
            let name = replica.name.clone().unwrap_or_default();
            if name.is_empty() {
                return Err(invalid(
                    &format!("{key}.name"),
                    "\"\"",
                    "every replica needs a name",
                    "set name = \"replica-1\"",
                ));
            }
            if !names.insert(name.clone()) || name == "primary" {
                return Err(invalid(
                    &format!("{key}.name"),
                    format!("{name:?}"),
                    "replica names must be unique and not \"primary\"",
                    "give each replica its own name",
                ));
            }
        }
        self.pool.validate()?;
        self.limits.validate()?;
        self.routing.validate()?;
        self.health.validate()?;
        if let Some(admin) = &self.admin {
            admin.validate()?;
        }
        self.log.validate()?;
        if let Some(cache) = &self.cache {
            cache.validate()?;
        }
        for (i, replica) in self.replicas.iter().enumerate() {
            replica.validate_lag_limits(&format!("replicas[{i}]"), &self.health)?;
        }
        Ok(())
    }

    pub fn backend_count(&self) -> usize {
        1 + self.replicas.len()
    }
}

/// The cores the process may use (`available_parallelism`, which counts a
/// container's CPU quota); 1 when it cannot tell.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// `configured` worker threads, or when 0 one per core ([`cores`]).
pub fn worker_threads(configured: u16) -> usize {
    match configured {
        0 => cores(),
        n => usize::from(n),
    }
}

impl Listen {
    fn validate(&self) -> Result<(), ConfigError> {
        parse_socket_addr("listen.address", &self.address)?;
        check_range(
            "listen.login_timeout_ms",
            self.login_timeout_ms,
            1..=MAX_DURATION_MS,
            "use e.g. 10000",
        )?;
        self.validate_admission()?;
        if self.tls.mode != ListenTlsMode::Off {
            for (key, path) in [("cert", &self.tls.cert), ("key", &self.tls.key)] {
                check_readable(&format!("listen.tls.{key}"), path.as_deref())?;
            }
        }
        Ok(())
    }

    fn validate_admission(&self) -> Result<(), ConfigError> {
        check_range(
            "listen.max_clients",
            self.max_clients,
            1..=MAX_CLIENTS,
            "use e.g. 10000",
        )?;
        check_range(
            "listen.max_pending_logins",
            self.max_pending_logins,
            1..=MAX_LOGIN_QUEUE,
            "use e.g. 1024",
        )?;
        check_range(
            "listen.max_queued_verifications",
            self.max_queued_verifications,
            0..=MAX_LOGIN_QUEUE,
            "use e.g. 64",
        )?;
        check_range(
            "listen.max_failed_logins",
            self.max_failed_logins,
            0..=MAX_FAILED_LOGINS,
            "use e.g. 10, or 0 to turn the lockout off",
        )?;
        check_range(
            "listen.failed_login_window_ms",
            self.failed_login_window_ms,
            1..=MAX_DURATION_MS,
            "use e.g. 60000",
        )?;
        check_range(
            "listen.failed_login_lockout_ms",
            self.failed_login_lockout_ms,
            1..=MAX_DURATION_MS,
            "use e.g. 60000",
        )?;
        check_range(
            "listen.idle_client_timeout_ms",
            self.idle_client_timeout_ms,
            0..=MAX_DURATION_MS,
            "use e.g. 3600000 (an hour), or 0 to turn it off",
        )?;
        check_range(
            "listen.shutdown_timeout_ms",
            self.shutdown_timeout_ms,
            0..=MAX_DURATION_MS,
            "use e.g. 30000",
        )?;
        check_range(
            "listen.workers",
            self.workers,
            0..=MAX_WORKERS,
            "use 0 (one per core)",
        )
    }

    /// The runtime's worker threads: see [`worker_threads`].
    pub fn worker_threads(&self) -> usize {
        worker_threads(self.workers)
    }

    pub fn shutdown_timeout(&self) -> Duration {
        Duration::from_millis(self.shutdown_timeout_ms)
    }

    pub fn login_timeout(&self) -> Duration {
        Duration::from_millis(self.login_timeout_ms)
    }

    pub fn idle_client_timeout(&self) -> Option<Duration> {
        (self.idle_client_timeout_ms > 0)
            .then(|| Duration::from_millis(self.idle_client_timeout_ms))
    }
}

impl User {
    fn validate(&self, i: usize) -> Result<(), ConfigError> {
        if self.name.is_empty() {
            return Err(invalid(
                &format!("users[{i}].name"),
                "\"\"",
                "empty user name",
                "set a name",
            ));
        }
        if let Err(e) = argon2::PasswordHash::new(&self.password_hash) {
            return Err(invalid(
                &format!("users[{i}].password_hash"),
                "<hidden>",
                &format!("not a PHC password hash ({e})"),
                "generate one with `sluice hash-password`",
            ));
        }
        match (&self.backend_user, &self.backend_password_env) {
            (Some(_), Some(var)) => std::env::var(var).map(drop).map_err(|_| {
                invalid(
                    &format!("users[{i}].backend_password_env"),
                    var,
                    &format!("environment variable {var} is not set"),
                    "export the variable before starting sluice",
                )
            }),
            (None, None) => Ok(()),
            (Some(_), None) => Err(invalid(
                &format!("users[{i}].backend_password_env"),
                "<missing>",
                "backend_user needs a password",
                "set backend_password_env to the variable holding it",
            )),
            (None, Some(var)) => Err(invalid(
                &format!("users[{i}].backend_user"),
                var,
                "backend_password_env without backend_user",
                "set backend_user, or remove backend_password_env",
            )),
        }
    }

    /// This user's own backend login and password, if it has one;
    /// validated at load time.
    pub fn backend_login(&self) -> Option<(String, String)> {
        let user = self.backend_user.clone()?;
        let password = std::env::var(self.backend_password_env.as_deref()?).ok()?;
        Some((user, password))
    }
}

impl Backend {
    /// The backend's name in logs and metrics.
    pub fn display_name(&self) -> &str {
        self.name.as_deref().unwrap_or("primary")
    }

    fn validate(&self, key: &str) -> Result<(), ConfigError> {
        let (host, _) = split_host_port(&format!("{key}.address"), &self.address)?;
        if host.is_empty() {
            return Err(invalid(
                &format!("{key}.address"),
                &self.address,
                "missing host",
                "use host:port, e.g. 127.0.0.1:1433",
            ));
        }
        match (&self.password, &self.password_env) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    &format!("{key}.password_env"),
                    self.password_env.as_deref().unwrap_or_default(),
                    "both password and password_env are set",
                    "keep only one of them",
                ))
            }
            (None, None) => {
                return Err(invalid(
                    &format!("{key}.password"),
                    "<missing>",
                    "no backend password",
                    "set password or password_env",
                ))
            }
            _ => {}
        }
        self.password().map_err(|problem| {
            invalid(
                &format!("{key}.password_env"),
                "",
                &problem,
                "export the variable before starting sluice",
            )
        })?;
        if self.tls != BackendTls::Off && !self.trust_server_certificate {
            check_readable(&format!("{key}.ca_file"), self.ca_file.as_deref()).map_err(|_| {
                invalid(
                    &format!("{key}.ca_file"),
                    self.ca_file
                        .as_ref()
                        .map(|p| p.display().to_string())
                        .unwrap_or_else(|| "<missing>".into()),
                    "TLS to the backend needs a CA certificate to verify it",
                    "set ca_file to a readable PEM file, or trust_server_certificate = true",
                )
            })?;
        }
        Ok(())
    }

    fn validate_lag(&self, key: &str) -> Result<(), ConfigError> {
        check_range(
            &format!("{key}.weight"),
            self.weight,
            0..=MAX_WEIGHT,
            "use a small relative share, e.g. 1 (0 takes the replica out of rotation)",
        )?;
        check_range(
            &format!("{key}.max_lag_ms"),
            self.max_lag_ms,
            0..=MAX_DURATION_MS,
            "use e.g. 1000",
        )?;
        match (self.lag_source, &self.lag_query) {
            (LagSourceKind::Query, None) => Err(invalid(
                &format!("{key}.lag_query"),
                "<missing>",
                "lag_source = \"query\" needs the query",
                "set lag_query to a query returning the lag in milliseconds",
            )),
            (kind, Some(_)) if kind != LagSourceKind::Query => Err(invalid(
                &format!("{key}.lag_query"),
                "<set>",
                "lag_query is only used with lag_source = \"query\"",
                "remove it or set lag_source = \"query\"",
            )),
            _ => Ok(()),
        }
    }

    /// A measured lag must be able to get back under `max_lag_ms -
    /// health.lag_margin_ms`, or the replica never takes reads again; a
    /// heartbeat lag is over by up to one interval, so the limit must exceed it.
    fn validate_lag_limits(&self, key: &str, health: &Health) -> Result<(), ConfigError> {
        if self.lag_source == LagSourceKind::None {
            return Ok(());
        }
        if self.max_lag_ms <= health.lag_margin_ms {
            return Err(invalid(
                &format!("{key}.max_lag_ms"),
                self.max_lag_ms,
                &format!(
                    "must be greater than health.lag_margin_ms ({}), or the replica never recovers",
                    health.lag_margin_ms
                ),
                "raise max_lag_ms or lower health.lag_margin_ms",
            ));
        }
        if self.lag_source == LagSourceKind::Heartbeat && self.max_lag_ms <= health.interval_ms {
            return Err(invalid(
                &format!("{key}.max_lag_ms"),
                self.max_lag_ms,
                &format!(
                    "a heartbeat lag is over by up to one health.interval_ms ({}), so it must be greater",
                    health.interval_ms
                ),
                "raise max_lag_ms or lower health.interval_ms",
            ));
        }
        Ok(())
    }

    /// The backend password, from the file or the named environment variable.
    pub fn password(&self) -> Result<String, String> {
        if let Some(p) = &self.password {
            return Ok(p.clone());
        }
        let var = self.password_env.as_deref().unwrap_or_default();
        std::env::var(var).map_err(|_| format!("environment variable {var} is not set"))
    }

    /// Host and port of `address`; validated at load time.
    pub fn host_port(&self) -> (String, u16) {
        split_host_port("address", &self.address).unwrap_or_else(|_| (self.address.clone(), 1433))
    }
}

impl Health {
    fn validate(&self) -> Result<(), ConfigError> {
        check_range(
            "health.interval_ms",
            self.interval_ms,
            1..=MAX_DURATION_MS,
            "use e.g. 500",
        )?;
        check_range(
            "health.timeout_ms",
            self.timeout_ms,
            1..=MAX_DURATION_MS,
            "use e.g. 1000",
        )?;
        check_range(
            "health.failures_before_down",
            self.failures_before_down,
            1..=MAX_FAILURES_BEFORE_DOWN,
            "use 2",
        )?;
        check_range(
            "health.recovery_ms",
            self.recovery_ms,
            0..=MAX_DURATION_MS,
            "use e.g. 2000",
        )?;
        check_range(
            "health.lag_margin_ms",
            self.lag_margin_ms,
            0..=MAX_DURATION_MS,
            "use e.g. 200",
        )?;
        if let Err(problem) = heartbeat_table_parts(&self.heartbeat_table) {
            return Err(invalid(
                "health.heartbeat_table",
                format!("{:?}", self.heartbeat_table),
                &problem,
                "use table or schema.table, e.g. dbo.sluice_heartbeat",
            ));
        }
        Ok(())
    }

    pub fn interval(&self) -> Duration {
        Duration::from_millis(self.interval_ms)
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }
}

impl Routing {
    fn validate(&self) -> Result<(), ConfigError> {
        check_range(
            "routing.read_your_writes_ms",
            self.read_your_writes_ms,
            0..=MAX_DURATION_MS,
            "use e.g. 1000, or 0 to turn it off",
        )?;
        check_range(
            "routing.classifier_cache_entries",
            self.classifier_cache_entries,
            0..=MAX_CLASSIFIER_CACHE_ENTRIES,
            "use e.g. 4096, or 0 to turn the cache off",
        )?;
        check_range(
            "routing.procedure_refresh_ms",
            self.procedure_refresh_ms,
            1000..=MAX_DURATION_MS,
            "use e.g. 60000 (a minute)",
        )?;
        check_range(
            "routing.shadow_sample",
            self.shadow_sample,
            0.0..=1.0,
            "use a share between 0 and 1, e.g. 0.1 to shadow one read in ten",
        )?;
        check_range(
            "routing.shadow_queue",
            self.shadow_queue,
            1..=MAX_SHADOW_QUEUE,
            "use e.g. 1024",
        )?;
        for (i, rule) in self.rules.iter().enumerate() {
            rule.checked_sql(i)?;
        }
        Ok(())
    }

    pub fn read_your_writes(&self) -> Duration {
        Duration::from_millis(self.read_your_writes_ms)
    }

    pub fn procedure_refresh(&self) -> Duration {
        Duration::from_millis(self.procedure_refresh_ms)
    }
}

impl RuleConfig {
    /// The rule's name in logs and `explain`: its `name`, or `#n` from its
    /// position (`index` counts from 0).
    pub fn display_name(&self, index: usize) -> String {
        rule_name(&self.name, index)
    }

    /// Checks the rule at `index` and compiles its `match_sql`; the error
    /// names the key and the fix.
    pub fn checked_sql(&self, index: usize) -> Result<Option<regex::Regex>, ConfigError> {
        let key = format!("routing.rules[{index}]");
        let conditions = [
            &self.match_sql,
            &self.procedure,
            &self.user,
            &self.application,
            &self.database,
        ];
        if conditions.iter().all(|c| c.is_none()) {
            return Err(invalid(
                &key,
                "{}",
                "a rule without conditions matches everything",
                "add match_sql, procedure, user, application or database",
            ));
        }
        compile_match_sql(&key, self.match_sql.as_deref())
    }
}

/// A rule's name: its `name`, or `#n` from its position (`index` counts
/// from 0). Routing and cache rules name themselves alike.
fn rule_name(name: &Option<String>, index: usize) -> String {
    name.clone().unwrap_or_else(|| format!("#{}", index + 1))
}

/// Compiles the `match_sql` of the rule at `key`; the error names the key
/// and the fix.
fn compile_match_sql(
    key: &str,
    pattern: Option<&str>,
) -> Result<Option<regex::Regex>, ConfigError> {
    let Some(pattern) = pattern else {
        return Ok(None);
    };
    regex::Regex::new(pattern).map(Some).map_err(|e| {
        invalid(
            &format!("{key}.match_sql"),
            format!("{pattern:?}"),
            &e.to_string(),
            "write a valid regular expression",
        )
    })
}

/// Splits a heartbeat table name, `table` or `schema.table`, into its
/// parts as they go between brackets; each part is a regular identifier or
/// `[bracketed]` (a `]` inside brackets is written `]]`). The monitor
/// builds its SQL from these parts; the error says what is wrong.
pub fn heartbeat_table_parts(name: &str) -> Result<Vec<String>, String> {
    let parts = split_name(name)?;
    if parts.is_empty() || parts.len() > 2 {
        return Err(format!(
            "heartbeat table {name:?} must be \"table\" or \"schema.table\""
        ));
    }
    Ok(parts)
}

/// Splits `a.b` into its parts, accepting `[bracketed]` parts (a `]` inside
/// brackets is written `]]`) and regular identifiers.
fn split_name(name: &str) -> Result<Vec<String>, String> {
    let bad = |why: &str| Err(format!("heartbeat table {name:?}: {why}"));
    let mut parts = Vec::new();
    let mut chars = name.chars().peekable();
    loop {
        let mut part = String::new();
        if chars.peek() == Some(&'[') {
            chars.next();
            loop {
                match chars.next() {
                    Some(']') if chars.peek() == Some(&']') => {
                        chars.next();
                        part.push_str("]]");
                    }
                    Some(']') => break,
                    Some(c) if c.is_control() => return bad("control character in the name"),
                    Some(c) => part.push(c),
                    None => return bad("unclosed '['"),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == '.' {
                    break;
                }
                let ok = if part.is_empty() {
                    c.is_ascii_alphabetic() || c == '_'
                } else {
                    c.is_ascii_alphanumeric() || matches!(c, '_' | '@' | '#' | '$')
                };
                if !ok {
                    return bad("use letters, digits and '_', or put the name in [brackets]");
                }
                part.push(c);
                chars.next();
            }
        }
        if part.is_empty() || part.len() > 128 {
            return bad("each part needs 1 to 128 characters");
        }
        parts.push(part);
        match chars.next() {
            None => return Ok(parts),
            Some('.') => continue,
            Some(_) => return bad("unexpected character after ']'"),
        }
    }
}

impl Pool {
    fn validate(&self) -> Result<(), ConfigError> {
        check_range(
            "pool.max_size",
            self.max_size,
            1..=MAX_POOL_SIZE,
            "use e.g. 32",
        )?;
        check_range(
            "pool.connect_timeout_ms",
            self.connect_timeout_ms,
            1..=MAX_DURATION_MS,
            "use e.g. 5000",
        )?;
        check_range(
            "pool.idle_timeout_ms",
            self.idle_timeout_ms,
            1..=MAX_DURATION_MS,
            "use e.g. 600000 (ten minutes)",
        )?;
        check_range(
            "pool.min_idle",
            self.min_idle,
            0..=self.max_size,
            "use at most pool.max_size",
        )?;
        check_range(
            "pool.checkout_timeout_ms",
            self.checkout_timeout_ms,
            1..=MAX_DURATION_MS,
            "use e.g. 5000",
        )?;
        check_range(
            "pool.max_lifetime_ms",
            self.max_lifetime_ms,
            0..=MAX_DURATION_MS,
            "use e.g. 3600000 (an hour), or 0 for no limit",
        )?;
        check_range(
            "pool.prepared_statements_per_connection",
            self.prepared_statements_per_connection,
            1..=MAX_PREPARED_PER_CONNECTION,
            "use e.g. 256",
        )?;
        check_range(
            "pool.packet_size",
            self.packet_size as usize,
            crate::tds::packet::MIN_PACKET_SIZE..=crate::tds::packet::MAX_PACKET_SIZE,
            "use 4096",
        )
    }

    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }

    pub fn checkout_timeout(&self) -> Duration {
        Duration::from_millis(self.checkout_timeout_ms)
    }

    pub fn idle_timeout(&self) -> Duration {
        Duration::from_millis(self.idle_timeout_ms)
    }

    pub fn max_lifetime(&self) -> Option<Duration> {
        (self.max_lifetime_ms > 0).then(|| Duration::from_millis(self.max_lifetime_ms))
    }
}

impl Limits {
    fn validate(&self) -> Result<(), ConfigError> {
        check_range(
            "limits.max_login_bytes",
            self.max_login_bytes,
            1024..=MAX_LOGIN_BYTES,
            "use 131072",
        )?;
        // At least one maximum-size packet must fit.
        check_range(
            "limits.request_buffer_bytes",
            self.request_buffer_bytes,
            crate::tds::packet::MAX_PACKET_SIZE..=MAX_REQUEST_BUFFER_BYTES,
            "use 1048576",
        )?;
        check_range(
            "limits.drain_timeout_ms",
            self.drain_timeout_ms,
            1..=MAX_DURATION_MS,
            "use e.g. 5000",
        )?;
        check_range(
            "limits.client_write_timeout_ms",
            self.client_write_timeout_ms,
            1..=MAX_DURATION_MS,
            "use e.g. 30000",
        )?;
        check_range(
            "limits.tcp_keepalive_ms",
            self.tcp_keepalive_ms,
            0..=MAX_DURATION_MS,
            "use e.g. 30000, or 0 to turn keepalive off",
        )
    }
}

fn parse_socket_addr(key: &str, value: &str) -> Result<SocketAddr, ConfigError> {
    value.parse().map_err(|_| {
        invalid(
            key,
            value,
            "not an IP address with a port",
            "use e.g. 127.0.0.1:14330",
        )
    })
}

fn split_host_port(key: &str, value: &str) -> Result<(String, u16), ConfigError> {
    let (host, port) = value.rsplit_once(':').ok_or_else(|| {
        invalid(
            key,
            value,
            "missing port",
            "use host:port, e.g. db.example.com:1433",
        )
    })?;
    let port = port
        .parse::<u16>()
        .ok()
        .filter(|&p| p != 0)
        .ok_or_else(|| {
            invalid(
                key,
                value,
                "the port is not a number in 1..=65535",
                "use host:port",
            )
        })?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    Ok((host.to_string(), port))
}

fn check_readable(key: &str, path: Option<&Path>) -> Result<(), ConfigError> {
    let Some(path) = path else {
        return Err(invalid(
            key,
            "<missing>",
            "required when TLS is on",
            "set it to a PEM file path",
        ));
    };
    std::fs::metadata(path).map(|_| ()).map_err(|e| {
        invalid(
            key,
            path.display(),
            &format!("cannot read it ({e})"),
            "point it at a readable PEM file",
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$3nB0ajhdTWjCXUyH8nHnUoXjEpGFR1Ou3X3Pw2EXgrk";

    fn base() -> String {
        format!(
            r#"
[listen]
address = "127.0.0.1:14330"
[[users]]
name = "app"
password_hash = "{HASH}"
[primary]
address = "127.0.0.1:14331"
user = "sa"
password = "pw"
"#
        )
    }

    #[test]
    fn minimal_config_gets_defaults() {
        let c = Config::parse(&base(), Path::new("t.toml")).unwrap();
        assert_eq!(c.primary.database, "master");
        assert_eq!(c.primary.tls, BackendTls::Off);
        assert_eq!(c.pool.max_size, 32);
        assert_eq!(c.listen.tls.mode, ListenTlsMode::Off);
    }

    fn error_of(extra: &str) -> String {
        Config::parse(&(base() + extra), Path::new("t.toml"))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn rules_and_heartbeat_table_are_checked_here() {
        assert_eq!(
            error_of("[[routing.rules]]\ntarget = \"primary\"\n"),
            "routing.rules[0] = {}: a rule without conditions matches everything; \
             fix: add match_sql, procedure, user, application or database"
        );
        let err = error_of("[[routing.rules]]\nmatch_sql = \"(\"\ntarget = \"primary\"\n");
        assert!(
            err.starts_with("routing.rules[0].match_sql = \"(\": ")
                && err.ends_with("; fix: write a valid regular expression"),
            "{err}"
        );
        assert_eq!(
            error_of("[health]\nheartbeat_table = \"a.b.c\"\n"),
            "health.heartbeat_table = \"a.b.c\": heartbeat table \"a.b.c\" must be \
             \"table\" or \"schema.table\"; fix: use table or schema.table, e.g. dbo.sluice_heartbeat"
        );
        assert_eq!(
            heartbeat_table_parts("[my schema].beat"),
            Ok(vec!["my schema".to_string(), "beat".to_string()])
        );
    }

    #[test]
    fn unknown_key_is_rejected_with_its_name() {
        let text = base() + "bogus = 1\n";
        let err = Config::parse(&text, Path::new("t.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("bogus"), "{err}");
    }

    #[test]
    fn bad_values_name_the_key_and_fix() {
        let text = base().replace("127.0.0.1:14330", "nowhere");
        let err = Config::parse(&text, Path::new("t.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("listen.address") && err.contains("fix"),
            "{err}"
        );
        let text =
            base() + "[[replicas]]\naddress = \"127.0.0.1:1\"\nuser = \"sa\"\npassword = \"x\"\n";
        let err = Config::parse(&text, Path::new("t.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("replicas[0].name"), "{err}");
        let text = base().replace(
            "password = \"pw\"",
            "password_env = \"SLUICE_TEST_UNSET_VAR\"",
        );
        let err = Config::parse(&text, Path::new("t.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("SLUICE_TEST_UNSET_VAR"), "{err}");
    }

    fn error_for(extra: &str) -> String {
        match Config::parse(&(base() + extra), Path::new("t.toml")) {
            Ok(_) => panic!("accepted:\n{extra}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn a_zero_idle_timeout_is_refused() {
        let err = error_for("[pool]\nidle_timeout_ms = 0\n");
        assert!(
            err.contains("pool.idle_timeout_ms = 0")
                && err.contains("1..=86400000")
                && err.contains("fix: use e.g. 600000"),
            "{err}"
        );
    }

    #[test]
    fn routing_mode_is_split_unless_shadow_is_asked_for() {
        let config = Config::parse(&base(), Path::new("t.toml")).unwrap();
        assert_eq!(config.routing.mode, RoutingMode::Split);
        assert_eq!(config.routing.shadow_sample, 1.0);
        assert_eq!(config.routing.shadow_queue, 1024);
        let text = format!(
            "{}[routing]\nmode = \"shadow\"\nshadow_sample = 0.25\n",
            base()
        );
        let config = Config::parse(&text, Path::new("t.toml")).unwrap();
        assert_eq!(config.routing.mode, RoutingMode::Shadow);
        assert_eq!(config.routing.shadow_sample, 0.25);
        let err = error_for("[routing]\nmode = \"mirror\"\n");
        assert!(err.contains("split") && err.contains("shadow"), "{err}");
    }

    const REPLICA: &str =
        "[[replicas]]\nname = \"r1\"\naddress = \"127.0.0.1:1\"\nuser = \"sa\"\npassword = \"x\"\n";

    #[test]
    fn every_numeric_key_out_of_range_is_named_with_its_range() {
        let cases: &[(&str, &str, &str)] = &[
            ("[pool]\nmax_size = 0\n", "pool.max_size = 0", "1..=32767"),
            (
                "[pool]\nmax_size = 40000\n",
                "pool.max_size = 40000",
                "1..=32767",
            ),
            (
                "[pool]\nconnect_timeout_ms = 0\n",
                "pool.connect_timeout_ms = 0",
                "1..=86400000",
            ),
            (
                "[pool]\nidle_timeout_ms = 86400001\n",
                "pool.idle_timeout_ms = 86400001",
                "1..=86400000",
            ),
            (
                "[pool]\npacket_size = 511\n",
                "pool.packet_size = 511",
                "512..=32767",
            ),
            (
                "[pool]\npacket_size = 32768\n",
                "pool.packet_size = 32768",
                "512..=32767",
            ),
            (
                "[limits]\nmax_login_bytes = 1023\n",
                "limits.max_login_bytes = 1023",
                "1024..=131072",
            ),
            (
                "[limits]\nmax_login_bytes = 131073\n",
                "limits.max_login_bytes = 131073",
                "1024..=131072",
            ),
            (
                "[limits]\nrequest_buffer_bytes = 100\n",
                "limits.request_buffer_bytes = 100",
                "32767..=268435456",
            ),
            (
                "[limits]\ndrain_timeout_ms = 0\n",
                "limits.drain_timeout_ms = 0",
                "1..=86400000",
            ),
            (
                "[routing]\nread_your_writes_ms = 90000000\n",
                "routing.read_your_writes_ms = 90000000",
                "0..=86400000",
            ),
            (
                "[routing]\nclassifier_cache_entries = 2000000\n",
                "routing.classifier_cache_entries = 2000000",
                "0..=1048576",
            ),
            (
                "[routing]\nshadow_sample = 1.5\n",
                "routing.shadow_sample = 1.5",
                "0..=1",
            ),
            (
                "[routing]\nshadow_sample = nan\n",
                "routing.shadow_sample = NaN",
                "0..=1",
            ),
            (
                "[routing]\nshadow_queue = 0\n",
                "routing.shadow_queue = 0",
                "1..=65536",
            ),
            (
                "[health]\ninterval_ms = 0\n",
                "health.interval_ms = 0",
                "1..=86400000",
            ),
            (
                "[health]\ntimeout_ms = 0\n",
                "health.timeout_ms = 0",
                "1..=86400000",
            ),
            (
                "[health]\nfailures_before_down = 0\n",
                "health.failures_before_down = 0",
                "1..=1000",
            ),
            (
                "[health]\nrecovery_ms = 90000000\n",
                "health.recovery_ms = 90000000",
                "0..=86400000",
            ),
            (
                "[health]\nlag_margin_ms = 90000000\n",
                "health.lag_margin_ms = 90000000",
                "0..=86400000",
            ),
        ];
        for (extra, named, range) in cases {
            let err = error_for(extra);
            assert!(
                err.contains(named) && err.contains(range) && err.contains("; fix: "),
                "{extra}: {err}"
            );
        }
        let replica_cases: &[(&str, &str)] = &[
            ("weight = 10001\n", "replicas[0].weight = 10001"),
            (
                "max_lag_ms = 86400001\n",
                "replicas[0].max_lag_ms = 86400001",
            ),
        ];
        for (extra, named) in replica_cases {
            let err = error_for(&format!("{REPLICA}{extra}"));
            assert!(err.contains(named) && err.contains("..="), "{extra}: {err}");
        }
        let err = Config::parse(
            &base().replace(
                "address = \"127.0.0.1:14330\"",
                "address = \"127.0.0.1:14330\"\nlogin_timeout_ms = 0",
            ),
            Path::new("t.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("listen.login_timeout_ms = 0"), "{err}");
        let err = Config::parse(
            &base().replace("127.0.0.1:14331", "127.0.0.1:0"),
            Path::new("t.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("primary.address") && err.contains("1..=65535"),
            "{err}"
        );
    }

    fn listen_error(extra: &str) -> String {
        let text = base().replace(
            "address = \"127.0.0.1:14330\"",
            &format!("address = \"127.0.0.1:14330\"\n{extra}"),
        );
        match Config::parse(&text, Path::new("t.toml")) {
            Ok(_) => panic!("accepted: {extra}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn admission_keys_have_defaults_and_ranges() {
        let c = Config::parse(&base(), Path::new("t.toml")).unwrap();
        assert_eq!(c.listen.max_clients, 10_000);
        assert_eq!(c.listen.max_pending_logins, 1024);
        assert_eq!(c.listen.max_queued_verifications, 64);
        assert_eq!(c.listen.max_failed_logins, 10);
        assert_eq!(c.listen.idle_client_timeout(), None);
        let cases: &[(&str, &str)] = &[
            ("max_clients = 0", "1..=1000000"),
            ("max_clients = 1000001", "1..=1000000"),
            ("max_pending_logins = 0", "1..=65536"),
            ("max_queued_verifications = 65537", "0..=65536"),
            ("max_failed_logins = 1000001", "0..=1000000"),
            ("failed_login_window_ms = 0", "1..=86400000"),
            ("failed_login_lockout_ms = 0", "1..=86400000"),
            ("idle_client_timeout_ms = 86400001", "0..=86400000"),
        ];
        for (line, range) in cases {
            let err = listen_error(line);
            assert!(
                err.starts_with(&format!("listen.{line}: outside the allowed range {range}"))
                    && err.contains("; fix: "),
                "{line}: {err}"
            );
        }
    }

    #[test]
    fn a_lag_limit_the_replica_could_never_get_back_under_is_refused() {
        let err = error_for(&format!(
            "{REPLICA}max_lag_ms = 200\nlag_source = \"always_on\"\n"
        ));
        assert!(
            err.contains("replicas[0].max_lag_ms = 200") && err.contains("health.lag_margin_ms"),
            "{err}"
        );
        let err = error_for(&format!(
            "{REPLICA}max_lag_ms = 400\nlag_source = \"heartbeat\"\n"
        ));
        assert!(err.contains("health.interval_ms (500)"), "{err}");
        // Without a lag source max_lag_ms is not applied.
        let text = base() + REPLICA + "max_lag_ms = 0\n";
        assert!(Config::parse(&text, Path::new("t.toml")).is_ok());
    }

    #[test]
    fn backend_tls_needs_trust_or_ca() {
        let text = base().replace("password = \"pw\"", "password = \"pw\"\ntls = \"required\"");
        let err = Config::parse(&text, Path::new("t.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("primary.ca_file"), "{err}");
        let text = base().replace(
            "password = \"pw\"",
            "password = \"pw\"\ntls = \"required\"\ntrust_server_certificate = true",
        );
        assert!(Config::parse(&text, Path::new("t.toml")).is_ok());
    }

    #[test]
    fn admin_is_off_unless_its_table_is_there() {
        let c = Config::parse(&base(), Path::new("t.toml")).unwrap();
        assert!(c.admin.is_none());
        assert_eq!(c.listen.shutdown_timeout(), Duration::from_secs(30));
        assert_eq!(c.origin.path, Path::new("t.toml"));
        assert_eq!(c.origin.hash.len(), 64);
        let c = Config::parse(&(base() + "[admin]\n"), Path::new("t.toml")).unwrap();
        let admin = c.admin.expect("admin table");
        assert_eq!(admin.address, "127.0.0.1:9930");
        assert_eq!(admin.token().unwrap(), None);
    }

    #[test]
    fn admin_keys_are_checked() {
        let err = error_for("[admin]\naddress = \"localhost\"\n");
        assert!(
            err.starts_with("admin.address = localhost: not an IP address"),
            "{err}"
        );
        let err = error_for("[admin]\ntoken_env = \"SLUICE_TEST_UNSET_ADMIN_TOKEN\"\n");
        assert!(
            err.starts_with(
                "admin.token_env = SLUICE_TEST_UNSET_ADMIN_TOKEN: environment variable"
            ) && err.contains("; fix: "),
            "{err}"
        );
        let err = error_for("[admin]\nport = 1\n");
        assert!(err.contains("unknown field `port`"), "{err}");
        let err = listen_error("shutdown_timeout_ms = 86400001");
        assert!(
            err.contains("outside the allowed range 0..=86400000"),
            "{err}"
        );
        let err = listen_error("workers = 1025");
        assert!(err.contains("listen.workers = 1025: outside"), "{err}");
    }

    #[test]
    fn log_defaults_to_text_at_info() {
        let c = Config::parse(&base(), Path::new("t.toml")).unwrap();
        assert_eq!(c.log.format, LogFormat::Text);
        assert_eq!(c.log.level, "info");
        let text = base()
            + "[log]\nformat = \"json\"\nlevel = \"INFO, sluice::frontend::session=debug\"\n";
        let c = Config::parse(&text, Path::new("t.toml")).unwrap();
        assert_eq!(c.log.format, LogFormat::Json);
        assert_eq!(
            c.log.filter_directives(),
            "info,sluice::frontend::session=debug"
        );
    }

    #[test]
    fn log_keys_are_checked() {
        let err = error_for("[log]\nformat = \"xml\"\n");
        assert!(
            err.contains("unknown variant `xml`, expected `text` or `json`"),
            "{err}"
        );
        for level in ["verbose", "", "info,", "sluice=loud", "=debug", "a b=info"] {
            let err = error_for(&format!("[log]\nlevel = {level:?}\n"));
            assert!(
                err.starts_with(&format!(
                    "log.level = {level:?}: not a log level; fix: use one of off"
                )),
                "{err}"
            );
        }
        let err = error_for("[log]\nlevel = \"info\"\ncolor = true\n");
        assert!(err.contains("unknown field `color`"), "{err}");
    }
}
