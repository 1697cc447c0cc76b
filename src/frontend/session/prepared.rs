//! Prepared statements. SQL Server numbers handles per connection from 1, so
//! a handle is only meaningful on the connection that issued it, and two
//! connections issue the same numbers. Sluice therefore owns the client's
//! handle space: the handle in a prepare's RETURNVALUE is rewritten to one
//! of Sluice's, mapped to the statement text and parameter declarations.
//! Each backend connection keeps its own statements by text (a bounded LRU
//! shared by every session it serves). An sp_execute is routed by the
//! statement's text and bound to the serving connection's own handle,
//! prepared there on demand (sp_prepare), or run as sp_executesql when no
//! handle can be had. A handle is never sent to a connection that did not
//! issue it, and in transaction mode any pooled connection can serve.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use super::state::Scope;
use super::{ClientError, Held, Prepare, Session, SessionError};
use crate::tds::packet::PacketType;
use crate::tds::request::{
    all_headers_bytes, encode_sp_prepare, execute_as_executesql, proc_id, with_prepared_handle,
    RpcHead,
};
use crate::tds::token::done::{Done, DoneKind, DoneStatus};
use crate::tds::token::walker::{TokenEvent, TokenWalker};
use crate::transport::Request;

/// Prepared statements one session may hold; past it a prepare gets an
/// error (the client is leaking handles).
const MAX_PREPARED: usize = 4096;

/// What a request sends once it is bound to a connection.
#[derive(Debug)]
pub(super) enum Outgoing {
    /// The client's request, unchanged.
    AsIs(Request),
    /// sp_execute of a client handle: bound to the serving connection's
    /// own handle for the statement.
    Execute { request: Request, handle: i32 },
}

impl Outgoing {
    pub(super) fn is_complete(&self) -> bool {
        self.request().is_complete()
    }

    /// The status of the client's first packet (its reset bits).
    pub(super) fn first_status(&self) -> crate::tds::packet::Status {
        self.request().first_status()
    }

    fn request(&self) -> &Request {
        match self {
            Outgoing::AsIs(r) | Outgoing::Execute { request: r, .. } => r,
        }
    }
}

#[derive(Debug)]
struct Statement {
    sql: Arc<str>,
    params: Arc<str>,
    /// Parameter declarations and text: the statement's name on a connection.
    key: Arc<str>,
}

/// The key of a statement on a connection: its declarations and text.
fn statement_key(sql: &str, params: &str) -> Arc<str> {
    format!("{params}\u{0}{sql}").into()
}

/// The client-visible handles of one session.
#[derive(Debug, Default)]
pub(super) struct PreparedStatements {
    last: i32,
    statements: HashMap<i32, Statement>,
}

impl PreparedStatements {
    fn is_full(&self) -> bool {
        self.statements.len() >= MAX_PREPARED
    }

    /// A handle not in use, for the next prepare.
    fn next_handle(&mut self) -> i32 {
        loop {
            self.last = if self.last >= i32::MAX - 1 {
                1
            } else {
                self.last + 1
            };
            if !self.statements.contains_key(&self.last) {
                return self.last;
            }
        }
    }

    fn insert(&mut self, handle: i32, sql: String, params: String, key: Arc<str>) {
        let statement = Statement {
            sql: sql.into(),
            params: params.into(),
            key,
        };
        self.statements.insert(handle, statement);
    }

    fn get(&self, handle: i32) -> Option<&Statement> {
        self.statements.get(&handle)
    }

    /// A client reset ends the logical session and its statements.
    pub(super) fn clear(&mut self) {
        self.statements.clear();
    }
}

