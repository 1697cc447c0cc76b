//! What a batch does to its session, beyond its result: transaction
//! boundaries, settings to replay on other connections, and pins.

use super::pin::{Pin, PinReason};

/// A session-level effect of a statement that the session must track:
/// transaction boundaries, settings to replay on other connections, and
/// pinned state. Effects come in statement order.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SessionEffect {
    BeginTransaction,
    CommitTransaction,
    RollbackTransaction,
    /// SET IMPLICIT_TRANSACTIONS ON/OFF.
    ImplicitTransactions(bool),
    /// `SET TRANSACTION ISOLATION LEVEL <level>`, upper-cased, e.g. "SERIALIZABLE".
    IsolationLevel(String),
    /// `USE <database>`, the name without brackets.
    UseDatabase(String),
    /// A SET of an option Sluice tracks ([`is_tracked_setting`]) to a
    /// literal value: the option name upper-cased, and the whole statement
    /// text to replay it on another connection (trimmed, without `;`). A
    /// list (`SET ANSI_NULLS, QUOTED_IDENTIFIER ON`) gives one effect per
    /// option, each with its own statement (`SET QUOTED_IDENTIFIER ON`).
    /// `SET STATISTICS IO ON` is option `STATISTICS IO`. Any other SET
    /// pins ([`PinReason::UntrackedSetting`]).
    SetOption {
        option: String,
        statement: String,
    },
    /// The statement leaves state on its connection that holds the session
    /// there.
    Pin(Pin),
    /// The statement provably ends that state: it ran unconditionally (not
    /// after an `IF`, `WHILE`, `TRY`, `RETURN` in its batch), so if the batch
    /// succeeds the state is gone. A failed batch ends nothing.
    Unpin(Pin),
}

impl SessionEffect {
    /// Whether it changes settings a connection must carry for the session.
    pub fn changes_settings(&self) -> bool {
        matches!(
            self,
            SessionEffect::IsolationLevel(_)
                | SessionEffect::UseDatabase(_)
                | SessionEffect::SetOption { .. }
        )
    }

    /// The pin this effect starts, if any.
    pub fn starts(&self) -> Option<&Pin> {
        match self {
            SessionEffect::Pin(pin) => Some(pin),
            _ => None,
        }
    }
}

/// What an API server cursor procedure (by its name, any case) does to the
/// session's cursors, whether called by RPC or `EXEC`: `sp_cursoropen` and
/// `sp_cursorexecute` open a cursor, `sp_cursorprepare` makes a prepared
/// cursor plan, `sp_cursorprepexec` both; `sp_cursorclose` and
/// `sp_cursorunprepare` end one each. Calls are counted, not cursors.
pub fn api_cursor_effects(procedure: &str) -> Vec<SessionEffect> {
    let open = || Pin::new(PinReason::ApiCursor);
    let plan = || Pin::named(PinReason::ApiCursor, "prepared");
    match procedure.to_ascii_lowercase().as_str() {
        "sp_cursoropen" | "sp_cursorexecute" => vec![SessionEffect::Pin(open())],
        "sp_cursorprepare" => vec![SessionEffect::Pin(plan())],
        "sp_cursorprepexec" => vec![SessionEffect::Pin(plan()), SessionEffect::Pin(open())],
        "sp_cursorclose" => vec![SessionEffect::Unpin(open())],
        "sp_cursorunprepare" => vec![SessionEffect::Unpin(plan())],
        _ => Vec::new(),
    }
}

/// SET options whose value Sluice replays on another connection: the
/// session keeps the latest statement per option and runs it wherever the
/// client's next request goes, so these never pin. `option` is spelled as
/// [`SessionEffect::SetOption`] has it (upper case, `STATISTICS IO`).
///
/// Tracked: the options that shape results and errors the same way
/// wherever they are replayed — ANSI_NULLS, ANSI_PADDING, ANSI_WARNINGS,
/// ANSI_NULL_DFLT_ON/OFF, ANSI_DEFAULTS (a group of the others),
/// ARITHABORT, ARITHIGNORE, CONCAT_NULL_YIELDS_NULL, CURSOR_CLOSE_ON_COMMIT,
/// DATEFIRST, DATEFORMAT, LANGUAGE, LOCK_TIMEOUT, DEADLOCK_PRIORITY,
/// NUMERIC_ROUNDABORT, QUOTED_IDENTIFIER, TEXTSIZE, ROWCOUNT, NOCOUNT,
/// XACT_ABORT, FORCEPLAN, QUERY_GOVERNOR_COST_LIMIT, STATISTICS IO/TIME
/// (informational messages only), plus IMPLICIT_TRANSACTIONS and
/// TRANSACTION ISOLATION LEVEL, which have effects of their own.
///
/// Not tracked, so they pin: SHOWPLAN_ALL/TEXT/XML, NOEXEC, PARSEONLY and
/// FMTONLY stop statements from running, and STATISTICS XML/PROFILE add a
/// result set to each — Sluice's own batches on the connection (settings
/// replay, an `sp_prepare` on demand) would not run or would read the
/// wrong reply, and SHOWPLAN must be alone in its batch; FIPS_FLAGGER,
/// OFFSETS, REMOTE_PROC_TRANSACTIONS and anything newer or unknown, because
/// Sluice cannot say that replaying them is harmless.
pub fn is_tracked_setting(option: &str) -> bool {
    const TRACKED: &[&str] = &[
        "ANSI_DEFAULTS",
        "ANSI_NULLS",
        "ANSI_NULL_DFLT_OFF",
        "ANSI_NULL_DFLT_ON",
        "ANSI_PADDING",
        "ANSI_WARNINGS",
        "ARITHABORT",
        "ARITHIGNORE",
        "CONCAT_NULL_YIELDS_NULL",
        "CURSOR_CLOSE_ON_COMMIT",
        "DATEFIRST",
        "DATEFORMAT",
        "DEADLOCK_PRIORITY",
        "FORCEPLAN",
        "IMPLICIT_TRANSACTIONS",
        "LANGUAGE",
        "LOCK_TIMEOUT",
        "NOCOUNT",
        "NUMERIC_ROUNDABORT",
        "QUERY_GOVERNOR_COST_LIMIT",
        "QUOTED_IDENTIFIER",
        "ROWCOUNT",
        "STATISTICS IO",
        "STATISTICS TIME",
        "TEXTSIZE",
        "TRANSACTION ISOLATION LEVEL",
        "XACT_ABORT",
    ];
    TRACKED.iter().any(|t| t.eq_ignore_ascii_case(option))
}

