//! What routing needs to know about a buffered request: its SQL text, the
//! procedure it calls, or why only the primary may take it.

use super::state::Scope;
use crate::classify::{api_cursor_effects, SessionEffect};
use crate::tds::packet::PacketType;
use crate::tds::request::{
    batch_procedures, call_arguments, proc_id, sql_batch_text, ProcRef, RpcArgument, RpcHead,
};
use crate::transport::Request;

/// The routing-relevant content of one request message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestHead {
    /// A SQL batch.
    Sql(String),
    /// The statement of an sp_executesql RPC: it runs in a nested scope,
    /// where SET options and temp tables end with the call.
    ExecuteSql(String),
    /// sp_prepare / sp_prepexec: a statement that gets a handle, valid only
    /// on the connection that prepared it.
    Prepare {
        sql: String,
        params: String,
    },
    /// sp_execute of a handle.
    Execute(Option<i32>),
    /// sp_unprepare of a handle.
    Unprepare(Option<i32>),
    /// An RPC to a procedure by name.
    Procedure(String),
    /// sp_getapplock / sp_releaseapplock by name, as the `EXEC` it stands
    /// for with its string arguments: whether the lock is the session's
    /// (`@LockOwner`) and its resource decide the pin.
    AppLock(String),
    /// Several RPC calls in one request, one of them a prepared-statement
    /// call: refused, as their handles cannot be bound one by one yet.
    BatchedPrepared,
    /// An API server cursor call (sp_cursoropen, sp_cursorfetch, ...): its
    /// cursor lives on one connection, so the session is pinned until
    /// every cursor it opened is closed.
    Cursor(CursorCall),
    PrimaryOnly(&'static str),
}

impl RequestHead {
    /// Where its SQL runs: the statement of sp_executesql or of a prepared
    /// statement runs in a nested scope, anything else as a batch.
    pub fn scope(&self) -> Scope {
        match self {
            RequestHead::ExecuteSql(_) | RequestHead::Prepare { .. } => Scope::Nested,
            _ => Scope::Batch,
        }
    }
}

/// What an API server cursor call does to the cursors of the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CursorCall {
    /// sp_cursoropen, sp_cursorexecute: opens a cursor.
    Open,
    /// sp_cursorprepare: prepares a cursor plan (a handle on the connection).
    Prepare,
    /// sp_cursorprepexec: prepares a plan and opens a cursor.
    PrepareOpen,
    /// sp_cursorclose.
    Close,
    /// sp_cursorunprepare.
    Unprepare,
    /// sp_cursor, sp_cursorfetch, sp_cursoroption: uses an open cursor.
    Use,
}

impl CursorCall {
    fn of(id: u16) -> CursorCall {
        match id {
            proc_id::SP_CURSOROPEN | proc_id::SP_CURSOREXECUTE => CursorCall::Open,
            proc_id::SP_CURSORPREPARE => CursorCall::Prepare,
            proc_id::SP_CURSORPREPEXEC => CursorCall::PrepareOpen,
            proc_id::SP_CURSORCLOSE => CursorCall::Close,
            proc_id::SP_CURSORUNPREPARE => CursorCall::Unprepare,
            _ => CursorCall::Use,
        }
    }

    /// Its pins, as the same call in a batch has them. Sluice counts calls,
    /// not cursors: an open that fails still counts, so its pin holds until
    /// the client resets (a close proves nothing about a cursor that was
    /// never opened), and so does a cursor the server closes by itself
    /// (AUTO_CLOSE fast-forward cursors).
    pub fn effects(self) -> Vec<SessionEffect> {
        api_cursor_effects(match self {
            CursorCall::Open => "sp_cursoropen",
            CursorCall::Prepare => "sp_cursorprepare",
            CursorCall::PrepareOpen => "sp_cursorprepexec",
            CursorCall::Close => "sp_cursorclose",
            CursorCall::Unprepare => "sp_cursorunprepare",
            CursorCall::Use => "",
        })
    }
}

/// Decodes the head of a request. Anything that cannot be decoded goes to
/// the primary: routing is fail-safe.
pub fn decode(request: &Request) -> RequestHead {
    if !request.is_complete() {
        return RequestHead::PrimaryOnly("request larger than limits.request_buffer_bytes");
    }
    let payload = request.payload();
    match request.ty() {
        PacketType::SQL_BATCH => match sql_batch_text(&payload) {
            Ok(text) => RequestHead::Sql(text),
            Err(_) => RequestHead::PrimaryOnly("SQL batch not decodable"),
        },
        PacketType::RPC => match RpcHead::decode(&payload) {
            Ok(rpc) if rpc.batched => batch_head(&payload),
            Ok(rpc) => rpc_head(rpc, &payload),
            Err(_) => RequestHead::PrimaryOnly("RPC not decodable"),
        },
        PacketType::BULK_LOAD => RequestHead::PrimaryOnly("bulk load"),
        PacketType::TRANSACTION_MANAGER => RequestHead::PrimaryOnly("Transaction Manager request"),
        _ => RequestHead::PrimaryOnly("not a request"),
    }
}

/// Several calls in one RPC request run on the primary, unless one of them
/// uses or makes a prepared handle: the handles in it are the client's view
/// of Sluice's numbering, which no single connection shares.
fn batch_head(payload: &[u8]) -> RequestHead {
    let Ok(procedures) = batch_procedures(payload) else {
        return RequestHead::PrimaryOnly("RPC not decodable");
    };
    let prepared = procedures.iter().any(|p| {
        matches!(
            p.well_known_id(),
            Some(
                proc_id::SP_PREPARE
                    | proc_id::SP_PREPEXEC
                    | proc_id::SP_EXECUTE
                    | proc_id::SP_UNPREPARE
            )
        )
    });
    if prepared {
        RequestHead::BatchedPrepared
    } else {
        RequestHead::PrimaryOnly("several RPCs in one request")
    }
}