impl Session {
    /// sp_prepare / sp_prepexec: routed by its statement; the handle in the
    /// reply becomes one of Sluice's.
    pub(super) async fn prepare(
        &mut self,
        sql: String,
        params: String,
        request: Request,
    ) -> Result<(), SessionError> {
        if self.prepared.is_full() {
            let error = ClientError::request(format!(
                "Sluice: this connection holds {MAX_PREPARED} prepared statements, the most it may; unprepare some"
            ));
            return self.fail_request(request.is_complete(), error).await;
        }
        // sp_prepare compiles the statement without running it: its effects
        // come with each sp_execute.
        let scope = match RpcHead::decode(&request.payload()) {
            Ok(rpc) if rpc.procedure.well_known_id() == Some(proc_id::SP_PREPARE) => {
                Scope::Compiled
            }
            _ => Scope::Nested,
        };
        let decision = self.route_request(crate::router::Request::Sql(&sql), scope);
        self.count_request(&decision);
        let prepare = Prepare {
            handle: self.prepared.next_handle(),
            key: statement_key(&sql, &params),
        };
        let served = self
            .execute(
                decision.target,
                Outgoing::AsIs(request),
                Some(prepare.clone()),
            )
            .await?;
        let Some(served) = served else { return Ok(()) };
        match served.summary.handle {
            Some(_) => self
                .prepared
                .insert(prepare.handle, sql, params, prepare.key),
            None if !served.summary.error => {
                tracing::warn!(spid = self.client.spid(), "no readable handle in a reply to a prepare; the statement cannot be executed through Sluice");
            }
            None => {}
        }
        Ok(())
    }

    /// sp_execute: routed by the statement's text, bound to the serving
    /// connection's handle.
    pub(super) async fn execute_prepared(
        &mut self,
        handle: Option<i32>,
        request: Request,
    ) -> Result<(), SessionError> {
        let Some((handle, sql)) = handle.and_then(|h| Some((h, self.prepared.get(h)?.sql.clone())))
        else {
            let error = ClientError::unknown_prepared_handle(handle);
            return self.fail_request(request.is_complete(), error).await;
        };
        if !request.is_complete() {
            let error = ClientError::request(
                "Sluice: an sp_execute larger than limits.request_buffer_bytes cannot be bound to a connection",
            );
            return self.fail_request(false, error).await;
        }
        let decision = self.route_request(crate::router::Request::Sql(&sql), Scope::Nested);
        self.count_request(&decision);
        let outgoing = Outgoing::Execute { request, handle };
        self.execute(decision.target, outgoing, None)
            .await
            .map(drop)
    }

    /// sp_unprepare: the client's handle ends here, answered by Sluice. The
    /// statement stays prepared on the connections that have it (other
    /// sessions may use it) until their caches let it go.
    pub(super) async fn unprepare(
        &mut self,
        handle: Option<i32>,
        request: Request,
    ) -> Result<(), SessionError> {
        let complete = request.is_complete();
        let known = handle.and_then(|h| self.prepared.statements.remove(&h));
        if known.is_none() || !complete {
            let error = match known {
                None => ClientError::unknown_prepared_handle(handle),
                Some(_) => ClientError::request("oversized sp_unprepare"),
            };
            return self.fail_request(complete, error).await;
        }
        self.client
            .send_message(&unprepared_reply())
            .await
            .map_err(SessionError::ClientGone)
    }

