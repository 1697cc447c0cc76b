//! Statement classification: SQL text → [`Classification`], fail-safe.
//!
//! Only a positive read may go to a replica. Anything the classifier cannot
//! prove to be a read (unparsed T-SQL, unknown procedures, writes hidden in
//! CTEs, session-bound functions...) is classified so that the router sends
//! it to the primary. sqlparser's `MsSqlDialect` parses what it can; a fast
//! keyword lexer backs it up; a bounded cache keyed by the statement text
//! makes repeated statements free.
//!
//! How the pieces combine ([`Classifier::classify`]):
//! - `scan` (over `lexer` tokens) classifies every batch and is the only
//!   source of session effects, since they need each statement's own text.
//! - `parse` walks sqlparser's AST when the batch parses; its evidence is
//!   added to the scan's, so the stricter of the two wins. When it does not
//!   parse (common: T-SQL without `;`, `OFFSET @p ROWS FETCH NEXT @q ROWS`,
//!   `BEGIN TRY`, DBCC, ...), the scan alone decides, sets
//!   [`Flags::LEXER_FALLBACK`], and the reason starts with "parse failed;".
//!   A batch the scan already found a write in is not parsed: nothing can
//!   be stricter than a write, and parsing is most of a cold
//!   classification's cost.
//! - Literal dynamic SQL (`EXEC('...')`, `sp_executesql N'...'`) is
//!   classified the same way, recursively, and folded in.
//! - The tables a batch reads and writes and the volatile functions it
//!   uses ([`TableAccess`], [`Classification::volatile`], for the result
//!   cache) come from the scan too (`scan/tables.rs`, names normalised in
//!   `access`): they hold for batches sqlparser cannot parse, and whatever
//!   the scan cannot follow makes the table lists incomplete, never short.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

mod access;
mod cache;
mod definition;
mod effect;
mod fingerprint;
mod lexer;
mod parse;
mod pin;
mod procedures;
mod scan;
mod verdict;

#[cfg(test)]
mod tests;

pub use access::{table_name as normalized_table_name, TableAccess};
pub use definition::{changes_procedures, split_procedure, ProcedureDefinition};
pub use effect::{api_cursor_effects, beyond_nested_scope, is_tracked_setting, SessionEffect};
pub use fingerprint::{fingerprint, MAX_FINGERPRINT_CHARS};
pub use pin::{Pin, PinReason};
use procedures::ReadOnlyProcedures;
pub use procedures::{split_name as split_procedure_name, ReadOnlyProcedures as ProcedureNames};
use verdict::Verdict;

/// Statements longer than this are neither cached nor given to sqlparser:
/// the keyword scan classifies them on every call. With the cache's entry
/// count this bounds its memory (4096 entries × 16 KiB = 64 MiB at worst;
/// ORM statements are a few hundred bytes).
pub const MAX_CACHED_STATEMENT_LEN: usize = 16 * 1024;

/// `EXEC('EXEC(''...'')')` nesting followed before giving up (as a write).
const MAX_DYNAMIC_DEPTH: usize = 3;

/// sqlparser builds `a + b + c ...` and `UNION` chains as left-deep trees
/// without recursing, and dropping one recurses once per operator: around
/// 30,000 overflow a 2 MiB stack in a debug build. Batches with more
/// operators than this are left to the keyword scan.
const MAX_PARSED_OPERATORS: usize = 2048;

/// What a batch (one or more statements) does, for routing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Class {
    /// Only reads: may run on a replica.
    Read,
    /// Changes data or schema, or may (DML, DDL, EXEC of a procedure not
    /// declared read-only, DBCC, BULK INSERT, SELECT INTO, MERGE, ...).
    Write,
    /// BEGIN/COMMIT/ROLLBACK/SAVE TRANSACTION, SET IMPLICIT_TRANSACTIONS.
    TransactionControl,
    /// Only changes session settings (SET options, USE, SET LANGUAGE ...).
    SessionState,
    /// Not understood: treated as a write.
    Unknown,
}

impl Class {
    pub fn as_str(self) -> &'static str {
        match self {
            Class::Read => "read",
            Class::Write => "write",
            Class::TransactionControl => "transaction_control",
            Class::SessionState => "session_state",
            Class::Unknown => "unknown",
        }
    }
}

/// Independent facts about a batch, as bit flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Flags(pub u32);

