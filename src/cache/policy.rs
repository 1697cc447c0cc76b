//! Which requests the cache may answer: opt-in by `[[cache.rules]]` or a
//! `/* sluice:cache ttl=… */` hint, then a never-cache list no rule can
//! override. A pure function, shared by the session and `sluice explain`.

use std::sync::Arc;
use std::time::Duration;

use regex::Regex;

use crate::classify::{Class, Classification, Flags};
use crate::config::{Cache as CacheConfig, ConfigError};
use crate::router::rules::{equal_or_absent, same_procedure};
use crate::router::Request;

/// What the cache sees of a routed request.
#[derive(Debug, Clone, Copy)]
pub struct Statement<'a> {
    pub request: Request<'a>,
    pub classification: Option<&'a Classification>,
    /// The class routing acted on (a call the procedure catalog proved
    /// read-only is a read).
    pub class: Option<Class>,
    pub user: &'a str,
    pub application: &'a str,
    pub database: &'a str,
    /// An open transaction, implicit transactions or a strict isolation
    /// level: results depend on what the session itself did.
    pub in_transaction: bool,
}

/// The cache's verdict on one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// No rule or hint asked for it: the request does not touch the cache.
    NotOptedIn,
    /// Opted in, but on the never-cache list.
    Skip(Skip),
    Cache(Plan),
}

/// How an opted-in request is cached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub ttl: Duration,
    /// The tables its result depends on, as `database.object` (lower case):
    /// a write to any of them makes the entry a miss.
    pub tables: Vec<String>,
    /// The rule's name, or "hint".
    pub source: Arc<str>,
}

/// Why an opted-in request is not cached. Each is a bounded metric label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skip {
    /// The classifier did not find it to be a read.
    NotARead,
    InTransaction,
    /// A function whose result differs between two runs of one text.
    NonDeterministic(String),
    TempTable,
    /// It sets options, changes database or leaves pinned state.
    SessionState,
    /// Locking hints, sequences, cursors: reads that act on the server.
    ServerSideEffect,
    /// It reads tables Sluice cannot name (a procedure, a function) and no
    /// rule names them: a write could not invalidate its entry.
    TablesUnknown,
    /// A rule with `ttl_ms = 0` keeps it out.
    ExcludedByRule(Arc<str>),
}

impl Skip {
    pub fn label(&self) -> &'static str {
        match self {
            Skip::NotARead => "not_a_read",
            Skip::InTransaction => "in_transaction",
            Skip::NonDeterministic(_) => "non_deterministic",
            Skip::TempTable => "temp_table",
            Skip::SessionState => "session_state",
            Skip::ServerSideEffect => "server_side_effect",
            Skip::TablesUnknown => "tables_unknown",
            Skip::ExcludedByRule(_) => "excluded_by_rule",
        }
    }
}

impl std::fmt::Display for Skip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Skip::NotARead => f.write_str("the classifier did not find it to be a read"),
            Skip::InTransaction => f.write_str("inside a transaction"),
            Skip::NonDeterministic(what) => write!(f, "{what} is not deterministic"),
            Skip::TempTable => f.write_str("it uses a temp table"),
            Skip::SessionState => f.write_str("it changes the session's state"),
            Skip::ServerSideEffect => {
                f.write_str("it locks, opens a cursor or draws from a sequence")
            }
            Skip::TablesUnknown => f.write_str(
                "it reads tables Sluice cannot name (a procedure or function); \
                 list them in the rule's tables",
            ),
            Skip::ExcludedByRule(rule) => write!(f, "rule {rule} has ttl_ms = 0"),
        }
    }
}

/// `[[cache.rules]]`, compiled.
#[derive(Debug, Clone)]
struct Rule {
    name: Arc<str>,
    sql: Option<Regex>,
    procedure: Option<String>,
    /// Normalised as the classifier names tables (see [`table_name`]).
    tables: Vec<String>,
    user: Option<String>,
    application: Option<String>,
    database: Option<String>,
    ttl: Duration,
}

/// Rules, hints and per-table bounds, compiled from `[cache]`.
#[derive(Debug, Clone)]
pub struct Policy {
    rules: Vec<Rule>,
    hints: bool,
    default_ttl: Duration,
    /// Normalised table name → the longest an entry reading it may live.
    table_ttl: Vec<(String, Duration)>,
}

