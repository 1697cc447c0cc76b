//! Pins: state a statement leaves on its backend connection that Sluice
//! can neither move to another connection nor replay there, so the session
//! must keep that connection (the primary's) until the state provably ends
//! or the client resets its connection.
//!
//! The classifier reports where a pin starts ([`super::SessionEffect::Pin`])
//! and where one provably ends ([`super::SessionEffect::Unpin`]); the
//! session keeps the set of active pins. Which statements start and end
//! each pin is tabled in docs/ARCHITECTURE.md ("Pins").

use std::fmt;

/// Why a session's backend connection cannot be swapped for another one.
/// A closed set: [`PinReason::label`] is a bounded metrics label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PinReason {
    /// A local temp table (`#t`): `CREATE TABLE #t`, `SELECT ... INTO #t`.
    TempTable,
    /// A local temp procedure: `CREATE PROCEDURE #p`.
    TempProcedure,
    /// A global T-SQL cursor: `DECLARE c CURSOR` without `LOCAL`.
    Cursor,
    /// An API server cursor (`sp_cursoropen`, `sp_cursorprepexec`, ...).
    ApiCursor,
    /// `sp_getapplock` with `@LockOwner = 'Session'`.
    SessionLock,
    /// `SET IDENTITY_INSERT t ON`.
    IdentityInsert,
    /// `SET CONTEXT_INFO`.
    ContextInfo,
    /// `sp_set_session_context`.
    SessionContext,
    /// `sp_setapprole`: an application role.
    AppRole,
    /// `EXECUTE AS` (and the older `SETUSER`): an impersonated context.
    ExecuteAs,
    /// `OPEN SYMMETRIC KEY`, `OPEN MASTER KEY`: a key open in the session.
    OpenKey,
    /// `sp_xml_preparedocument`: a document handle for `OPENXML`.
    XmlDocument,
    /// A `SET` option Sluice does not replay on other connections, or a
    /// tracked one set from a variable.
    UntrackedSetting,
    /// A batch Sluice cannot follow (it may hide any of the above).
    Unfollowable,
    /// More distinct SET options than Sluice replays.
    TooManySettings,
    /// A response Sluice could not follow: transaction changes in it may
    /// have been missed, so nothing may leave the primary.
    UnreadableResponse,
    /// A batch that set options failed: whether its SETs ran is unknown,
    /// and only its connection knows.
    UnknownSettings,
}

