//! `SET` and `USE`: session options, isolation level, transactions mode.

use super::split::Stmt;
use super::Cx;
use crate::classify::effect::off_by_default;
use crate::classify::lexer::{self, Kind, Kw};
use crate::classify::{is_tracked_setting, Flags, Pin, PinReason, SessionEffect};

impl Cx<'_> {
    /// `USE db`.
    pub(super) fn use_statement(&mut self, st: &Stmt) {
        match self.tok(st.first + 1) {
            Some(t) if matches!(t.kind, Kind::Word | Kind::Quoted) => {
                let db = lexer::ident_value(self.sql, t);
                self.v.session(|| format!("USE {db}"));
                self.v.effects.push(SessionEffect::UseDatabase(db));
            }
            _ => self.v.unknown(|| "USE without a database".into()),
        }
    }

    /// `SET ...`: a local variable, a transaction setting, or session options.
    pub(super) fn set_statement(&mut self, st: &Stmt) {
        let f = st.first;
        let Some(first) = self.tok(f + 1).filter(|_| f + 1 < st.end) else {
            self.v.unknown(|| "SET without an option".into());
            return;
        };
        match (first.kind, first.kw) {
            (Kind::Var, _) => self.v.read(|| "SET @variable".into()),
            (Kind::Word, Kw::TRANSACTION) => {
                let level: Vec<String> = (f + 4..st.end).map(|k| self.upper(k)).collect();
                if self.kw_at(f + 2) == Kw::ISOLATION
                    && self.kw_at(f + 3) == Kw::LEVEL
                    && !level.is_empty()
                {
                    let level = level.join(" ");
                    // Reads in this batch take and hold shared locks, as
                    // with the SERIALIZABLE / REPEATABLEREAD table hints.
                    if level == "SERIALIZABLE" || level == "REPEATABLE READ" {
                        self.v
                            .flag(Flags::LOCKING_HINT, || format!("isolation level {level}"));
                    }
                    self.v
                        .session(|| format!("SET TRANSACTION ISOLATION LEVEL {level}"));
                    self.v.effects.push(SessionEffect::IsolationLevel(level));
                } else {
                    self.v.unknown(|| "SET TRANSACTION".into());
                }
            }
            (Kind::Word, Kw::IDENTITY_INSERT) => {
                self.v.session(|| "SET IDENTITY_INSERT".into());
                let table = Pin::named(PinReason::IdentityInsert, self.object_name(f + 2));
                match self.kw_at(st.end - 1) {
                    Kw::ON => {
                        self.v
                            .flag(Flags::IDENTITY_INSERT, || "SET IDENTITY_INSERT ON".into());
                        self.pin(table);
                    }
                    Kw::OFF => self.unpin(table),
                    _ => self
                        .v
                        .unknown(|| "SET IDENTITY_INSERT without ON or OFF".into()),
                }
            }
            (Kind::Word, Kw::CONTEXT_INFO) => {
                self.v.session(|| "SET CONTEXT_INFO".into());
                self.v
                    .flag(Flags::CONTEXT_INFO, || "SET CONTEXT_INFO".into());
                self.pin(Pin::new(PinReason::ContextInfo));
            }
            (Kind::Word, _) => self.set_options(st),
            _ => self.v.unknown(|| "SET of an unrecognised form".into()),
        }
    }

    /// `SET NOCOUNT ON`, `SET ANSI_NULLS, QUOTED_IDENTIFIER ON`,
    /// `SET STATISTICS IO, TIME ON`, `SET DATEFORMAT dmy`, ...
    ///
    /// One `SetOption` effect per tracked option set to a literal value; a
    /// list is replayed one option at a time (`SET QUOTED_IDENTIFIER ON`) so
    /// that a later `SET` of one of them replaces exactly that one. Any
    /// other option, or a value in a variable (`SET ROWCOUNT @n`, which no
    /// other connection could replay), pins; `SET <option> OFF` of an
    /// untracked option that is OFF on a fresh connection ends that pin.
    fn set_options(&mut self, st: &Stmt) {
        let f = st.first;
        let mut j = f + 1;
        let prefix = if self.kw_at(j) == Kw::STATISTICS
            && self.tok(j + 1).is_some_and(|t| t.kind == Kind::Word)
        {
            j += 1;
            "STATISTICS "
        } else {
            ""
        };
        let mut names = vec![format!("{prefix}{}", self.upper(j))];
        j += 1;
        while j + 1 < st.end
            && self.tok(j).is_some_and(|t| t.is_punct(b','))
            && self.tok(j + 1).is_some_and(|t| t.kind == Kind::Word)
        {
            names.push(format!("{prefix}{}", self.upper(j + 1)));
            j += 2;
        }
        if j >= st.end {
            let what = names.join(", ");
            self.v.unknown(|| format!("SET {what} without a value"));
            return;
        }
        let value = self
            .sql
            .get(self.toks[j].start..self.toks[st.end - 1].end)
            .unwrap_or("");
        let on = value.eq_ignore_ascii_case("ON");
        let off = value.eq_ignore_ascii_case("OFF");
        let literal = (j..st.end).all(|k| !matches!(self.toks[k].kind, Kind::Var | Kind::SysVar));
        let statement = self
            .sql
            .get(self.toks[f].start..self.toks[st.end - 1].end)
            .unwrap_or("");
        let what = format!("SET {}", names.join(", "));
        let mut settings_only = true;
        for name in &names {
            let replay = if names.len() == 1 {
                statement.to_string()
            } else {
                format!("SET {name} {value}")
            };
            if !is_tracked_setting(name) || !literal {
                let pin = Pin::named(PinReason::UntrackedSetting, name.clone());
                if off && off_by_default(name) {
                    self.unpin(pin);
                } else {
                    self.pin(pin);
                }
                continue;
            }
            match name.as_str() {
                "IMPLICIT_TRANSACTIONS" => {
                    settings_only = false;
                    self.v.effects.push(SessionEffect::ImplicitTransactions(on));
                }
                // ANSI_DEFAULTS ON includes IMPLICIT_TRANSACTIONS ON.
                "ANSI_DEFAULTS" => {
                    settings_only = false;
                    self.v.effects.push(SessionEffect::SetOption {
                        option: name.clone(),
                        statement: replay,
                    });
                    self.v.effects.push(SessionEffect::ImplicitTransactions(on));
                }
                _ => self.v.effects.push(SessionEffect::SetOption {
                    option: name.clone(),
                    statement: replay,
                }),
            }
        }
        if settings_only {
            self.v.session(|| what);
        } else {
            self.v.transaction(|| what);
        }
    }
}
