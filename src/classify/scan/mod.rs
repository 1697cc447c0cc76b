//! Keyword scan: classifies a T-SQL batch from its tokens alone.
//!
//! It runs on every batch: alone when sqlparser cannot parse the batch, and
//! as a safety net when it can. Two passes over the tokens of
//! [`super::lexer`]:
//!
//! 1. [`split()`] cuts the batch into statements. T-SQL does not need `;`, so a
//!    statement also starts at a leading keyword (`SELECT`, `SET`, `INSERT`,
//!    ...) at parenthesis depth 0 that cannot continue the current statement
//!    (`INSERT ... SELECT`, `UPDATE t SET`, `OFFSET .. ROWS FETCH`, `FOR
//!    UPDATE` continue it). The body of `CREATE PROCEDURE/FUNCTION/TRIGGER/
//!    VIEW` runs to the end of the batch.
//! 2. Each statement is classified by its leading keyword (session effects
//!    need the statement text: `SET`, `USE`, transactions), and every token is
//!    checked for evidence that does not depend on statement boundaries: the
//!    words that only writes use (all reserved in T-SQL, so they cannot be
//!    bare identifiers), `SELECT ... INTO`, `OUTPUT`, `EXEC`, locking hints,
//!    session functions, temp tables, `NEXT VALUE FOR`, cursors.
//!
//! An unrecognised word where only a statement can start makes the batch
//! Unknown, except first in the batch, where T-SQL runs it as a procedure.
//!
//! Pins ([`SessionEffect::Pin`]) are reported in statement order; an end
//! ([`SessionEffect::Unpin`]) only from a statement that runs whenever the
//! batch does: after an `IF`, `WHILE`, `RETURN`, `GOTO`, `BREAK`,
//! `CONTINUE` or inside `TRY`/`CATCH`, a statement may not run (or its
//! error may be caught, so the client never sees it), and ends are dropped.
//! One idiom is kept: `IF OBJECT_ID('tempdb..#t') IS NOT NULL DROP TABLE #t`
//! leaves no `#t` whichever way the `IF` goes.
//!
//! Files: `split` (pass 1), this file (statements by leading keyword),
//! `evidence` (per-token checks), `exec` (procedure calls and dynamic SQL),
//! `session` (`SET`, `USE`), `pins` (temp objects, cursors, keys,
//! impersonation).

mod evidence;
mod exec;
mod pins;
mod session;
mod split;
mod tables;

use super::lexer::{self, Kind, Kw, Token};
use super::procedures::ReadOnlyProcedures;
use super::verdict::Verdict;
use super::{Flags, Pin, PinReason, SessionEffect};
use split::{split, Stmt};

/// The scan's verdict, and the literal SQL strings the batch runs
/// dynamically (`EXEC('...')`, `sp_executesql N'...'`), to classify in turn.
pub(super) struct Scan {
    pub verdict: Verdict,
    pub dynamic: Vec<Dynamic>,
    /// Infix/postfix operator tokens (`+`, `=`, `AND`, `UNION`, ...): a bound
    /// on the depth of the left-deep trees a parser builds without recursing.
    pub operators: usize,
}

pub(super) fn scan(sql: &str, procedures: &ReadOnlyProcedures) -> Scan {
    let tokens = lexer::tokenize(sql);
    let mut cx = Cx {
        sql,
        toks: &tokens.toks,
        procedures,
        v: Verdict::default(),
        dynamic: Vec::new(),
        statements_seen: 0,
        conditional: false,
        drop_idiom: None,
        local_cursors: Vec::new(),
        database_changed: false,
    };
    if tokens.unterminated {
        cx.v.unknown(|| "unterminated string, comment or identifier".into());
    }
    if tokens.unbalanced {
        cx.v.unknown(|| "unbalanced parentheses".into());
    }
    if tokens.bare_cr_in_comment {
        // The server's reading of the batch is unknown: it may hold
        // anything, pinned state included.
        let why = "a line comment with a bare carriage return";
        cx.v.unknown(|| why.into());
        cx.pin(Pin::named(PinReason::Unfollowable, why));
    }
    for stmt in split(&tokens.toks) {
        cx.statement(&stmt);
    }
    Scan {
        verdict: cx.v,
        dynamic: cx.dynamic,
        operators: tokens.toks.iter().filter(|t| is_operator(t)).count(),
    }
}