fn rpc_head(rpc: RpcHead, payload: &[u8]) -> RequestHead {
    match (rpc.procedure.well_known_id(), rpc.sql_text) {
        (Some(proc_id::SP_EXECUTESQL), Some(sql)) => RequestHead::ExecuteSql(sql),
        (Some(proc_id::SP_PREPARE | proc_id::SP_PREPEXEC), Some(sql)) => RequestHead::Prepare {
            sql,
            params: rpc.params_decl.unwrap_or_default(),
        },
        (Some(proc_id::SP_EXECUTE), _) => RequestHead::Execute(rpc.handle),
        (Some(proc_id::SP_UNPREPARE), _) => RequestHead::Unprepare(rpc.handle),
        (Some(id), _) if (proc_id::SP_CURSOR..=proc_id::SP_CURSORCLOSE).contains(&id) => {
            RequestHead::Cursor(CursorCall::of(id))
        }
        (Some(_), _) => RequestHead::PrimaryOnly("system procedure call"),
        (None, _) => match rpc.procedure {
            ProcRef::Name(name) if is_app_lock_procedure(&name) => {
                RequestHead::AppLock(app_lock_call(&name, call_arguments(payload)))
            }
            ProcRef::Name(name) => RequestHead::Procedure(name),
            ProcRef::Id(_) => RequestHead::PrimaryOnly("system procedure call"),
        },
    }
}

fn is_app_lock_procedure(name: &str) -> bool {
    let last = name
        .rsplit('.')
        .next()
        .unwrap_or("")
        .trim_matches(|c| c == '[' || c == ']');
    ["sp_getapplock", "sp_releaseapplock"]
        .iter()
        .any(|p| p.eq_ignore_ascii_case(last))
}

/// `EXEC name arg, @param = arg, ...` with the string arguments as
/// literals and any other value as a variable (unknown to the classifier).
/// Arguments that cannot be decoded are all unknown: a lock whose owner is
/// unknown pins (it may be the session's); a release with an unknown owner
/// ends nothing.
fn app_lock_call(
    name: &str,
    arguments: Result<Vec<RpcArgument>, crate::tds::DecodeError>,
) -> String {
    let rendered: Vec<String> = match arguments {
        Ok(arguments) => arguments
            .iter()
            .map(|a| {
                let value = a.text.as_ref().map_or("@unknown".to_string(), |t| {
                    format!("N'{}'", t.replace('\'', "''"))
                });
                match a.name.as_str() {
                    "" => value,
                    n if n.starts_with('@') => format!("{n} = {value}"),
                    n => format!("@{n} = {value}"),
                }
            })
            .collect(),
        Err(_) => vec![
            "@Resource = @unknown".into(),
            "@LockOwner = @unknown".into(),
        ],
    };
    format!("EXEC {name} {}", rendered.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::{Classifier, Pin, PinReason};

    fn argument(name: &str, text: Option<&str>) -> RpcArgument {
        RpcArgument {
            name: name.into(),
            text: text.map(str::to_string),
        }
    }

    fn pins(call: &str) -> Vec<SessionEffect> {
        Classifier::new(0, &[]).classify(call).effects.clone()
    }

    #[test]
    fn app_lock_calls_by_rpc_become_their_exec() {
        assert!(is_app_lock_procedure("[sys].[SP_GETAPPLOCK]"));
        assert!(is_app_lock_procedure("sp_releaseapplock"));
        assert!(!is_app_lock_procedure("dbo.sp_getapplock_audit"));
        let call = app_lock_call(
            "sp_getapplock",
            Ok(vec![
                argument("", Some("it's")),
                argument("@LockMode", Some("Exclusive")),
                argument("LockOwner", Some("Session")),
                argument("@LockTimeout", None),
            ]),
        );
        assert_eq!(
            call,
            "EXEC sp_getapplock N'it''s', @LockMode = N'Exclusive', @LockOwner = N'Session', @LockTimeout = @unknown"
        );
        assert_eq!(
            pins(&call),
            [SessionEffect::Pin(Pin::named(
                PinReason::SessionLock,
                "it's"
            ))]
        );
        // Arguments that cannot be read: a lock that may be the session's.
        let unreadable = app_lock_call(
            "sp_getapplock",
            Err(crate::tds::DecodeError::invalid("RPCRequest", "test")),
        );
        assert_eq!(
            pins(&unreadable),
            [SessionEffect::Pin(Pin::new(PinReason::SessionLock))]
        );
        let release = app_lock_call(
            "sp_releaseapplock",
            Err(crate::tds::DecodeError::invalid("RPCRequest", "test")),
        );
        assert_eq!(pins(&release), []);
    }

    #[test]
    fn cursor_calls_by_procedure_id() {
        for (id, call) in [
            (proc_id::SP_CURSOROPEN, CursorCall::Open),
            (proc_id::SP_CURSOREXECUTE, CursorCall::Open),
            (proc_id::SP_CURSORPREPARE, CursorCall::Prepare),
            (proc_id::SP_CURSORPREPEXEC, CursorCall::PrepareOpen),
            (proc_id::SP_CURSORCLOSE, CursorCall::Close),
            (proc_id::SP_CURSORUNPREPARE, CursorCall::Unprepare),
            (proc_id::SP_CURSORFETCH, CursorCall::Use),
            (proc_id::SP_CURSOROPTION, CursorCall::Use),
            (proc_id::SP_CURSOR, CursorCall::Use),
        ] {
            assert_eq!(CursorCall::of(id), call);
        }
        assert!(CursorCall::Use.effects().is_empty());
        assert_eq!(CursorCall::PrepareOpen.effects().len(), 2);
    }
}