bitflags::bitflags! {
    impl Flags: u32 {
        /// Creates a temp table (`#t`, `SELECT ... INTO #t`): pins the session.
        const CREATES_TEMP_TABLE = 1 << 0;
        /// Reads or writes a temp table: `#t`, and also `##t` (a global temp
        /// table lives in the primary's tempdb only).
        const USES_TEMP_TABLE = 1 << 1;
        /// UPDLOCK, XLOCK, HOLDLOCK, TABLOCKX, SERIALIZABLE, REPEATABLEREAD, ... hints.
        const LOCKING_HINT = 1 << 2;
        /// SCOPE_IDENTITY(), @@IDENTITY, IDENT_CURRENT: bound to the session that wrote.
        const SESSION_FUNCTION = 1 << 3;
        /// EXEC/EXECUTE of a stored procedure (named in `procedures`).
        const PROCEDURE_CALL = 1 << 4;
        /// EXEC('...') or sp_executesql inside the batch.
        const DYNAMIC_SQL = 1 << 5;
        /// DECLARE CURSOR / OPEN: a server cursor pins the session.
        const CURSOR = 1 << 6;
        /// sp_getapplock with @LockOwner = 'Session': pins the session.
        const SESSION_LOCK = 1 << 7;
        /// SET IDENTITY_INSERT ... ON: pins the session.
        const IDENTITY_INSERT = 1 << 8;
        /// SET CONTEXT_INFO / sp_set_session_context: pins the session.
        const CONTEXT_INFO = 1 << 9;
        /// NEXT VALUE FOR a sequence (a write to the sequence).
        const SEQUENCE = 1 << 10;
        /// Parsed by the fallback lexer, not sqlparser.
        const LEXER_FALLBACK = 1 << 11;
    }
}

impl Flags {
    pub const NONE: Flags = Flags::empty();

    /// Facts that keep even a read on the primary.
    pub const NOT_FOR_REPLICA: Flags = Flags::LOCKING_HINT
        .union(Flags::SESSION_FUNCTION)
        .union(Flags::USES_TEMP_TABLE)
        .union(Flags::CREATES_TEMP_TABLE)
        .union(Flags::SEQUENCE)
        .union(Flags::CURSOR)
        .union(Flags::SESSION_LOCK)
        .union(Flags::IDENTITY_INSERT)
        .union(Flags::CONTEXT_INFO);

    /// These flags with the bits of `other` added.
    pub fn with(self, other: Flags) -> Flags {
        self.union(other)
    }
}

/// The classifier's verdict on one batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classification {
    pub class: Class,
    /// Why, in words an operator understands: "SELECT without writes",
    /// "INSERT into dbo.orders", "could not parse; lexer saw UPDATE".
    pub reason: String,
    pub flags: Flags,
    /// Procedures called with EXEC, as written (schema-qualified when it was).
    pub procedures: Vec<String>,
    /// The called procedures not in `routing.read_only_procedures`, as
    /// written; each makes the batch a write unless the procedure catalog
    /// proves it read-only.
    pub unlisted_procedures: Vec<String>,
    /// The class were every one of `unlisted_procedures` read-only (dynamic
    /// SQL calling one stays a write either way).
    pub class_if_unlisted_read_only: Class,
    /// Temp tables (`#name`, lower-cased) created or used.
    pub temp_tables: Vec<String>,
    pub effects: Vec<SessionEffect>,
    /// The tables the batch reads and writes, for the result cache.
    pub tables: TableAccess,
    /// The first non-deterministic or session-dependent function or object
    /// the batch uses, as written upper-cased (`GETDATE`, `@@ROWCOUNT`,
    /// `SYS.DM_EXEC_SESSIONS`): its result can differ between two runs of
    /// the same text, so the result cache never stores it.
    pub volatile: Option<String>,
}

impl Classification {
    /// True only for a positive read that nothing pins to the primary. The
    /// router adds its own conditions (transactions, rules, lag, pins).
    pub fn replica_eligible(&self) -> bool {
        self.class == Class::Read && self.eligible_if_read()
    }

    /// Like [`replica_eligible`](Self::replica_eligible), for a batch whose
    /// only writes are calls of procedures that `read_only` says are
    /// read-only (the procedure catalog's verdicts).
    pub fn replica_eligible_with(&self, read_only: impl Fn(&str) -> bool) -> bool {
        !self.unlisted_procedures.is_empty()
            && self.class_if_unlisted_read_only == Class::Read
            && self.unlisted_procedures.iter().all(|p| read_only(p))
            && self.eligible_if_read()
    }

    fn eligible_if_read(&self) -> bool {
        !self.flags.intersects(Flags::NOT_FOR_REPLICA) && !self.starts_pin()
    }

    /// The batch leaves pinned state behind (in SQL Server's batch scope):
    /// it must run where the session keeps its pins, the primary.
    pub fn starts_pin(&self) -> bool {
        self.effects.iter().any(|e| e.starts().is_some())
    }
}

/// Classifier with a bounded cache; shared by all sessions.
pub struct Classifier {
    cache: cache::Cache<Arc<Classification>>,
    procedures: ReadOnlyProcedures,
    counters: Counters,
}

/// `sluice_classifications_total` by class and
/// `sluice_classifier_cache_total` by result, registered once (a handle is
/// an `Arc`): counting a classification is one atomic add, not a lookup
/// of the metric's key.
struct Counters {
    read: metrics::Counter,
    write: metrics::Counter,
    transaction_control: metrics::Counter,
    session_state: metrics::Counter,
    unknown: metrics::Counter,
    cache_hits: metrics::Counter,
    cache_misses: metrics::Counter,
}