/// A literal SQL string the batch runs in a nested scope.
pub(super) struct Dynamic {
    pub text: String,
    /// How many of the batch's effects come before it: its own effects go
    /// there, in statement order.
    pub at: usize,
    /// It runs only on some paths through the batch: its ends do not count.
    pub conditional: bool,
}

fn is_operator(t: &Token) -> bool {
    match t.kind {
        Kind::Punct => !matches!(t.punct, b'(' | b')' | b',' | b';' | b'.'),
        Kind::Word => matches!(
            t.kw,
            Kw::AND
                | Kw::OR
                | Kw::NOT
                | Kw::IS
                | Kw::IN
                | Kw::LIKE
                | Kw::BETWEEN
                | Kw::COLLATE
                | Kw::AT
                | Kw::UNION
                | Kw::EXCEPT
                | Kw::INTERSECT
        ),
        _ => false,
    }
}

/// Per-statement context for the evidence checks.
struct StmtCx {
    leader: Kw,
    /// `INTO` that belongs to `INSERT`/`MERGE`, not to `SELECT ... INTO`.
    into_ok_at: Option<usize>,
    /// After `EXEC`, `OUTPUT` marks an output parameter.
    exec_seen: bool,
    /// `OUTPUT` is a clause only in INSERT/UPDATE/DELETE/MERGE; elsewhere it
    /// is a name (it is not reserved).
    dml_seen: bool,
    output_seen: bool,
}

struct Cx<'a> {
    sql: &'a str,
    toks: &'a [Token],
    procedures: &'a ReadOnlyProcedures,
    v: Verdict,
    dynamic: Vec<Dynamic>,
    /// Statements (not blocks) analysed so far.
    statements_seen: usize,
    /// A statement so far may not run on every path through the batch, nor
    /// may any after it: ends are not proved from here on.
    conditional: bool,
    /// `IF OBJECT_ID('tempdb..#t') IS NOT NULL` was the last statement:
    /// the temp table it tests.
    drop_idiom: Option<String>,
    /// `DECLARE c CURSOR LOCAL` names: gone at the batch's end, never pinned.
    local_cursors: Vec<String>,
    /// A `USE` ran: later names resolve in another database.
    database_changed: bool,
}

