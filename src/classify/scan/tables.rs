//! The tables each statement reads and writes, and what hides them (see
//! [`crate::classify::access`]).
//!
//! One walk over a statement's tokens. A table source follows `FROM`,
//! `JOIN`, `APPLY`, `MERGE ... USING`, or a `,` where a `FROM` clause is
//! open at that parenthesis depth; subqueries are found by their own
//! `FROM`. DML targets are resolved at the statement's end, once its
//! aliases and CTE names are known. Anything the walk cannot follow makes
//! the list incomplete ([`Verdict::hidden_tables`]) rather than guessed: a
//! table missing from a complete list is the one bug the cache cannot
//! survive.
//!
//! [`Verdict::hidden_tables`]: crate::classify::verdict::Verdict

use super::split::{is_reserved_leader, Stmt};
use super::Cx;
use crate::classify::access::{is_catalog, is_volatile_object, reads_catalog, table_name};
use crate::classify::lexer::{self, Kind, Kw};

/// Per-statement state of the walk.
#[derive(Default)]
pub(super) struct Walk {
    /// Bit `d`: a `FROM` clause is open at parenthesis depth `d`, so a `,`
    /// there starts another table source.
    from_open: u64,
    /// Names defined by `WITH name AS (...)`, lower-cased: not tables.
    ctes: Vec<String>,
    aliases: Vec<(String, Alias)>,
    /// Single-part DML targets, lower-cased, and whether an alias may name
    /// them (UPDATE/DELETE) or only a CTE (INSERT/MERGE).
    targets: Vec<(String, bool)>,
}

/// What a `FROM` alias stands for.
enum Alias {
    Table(String),
    /// A temp table or table variable: not listed.
    Unlisted,
    /// A derived table or CTE: writing it writes the tables it reads.
    Derived,
}

impl Walk {
    fn open_from(&mut self, depth: u32) {
        if let Some(bit) = 1u64.checked_shl(depth) {
            self.from_open |= bit;
        }
    }

    fn close_from(&mut self, depth: u32) {
        if let Some(bit) = 1u64.checked_shl(depth) {
            self.from_open &= !bit;
        }
    }

    fn is_from_open(&self, depth: u32) -> bool {
        1u64.checked_shl(depth)
            .is_some_and(|bit| self.from_open & bit != 0)
    }
}

/// Rowset functions that read no table of their own.
const BUILTIN_ROWSETS: &[&str] = &["OPENJSON", "STRING_SPLIT", "GENERATE_SERIES", "OPENXML"];

/// Methods of the xml type (`t.col.value('..', 'int')`), not user functions.
const XML_METHODS: &[&str] = &["value", "query", "exist", "nodes", "modify"];

/// Table hints written without `WITH`: `FROM t (NOLOCK)`.
const TABLE_HINTS: &[&str] = &[
    "NOLOCK",
    "READUNCOMMITTED",
    "READCOMMITTED",
    "READCOMMITTEDLOCK",
    "REPEATABLEREAD",
    "SERIALIZABLE",
    "SNAPSHOT",
    "UPDLOCK",
    "XLOCK",
    "HOLDLOCK",
    "ROWLOCK",
    "PAGLOCK",
    "TABLOCK",
    "TABLOCKX",
    "READPAST",
    "NOWAIT",
    "NOEXPAND",
    "INDEX",
    "FORCESEEK",
    "FORCESCAN",
    "KEEPIDENTITY",
    "KEEPDEFAULTS",
    "IGNORE_CONSTRAINTS",
    "IGNORE_TRIGGERS",
    "FASTFIRSTROW",
];

/// Words between `CREATE` and the kind of object: `CREATE UNIQUE
/// NONCLUSTERED INDEX`.
const DDL_MODIFIERS: &[&str] = &[
    "UNIQUE",
    "CLUSTERED",
    "NONCLUSTERED",
    "COLUMNSTORE",
    "PRIMARY",
    "XML",
    "SPATIAL",
    "FULLTEXT",
];

/// Kinds of object whose DDL the walk follows.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Object {
    /// TABLE, VIEW, PROCEDURE, FUNCTION, SEQUENCE, SYNONYM, TYPE, ...: the
    /// object itself is written.
    Named,
    /// INDEX, STATISTICS: the table they are `ON`.
    OnTable,
    /// TRIGGER: the table it is `ON`, or itself when dropped.
    Trigger,
}

