//! Prepared statements. SQL Server numbers handles per connection from 1, so
//! a handle is only meaningful on the connection that issued it, and two
//! connections issue the same numbers. Sluice therefore owns the client's
//! handle space: the handle in a prepare's RETURNVALUE is rewritten to one
//! of Sluice's, mapped to (connection, real handle) plus the statement text
//! and parameter declarations. An sp_execute is routed by that text and
//! bound to the serving connection's own handle, prepared there again on
//! demand (sp_prepare), or run as sp_executesql when no handle can be had.
//! A handle is never sent to a connection that did not issue it.

use std::collections::HashMap;
use std::sync::Arc;

use super::state::Scope;
use super::{ClientError, Held, Session, SessionError};
use crate::backend::ConnId;
use crate::router::Target;
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
/// Connections a statement stays prepared on (primary and a replica, and
/// a few it moved between); older ones are forgotten, and prepared again
/// if needed.
const MAX_CONNECTIONS_PER_STATEMENT: usize = 4;

/// What a request sends once it is bound to a connection.
#[derive(Debug, Clone)]
pub(super) enum Outgoing {
    /// The client's request, unchanged.
    AsIs(Request),
    /// sp_execute of a client handle: bound to the serving connection's
    /// own handle for the statement.
    Execute { request: Request, handle: i32 },
    /// A request already bound to one connection's handle: it may run on
    /// that connection only, and is never retried elsewhere.
    OnConnection { request: Request, conn: ConnId },
}

impl Outgoing {
    pub(super) fn is_complete(&self) -> bool {
        match self {
            Outgoing::AsIs(r) | Outgoing::Execute { request: r, .. } => r.is_complete(),
            Outgoing::OnConnection { request, .. } => request.is_complete(),
        }
    }

    /// Whether it may run again on another target after a failure.
    pub(super) fn is_retryable(&self) -> bool {
        !matches!(self, Outgoing::OnConnection { .. })
    }
}

#[derive(Debug)]
struct Statement {
    sql: Arc<str>,
    params: Arc<str>,
    /// The handle each connection issued for it.
    on: Vec<(ConnId, i32)>,
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

    fn insert(&mut self, handle: i32, sql: String, params: String, conn: ConnId, real: i32) {
        let statement = Statement {
            sql: sql.into(),
            params: params.into(),
            on: vec![(conn, real)],
        };
        self.statements.insert(handle, statement);
    }

    fn text(&self, handle: i32) -> Option<(Arc<str>, Arc<str>)> {
        let statement = self.statements.get(&handle)?;
        Some((statement.sql.clone(), statement.params.clone()))
    }

    fn real_on(&self, handle: i32, conn: ConnId) -> Option<i32> {
        let statement = self.statements.get(&handle)?;
        statement
            .on
            .iter()
            .find(|(c, _)| *c == conn)
            .map(|&(_, h)| h)
    }

    fn add_real(&mut self, handle: i32, conn: ConnId, real: i32) {
        if let Some(statement) = self.statements.get_mut(&handle) {
            if statement.on.len() >= MAX_CONNECTIONS_PER_STATEMENT {
                statement.on.remove(0);
            }
            statement.on.push((conn, real));
        }
    }