impl Policy {
    pub fn new(config: &CacheConfig) -> Result<Policy, ConfigError> {
        let rules = config
            .rules
            .iter()
            .enumerate()
            .map(|(i, rule)| {
                Ok(Rule {
                    name: rule.display_name(i).into(),
                    sql: rule.checked_sql(i)?,
                    procedure: rule.procedure.clone(),
                    tables: rule.tables.iter().map(|t| table_name(t)).collect(),
                    user: rule.user.clone(),
                    application: rule.application.clone(),
                    database: rule.database.clone(),
                    ttl: Duration::from_millis(rule.ttl_ms),
                })
            })
            .collect::<Result<_, ConfigError>>()?;
        let table_ttl = config
            .table_ttl_ms
            .iter()
            .map(|(t, ms)| (table_name(t), Duration::from_millis(*ms)))
            .collect();
        Ok(Policy {
            rules,
            hints: config.hints,
            default_ttl: Duration::from_millis(config.default_ttl_ms),
            table_ttl,
        })
    }

    /// Whether and how `statement` is cached.
    pub fn decide(&self, statement: &Statement<'_>) -> Verdict {
        let (source, ttl, rule_tables) = match self.opt_in(statement) {
            Some(OptIn::Rule(rule)) if rule.ttl.is_zero() => {
                return Verdict::Skip(Skip::ExcludedByRule(rule.name.clone()))
            }
            Some(OptIn::Rule(rule)) => (rule.name.clone(), rule.ttl, rule.tables.as_slice()),
            Some(OptIn::Hint(ttl)) => (Arc::from("hint"), ttl, &[][..]),
            None => return Verdict::NotOptedIn,
        };
        let Some(c) = statement.classification else {
            return Verdict::Skip(Skip::NotARead);
        };
        if let Some(skip) = never_cached(statement, c) {
            return Verdict::Skip(skip);
        }
        let Some(tables) = dependencies(c, rule_tables, statement.database) else {
            return Verdict::Skip(Skip::TablesUnknown);
        };
        let ttl = self.bounded_ttl(ttl, &tables);
        Verdict::Cache(Plan {
            ttl,
            tables,
            source,
        })
    }

    fn opt_in(&self, statement: &Statement<'_>) -> Option<OptIn<'_>> {
        if let Some(rule) = self.rules.iter().find(|r| r.matches(statement)) {
            return Some(OptIn::Rule(rule));
        }
        let Request::Sql(sql) = statement.request else {
            return None;
        };
        if !self.hints {
            return None;
        }
        hint_ttl(sql, self.default_ttl).map(OptIn::Hint)
    }

    /// The TTL, no longer than any `table_ttl_ms` of a table it reads.
    fn bounded_ttl(&self, ttl: Duration, tables: &[String]) -> Duration {
        self.table_ttl
            .iter()
            .filter(|(name, _)| tables.iter().any(|t| object_of(t) == name))
            .map(|(_, bound)| *bound)
            .fold(ttl, Duration::min)
    }
}

enum OptIn<'a> {
    Rule(&'a Rule),
    Hint(Duration),
}

impl Rule {
    fn matches(&self, statement: &Statement<'_>) -> bool {
        let sql_ok = match (&self.sql, statement.request) {
            (None, _) => true,
            (Some(re), Request::Sql(sql)) => re.is_match(sql),
            (Some(_), _) => false,
        };
        sql_ok
            && self.procedure_matches(statement)
            && self.tables_match(statement)
            && equal_or_absent(&self.user, statement.user)
            && equal_or_absent(&self.application, statement.application)
            && equal_or_absent(&self.database, statement.database)
    }

    /// An RPC call of the procedure, or a batch whose every EXEC calls it.
    fn procedure_matches(&self, statement: &Statement<'_>) -> bool {
        let Some(wanted) = &self.procedure else {
            return true;
        };
        match statement.request {
            Request::Procedure(called) => same_procedure(wanted, called),
            Request::Sql(_) => statement.classification.is_some_and(|c| {
                !c.procedures.is_empty() && c.procedures.iter().all(|p| same_procedure(wanted, p))
            }),
            Request::PrimaryOnly(_) => false,
        }
    }