/// Untracked options whose value on a fresh (or reset) connection is OFF:
/// `SET <option> OFF` puts the connection back as it was, which ends the pin.
pub(super) fn off_by_default(option: &str) -> bool {
    const OFF_BY_DEFAULT: &[&str] = &[
        "FIPS_FLAGGER",
        "FMTONLY",
        "NOEXEC",
        "PARSEONLY",
        "SHOWPLAN_ALL",
        "SHOWPLAN_TEXT",
        "SHOWPLAN_XML",
        "STATISTICS PROFILE",
        "STATISTICS XML",
    ];
    OFF_BY_DEFAULT
        .iter()
        .any(|t| t.eq_ignore_ascii_case(option))
}

/// The effects of `effects`, run in a nested scope (`EXEC('...')`,
/// `sp_executesql`, `sp_prepexec`/`sp_execute`), that outlast the scope.
///
/// SQL Server restores every SET option when such a scope returns ("SET
/// Statements", Transact-SQL reference) and the database of a `USE` in it;
/// a local temp table created in it is dropped at its end (a nested scope
/// like a procedure's; "Prepared statements cannot be used to create
/// temporary objects", ODBC prepared execution). So settings,
/// IDENTITY_INSERT and untracked options are dropped, and temp tables count
/// only when the scope drops one of the caller's. Transactions, global
/// cursors, API cursors, app locks, CONTEXT_INFO, session context, temp
/// procedures, open keys and XML handles belong to the session and are
/// kept. An `EXECUTE AS` left unreverted at the scope's end is kept (whether
/// the server reverts it there is not documented); a `REVERT` only reverts
/// its own scope's `EXECUTE AS`.
pub fn beyond_nested_scope(effects: &[SessionEffect]) -> Vec<SessionEffect> {
    let mut out = Vec::new();
    let mut local_tables: Vec<&Option<String>> = Vec::new();
    let mut impersonations: Vec<&Pin> = Vec::new();
    for effect in effects {
        match effect {
            SessionEffect::BeginTransaction
            | SessionEffect::CommitTransaction
            | SessionEffect::RollbackTransaction => out.push(effect.clone()),
            SessionEffect::ImplicitTransactions(_)
            | SessionEffect::IsolationLevel(_)
            | SessionEffect::UseDatabase(_)
            | SessionEffect::SetOption { .. } => {}
            SessionEffect::Pin(pin) | SessionEffect::Unpin(pin)
                if matches!(
                    pin.reason,
                    PinReason::IdentityInsert | PinReason::UntrackedSetting
                ) => {}
            SessionEffect::Pin(pin) if pin.reason == PinReason::TempTable => {
                local_tables.push(&pin.name);
            }
            SessionEffect::Unpin(pin) if pin.reason == PinReason::TempTable => {
                match local_tables.iter().position(|n| **n == pin.name) {
                    Some(i) => {
                        local_tables.remove(i);
                    }
                    None => out.push(effect.clone()),
                }
            }
            SessionEffect::Pin(pin) if pin.reason == PinReason::ExecuteAs => {
                impersonations.push(pin);
            }
            SessionEffect::Unpin(pin) if pin.reason == PinReason::ExecuteAs => {
                impersonations.pop();
            }
            SessionEffect::Pin(_) | SessionEffect::Unpin(_) => out.push(effect.clone()),
        }
    }
    out.extend(
        impersonations
            .into_iter()
            .map(|pin| SessionEffect::Pin(pin.clone())),
    );
    out
}
