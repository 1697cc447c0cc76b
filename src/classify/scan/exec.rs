//! `EXEC`: procedure calls and dynamic SQL.

use super::Cx;
use crate::classify::lexer::{self, Kind, Kw};
use crate::classify::Flags;

impl Cx<'_> {
    /// `EXEC` at `j - 1` (or a bare procedure name at `j`), up to `end`.
    pub(super) fn exec_call(&mut self, mut j: usize, end: usize) {
        if self.tok(j).is_some_and(|t| t.kind == Kind::Var)
            && self.tok(j + 1).is_some_and(|t| t.is_punct(b'='))
        {
            j += 2; // EXEC @rc = proc
        }
        let Some(t) = self.tok(j) else {
            self.v.unknown(|| "EXEC without a procedure".into());
            return;
        };
        match t.kind {
            Kind::Punct if t.punct == b'(' => self.exec_string(j),
            Kind::Word if t.kw == Kw::AS => self.v.unknown(|| "EXECUTE AS (impersonation)".into()),
            Kind::Var => {
                let name = t.text(self.sql);
                self.v.flag(Flags::PROCEDURE_CALL, String::new);
                self.v
                    .write(|| format!("EXEC {name} (procedure name in a variable)"));
            }
            Kind::Word | Kind::Quoted | Kind::Temp => {
                let (parts, args) = self.name_parts(j);
                self.procedure_call(parts, args, end);
            }
            _ => self.v.unknown(|| "EXEC without a procedure".into()),
        }
    }

    fn procedure_call(&mut self, parts: Vec<String>, args: usize, end: usize) {
        let last = parts
            .last()
            .map(|p| p.to_ascii_lowercase())
            .unwrap_or_default();
        if last == "sp_executesql" {
            self.v.flag(Flags::DYNAMIC_SQL, String::new);
            let mut k = args;
            if self.tok(k).is_some_and(|t| t.kind == Kind::Var)
                && self.tok(k + 1).is_some_and(|t| t.is_punct(b'='))
            {
                k += 2;
            }
            match self.tok(k) {
                Some(t) if t.kind == Kind::Str && k < end => {
                    self.dynamic.push(lexer::string_value(self.sql, t));
                }
                _ => self
                    .v
                    .write(|| "sp_executesql of a non-literal statement".into()),
            }
            return;
        }
        let name = parts.join(".");
        self.v.flag(Flags::PROCEDURE_CALL, String::new);
        if last == "sp_getapplock" {
            let session_owner = (args..end.min(self.toks.len())).any(|k| {
                let t = &self.toks[k];
                t.kind == Kind::Str
                    && lexer::string_value(self.sql, t).eq_ignore_ascii_case("session")
            });
            if session_owner {
                self.v.flag(Flags::SESSION_LOCK, || {
                    "sp_getapplock owned by the session".into()
                });
            }
        } else if last == "sp_set_session_context" {
            self.v
                .flag(Flags::CONTEXT_INFO, || "sp_set_session_context".into());
        }
        let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
        if self.procedures.contains(&refs) {
            self.v.read(|| format!("EXEC {name} (read-only)"));
        } else {
            self.v.write(|| format!("EXEC {name} (not read-only)"));
        }
        self.v.procedure(name);
    }

    /// `EXEC ('...' + N'...')`: literal strings are classified in turn;
    /// anything else (`EXEC (@sql)`) is a write.
    fn exec_string(&mut self, open: usize) {
        self.v.flag(Flags::DYNAMIC_SQL, String::new);
        let close = self.matching_paren(open);
        let mut text = String::new();
        let mut literal = close > open + 1;
        for (n, k) in (open + 1..close).enumerate() {
            let t = &self.toks[k];
            match (n % 2, t.kind) {
                (0, Kind::Str) => text.push_str(&lexer::string_value(self.sql, t)),
                (1, Kind::Punct) if t.punct == b'+' => {}
                _ => literal = false,
            }
        }
        if self.kw_at(close + 1) == Kw::AT {
            self.v.write(|| "EXEC (...) AT a linked server".into());
        } else if literal {
            self.dynamic.push(text);
        } else {
            self.v
                .write(|| "EXEC of a non-literal string (dynamic SQL)".into());
        }
    }
}