/// Clause keywords that end a `FROM` list at their depth.
fn ends_from(kw: Kw) -> bool {
    matches!(
        kw,
        Kw::WHERE
            | Kw::GROUP
            | Kw::ORDER
            | Kw::HAVING
            | Kw::OPTION
            | Kw::WINDOW
            | Kw::SELECT
            | Kw::SET
            | Kw::UNION
            | Kw::EXCEPT
            | Kw::INTERSECT
    )
}

/// Words after a table source that are not its alias.
fn is_clause_word(kw: Kw) -> bool {
    is_reserved_leader(kw)
        || ends_from(kw)
        || matches!(
            kw,
            Kw::JOIN
                | Kw::INNER
                | Kw::LEFT
                | Kw::RIGHT
                | Kw::FULL
                | Kw::OUTER
                | Kw::CROSS
                | Kw::ON
                | Kw::WITH
                | Kw::FOR
                | Kw::PIVOT
                | Kw::UNPIVOT
                | Kw::TABLESAMPLE
                | Kw::OUTPUT
                | Kw::USING
        )
}

impl Cx<'_> {
    /// The tables statement `st` reads and writes.
    pub(super) fn tables(&mut self, st: &Stmt) {
        let f = st.first;
        match st.leader {
            Kw::CREATE | Kw::ALTER | Kw::DROP => return self.ddl_tables(st),
            Kw::USE => {
                self.database_changed = true;
                return;
            }
            // Statements whose tables the walk does not follow: admin,
            // permissions, Service Broker, cursors (declared maybe in an
            // earlier batch), text pointers.
            Kw::DBCC
            | Kw::BACKUP
            | Kw::RESTORE
            | Kw::GRANT
            | Kw::REVOKE
            | Kw::DENY
            | Kw::KILL
            | Kw::SHUTDOWN
            | Kw::RECONFIGURE
            | Kw::CHECKPOINT
            | Kw::WRITETEXT
            | Kw::UPDATETEXT
            | Kw::READTEXT
            | Kw::LOAD
            | Kw::DUMP
            | Kw::SETUSER
            | Kw::REVERT
            | Kw::SEND
            | Kw::RECEIVE
            | Kw::GET
            | Kw::MOVE
            | Kw::END
            | Kw::ENABLE
            | Kw::DISABLE
            | Kw::OPEN
            | Kw::FETCH
            | Kw::GO => {
                self.v.hidden_tables = true;
                return;
            }
            Kw::BEGIN
                if !matches!(
                    self.kw_at(f + 1),
                    Kw::TRAN | Kw::TRANSACTION | Kw::DISTRIBUTED
                ) =>
            {
                self.v.hidden_tables = true;
                return;
            }
            _ => {}
        }
        let mut w = Walk::default();
        if self.kw_at(f) == Kw::WITH {
            self.cte_names(f + 1, &mut w);
        }
        let mut i = f;
        while i < st.end {
            i = self.table_token(i, st, &mut w).max(i + 1);
        }
        self.resolve_targets(w);
    }

    fn table_read(&mut self, name: String) {
        self.v.hidden_tables |= self.database_changed;
        self.v.read_table(name);
    }

    fn table_written(&mut self, name: String) {
        self.v.hidden_tables |= self.database_changed;
        self.v.written_table(name);
    }

    /// `WITH [XMLNAMESPACES (..),] a [(cols)] AS (...), b AS (...)`: the
    /// CTE names (their bodies are walked like any other tokens).
    fn cte_names(&self, mut j: usize, w: &mut Walk) {
        while let Some(t) = self.tok(j) {
            let paren_at = |k: usize| self.tok(k).is_some_and(|t| t.is_punct(b'('));
            if self.word_is(j, "XMLNAMESPACES") && paren_at(j + 1) {
                j = self.matching_paren(j + 1) + 1;
            } else if matches!(t.kind, Kind::Word | Kind::Quoted) {
                w.ctes.push(lexer::ident_value(self.sql, t).to_lowercase());
                j += 1;
                if paren_at(j) {
                    j = self.matching_paren(j) + 1;
                }
                if self.kw_at(j) != Kw::AS || !paren_at(j + 1) {
                    return;
                }
                j = self.matching_paren(j + 1) + 1;
            } else {
                return;
            }
            if !self.tok(j).is_some_and(|t| t.is_punct(b',')) {
                return;
            }
            j += 1;
        }
    }

    /// Looks at token `i`; returns where to go on.
    fn table_token(&mut self, i: usize, st: &Stmt, w: &mut Walk) -> usize {
        let t = self.toks[i];
        match t.kind {
            Kind::Punct if t.punct == b',' && w.is_from_open(t.depth) => {
                self.table_source(i + 1, st, w)
            }
            Kind::Punct if t.punct == b')' => {
                w.close_from(t.depth + 1);
                i + 1
            }
            Kind::Word => self.table_word(i, st, w),
            Kind::Quoted => self.dotted_call(i),
            _ => i + 1,
        }
    }

    fn table_word(&mut self, i: usize, st: &Stmt, w: &mut Walk) -> usize {
        let t = self.toks[i];
        let prev_kw = i.checked_sub(1).map_or(Kw::None, |p| self.kw_at(p));
        let next_is_paren = self.tok(i + 1).is_some_and(|n| n.is_punct(b'('));
        match t.kw {
            // `a IS [NOT] DISTINCT FROM b` compares values; the FROM of
            // `DELETE FROM t` and `INSERT ... INTO` go with their targets.
            Kw::FROM
                if !i
                    .checked_sub(1)
                    .is_some_and(|p| self.word_is(p, "DISTINCT")) =>
            {
                w.open_from(t.depth);
                self.table_source(i + 1, st, w)
            }
            Kw::JOIN => self.table_source(i + 1, st, w),
            Kw::APPLY if matches!(prev_kw, Kw::CROSS | Kw::OUTER) => {
                self.table_source(i + 1, st, w)
            }
            Kw::USING if st.leader == Kw::MERGE => self.table_source(i + 1, st, w),
            // `FOR SYSTEM_TIME AS OF ..` belongs to the table source;
            // `FOR XML/JSON/BROWSE/UPDATE` ends the FROM list.
            Kw::FOR => {
                if matches!(self.kw_at(i + 1), Kw::XML | Kw::JSON | Kw::UPDATE)
                    || self.word_is(i + 1, "BROWSE")
                {
                    w.close_from(t.depth);
                }
                i + 1
            }
            kw if ends_from(kw) => {
                w.close_from(t.depth);
                i + 1
            }
            Kw::UPDATE if prev_kw == Kw::FOR || self.kw_at(i + 1) == Kw::STATISTICS => i + 1,
            // MERGE's `WHEN ... THEN UPDATE|DELETE|INSERT` name no table.
            Kw::INSERT | Kw::UPDATE | Kw::DELETE if st.leader == Kw::MERGE => i + 1,
            Kw::INSERT | Kw::UPDATE | Kw::DELETE | Kw::MERGE => self.dml_tables(i, w),
            // Not the INTO of INSERT/MERGE (taken with their targets):
            // `OUTPUT ... INTO t` or `SELECT ... INTO t`, both writes.
            Kw::INTO => self.target(i + 1, None, w),
            Kw::TRUNCATE if self.kw_at(i + 1) == Kw::TABLE => self.target(i + 2, None, w),
            Kw::BULK if self.kw_at(i + 1) == Kw::INSERT => self.target(i + 2, None, w),
            Kw::OPENQUERY | Kw::OPENROWSET | Kw::OPENDATASOURCE => {
                self.v.hidden_tables = true;
                i + 1
            }
            kw if next_is_paren && reads_catalog(kw) && !self.tempdb_argument(i + 2) => {
                self.v.hidden_tables = true;
                i + 1
            }
            _ => self.dotted_call(i),
        }
    }

    /// `OBJECT_ID('tempdb..#t')`: the catalog of temp tables, which the
    /// batch's own session owns.
    fn tempdb_argument(&self, k: usize) -> bool {
        self.tok(k).is_some_and(|t| {
            t.kind == Kind::Str && {
                let value = lexer::string_value(self.sql, t);
                value
                    .get(..6)
                    .is_some_and(|p| p.eq_ignore_ascii_case("tempdb"))
            }
        })
    }

    /// A dotted name at `i` outside a table source: a call of it
    /// (`dbo.fn(..)`) runs a user function, whose body may read any table.
    /// Single-part calls are built-ins (a scalar user function needs its
    /// schema); `@x.value(..)`, `t.col.nodes(..)` are xml methods.
    fn dotted_call(&mut self, i: usize) -> usize {
        if i.checked_sub(1)
            .and_then(|p| self.tok(p))
            .is_some_and(|p| p.is_punct(b'.'))
            || !self.tok(i + 1).is_some_and(|t| t.is_punct(b'.'))
        {
            return i + 1;
        }
        let (parts, last, next) = self.dotted_span(i);
        if self.tok(next).is_some_and(|t| t.is_punct(b'(')) {
            let method = parts >= 3
                && XML_METHODS
                    .iter()
                    .any(|m| self.text(last).eq_ignore_ascii_case(m));
            if !method {
                self.function_source(i);
            }
        }
        next
    }

    /// A call of a user or system function at `i`: its tables are hidden;
    /// a dynamic management function is volatile.
    fn function_source(&mut self, i: usize) {
        self.v.hidden_tables = true;
        let (parts, _) = self.name_parts(i);
        self.volatile_object(&parts);
    }

    fn volatile_object(&mut self, parts: &[String]) {
        if is_volatile_object(parts) {
            self.v.volatile(|| parts.join(".").to_uppercase());
        }
    }

    /// A table source at `j` (after FROM, JOIN, APPLY, USING or a `,`).
    fn table_source(&mut self, mut j: usize, st: &Stmt, w: &mut Walk) -> usize {
        // `FROM ((a JOIN b ON ..) JOIN c ON ..)`: a nested join opens a
        // FROM list inside its parentheses.
        while let Some(t) = self.tok(j).filter(|t| t.is_punct(b'(') && j < st.end) {
            if matches!(self.kw_at(j + 1), Kw::SELECT | Kw::WITH | Kw::VALUES)
                || self.tok(j + 1).is_some_and(|n| n.is_punct(b'('))
            {
                // A derived table: its own FROM is found inside.
                let close = self.matching_paren(j);
                if let Some(alias) = self.alias_at(close + 1) {
                    w.aliases.push((alias, Alias::Derived));
                }
                return j + 1;
            }
            w.open_from(t.depth + 1);
            j += 1;
        }
        let Some(t) = self.tok(j).filter(|_| j < st.end) else {
            return j;
        };
        match t.kind {
            Kind::Var | Kind::Temp => {
                let (_, next) = self.name_parts(j);
                if let Some(alias) = self.alias_at(next) {
                    w.aliases.push((alias, Alias::Unlisted));
                }
                next
            }
            Kind::Word | Kind::Quoted => self.named_source(j, w),
            // `BULK INSERT t FROM 'file'`, `TRIM('x' FROM col)`.
            Kind::Str | Kind::Number | Kind::SysVar => j,
            // `FROM ::fn_trace_gettable(..)` and the like.
            Kind::Punct => {
                self.v.hidden_tables = true;
                j
            }
        }
    }

    /// A named table source at `j`: a table, view or CTE, or a rowset
    /// function.
    fn named_source(&mut self, j: usize, w: &mut Walk) -> usize {
        let (parts, next) = self.name_parts(j);
        let call = self.tok(next).is_some_and(|t| t.is_punct(b'('));
        if call && !self.hint_list(next) {
            let builtin = parts.len() == 1
                && self.toks[j].kind == Kind::Word
                && BUILTIN_ROWSETS
                    .iter()
                    .any(|f| parts[0].eq_ignore_ascii_case(f));
            let method = parts.len() >= 3
                && XML_METHODS
                    .iter()
                    .any(|m| parts[parts.len() - 1].eq_ignore_ascii_case(m));
            if !builtin && !method {
                self.function_source(j);
            }
            return next;
        }
        if parts.len() >= 4 {
            self.v.hidden_tables = true;
            return next;
        }
        self.volatile_object(&parts);
        if is_catalog(&parts) {
            self.v.hidden_tables = true;
        }
        let after = if call {
            self.matching_paren(next) + 1
        } else {
            next
        };
        let alias = match table_name(&parts) {
            Some(name) if parts.len() == 1 && w.ctes.contains(&name) => Alias::Derived,
            Some(name) => {
                self.table_read(name.clone());
                Alias::Table(name)
            }
            None => Alias::Unlisted,
        };
        if let Some(a) = self.alias_at(after) {
            w.aliases.push((a, alias));
        }
        next
    }

    /// `(NOLOCK, INDEX(ix))` at `open`: old-style table hints, not the
    /// arguments of a function.
    fn hint_list(&self, open: usize) -> bool {
        let close = self.matching_paren(open);
        let depth = self.toks[open].depth + 1;
        let is_hint = |k: usize| {
            let t = &self.toks[k];
            t.kind == Kind::Word
                && TABLE_HINTS
                    .iter()
                    .any(|h| t.text(self.sql).eq_ignore_ascii_case(h))
        };
        let (mut hints, mut other) = (0, 0);
        for k in open + 1..close {
            let t = &self.toks[k];
            if t.depth > depth || matches!(t.punct, b',' | b'=' | b'(' | b')') {
                continue;
            }
            if is_hint(k) {
                hints += 1;
            } else if t.kind != Kind::Number {
                other += 1;
            }
        }
        hints > 0 && other == 0
    }

    /// The alias at `k` (`[AS] a`), lower-cased.
    fn alias_at(&self, mut k: usize) -> Option<String> {
        if self.kw_at(k) == Kw::AS {
            k += 1;
        }
        let t = self.tok(k)?;
        let alias = match t.kind {
            Kind::Quoted => true,
            Kind::Word => !is_clause_word(t.kw),
            _ => false,
        };
        alias.then(|| lexer::ident_value(self.sql, t).to_lowercase())
    }

    /// INSERT/UPDATE/DELETE/MERGE at `i`: its target.
    fn dml_tables(&mut self, i: usize, w: &mut Walk) -> usize {
        let kw = self.kw_at(i);
        let optional = match kw {
            Kw::INSERT | Kw::MERGE => Kw::INTO,
            Kw::DELETE => Kw::FROM,
            _ => Kw::None,
        };
        let (mut target, _) = self.dml_target(i + 1, optional);
        if kw == Kw::INSERT && self.kw_at(target) == Kw::BULK {
            target += 1;
        }
        let aliased = matches!(kw, Kw::UPDATE | Kw::DELETE);
        self.target(target, Some(aliased), w)
    }

    /// A written table at `j`. `resolve`: a single-part name may be a CTE
    /// (and, when true, an alias), so it is resolved at the statement's end.
    fn target(&mut self, j: usize, resolve: Option<bool>, w: &mut Walk) -> usize {
        let Some(t) = self.tok(j) else {
            self.v.hidden_tables = true;
            return j;
        };
        match t.kind {
            Kind::Var | Kind::Temp => j + 1,
            Kind::Word if matches!(t.kw, Kw::OPENQUERY | Kw::OPENROWSET | Kw::OPENDATASOURCE) => {
                self.v.hidden_tables = true;
                j + 1
            }
            Kind::Word | Kind::Quoted => {
                let (parts, next) = self.name_parts(j);
                if parts.len() >= 4 {
                    self.v.hidden_tables = true;
                }
                match (table_name(&parts), resolve) {
                    (Some(name), Some(aliased)) if parts.len() == 1 => {
                        w.targets.push((name, aliased))
                    }
                    (Some(name), _) => self.table_written(name),
                    (None, _) => {}
                }
                next
            }
            _ => {
                self.v.hidden_tables = true;
                j
            }
        }
    }

    /// Single-part targets: an alias names its table; a CTE or derived
    /// table stands for every table the batch reads (a superset of the
    /// ones it is built on).
    fn resolve_targets(&mut self, w: Walk) {
        for (name, aliased) in w.targets {
            let alias = aliased
                .then(|| w.aliases.iter().find(|(a, _)| *a == name))
                .flatten()
                .map(|(_, of)| of);
            match alias {
                Some(Alias::Table(table)) => self.table_written(table.clone()),
                Some(Alias::Unlisted) => {}
                Some(Alias::Derived) => self.all_reads_written(),
                None if w.ctes.contains(&name) => self.all_reads_written(),
                None => self.table_written(name),
            }
        }
    }

    fn all_reads_written(&mut self) {
        for t in self.v.read_tables.clone() {
            self.table_written(t);
        }
    }

    /// CREATE/ALTER/DROP (also of a procedure, function, trigger or view,
    /// whose body runs later and is not walked). `CREATE TABLE a (..)
    /// CREATE INDEX i ON b (..)` is one statement to the splitter: each
    /// verb at depth 0 is followed.
    pub(super) fn ddl_tables(&mut self, st: &Stmt) {
        let alter_table =
            self.kw_at(st.first) == Kw::ALTER && self.kw_at(st.first + 1) == Kw::TABLE;
        let mut i = st.first;
        loop {
            let next = self.ddl_object(i, st, alter_table);
            if st.module {
                return;
            }
            let Some(verb) = (next.max(i + 1)..st.end).find(|&k| {
                self.toks[k].depth == 0
                    && matches!(self.kw_at(k), Kw::CREATE | Kw::ALTER | Kw::DROP)
            }) else {
                return;
            };
            i = verb;
        }
    }

    /// One `CREATE|ALTER|DROP <kind> name [, name] [ON table]` at `i`;
    /// returns the index after it. An unknown kind hides tables, except
    /// the clauses of `ALTER TABLE` (`DROP COLUMN`, `ALTER COLUMN`).
    fn ddl_object(&mut self, i: usize, st: &Stmt, alter_table: bool) -> usize {
        let verb = self.kw_at(i);
        let mut j = i + 1;
        if verb == Kw::CREATE && self.kw_at(j) == Kw::OR {
            j += 2;
        }
        while DDL_MODIFIERS.iter().any(|m| self.word_is(j, m)) {
            j += 1;
        }
        let object = match self.kw_at(j) {
            Kw::TABLE | Kw::VIEW | Kw::PROC | Kw::PROCEDURE | Kw::FUNCTION => Some(Object::Named),
            Kw::TRIGGER => Some(Object::Trigger),
            _ if self.word_is(j, "INDEX") || self.word_is(j, "STATISTICS") => Some(Object::OnTable),
            _ if ["SEQUENCE", "SYNONYM", "TYPE", "DEFAULT", "RULE"]
                .iter()
                .any(|k| self.word_is(j, k)) =>
            {
                Some(Object::Named)
            }
            _ => None,
        };
        let Some(object) = object else {
            if !(alter_table && i > st.first) {
                self.v.hidden_tables = true;
            }
            return j;
        };
        let is_table = self.kw_at(j) == Kw::TABLE;
        j += 1;
        if self.kw_at(j) == Kw::IF && self.word_is(j + 1, "EXISTS") {
            j += 2;
        }
        loop {
            // `CREATE FULLTEXT INDEX ON t`: no name before ON.
            let (parts, mut next) = if self.kw_at(j) == Kw::ON {
                (Vec::new(), j)
            } else {
                self.name_parts(j)
            };
            let on_table = self.kw_at(next) == Kw::ON;
            if parts.is_empty() && !on_table {
                return j;
            }
            if parts.len() >= 4 {
                self.v.hidden_tables = true;
            }
            match object {
                Object::Named => {
                    if let Some(name) = table_name(&parts) {
                        self.table_written(name);
                    }
                }
                // `DROP INDEX t.ix` (old form): the table precedes it.
                Object::OnTable if !on_table && parts.len() >= 2 => {
                    if let Some(name) = table_name(&parts[..parts.len() - 1]) {
                        self.table_written(name);
                    }
                }
                Object::Trigger if !on_table => {
                    if let Some(name) = table_name(&parts) {
                        self.table_written(name);
                    }
                }
                _ => {}
            }
            if on_table {
                // `ON DATABASE` / `ON ALL SERVER`: a DDL trigger.
                if !self.word_is(next + 1, "DATABASE") && self.kw_at(next + 1) != Kw::ALL {
                    let (table, after) = self.name_parts(next + 1);
                    if let Some(name) = table_name(&table) {
                        self.table_written(name);
                    }
                    next = after;
                }
            }
            if is_table && verb == Kw::ALTER {
                self.switch_target(next, st);
            }
            if !self.tok(next).is_some_and(|t| t.is_punct(b',')) || next >= st.end {
                return next;
            }
            j = next + 1;
        }
    }

    /// `ALTER TABLE t SWITCH [PARTITION n] TO u`: moves rows into `u`.
    fn switch_target(&mut self, from: usize, st: &Stmt) {
        let Some(switch) = (from..st.end).find(|&k| self.word_is(k, "SWITCH")) else {
            return;
        };
        if let Some(to) = (switch..st.end).find(|&k| self.word_is(k, "TO")) {
            let (parts, _) = self.name_parts(to + 1);
            if parts.len() >= 4 {
                self.v.hidden_tables = true;
            }
            if let Some(name) = table_name(&parts) {
                self.table_written(name);
            }
        }
    }
}
