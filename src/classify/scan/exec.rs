//! `EXEC`: procedure calls and dynamic SQL.

use super::{Cx, Dynamic};
use crate::classify::lexer::{self, Kind, Kw};
use crate::classify::{api_cursor_effects, Flags, Pin, PinReason, SessionEffect};

/// A procedure argument, as far as pins care.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Arg {
    /// A string literal's value.
    Text(String),
    /// Anything else: a variable, a number, `DEFAULT`, an expression.
    Other,
}

/// `@Resource`, `@LockMode`, ... of `sp_getapplock` and `sp_releaseapplock`,
/// in their documented order (for arguments given by position).
const GETAPPLOCK_PARAMS: &[&str] = &["resource", "lockmode", "lockowner", "locktimeout"];
const RELEASEAPPLOCK_PARAMS: &[&str] = &["resource", "lockowner"];

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
            Kind::Word if t.kw == Kw::AS => self.execute_as(j + 1, end),
            Kind::Var => {
                let name = t.text(self.sql);
                self.v.flag(Flags::PROCEDURE_CALL, String::new);
                self.v.hidden_tables = true;
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
                    let text = lexer::string_value(self.sql, t);
                    self.run_dynamic(text);
                }
                _ => {
                    self.v.hidden_tables = true;
                    self.v
                        .write(|| "sp_executesql of a non-literal statement".into());
                }
            }
            return;
        }
        let name = parts.join(".");
        self.v.flag(Flags::PROCEDURE_CALL, String::new);
        // Its body reads and writes tables the batch does not name.
        self.v.hidden_tables = true;
        self.system_procedure(&last, args, end);
        let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
        if self.procedures.contains(&refs) {
            self.v.read(|| format!("EXEC {name} (read-only)"));
        } else {
            let why = || format!("EXEC {name} (not read-only)");
            self.v.unlisted_procedure(&name, why);
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
            self.v.hidden_tables = true;
            self.v.write(|| "EXEC (...) AT a linked server".into());
        } else if literal {
            self.run_dynamic(text);
        } else {
            self.v.hidden_tables = true;
            self.v
                .write(|| "EXEC of a non-literal string (dynamic SQL)".into());
        }
    }
}

impl Cx<'_> {
    /// Literal dynamic SQL, classified in turn; its effects take their
    /// place among this batch's.
    fn run_dynamic(&mut self, text: String) {
        self.dynamic.push(Dynamic {
            text,
            at: self.v.effects.len(),
            conditional: self.conditional,
        });
    }

    /// System procedures that leave state on the session (by the last part
    /// of their name, lower-cased), called with the arguments at `args..end`.
    fn system_procedure(&mut self, name: &str, args: usize, end: usize) {
        match name {
            "sp_getapplock" => {
                let args = self.call_args(args, end, GETAPPLOCK_PARAMS);
                // Without @LockOwner the lock is the transaction's. An owner
                // in a variable may be 'Session': it pins.
                let session = match args.get("lockowner") {
                    None => false,
                    Some(Arg::Text(owner)) => owner.eq_ignore_ascii_case("session"),
                    Some(Arg::Other) => true,
                };
                if session {
                    self.v.flag(Flags::SESSION_LOCK, || {
                        "sp_getapplock owned by the session".into()
                    });
                    let pin = match args.get("resource") {
                        Some(Arg::Text(resource)) => {
                            Pin::named(PinReason::SessionLock, resource.clone())
                        }
                        _ => Pin::new(PinReason::SessionLock),
                    };
                    self.pin(pin);
                }
            }
            "sp_releaseapplock" => {
                let args = self.call_args(args, end, RELEASEAPPLOCK_PARAMS);
                let owner = args.get("lockowner");
                let session =
                    matches!(owner, Some(Arg::Text(o)) if o.eq_ignore_ascii_case("session"));
                if let (true, Some(Arg::Text(resource))) = (session, args.get("resource")) {
                    self.unpin(Pin::named(PinReason::SessionLock, resource.clone()));
                }
            }
            "sp_set_session_context" => {
                self.v
                    .flag(Flags::CONTEXT_INFO, || "sp_set_session_context".into());
                self.pin(Pin::new(PinReason::SessionContext));
            }
            "sp_setapprole" => self.pin(Pin::new(PinReason::AppRole)),
            "sp_unsetapprole" => self.unpin(Pin::new(PinReason::AppRole)),
            "sp_xml_preparedocument" => self.pin(Pin::new(PinReason::XmlDocument)),
            "sp_xml_removedocument" => self.unpin(Pin::new(PinReason::XmlDocument)),
            _ => {
                for effect in api_cursor_effects(name) {
                    match effect {
                        SessionEffect::Pin(pin) => self.pin(pin),
                        SessionEffect::Unpin(pin) => self.unpin(pin),
                        _ => {}
                    }
                }
            }
        }
    }

    /// The arguments of a call at `from..end`, by lower-cased parameter name
    /// without `@`: named ones by their name, positional ones by `params`
    /// (T-SQL allows no positional argument after a named one).
    fn call_args(&self, from: usize, end: usize, params: &[&str]) -> CallArgs {
        let end = end.min(self.toks.len());
        let depth = self.tok(from).map_or(0, |t| t.depth);
        let mut args = CallArgs::default();
        let mut start = from;
        let mut position = 0;
        while start < end {
            let stop = (start..end)
                .find(|&k| self.toks[k].depth == depth && self.toks[k].is_punct(b','))
                .unwrap_or(end);
            let named = self.toks[start].kind == Kind::Var
                && self.tok(start + 1).is_some_and(|t| t.is_punct(b'='))
                && start + 2 < stop;
            let (name, value_at) = if named {
                let name = self
                    .text(start)
                    .trim_start_matches('@')
                    .to_ascii_lowercase();
                (Some(name), start + 2)
            } else {
                let name = params.get(position).map(|p| p.to_string());
                position += 1;
                (name, start)
            };
            let value = match self.tok(value_at) {
                Some(t) if t.kind == Kind::Str && value_at + 1 == stop => {
                    Arg::Text(lexer::string_value(self.sql, t))
                }
                _ => Arg::Other,
            };
            if let Some(name) = name {
                args.0.push((name, value));
            }
            start = stop + 1;
        }
        args
    }
}

#[derive(Debug, Default)]
struct CallArgs(Vec<(String, Arg)>);

impl CallArgs {
    fn get(&self, name: &str) -> Option<&Arg> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }
}