impl PinReason {
    /// Words for logs and `sluice explain`.
    pub fn as_str(self) -> &'static str {
        match self {
            PinReason::TempTable => "temp table",
            PinReason::TempProcedure => "temp procedure",
            PinReason::Cursor => "cursor",
            PinReason::ApiCursor => "API server cursor",
            PinReason::SessionLock => "session app lock",
            PinReason::IdentityInsert => "IDENTITY_INSERT",
            PinReason::ContextInfo => "CONTEXT_INFO",
            PinReason::SessionContext => "session context",
            PinReason::AppRole => "application role",
            PinReason::ExecuteAs => "EXECUTE AS",
            PinReason::OpenKey => "open key",
            PinReason::XmlDocument => "XML document handle",
            PinReason::UntrackedSetting => "SET option Sluice does not track",
            PinReason::Unfollowable => "statement Sluice cannot follow",
            PinReason::TooManySettings => "too many session settings",
            PinReason::UnreadableResponse => "unreadable response",
            PinReason::UnknownSettings => "a batch that set options failed",
        }
    }

    /// A bounded snake_case name for metrics and JSON.
    pub fn label(self) -> &'static str {
        match self {
            PinReason::TempTable => "temp_table",
            PinReason::TempProcedure => "temp_procedure",
            PinReason::Cursor => "cursor",
            PinReason::ApiCursor => "api_cursor",
            PinReason::SessionLock => "session_lock",
            PinReason::IdentityInsert => "identity_insert",
            PinReason::ContextInfo => "context_info",
            PinReason::SessionContext => "session_context",
            PinReason::AppRole => "app_role",
            PinReason::ExecuteAs => "execute_as",
            PinReason::OpenKey => "open_key",
            PinReason::XmlDocument => "xml_document",
            PinReason::UntrackedSetting => "untracked_setting",
            PinReason::Unfollowable => "unfollowable",
            PinReason::TooManySettings => "too_many_settings",
            PinReason::UnreadableResponse => "unreadable_response",
            PinReason::UnknownSettings => "unknown_settings",
        }
    }

    /// Several starts need as many ends (`sp_getapplock` nests, each
    /// `EXECUTE AS` needs its `REVERT`, API cursors are counted); for the
    /// others a second start of the same name changes nothing.
    pub fn is_counted(self) -> bool {
        matches!(
            self,
            PinReason::ApiCursor
                | PinReason::SessionLock
                | PinReason::ExecuteAs
                | PinReason::XmlDocument
        )
    }

    /// RESETCONNECTION does not undo it: the security context of
    /// `EXECUTE AS` and of an application role survive `sp_reset_connection`
    /// (SQL Server drops the connection instead), whether it closes open
    /// keys is not documented, and a batch Sluice could not follow may hold
    /// any of these. A connection with such a pin active is discarded, never
    /// returned to the pool.
    pub fn survives_reset(self) -> bool {
        matches!(
            self,
            PinReason::ExecuteAs
                | PinReason::AppRole
                | PinReason::OpenKey
                | PinReason::Unfollowable
        )
    }

    /// What ends this pin, for `sluice explain`: "temp table #t dropped".
    pub fn end_verb(self) -> &'static str {
        match self {
            PinReason::TempTable | PinReason::TempProcedure => "dropped",
            PinReason::Cursor => "deallocated",
            PinReason::ApiCursor | PinReason::OpenKey => "closed",
            PinReason::SessionLock => "released",
            PinReason::IdentityInsert | PinReason::UntrackedSetting => "set OFF",
            PinReason::ExecuteAs => "reverted",
            PinReason::AppRole => "unset",
            PinReason::XmlDocument => "removed",
            PinReason::ContextInfo
            | PinReason::SessionContext
            | PinReason::Unfollowable
            | PinReason::TooManySettings
            | PinReason::UnreadableResponse
            | PinReason::UnknownSettings => "ended",
        }
    }
}

impl fmt::Display for PinReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One piece of pinned state: its reason and, where pieces are told apart,
/// its name as written (`#t`, a cursor, an app lock's resource, a table, a
/// SET option). Names compare exactly: `DROP TABLE #T` does not end a pin on
/// `#t` (on a case-insensitive server the pin outlives the table, which only
/// costs the session its replica reads until a reset).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Pin {
    pub reason: PinReason,
    /// `None`: the piece has no name (`EXECUTE AS`, an API cursor), or its
    /// name is unknown (an app lock on `@resource`). A named end never ends
    /// a nameless start of a named kind, so an unknown name holds until reset.
    pub name: Option<String>,
}

impl Pin {
    pub fn new(reason: PinReason) -> Pin {
        Pin { reason, name: None }
    }

    pub fn named(reason: PinReason, name: impl Into<String>) -> Pin {
        Pin {
            reason,
            name: Some(name.into()),
        }
    }
}

impl fmt::Display for Pin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.name, self.reason) {
            (Some(name), PinReason::UntrackedSetting) => write!(f, "{}: {name}", self.reason),
            (Some(name), PinReason::Unfollowable) => write!(f, "{}: {name}", self.reason),
            (Some(name), PinReason::SessionLock) => write!(f, "{} '{name}'", self.reason),
            (Some(name), _) => write!(f, "{} {name}", self.reason),
            (None, _) => f.write_str(self.reason.as_str()),
        }
    }
}
