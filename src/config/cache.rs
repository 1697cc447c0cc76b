//! `[cache]`: the result cache (CONFIG.md describes every key).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::{check_range, compile_match_sql, invalid, rule_name, ConfigError, MAX_DURATION_MS};

/// Most bytes the in-process tier may hold: far beyond this, a dedicated
/// Redis is the better place.
pub const MAX_MEMORY_BYTES: u64 = 64 * 1024 * 1024 * 1024;
/// Largest single entry: a response bigger than this streams through.
pub const MAX_ENTRY_BYTES: usize = 64 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cache {
    /// Bytes of responses the in-process tier holds (0: no memory tier).
    #[serde(default = "default_memory_bytes")]
    pub memory_bytes: u64,
    /// A response larger than this is not cached (and never buffered).
    #[serde(default = "default_max_entry_bytes")]
    pub max_entry_bytes: usize,
    /// Whether clients may opt a statement in with `/* sluice:cache ... */`.
    #[serde(default = "default_hints")]
    pub hints: bool,
    /// The time to live of an entry a hint opted in without `ttl=`.
    #[serde(default = "default_ttl_ms")]
    pub default_ttl_ms: u64,
    /// The shared tier: `redis://` or `rediss://` (TLS).
    pub redis_url: Option<String>,
    /// The environment variable holding Redis's password (wins over one in the URL).
    pub redis_password_env: Option<String>,
    /// PEM CA bundle for `rediss://` (default: the system's).
    pub redis_ca_file: Option<PathBuf>,
    /// Bound on every Redis round trip; past it the cache is bypassed.
    #[serde(default = "default_redis_timeout_ms")]
    pub redis_timeout_ms: u64,
    /// Prefix of every key and of the channel Sluice uses in Redis, so
    /// several deployments can share one.
    #[serde(default = "default_redis_prefix")]
    pub redis_prefix: String,
    /// Upper bound on the life of entries that read a table, for tables
    /// written where Sluice cannot see (other applications, jobs).
    #[serde(default)]
    pub table_ttl_ms: BTreeMap<String, u64>,
    #[serde(default)]
    pub rules: Vec<CacheRuleConfig>,
}

/// One `[[cache.rules]]` entry: every condition given must match; the
/// first matching rule decides.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheRuleConfig {
    pub name: Option<String>,
    pub match_sql: Option<String>,
    pub procedure: Option<String>,
    /// The tables the rule covers: a statement matches when every table it
    /// reads is one of these. For a procedure call (whose tables Sluice
    /// cannot see) they are the tables its result depends on.
    #[serde(default)]
    pub tables: Vec<String>,
    pub user: Option<String>,
    pub application: Option<String>,
    pub database: Option<String>,
    /// How long an entry lives; 0: never cache what the rule matches.
    pub ttl_ms: u64,
}

fn default_memory_bytes() -> u64 {
    64 * 1024 * 1024
}
fn default_max_entry_bytes() -> usize {
    1024 * 1024
}
fn default_hints() -> bool {
    true
}
fn default_ttl_ms() -> u64 {
    60_000
}
fn default_redis_timeout_ms() -> u64 {
    50
}
fn default_redis_prefix() -> String {
    "sluice:".into()
}