impl Counters {
    fn new() -> Self {
        use crate::metrics::{CLASSIFICATIONS, CLASSIFIER_CACHE};
        let class = |class: Class| metrics::counter!(CLASSIFICATIONS, "class" => class.as_str());
        Counters {
            read: class(Class::Read),
            write: class(Class::Write),
            transaction_control: class(Class::TransactionControl),
            session_state: class(Class::SessionState),
            unknown: class(Class::Unknown),
            cache_hits: metrics::counter!(CLASSIFIER_CACHE, "result" => "hit"),
            cache_misses: metrics::counter!(CLASSIFIER_CACHE, "result" => "miss"),
        }
    }

    fn class(&self, class: Class) -> &metrics::Counter {
        match class {
            Class::Read => &self.read,
            Class::Write => &self.write,
            Class::TransactionControl => &self.transaction_control,
            Class::SessionState => &self.session_state,
            Class::Unknown => &self.unknown,
        }
    }
}

impl Classifier {
    /// `read_only_procedures`: procedure names (as configured, case-insensitive,
    /// with or without schema) whose EXEC is a read. Matching: names compare
    /// case-insensitively without `[brackets]`/`"quotes"`; a configured bare
    /// `GetOrders` matches it in any schema (`GetOrders`, `sales.GetOrders`);
    /// `dbo.GetOrders` matches `dbo.GetOrders`, `[dbo].[GetOrders]` and a bare
    /// `GetOrders` (bare names resolve to `dbo`), not `sales.GetOrders`;
    /// `db.dbo.GetOrders` matches only that three-part call; four-part
    /// (linked server) calls never match.
    ///
    /// `cache_capacity`: statements kept (0 disables the cache). Each entry
    /// holds its text, at most [`MAX_CACHED_STATEMENT_LEN`] bytes.
    pub fn new(cache_capacity: usize, read_only_procedures: &[String]) -> Self {
        Classifier {
            cache: cache::Cache::new(cache_capacity),
            procedures: ReadOnlyProcedures::new(read_only_procedures),
            counters: Counters::new(),
        }
    }

    /// Classifies a batch. Never panics; a cache hit is a hash lookup and an
    /// `Arc` clone.
    pub fn classify(&self, sql: &str) -> Arc<Classification> {
        let classification = self.classify_uncounted(sql);
        self.counters.class(classification.class).increment(1);
        classification
    }

    fn classify_uncounted(&self, sql: &str) -> Arc<Classification> {
        let cacheable = sql.len() <= MAX_CACHED_STATEMENT_LEN;
        if cacheable {
            if let Some(hit) = self.cache.get(sql) {
                self.counters.cache_hits.increment(1);
                return hit;
            }
            self.counters.cache_misses.increment(1);
        }
        let (verdict, parsed) = self.analyze(sql, 0);
        let prefix = if parsed { "" } else { "parse failed; lexer: " };
        let classification = Arc::new(verdict.into_classification(prefix));
        if cacheable {
            self.cache.insert(sql, Arc::clone(&classification));
        }
        classification
    }

    /// Number of statements in the cache.
    pub fn cached_statements(&self) -> usize {
        self.cache.len()
    }

    /// Scan, parse, and fold in literal dynamic SQL. Returns the verdict and
    /// false when sqlparser was needed and could not parse the batch.
    fn analyze(&self, sql: &str, depth: usize) -> (Verdict, bool) {
        let scan = scan::scan(sql, &self.procedures);
        let mut v = scan.verdict;
        // The parse's evidence only adds to the scan's, so once the scan has
        // found a write the class is final, and the tables the batch
        // touches come from the scan too: parsing, most of the cost of a
        // cold classification, would change nothing that routes or caches.
        let parsed = v.has_write()
            || match self.parse(sql, scan.operators) {
                Some(p) => {
                    v.absorb(p);
                    true
                }
                None => {
                    v.flag(Flags::LEXER_FALLBACK, String::new);
                    if v.is_empty() {
                        v.unknown(|| "nothing recognisable".into());
                    }
                    false
                }
            };
        // Each string's effects go where it runs among the batch's own.
        let mut shift = 0;
        for dynamic in scan.dynamic {
            let at = dynamic.at + shift;
            if depth >= MAX_DYNAMIC_DEPTH {
                let why = "dynamic SQL nested too deeply";
                v.write(|| why.into());
                v.hidden_tables = true;
                let pin = SessionEffect::Pin(Pin::named(PinReason::Unfollowable, why));
                v.effects.insert(at.min(v.effects.len()), pin);
                shift += 1;
                continue;
            }
            let (inner, _) = self.analyze(&dynamic.text, depth + 1);
            shift += v.absorb_dynamic(inner, at, dynamic.conditional);
        }
        (v, parsed)
    }

    /// sqlparser's verdict, or `None` when the batch is too long or does not
    /// parse. sqlparser limits its own recursion; the `catch_unwind` is a
    /// second guard so that no input can take a session down through it.
    fn parse(&self, sql: &str, operators: usize) -> Option<Verdict> {
        if sql.len() > MAX_CACHED_STATEMENT_LEN || operators > MAX_PARSED_OPERATORS {
            return None;
        }
        catch_unwind(AssertUnwindSafe(|| parse::verdict(sql, &self.procedures)))
            .ok()?
            .ok()
    }
}
