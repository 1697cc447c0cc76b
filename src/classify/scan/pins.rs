//! Pinned state by statement: temp tables and procedures, T-SQL cursors,
//! open keys, impersonation; and which statements may not run (after which
//! ends are not proved).

use super::split::Stmt;
use super::Cx;
use crate::classify::lexer::{self, Kind, Kw};
use crate::classify::{Pin, PinReason, SessionEffect};

impl Cx<'_> {
    /// Records a start; a second start of a pin that is not counted, with
    /// no end between, adds nothing (`DECLARE c CURSOR ...; OPEN c`).
    pub(super) fn pin(&mut self, pin: Pin) {
        if !pin.reason.is_counted() {
            let last = self.v.effects.iter().rev().find_map(|e| match e {
                SessionEffect::Pin(p) if *p == pin => Some(true),
                SessionEffect::Unpin(p) if *p == pin => Some(false),
                _ => None,
            });
            if last == Some(true) {
                return;
            }
        }
        self.v.effects.push(SessionEffect::Pin(pin));
    }

    /// Records an end, unless the statement may not run.
    pub(super) fn unpin(&mut self, pin: Pin) {
        if !self.conditional {
            self.v.effects.push(SessionEffect::Unpin(pin));
        }
    }

    /// Upper-cased text of token `i` equals `word` (for words the lexer
    /// has no keyword for: LOCAL, GLOBAL, EXISTS, SYMMETRIC, ...).
    pub(super) fn word_is(&self, i: usize, word: &str) -> bool {
        self.tok(i)
            .is_some_and(|t| t.kind == Kind::Word && t.text(self.sql).eq_ignore_ascii_case(word))
    }

    /// `BEGIN TRY` / `BEGIN CATCH`: what follows may be skipped by an error
    /// the client never sees. `ELSE`: the other branch of an IF.
    pub(super) fn block(&mut self, st: &Stmt) {
        let kw = self.kw_at(st.first);
        let try_catch = kw == Kw::BEGIN && matches!(self.kw_at(st.first + 1), Kw::TRY | Kw::CATCH);
        // A block after the idiom's IF: its statements are conditional.
        let guarded = self.drop_idiom.take().is_some();
        if try_catch || kw == Kw::ELSE || guarded {
            self.conditional = true;
        }
    }

    /// `IF OBJECT_ID('tempdb..#t'[, 'U']) IS NOT NULL`: the temp table tested.
    pub(super) fn temp_table_test(&self, st: &Stmt) -> Option<String> {
        let f = st.first;
        let open = f + 2;
        if !self.word_is(f + 1, "OBJECT_ID") || !self.tok(open)?.is_punct(b'(') {
            return None;
        }
        let close = self.matching_paren(open);
        let arg = self.tok(open + 1).filter(|t| t.kind == Kind::Str)?;
        let tail_ok = close + 4 == st.end
            && self.kw_at(close + 1) == Kw::IS
            && self.kw_at(close + 2) == Kw::NOT
            && self.word_is(close + 3, "NULL");
        let args_ok =
            close == open + 2 || (close == open + 4 && self.tok(open + 2)?.is_punct(b','));
        if !tail_ok || !args_ok {
            return None;
        }
        let text = lexer::string_value(self.sql, arg);
        let mut parts = text.split('.');
        let db = parts.next()?;
        let name = parts.next_back()?;
        let local = name.starts_with('#') && !name.starts_with("##");
        (db.eq_ignore_ascii_case("tempdb") && local).then(|| name.to_string())
    }

    /// `DROP TABLE [IF EXISTS] <table>`, naming only `table`.
    pub(super) fn drops_only(&self, st: &Stmt, table: &str) -> bool {
        let f = st.first;
        if st.leader != Kw::DROP || self.kw_at(f + 1) != Kw::TABLE {
            return false;
        }
        let j = self.skip_if_exists(f + 2);
        let (parts, next) = self.name_parts(j);
        next == st.end && parts.last().is_some_and(|p| p == table)
    }

    fn skip_if_exists(&self, j: usize) -> usize {
        if self.kw_at(j) == Kw::IF && self.word_is(j + 1, "EXISTS") {
            j + 2
        } else {
            j
        }
    }

    /// `DROP TABLE|PROCEDURE [IF EXISTS] a, b, ...` at `i`: ends the pins
    /// of the local temp objects among them.
    pub(super) fn drop_objects(&mut self, i: usize, st: &Stmt) {
        let reason = match self.kw_at(i + 1) {
            Kw::TABLE => PinReason::TempTable,
            Kw::PROC | Kw::PROCEDURE => PinReason::TempProcedure,
            _ => return,
        };
        let mut j = self.skip_if_exists(i + 2);
        while j < st.end {
            let (parts, next) = self.name_parts(j);
            match parts.last() {
                Some(name) if name.starts_with('#') && !name.starts_with("##") => {
                    self.unpin(Pin::named(reason, name.clone()));
                }
                _ => {}
            }
            if next <= j || !self.tok(next).is_some_and(|t| t.is_punct(b',')) {
                break;
            }
            j = next + 1;
        }
    }

    /// `CREATE [OR ALTER] PROCEDURE #p` / `ALTER PROCEDURE #p`: a local temp
    /// procedure lives until the session ends or drops it. `##p` is visible
    /// to every session: it does not pin.
    pub(super) fn temp_procedure(&mut self, st: &Stmt) {
        let mut j = st.first + 1;
        if self.kw_at(j) == Kw::OR {
            j += 2;
        }
        if !matches!(self.kw_at(j), Kw::PROC | Kw::PROCEDURE) {
            return;
        }
        let (parts, _) = self.name_parts(j + 1);
        if let [name] = parts.as_slice() {
            if name.starts_with('#') && !name.starts_with("##") {
                self.pin(Pin::named(PinReason::TempProcedure, name.clone()));
            }
        }
    }

    /// A local temp table the statement creates (`CREATE TABLE #t`,
    /// `SELECT ... INTO #t`).
    pub(super) fn temp_table_created(&mut self, name: &str) {
        self.pin(Pin::named(PinReason::TempTable, name));
    }

    /// `DECLARE c [INSENSITIVE] [SCROLL] CURSOR [LOCAL | GLOBAL] ... FOR ...`:
    /// a global cursor (GLOBAL, or no scope: the CURSOR_DEFAULT database
    /// option is GLOBAL unless changed) outlives the batch; a LOCAL one ends
    /// with it.
    pub(super) fn declare_cursor(&mut self, st: &Stmt) {
        let f = st.first;
        let Some(name_tok) = self
            .tok(f + 1)
            .filter(|t| matches!(t.kind, Kind::Word | Kind::Quoted))
        else {
            return;
        };
        let depth = name_tok.depth;
        let Some(cursor) = (f + 2..st.end)
            .take_while(|&k| !(self.kw_at(k) == Kw::FOR && self.toks[k].depth == depth))
            .find(|&k| self.kw_at(k) == Kw::CURSOR)
        else {
            return;
        };
        let name = lexer::ident_value(self.sql, name_tok);
        let local = (cursor + 1..st.end)
            .take_while(|&k| self.kw_at(k) != Kw::FOR)
            .any(|k| self.word_is(k, "LOCAL"));
        if local {
            self.local_cursors.push(name);
        } else {
            self.pin(Pin::named(PinReason::Cursor, name));
        }
    }

    /// `OPEN|FETCH|CLOSE|DEALLOCATE [GLOBAL] c`, and `OPEN|CLOSE` of keys.
    /// Using a global cursor proves it exists on this connection (a
    /// procedure may have declared it): that pins too. A cursor variable
    /// (`@c`) ends with its batch.
    pub(super) fn cursor_statement(&mut self, st: &Stmt) {
        let f = st.first;
        let verb = self.kw_at(f);
        if matches!(verb, Kw::OPEN | Kw::CLOSE) && self.key_statement(st, verb == Kw::OPEN) {
            return;
        }
        let mut j = f + 1;
        if verb == Kw::FETCH {
            if ["PRIOR", "FIRST", "LAST"]
                .iter()
                .any(|w| self.word_is(j, w))
                || self.kw_at(j) == Kw::NEXT
            {
                j += 1;
            } else if self.word_is(j, "ABSOLUTE") || self.word_is(j, "RELATIVE") {
                j += 2;
            }
            if self.kw_at(j) == Kw::FROM {
                j += 1;
            }
        }
        let global = self.word_is(j, "GLOBAL")
            && self
                .tok(j + 1)
                .is_some_and(|t| matches!(t.kind, Kind::Word | Kind::Quoted));
        if global {
            j += 1;
        }
        let Some(t) = self
            .tok(j)
            .filter(|t| j < st.end && matches!(t.kind, Kind::Word | Kind::Quoted))
        else {
            return;
        };
        let name = lexer::ident_value(self.sql, t);
        if !global && self.local_cursors.contains(&name) {
            return;
        }
        let pin = Pin::named(PinReason::Cursor, name);
        if verb == Kw::DEALLOCATE {
            self.unpin(pin);
        } else {
            self.pin(pin);
        }
    }

    /// `OPEN SYMMETRIC KEY k ...`, `OPEN MASTER KEY ...` and their `CLOSE`.
    /// `CLOSE ALL SYMMETRIC KEYS` names none: it ends nothing Sluice can
    /// prove, and the keys stay pinned until reset.
    fn key_statement(&mut self, st: &Stmt, open: bool) -> bool {
        let f = st.first;
        let key = if self.word_is(f + 1, "SYMMETRIC") && self.word_is(f + 2, "KEY") {
            let name = self.tok(f + 3).map(|t| lexer::ident_value(self.sql, t));
            Some(format!("symmetric key {}", name.unwrap_or_default()))
        } else if self.word_is(f + 1, "MASTER") && self.word_is(f + 2, "KEY") {
            Some("master key".to_string())
        } else if self.word_is(f + 1, "ALL") && self.word_is(f + 2, "SYMMETRIC") {
            return true;
        } else {
            None
        };
        let Some(key) = key else { return false };
        let pin = Pin::named(PinReason::OpenKey, key);
        if open {
            self.pin(pin);
        } else {
            self.unpin(pin);
        }
        true
    }

    /// `EXECUTE AS ...` (at `j`, the token after `AS`): impersonation until
    /// `REVERT`; `WITH NO REVERT` until the connection is discarded.
    /// The class stays Unknown, as before pins: a changed security context
    /// is not a plain session setting (and no `Read` may hold it).
    pub(super) fn execute_as(&mut self, j: usize, end: usize) {
        self.v.unknown(|| "EXECUTE AS (impersonation)".into());
        let no_revert =
            (j..end).any(|k| self.kw_at(k) == Kw::NO && self.kw_at(k + 1) == Kw::REVERT);
        if no_revert {
            self.pin(Pin::named(PinReason::ExecuteAs, "WITH NO REVERT"));
        } else {
            self.pin(Pin::new(PinReason::ExecuteAs));
        }
    }

    /// `SETUSER 'name'` impersonates (deprecated); a bare `SETUSER` reverts.
    pub(super) fn setuser(&mut self, st: &Stmt) {
        self.v.unknown(|| "SETUSER (impersonation)".into());
        let pin = Pin::named(PinReason::ExecuteAs, "SETUSER");
        if st.end > st.first + 1 {
            self.pin(pin);
        } else {
            self.unpin(pin);
        }
    }
}