    /// Handles die with their connection.
    pub(super) fn forget_connection(&mut self, conn: ConnId) {
        for statement in self.statements.values_mut() {
            statement.on.retain(|(c, _)| *c != conn);
        }
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
        let handle = self.prepared.next_handle();
        let served = self
            .execute(decision.target, Outgoing::AsIs(request), Some(handle))
            .await?;
        let Some(served) = served else { return Ok(()) };
        match (served.conn, served.summary.handle) {
            (Some(conn), Some(real)) => self.prepared.insert(handle, sql, params, conn, real),
            (Some(_), None) if !served.summary.error => {
                tracing::warn!(spid = self.client.spid(), "no readable handle in a reply to a prepare; the statement cannot be executed through Sluice");
            }
            _ => {}
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
        let Some((handle, (sql, _))) = handle.and_then(|h| Some((h, self.prepared.text(h)?)))
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
        let outgoing = Outgoing::Execute { request, handle };
        self.execute(decision.target, outgoing, None)
            .await
            .map(drop)
    }

    /// sp_unprepare: sent to the held connection that has the statement,
    /// with that connection's handle; answered by Sluice when none has it
    /// (its connections are gone, and their handles with them).
    pub(super) async fn unprepare(
        &mut self,
        handle: Option<i32>,
        request: Request,
    ) -> Result<(), SessionError> {
        let complete = request.is_complete();
        let Some(client_handle) = handle.filter(|&h| self.prepared.text(h).is_some()) else {
            let error = ClientError::unknown_prepared_handle(handle);
            return self.fail_request(complete, error).await;
        };
        let holder = self
            .held_connections()
            .into_iter()
            .find_map(|(target, conn)| {
                let real = self.prepared.real_on(client_handle, conn)?;
                Some((target, conn, real))
            });
        self.prepared.statements.remove(&client_handle);
        let bound = holder.and_then(|(target, conn, real)| {
            let payload = with_prepared_handle(&request.payload(), real).ok()?;
            let status = request.first_status();
            let request = Request::from_payload(PacketType::RPC, status, &payload);
            Some((target, Outgoing::OnConnection { request, conn }))
        });
        match bound {
            Some((target, outgoing)) if complete => {
                self.execute(target, outgoing, None).await.map(drop)
            }
            _ => {
                if !complete {
                    self.fail_request(false, ClientError::request("oversized sp_unprepare"))
                        .await?;
                    return Ok(());
                }
                self.client
                    .send_message(&unprepared_reply())
                    .await
                    .map_err(SessionError::ClientGone)
            }
        }
    }

    fn held_connections(&self) -> Vec<(Target, ConnId)> {
        let primary = self
            .primary
            .as_ref()
            .map(|h| (Target::Primary, h.conn.id()));
        let replica = self
            .replica
            .as_ref()
            .map(|r| (Target::Replica(r.index), r.held.conn.id()));
        primary.into_iter().chain(replica).collect()
    }

    /// The request to send on `held`: a prepared call gets that
    /// connection's own handle.
    pub(super) async fn bind(
        &mut self,
        held: &mut Held,
        outgoing: Outgoing,
    ) -> Result<Request, String> {
        match outgoing {
            Outgoing::AsIs(request) => Ok(request),
            Outgoing::OnConnection { request, conn } if conn == held.conn.id() => Ok(request),
            Outgoing::OnConnection { .. } => {
                Err("the connection that prepared this handle is gone".into())
            }
            Outgoing::Execute { request, handle } => self.bind_execute(held, request, handle).await,
        }
    }

    async fn bind_execute(
        &mut self,
        held: &mut Held,
        request: Request,
        handle: i32,
    ) -> Result<Request, String> {
        let conn = held.conn.id();
        let payload = request.payload();
        let real = match self.prepared.real_on(handle, conn) {
            Some(real) => Some(real),
            None => {
                let real = self.prepare_again(held, &payload, handle).await?;
                if let Some(real) = real {
                    self.prepared.add_real(handle, conn, real);
                }
                real
            }
        };
        let rewritten = match real {
            Some(real) => with_prepared_handle(&payload, real),
            None => {
                let (sql, params) = self.prepared.text(handle).unwrap_or_default();
                execute_as_executesql(&payload, &sql, &params)
            }
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

    /// Prepares the statement on `held` with Sluice's own sp_prepare, in
    /// the client request's transaction; the handle it returns, or `None`
    /// when the server gave none Sluice can read (then sp_executesql runs
    /// the statement instead). An I/O failure loses the connection.
    async fn prepare_again(
        &mut self,
        held: &mut Held,
        client_payload: &[u8],
        handle: i32,
    ) -> Result<Option<i32>, String> {
        let Some((sql, params)) = self.prepared.text(handle) else {
            return Ok(None);
        };
        let Ok(headers) = all_headers_bytes(client_payload) else {
            return Ok(None);
        };
        let payload = encode_sp_prepare(headers, &sql, &params);
        let reply = held
            .conn
            .exchange(PacketType::RPC, &payload)
            .await
            .map_err(|e| format!("preparing a statement again: {e}"))?;
        Ok(returned_handle(&reply))
    }
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

    fn conn(n: u64) -> ConnId {
        ConnId::for_tests(n)
    }

    #[test]
    fn handles_are_sluices_own_and_map_per_connection() {
        let mut prepared = PreparedStatements::default();
        let first = prepared.next_handle();
        prepared.insert(
            first,
            "UPDATE t SET x = 1".into(),
            String::new(),
            conn(1),
            1,
        );
        let second = prepared.next_handle();
        // The replica issued handle 1 too: the client sees two handles.
        prepared.insert(second, "SELECT 1".into(), String::new(), conn(2), 1);
        assert_ne!(first, second);
        assert_eq!(prepared.real_on(first, conn(1)), Some(1));
        assert_eq!(
            prepared.real_on(first, conn(2)),
            None,
            "never sent to another connection"
        );
        assert_eq!(
            prepared.text(first).unwrap().0.as_ref(),
            "UPDATE t SET x = 1"
        );
        prepared.forget_connection(conn(1));
        assert_eq!(prepared.real_on(first, conn(1)), None);
        assert!(
            prepared.text(first).is_some(),
            "the statement can be prepared again"
        );
    }

    #[test]
    fn connections_per_statement_are_bounded() {
        let mut prepared = PreparedStatements::default();
        let h = prepared.next_handle();
        prepared.insert(h, "SELECT 1".into(), String::new(), conn(0), 10);
        for n in 1..10 {
            prepared.add_real(h, conn(n), 10 + n as i32);
        }
        assert_eq!(
            prepared.statements[&h].on.len(),
            MAX_CONNECTIONS_PER_STATEMENT
        );
        assert_eq!(prepared.real_on(h, conn(9)), Some(19));
    }

    #[test]
    fn a_reply_with_an_error_gives_no_handle() {
        let mut reply = vec![0xAC, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0x26, 4, 4];
        reply.extend_from_slice(&5i32.to_le_bytes());
        assert_eq!(returned_handle(&reply), Some(5));
        assert_eq!(returned_handle(&unprepared_reply()), None);
    }
}