    /// The request to send on `held`: a prepared call gets that
    /// connection's own handle.
    pub(super) async fn bind<'o>(
        &mut self,
        held: &mut Held,
        outgoing: &'o Outgoing,
    ) -> Result<Cow<'o, Request>, String> {
        match outgoing {
            Outgoing::AsIs(request) => Ok(Cow::Borrowed(request)),
            Outgoing::Execute { request, handle } => {
                let bound = self.bind_execute(held, request, *handle).await?;
                Ok(Cow::Owned(bound))
            }
        }
    }

    async fn bind_execute(
        &mut self,
        held: &mut Held,
        request: &Request,
        handle: i32,
    ) -> Result<Request, String> {
        let Some(statement) = self.prepared.get(handle) else {
            return Err("the prepared statement was unprepared".into());
        };
        let (sql, params, key) = (
            statement.sql.clone(),
            statement.params.clone(),
            statement.key.clone(),
        );
        let payload = request.payload();
        let real = match held.conn.prepared_handle(&key) {
            Some(real) => Some(real),
            None => {
                let real = prepare_on(held, &payload, &sql, &params).await?;
                if let Some(real) = real {
                    held.conn.remember_prepared(key, real);
                }
                real
            }
        };
        let rewritten = match real {
            Some(real) => with_prepared_handle(&payload, real),
            None => execute_as_executesql(&payload, &sql, &params),
        };
        // The request decoded as a handle call before; a payload that still
        // cannot be rewritten is not the client's statement to run anywhere.
        let rewritten = rewritten.map_err(|e| format!("cannot bind a prepared statement: {e}"))?;
        Ok(Request::from_payload(
            PacketType::RPC,
            request.first_status(),
            &rewritten,
        ))
    }
}

/// Prepares a statement on `held` with Sluice's own sp_prepare, in the
/// client request's transaction; the handle it returns, or `None` when the
/// server gave none Sluice can read (then sp_executesql runs the statement
/// instead). An I/O failure loses the connection.
async fn prepare_on(
    held: &mut Held,
    client_payload: &[u8],
    sql: &str,
    params: &str,
) -> Result<Option<i32>, String> {
    let Ok(headers) = all_headers_bytes(client_payload) else {
        return Ok(None);
    };
    let payload = encode_sp_prepare(headers, sql, params);
    let reply = held
        .conn
        .exchange(PacketType::RPC, &payload)
        .await
        .map_err(|e| format!("preparing a statement: {e}"))?;
    Ok(returned_handle(&reply))
}

/// The handle (RETURNVALUE ordinal 0) of a whole, error-free reply.
fn returned_handle(reply: &[u8]) -> Option<i32> {
    let mut events = Vec::new();
    TokenWalker::new().feed(reply, &mut events).ok()?;
    if events.iter().any(|e| matches!(e, TokenEvent::Error(_))) {
        return None;
    }
    events.iter().find_map(|e| match e {
        TokenEvent::ReturnValue {
            ordinal: 0,
            value: Some(v),
            ..
        } => i32::try_from(*v).ok(),
        _ => None,
    })
}

/// What SQL Server answers to a successful sp_unprepare: RETURNSTATUS 0,
/// then DONEPROC [MS-TDS 2.2.7.18, 2.2.7.8].
fn unprepared_reply() -> Vec<u8> {
    let mut out = vec![0x79, 0, 0, 0, 0];
    Done {
        kind: DoneKind::DoneProc,
        status: DoneStatus::FINAL,
        cur_cmd: 0xE0,
        row_count: 0,
    }
    .encode(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_are_sluices_own() {
        let mut prepared = PreparedStatements::default();
        let first = prepared.next_handle();
        let key = statement_key("UPDATE t SET x = 1", "");
        prepared.insert(first, "UPDATE t SET x = 1".into(), String::new(), key);
        let second = prepared.next_handle();
        assert_ne!(first, second);
        assert_eq!(
            prepared.get(first).unwrap().sql.as_ref(),
            "UPDATE t SET x = 1"
        );
        assert!(prepared.get(second).is_none());
        prepared.clear();
        assert!(prepared.get(first).is_none());
    }

    #[test]
    fn the_key_tells_declarations_apart() {
        assert_ne!(
            statement_key("SELECT @a", "@a int"),
            statement_key("SELECT @a", "@a bigint")
        );
        assert_ne!(statement_key("ab", "c"), statement_key("b", "ca"));
    }

    #[test]
    fn a_reply_with_an_error_gives_no_handle() {
        let mut reply = vec![0xAC, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0x26, 4, 4];
        reply.extend_from_slice(&5i32.to_le_bytes());
        assert_eq!(returned_handle(&reply), Some(5));
        assert_eq!(returned_handle(&unprepared_reply()), None);
    }
}
