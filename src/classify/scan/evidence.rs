//! Evidence from single tokens, wherever they are in a statement: write
//! keywords, SELECT ... INTO, OUTPUT, hints, session functions, temp tables.

use super::split::{is_ddl_leader, Stmt};
use super::{Cx, StmtCx};
use crate::classify::access::{volatile, Volatile};
use crate::classify::lexer::{self, Kind, Kw, Token};
use crate::classify::Flags;

impl Cx<'_> {
    /// Evidence from one token, wherever it is in its statement.
    pub(super) fn evidence(&mut self, i: usize, st: &Stmt, sc: &mut StmtCx) {
        let Some(t) = self.tok(i) else { return };
        match t.kind {
            Kind::Temp | Kind::Quoted => {
                if let Some(name) = self.temp_name(i) {
                    self.v.flag(Flags::USES_TEMP_TABLE, || {
                        format!("temp table {}", name.to_lowercase())
                    });
                    self.v.temp_table(&name);
                }
                self.four_part_name(i);
            }
            Kind::SysVar => self.system_variable(t),
            Kind::Str => self.temp_table_in_string(t),
            Kind::Word => {
                self.four_part_name(i);
                self.keyword_evidence(i, t, st, sc);
            }
            _ => {}
        }
    }

    /// The temp table named by token `i`: `#t`, `##t`, and also `[#t]` and
    /// `"#t"`, which name the same tables.
    fn temp_name(&self, i: usize) -> Option<String> {
        let t = self.tok(i)?;
        match t.kind {
            Kind::Temp => Some(t.text(self.sql).to_string()),
            Kind::Quoted if t.text(self.sql).get(1..2) == Some("#") => {
                Some(lexer::ident_value(self.sql, t))
            }
            _ => None,
        }
    }

    /// The dotted name at `i`, without allocating: its number of parts
    /// (`db..object` has an empty one), the index of its last part, and the
    /// index after it.
    pub(super) fn dotted_span(&self, i: usize) -> (usize, usize, usize) {
        let is_dot = |k: usize| self.tok(k).is_some_and(|t| t.is_punct(b'.'));
        let is_part = |k: usize| {
            self.tok(k)
                .is_some_and(|t| matches!(t.kind, Kind::Word | Kind::Quoted | Kind::Temp))
        };
        let (mut parts, mut j) = (1, i);
        while is_dot(j + 1) {
            if is_dot(j + 2) {
                parts += 1; // `db..object`: the schema part is empty
                j += 1;
            } else if is_part(j + 2) {
                parts += 1;
                j += 2;
            } else {
                break;
            }
        }
        (parts, j, j + 1)
    }

    /// `server.database.schema.object` runs on a linked server, which a
    /// replica need not have (like OPENQUERY).
    fn four_part_name(&mut self, i: usize) {
        let is_dot = |k: usize| self.tok(k).is_some_and(|t| t.is_punct(b'.'));
        if !is_dot(i + 1) || i.checked_sub(1).is_some_and(is_dot) {
            return;
        }
        let (parts, j, _) = self.dotted_span(i);
        if parts >= 4 {
            let name = self
                .sql
                .get(self.toks[i].start..self.toks[j].end)
                .unwrap_or("");
            let name: String = name.chars().take(80).collect();
            self.v
                .unknown(|| format!("four-part name {name} (linked server)"));
        }
    }

    /// `@@IDENTITY`, `@@SPID`, `@@TRANCOUNT` belong to the session;
    /// `@@ROWCOUNT` and `@@ERROR` too when nothing before them in the batch
    /// set them (they describe the session's previous batch); cursor state
    /// (`@@FETCH_STATUS`) belongs to the session's cursors.
    fn system_variable(&mut self, t: &Token) {
        let name = t.text(self.sql).to_ascii_uppercase();
        // Every `@@` value belongs to the server or the session, not to the text.
        self.v.volatile(|| name.clone());
        let session = match name.as_str() {
            "@@IDENTITY" | "@@SPID" | "@@TRANCOUNT" => true,
            "@@ROWCOUNT" | "@@ERROR" => self.statements_seen == 0,
            "@@FETCH_STATUS" | "@@CURSOR_ROWS" => {
                self.v
                    .flag(Flags::CURSOR, || format!("cursor state {name}"));
                false
            }
            _ => false,
        };
        if session {
            self.v.flag(Flags::SESSION_FUNCTION, || {
                format!("session function {name}")
            });
        }
    }

    /// `OBJECT_ID('tempdb..#t')`: a temp table named in a string.
    fn temp_table_in_string(&mut self, t: &Token) {
        let text = t.text(self.sql);
        let Some(hash) = text.find('#') else { return };
        if !text[..hash].to_ascii_lowercase().contains("tempdb") {
            return;
        }
        let rest = &text[hash..];
        let end = rest
            .char_indices()
            .skip(1)
            .find(|&(_, c)| !(c.is_alphanumeric() || matches!(c, '_' | '#' | '@' | '$')))
            .map_or(rest.len(), |(p, _)| p);
        let name = &rest[..end];
        if name.len() > 1 {
            self.v.flag(Flags::USES_TEMP_TABLE, || {
                format!("temp table {}", name.to_lowercase())
            });
            self.v.temp_table(name);
        }
    }

    fn keyword_evidence(&mut self, i: usize, t: &Token, st: &Stmt, sc: &mut StmtCx) {
        let prev_kw = i.checked_sub(1).map_or(Kw::None, |p| self.kw_at(p));
        let next_is_paren = self.tok(i + 1).is_some_and(|n| n.is_punct(b'('));
        if matches!(t.kw, Kw::INSERT | Kw::UPDATE | Kw::DELETE | Kw::MERGE) {
            sc.dml_seen = true;
        }
        self.volatile_function(i, t.kw, prev_kw, next_is_paren);
        match t.kw {
            Kw::INSERT => {
                let (target, into) = self.dml_target(i + 1, Kw::INTO);
                sc.into_ok_at = into;
                let tt = self.tok(target);
                if tt.is_some_and(|t| t.is(Kw::BULK)) {
                    self.v.write(|| "INSERT BULK".into());
                } else {
                    self.dml(target, "INSERT");
                }
            }
            Kw::UPDATE => {
                if prev_kw == Kw::FOR {
                    self.v.flag(Flags::LOCKING_HINT, || "FOR UPDATE".into());
                } else if self.kw_at(i + 1) == Kw::STATISTICS {
                    self.v.write(|| "UPDATE STATISTICS".into());
                } else {
                    let (target, _) = self.dml_target(i + 1, Kw::None);
                    self.dml(target, "UPDATE");
                }
            }
            Kw::DELETE => {
                let (target, _) = self.dml_target(i + 1, Kw::FROM);
                self.dml(target, "DELETE");
            }
            Kw::MERGE => {
                let (target, into) = self.dml_target(i + 1, Kw::INTO);
                sc.into_ok_at = into;
                let name = self.object_name(target);
                self.v.write(|| format!("MERGE ({name})"));
            }
            // Not the INTO of INSERT/MERGE, FETCH (whose INTO names
            // variables; any other target is taken for a table, so a garbled
            // FETCH is never a read), OUTPUT or `EXECUTE AS ... WITH COOKIE
            // INTO @c`: SELECT ... INTO.
            Kw::INTO
                if sc.into_ok_at != Some(i)
                    && (sc.leader != Kw::FETCH
                        || !self.tok(i + 1).is_some_and(|t| t.kind == Kind::Var))
                    && !sc.output_seen
                    && !i.checked_sub(1).is_some_and(|p| self.word_is(p, "COOKIE")) =>
            {
                self.select_into(i + 1);
            }
            Kw::OUTPUT if sc.dml_seen && !sc.exec_seen => {
                sc.output_seen = true;
                self.v.write(|| "OUTPUT clause".into());
            }
            // `GRANT EXECUTE`, `WITH EXECUTE AS` in DDL are not calls.
            Kw::EXEC | Kw::EXECUTE if !is_ddl_leader(sc.leader) => {
                sc.exec_seen = true;
                self.exec_call(i + 1, st.end);
            }
            Kw::TRUNCATE => {
                let name = self.object_name(i + 2);
                self.v.write(|| format!("TRUNCATE TABLE ({name})"));
            }
            Kw::CREATE => self.create(i),
            Kw::DROP => {
                let what = self.keyword_phrase(i);
                self.v.write(|| what);
                if i == st.first {
                    self.drop_objects(i, st);
                }
            }
            Kw::ALTER
            | Kw::GRANT
            | Kw::REVOKE
            | Kw::DENY
            | Kw::DBCC
            | Kw::BACKUP
            | Kw::RESTORE
            | Kw::BULK
            | Kw::WRITETEXT
            | Kw::UPDATETEXT
            | Kw::KILL
            | Kw::SHUTDOWN
            | Kw::RECONFIGURE
            | Kw::CHECKPOINT
            | Kw::TRIGGER
            | Kw::LOAD
            | Kw::DUMP => {
                let what = self.keyword_phrase(i);
                self.v.write(|| what);
            }
            Kw::RECEIVE
                if i == st.first
                    || i.checked_sub(1)
                        .and_then(|p| self.tok(p))
                        .is_some_and(|p| p.is_punct(b'(')) =>
            {
                self.v.write(|| "RECEIVE (Service Broker)".into());
            }
            Kw::CONVERSATION => {
                let service_broker = match prev_kw {
                    Kw::BEGIN | Kw::END | Kw::MOVE | Kw::GET | Kw::DIALOG => true,
                    Kw::ON => i >= 2 && self.kw_at(i - 2) == Kw::SEND,
                    _ => false,
                };
                if service_broker {
                    self.v.write(|| "Service Broker conversation".into());
                }
            }
            // The document handle comes from sp_xml_preparedocument, run
            // earlier on this session.
            Kw::OPENXML => self.v.flag(Flags::SESSION_FUNCTION, || {
                "OPENXML (document handle of the session)".into()
            }),
            Kw::OPENQUERY | Kw::OPENROWSET | Kw::OPENDATASOURCE => {
                let what = format!("{} (remote data)", self.upper(i));
                self.v.unknown(|| what);
            }
            Kw::NEXT if self.kw_at(i + 1) == Kw::VALUE && self.kw_at(i + 2) == Kw::FOR => {
                let name = self.object_name(i + 3);
                self.v.flag(Flags::SEQUENCE, || "NEXT VALUE FOR".into());
                self.v.write(|| format!("NEXT VALUE FOR {name}"));
            }
            Kw::CURSOR => self.v.flag(Flags::CURSOR, || "cursor".into()),
            Kw::HOLDLOCK => self.lock_hint(i),
            Kw::UPDLOCK
            | Kw::XLOCK
            | Kw::TABLOCKX
            | Kw::TABLOCK
            | Kw::REPEATABLEREAD
            | Kw::SERIALIZABLE
                if t.depth > 0 =>
            {
                self.lock_hint(i)
            }
            Kw::SCOPE_IDENTITY
            | Kw::IDENT_CURRENT
            | Kw::SESSION_CONTEXT
            | Kw::CONTEXT_INFO
            | Kw::XACT_STATE
            | Kw::CURRENT_TRANSACTION_ID
                if next_is_paren =>
            {
                let what = format!("session function {}()", self.upper(i));
                self.v.flag(Flags::SESSION_FUNCTION, || what);
            }
            _ => {}
        }
    }

    /// `GETDATE()`, `CURRENT_TIMESTAMP`, `USER`: functions whose result
    /// can differ between two runs of the same text. Calls count only with
    /// their `(` (a column `user_name` is not `USER_NAME()`); `[GETDATE]`
    /// and `t.getdate` are names (the lexer gives them no keyword).
    fn volatile_function(&mut self, i: usize, kw: Kw, prev_kw: Kw, next_is_paren: bool) {
        let counts = match volatile(kw) {
            None => false,
            Some(Volatile::Call) => next_is_paren,
            // `CREATE USER`, `EXECUTE AS USER = ..` name a principal.
            Some(Volatile::Niladic) => {
                kw != Kw::USER || !matches!(prev_kw, Kw::CREATE | Kw::ALTER | Kw::DROP | Kw::AS)
            }
        };
        if counts && self.v.volatile.is_none() {
            self.v.volatile = Some(self.upper(i));
        }
    }

    fn lock_hint(&mut self, i: usize) {
        let what = format!("locking hint {}", self.upper(i));
        self.v.flag(Flags::LOCKING_HINT, || what);
    }

    /// The keyword and the word after it, for a reason: "DROP TABLE".
    fn keyword_phrase(&self, i: usize) -> String {
        let mut s = self.upper(i);
        if self.tok(i + 1).is_some_and(|t| t.kind == Kind::Word) {
            s.push(' ');
            s.push_str(&self.upper(i + 1));
        }
        s
    }

    /// Skips `TOP (n) [PERCENT]` and an optional `INTO`/`FROM` after a DML
    /// verb. Returns (index of the target, index of the skipped `optional`).
    pub(super) fn dml_target(&self, mut j: usize, optional: Kw) -> (usize, Option<usize>) {
        if self.kw_at(j) == Kw::TOP {
            j += 1;
            // `TOP n` without parentheses is not valid in INSERT, UPDATE,
            // DELETE or MERGE: nothing more is skipped, so what follows is
            // never taken for the target (a table variable would be a read).
            if self.tok(j).is_some_and(|t| t.is_punct(b'(')) {
                j = self.matching_paren(j) + 1;
            }
            if self.kw_at(j) == Kw::PERCENT {
                j += 1;
            }
        }
        let mut skipped = None;
        if optional != Kw::None && self.kw_at(j) == optional {
            skipped = Some(j);
            j += 1;
        }
        (j, skipped)
    }

    /// Index of the `)` closing the `(` at `open` (or the last token).
    pub(super) fn matching_paren(&self, open: usize) -> usize {
        let depth = self.tok(open).map_or(0, |t| t.depth);
        (open + 1..self.toks.len())
            .find(|&k| self.toks[k].depth == depth && self.toks[k].is_punct(b')'))
            .unwrap_or(self.toks.len().saturating_sub(1))
    }

    /// INSERT/UPDATE/DELETE of `target`: a table variable is a read.
    fn dml(&mut self, target: usize, verb: &'static str) {
        let name = self.object_name(target);
        if self.tok(target).is_some_and(|t| t.kind == Kind::Var) {
            self.v.read(|| format!("{verb} {name} (table variable)"));
        } else {
            self.v.write(|| format!("{verb} ({name})"));
        }
    }

    /// `SELECT ... INTO target`: creates a table.
    fn select_into(&mut self, target: usize) {
        let name = self.object_name(target);
        let temp = self.temp_name(target).is_some_and(|n| !n.starts_with("##"));
        if temp {
            self.v.flag(Flags::CREATES_TEMP_TABLE, || {
                format!("creates temp table {name}")
            });
            self.temp_table_created(&name);
        }
        self.v.write(|| format!("SELECT ... INTO {name}"));
    }

    fn create(&mut self, i: usize) {
        let object = self.kw_at(i + 1);
        let temp = self.temp_name(i + 2).is_some_and(|n| !n.starts_with("##"));
        if object == Kw::TABLE && temp {
            let name = self.object_name(i + 2);
            self.v.flag(Flags::CREATES_TEMP_TABLE, || {
                format!("creates temp table {name}")
            });
            self.temp_table_created(&name);
            self.v.write(|| format!("CREATE TABLE {name}"));
        } else {
            let what = self.keyword_phrase(i);
            self.v.write(|| what);
        }
    }

    /// A dotted name starting at `j`, unquoted: `[dbo].[Orders]` → `dbo.Orders`.
    pub(super) fn object_name(&self, j: usize) -> String {
        self.name_parts(j).0.join(".")
    }

    /// The parts of a dotted name at `j` (`db..proc` has an empty part), and
    /// the index after it.
    pub(super) fn name_parts(&self, mut j: usize) -> (Vec<String>, usize) {
        let mut parts = Vec::new();
        loop {
            match self.tok(j) {
                Some(t) if matches!(t.kind, Kind::Word | Kind::Quoted | Kind::Temp | Kind::Var) => {
                    parts.push(lexer::ident_value(self.sql, t));
                    j += 1;
                }
                _ => break,
            }
            if self.tok(j).is_some_and(|t| t.is_punct(b'.')) {
                j += 1;
                if self.tok(j).is_some_and(|t| t.is_punct(b'.')) {
                    parts.push(String::new());
                    j += 1;
                }
            } else {
                break;
            }
        }
        (parts, j)
    }
}