impl Cache {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        check_range(
            "cache.memory_bytes",
            self.memory_bytes,
            0..=MAX_MEMORY_BYTES,
            "use e.g. 67108864 (64 MiB), or 0 for Redis only",
        )?;
        check_range(
            "cache.max_entry_bytes",
            self.max_entry_bytes,
            1..=MAX_ENTRY_BYTES,
            "use e.g. 1048576 (1 MiB)",
        )?;
        check_range(
            "cache.default_ttl_ms",
            self.default_ttl_ms,
            1..=MAX_DURATION_MS,
            "use e.g. 60000 (a minute)",
        )?;
        check_range(
            "cache.redis_timeout_ms",
            self.redis_timeout_ms,
            1..=60_000,
            "use e.g. 50: a slow Redis must not slow every read",
        )?;
        if self.memory_bytes == 0 && self.redis_url.is_none() {
            return Err(invalid(
                "cache.memory_bytes",
                0,
                "with no redis_url either, nothing could hold an entry",
                "set memory_bytes, or redis_url",
            ));
        }
        self.validate_redis()?;
        for (table, ttl) in &self.table_ttl_ms {
            let key = format!("cache.table_ttl_ms.{table:?}");
            check_range(&key, *ttl, 1..=MAX_DURATION_MS, "use e.g. 5000")?;
            check_table_name(&key, table)?;
        }
        for (i, rule) in self.rules.iter().enumerate() {
            rule.checked_sql(i)?;
        }
        Ok(())
    }

    fn validate_redis(&self) -> Result<(), ConfigError> {
        if let Some(url) = &self.redis_url {
            crate::redis::validate_url(url).map_err(|e| {
                invalid(
                    "cache.redis_url",
                    redacted(url),
                    &e.to_string(),
                    "use redis://host:6379 or rediss://host:6380 (TLS)",
                )
            })?;
        }
        if self.redis_prefix.is_empty() || self.redis_prefix.len() > 64 {
            return Err(invalid(
                "cache.redis_prefix",
                format!("{:?}", self.redis_prefix),
                "must be 1 to 64 bytes",
                "use e.g. \"sluice:\"",
            ));
        }
        if let Some(path) = &self.redis_ca_file {
            if !path.is_file() {
                return Err(invalid(
                    "cache.redis_ca_file",
                    path.display(),
                    "no such file",
                    "point it at a PEM bundle of the CAs that sign Redis's certificate",
                ));
            }
        }
        Ok(())
    }

    /// Redis's password: from `redis_password_env` when set.
    pub fn redis_password(&self) -> Result<Option<String>, String> {
        let Some(var) = &self.redis_password_env else {
            return Ok(None);
        };
        std::env::var(var)
            .map(Some)
            .map_err(|_| format!("cache.redis_password_env: environment variable {var} is not set"))
    }

    pub fn redis_timeout(&self) -> Duration {
        Duration::from_millis(self.redis_timeout_ms)
    }
}

impl CacheRuleConfig {
    /// The rule's name in `explain` and metrics: its `name`, or `#n`.
    pub fn display_name(&self, index: usize) -> String {
        rule_name(&self.name, index)
    }

    /// Checks the rule at `index` and compiles its `match_sql`.
    pub fn checked_sql(&self, index: usize) -> Result<Option<regex::Regex>, ConfigError> {
        let key = format!("cache.rules[{index}]");
        let conditions = [
            self.match_sql.is_some(),
            self.procedure.is_some(),
            !self.tables.is_empty(),
            self.user.is_some(),
            self.application.is_some(),
            self.database.is_some(),
        ];
        if !conditions.contains(&true) {
            return Err(invalid(
                &key,
                "{}",
                "a rule without conditions would cache every read",
                "add match_sql, procedure, tables, user, application or database",
            ));
        }
        check_range(
            &format!("{key}.ttl_ms"),
            self.ttl_ms,
            0..=MAX_DURATION_MS,
            "use e.g. 60000, or 0 to keep what the rule matches out of the cache",
        )?;
        for table in &self.tables {
            check_table_name(&format!("{key}.tables"), table)?;
        }
        compile_match_sql(&key, self.match_sql.as_deref())
    }
}

fn check_table_name(key: &str, table: &str) -> Result<(), ConfigError> {
    let parts = table.split('.').count();
    if table.trim().is_empty() || parts > 3 || table.starts_with('#') {
        return Err(invalid(
            key,
            format!("{table:?}"),
            "not a table name",
            "write table, schema.table or database.schema.table",
        ));
    }
    Ok(())
}

/// A Redis URL as logs may show it: without its password.
pub fn redacted(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://***@{}", &url[..scheme], &url[at + 1..])
        }
        _ => url.to_string(),
    }
}