impl<'a> Cx<'a> {
    fn tok(&self, i: usize) -> Option<&'a Token> {
        self.toks.get(i)
    }

    fn kw_at(&self, i: usize) -> Kw {
        self.tok(i)
            .filter(|t| t.kind == Kind::Word)
            .map_or(Kw::None, |t| t.kw)
    }

    fn text(&self, i: usize) -> &'a str {
        self.tok(i).map_or("", |t| t.text(self.sql))
    }

    fn upper(&self, i: usize) -> String {
        self.text(i).to_ascii_uppercase()
    }

    fn statement(&mut self, st: &Stmt) {
        if st.block {
            self.block(st);
            return;
        }
        if st.module {
            let what = format!("{} {}", self.upper(st.first), self.upper(st.first + 1));
            self.v.write(|| what);
            self.temp_procedure(st);
            self.ddl_tables(st);
            return;
        }
        if let Some(table) = self.drop_idiom.take() {
            // The statement the IF guards: only its own DROP of the table
            // ends a pin whichever way the IF went.
            if !self.drops_only(st, &table) {
                self.conditional = true;
            }
        }
        self.leader(st);
        let mut sc = StmtCx {
            leader: st.leader,
            into_ok_at: None,
            // A procedure called without EXEC, first in the batch.
            exec_seen: st.leader == Kw::None && st.first == 0,
            dml_seen: false,
            output_seen: false,
        };
        for i in st.first..st.end {
            self.evidence(i, st, &mut sc);
        }
        self.tables(st);
        self.statements_seen += 1;
    }

    /// Classifies a statement by its leading keyword.
    fn leader(&mut self, st: &Stmt) {
        let f = st.first;
        match st.leader {
            Kw::SELECT | Kw::WITH => self.v.read(|| "SELECT".into()),
            Kw::DECLARE => {
                self.v.read(|| "DECLARE".into());
                self.declare_cursor(st);
            }
            Kw::IF => {
                self.v.read(|| "IF".into());
                match self.temp_table_test(st) {
                    Some(table) if !self.conditional => self.drop_idiom = Some(table),
                    _ => self.conditional = true,
                }
            }
            Kw::WHILE => {
                self.v.read(|| "WHILE".into());
                self.conditional = true;
            }
            Kw::PRINT => self.v.read(|| "PRINT".into()),
            Kw::RAISERROR => self.v.read(|| "RAISERROR".into()),
            Kw::THROW => self.v.read(|| "THROW".into()),
            Kw::RETURN => {
                self.v.read(|| "RETURN".into());
                self.conditional = true;
            }
            Kw::READTEXT => self.v.read(|| "READTEXT".into()),
            Kw::BREAK | Kw::CONTINUE | Kw::GOTO => self.conditional = true,
            Kw::REVERT => {
                self.v.unknown(|| "REVERT (impersonation)".into());
                self.unpin(Pin::new(PinReason::ExecuteAs));
            }
            Kw::SETUSER => self.setuser(st),
            Kw::SET => self.set_statement(st),
            Kw::USE => self.use_statement(st),
            Kw::BEGIN => match self.kw_at(f + 1) {
                Kw::TRAN | Kw::TRANSACTION | Kw::DISTRIBUTED => {
                    self.v.transaction(|| "BEGIN TRANSACTION".into());
                    self.v.effects.push(SessionEffect::BeginTransaction);
                }
                _ => self.v.write(|| "Service Broker dialog".into()),
            },
            Kw::COMMIT => {
                self.v.transaction(|| "COMMIT".into());
                self.v.effects.push(SessionEffect::CommitTransaction);
            }
            Kw::ROLLBACK => {
                self.v.transaction(|| "ROLLBACK".into());
                self.v.effects.push(SessionEffect::RollbackTransaction);
            }
            Kw::SAVE => self.v.transaction(|| "SAVE TRANSACTION".into()),
            Kw::OPEN | Kw::FETCH | Kw::CLOSE | Kw::DEALLOCATE => {
                let what = format!("cursor {}", self.upper(f));
                self.v.read(|| what.clone());
                self.v.flag(Flags::CURSOR, || what);
                self.cursor_statement(st);
            }
            Kw::WAITFOR => match self.kw_at(f + 1) {
                Kw::DELAY | Kw::TIME => self.v.read(|| "WAITFOR DELAY".into()),
                _ => self.v.unknown(|| "WAITFOR".into()),
            },
            Kw::END => self.v.write(|| "Service Broker conversation".into()),
            Kw::SEND | Kw::RECEIVE | Kw::GET | Kw::MOVE => self.v.write(|| "Service Broker".into()),
            Kw::GO => self
                .v
                .unknown(|| "GO (a client-side batch separator)".into()),
            Kw::ENABLE | Kw::DISABLE => {
                let what = format!("{} {}", self.upper(f), self.upper(f + 1));
                self.v.write(|| what);
            }
            Kw::None => self.other_statement(st),
            // Writes and EXEC: found by the evidence checks.
            _ => {}
        }
    }

    /// A statement not led by a known keyword: a parenthesized query, a
    /// procedure called without EXEC (first in the batch only), or Unknown.
    fn other_statement(&mut self, st: &Stmt) {
        let f = st.first;
        let Some(t) = self.tok(f) else { return };
        if t.is_punct(b'(') && matches!(self.kw_at(f + 1), Kw::SELECT | Kw::WITH) {
            self.v.read(|| "SELECT".into());
        } else if f == 0 && matches!(t.kind, Kind::Word | Kind::Quoted | Kind::Temp) {
            self.exec_call(f, st.end);
        } else {
            let text: String = t.text(self.sql).chars().take(40).collect();
            self.v
                .unknown(|| format!("unrecognised statement '{text}'"));
        }
    }
}
