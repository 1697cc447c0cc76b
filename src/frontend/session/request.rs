//! What routing needs to know about a buffered request: its SQL text, the
//! procedure it calls, or why only the primary may take it.

use crate::tds::packet::PacketType;
use crate::tds::request::{batch_procedures, proc_id, sql_batch_text, ProcRef, RpcHead};
use crate::transport::Request;

/// The routing-relevant content of one request message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestHead {
    /// A SQL batch, or the statement of sp_executesql.
    Sql(String),
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
    /// Several RPC calls in one request, one of them a prepared-statement
    /// call: refused, as their handles cannot be bound one by one yet.
    BatchedPrepared,
    /// An API server cursor call (sp_cursoropen, sp_cursorfetch, ...): its
    /// cursor lives on one connection, so the session is pinned.
    Cursor,
    PrimaryOnly(&'static str),
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
            Ok(rpc) => rpc_head(rpc),
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

fn rpc_head(rpc: RpcHead) -> RequestHead {
    match (rpc.procedure.well_known_id(), rpc.sql_text) {
        (Some(proc_id::SP_EXECUTESQL), Some(sql)) => RequestHead::Sql(sql),
        (Some(proc_id::SP_PREPARE | proc_id::SP_PREPEXEC), Some(sql)) => RequestHead::Prepare {
            sql,
            params: rpc.params_decl.unwrap_or_default(),
        },
        (Some(proc_id::SP_EXECUTE), _) => RequestHead::Execute(rpc.handle),
        (Some(proc_id::SP_UNPREPARE), _) => RequestHead::Unprepare(rpc.handle),
        (Some(id), _) if (proc_id::SP_CURSOR..=proc_id::SP_CURSORCLOSE).contains(&id) => {
            RequestHead::Cursor
        }
        (Some(_), _) => RequestHead::PrimaryOnly("system procedure call"),
        (None, _) => match rpc.procedure {
            ProcRef::Name(name) => RequestHead::Procedure(name),
            ProcRef::Id(_) => RequestHead::PrimaryOnly("system procedure call"),
        },
    }
}