    /// Every table the statement reads is one of the rule's; a statement
    /// whose tables Sluice cannot name takes the rule's at its word.
    fn tables_match(&self, statement: &Statement<'_>) -> bool {
        if self.tables.is_empty() {
            return true;
        }
        let Some(c) = statement.classification else {
            return false;
        };
        c.tables
            .read
            .iter()
            .all(|t| self.tables.iter().any(|r| r == object_of(t)))
    }
}

/// The never-cache list, in the order `explain` reports it.
fn never_cached(statement: &Statement<'_>, c: &Classification) -> Option<Skip> {
    if statement.class != Some(Class::Read) {
        return Some(Skip::NotARead);
    }
    if statement.in_transaction {
        return Some(Skip::InTransaction);
    }
    if let Some(function) = &c.volatile {
        return Some(Skip::NonDeterministic(function.clone()));
    }
    if c.flags
        .intersects(Flags::USES_TEMP_TABLE | Flags::CREATES_TEMP_TABLE)
    {
        return Some(Skip::TempTable);
    }
    if c.flags.contains(Flags::SESSION_FUNCTION) {
        return Some(Skip::NonDeterministic("SCOPE_IDENTITY/@@IDENTITY".into()));
    }
    if !c.effects.is_empty() {
        return Some(Skip::SessionState);
    }
    if c.flags.intersects(Flags::NOT_FOR_REPLICA) {
        return Some(Skip::ServerSideEffect);
    }
    None
}

/// The tables an entry depends on, qualified with the session's database;
/// `None` when the statement may read tables nobody named.
fn dependencies(c: &Classification, rule_tables: &[String], database: &str) -> Option<Vec<String>> {
    if !c.tables.complete && rule_tables.is_empty() {
        return None;
    }
    let mut tables: Vec<String> = Vec::new();
    for name in c.tables.read.iter().chain(rule_tables) {
        let qualified = qualify(name, database);
        if !tables.contains(&qualified) {
            tables.push(qualified);
        }
    }
    Some(tables)
}

/// `object` → `database.object`; `db.object` stays.
pub fn qualify(name: &str, database: &str) -> String {
    if name.contains('.') {
        name.to_string()
    } else {
        format!("{}.{name}", database.to_lowercase())
    }
}

/// The object of `database.object` or `object`.
fn object_of(name: &str) -> &str {
    name.rsplit('.').next().unwrap_or(name)
}

/// A table name as the classifier reports it: lower case, without
/// brackets or quotes, without its schema (`db.dbo.t` → `db.t`, `dbo.t` →
/// `t`). A bare name resolves to the user's default schema, which Sluice
/// does not know: keying by object name over-invalidates, never under.
pub fn table_name(name: &str) -> String {
    let parts: Vec<String> = name
        .split('.')
        .map(|p| {
            p.trim()
                .trim_matches(|c| c == '[' || c == ']' || c == '"')
                .to_string()
        })
        .collect();
    crate::classify::normalized_table_name(&parts).unwrap_or_default()
}

/// The TTL of a `/* sluice:cache [ttl=<n><ms|s|m|h>] */` hint among the
/// statement's leading comments; `None` without a (well-formed) hint.
pub fn hint_ttl(sql: &str, default: Duration) -> Option<Duration> {
    let comment = leading_comments(sql).find(|c| c.contains("sluice:cache"))?;
    let after = &comment[comment.find("sluice:cache")? + "sluice:cache".len()..];
    let Some(spec) = after
        .split_whitespace()
        .find_map(|w| w.strip_prefix("ttl="))
    else {
        return Some(default);
    };
    let split = spec
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(spec.len());
    let (digits, unit) = spec.split_at(split);
    let n: u64 = digits.parse().ok()?;
    let ms = match unit {
        "ms" => n,
        "s" => n.checked_mul(1000)?,
        "m" => n.checked_mul(60_000)?,
        "h" => n.checked_mul(3_600_000)?,
        _ => return None,
    };
    (ms > 0 && ms <= crate::config::MAX_DURATION_MS).then(|| Duration::from_millis(ms))
}

/// The comments a statement starts with, in order.
fn leading_comments(sql: &str) -> impl Iterator<Item = &str> {
    let mut rest = sql;
    std::iter::from_fn(move || {
        let s = rest.trim_start();
        if let Some(body) = s.strip_prefix("/*") {
            let end = body.find("*/")?;
            rest = &body[end + 2..];
            Some(&body[..end])
        } else if let Some(body) = s.strip_prefix("--") {
            let end = body.find('\n').unwrap_or(body.len());
            rest = &body[end..];
            Some(&body[..end])
        } else {
            None
        }
    })
}

#[cfg(test)]
mod tests;
