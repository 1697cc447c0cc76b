//! The request loop of one logged-in client: read a request, route it, run
//! it on the chosen backend connection, stream the response back. The
//! session decides; the backend connection ([`BackendConn`]) speaks the
//! protocol.
//!
//! [`BackendConn`]: crate::backend::BackendConn

mod emulation;
mod prepared;
mod request;
mod state;

use std::sync::Arc;
use std::time::Instant;

use super::reply::{attention_ack, error_response, ClientError};
use super::transaction_emulation::EmulatedTransaction;
use crate::backend::{
    BackendError, Cluster, PooledBackend, RelayEnd, RelayOptions, ResponseSummary,
};
use crate::config::Limits;
use crate::router::{Decision, PinReason, Router, Target};
use crate::tds::packet::{PacketType, Status};
use crate::transport::{ClientConn, Packet, ReadError, Request};
use prepared::{Outgoing, PreparedStatements};
use request::RequestHead;
use state::RoutingState;

/// Why a session ended other than by the client logging off.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("client: {0}")]
    Client(#[from] ReadError),
    #[error("client went away: {0}")]
    ClientGone(std::io::Error),
    #[error("client protocol violation: {0}")]
    Protocol(String),
    #[error("backend failed mid-response: {0}")]
    BackendLost(String),
    /// The connection holding the session's transaction or pinned state was
    /// lost: the client's connection is closed, as SQL Server's would be.
    #[error("session state lost with its backend connection: {0}")]
    StateLost(String),
}

/// What a session needs of the proxy: the backends, the router and the
/// limits — not the whole proxy.
pub struct SessionContext {
    pub cluster: Arc<Cluster>,
    pub router: Arc<Router>,
    pub limits: Limits,
    /// The server name Sluice signs its own messages with.
    pub server_name: String,
    /// The primary never answers Transaction Manager requests: emulate them.
    pub emulate_transaction_requests: bool,
}

/// Who the client is, for routing rules.
pub struct ClientIdentity {
    pub user: String,
    pub application: String,
}

/// A backend connection the session holds, and the settings version it has applied.
struct Held {
    conn: PooledBackend,
    synced: u64,
}

/// The replica connection a session holds, and which replica it is.
struct HeldReplica {
    index: usize,
    held: Held,
}

pub struct Session {
    ctx: Arc<SessionContext>,
    client: ClientConn,
    identity: ClientIdentity,
    /// Current database (login database, then ENVCHANGEs).
    database: String,
    primary: Option<Held>,
    replica: Option<HeldReplica>,
    /// Where the last request went: a late attention goes there too.
    last_target: Target,
    routing: RoutingState,
    emulated: EmulatedTransaction,
    /// The prepared handles this client sees: Sluice's own, mapped to the
    /// handles of the connections that prepared them.
    prepared: PreparedStatements,
}

impl Drop for Session {
    /// A client that leaves inside a transaction Sluice knows of only from
    /// the SQL (a server that sends no ENVCHANGE) or from TM emulation
    /// leaves it open on the connection: discard it, so its locks go now.
    fn drop(&mut self) {
        if self.routing.in_transaction() || self.emulated.is_open() {
            if let Some(held) = self.primary.as_mut() {
                held.conn.mark_broken();
            }
        }
    }
}

/// How one try of a request went.
enum Attempt {
    Served(Served),
    /// Nothing reached the client; the request may run elsewhere.
    Failed(AttemptFailure),
}

/// Where a request ran and what its response said.
struct Served {
    /// The connection that answered; `None` when it died mid-answer.
    conn: Option<crate::backend::ConnId>,
    summary: ResponseSummary,
}

struct AttemptFailure {
    error: String,
    /// The client's request was read to its end (no packets left to drain).
    request_consumed: bool,
}

impl Attempt {
    fn failed(error: impl std::fmt::Display, request_consumed: bool) -> Attempt {
        Attempt::Failed(AttemptFailure {
            error: error.to_string(),
            request_consumed,
        })
    }
}

impl Session {
    pub fn new(
        ctx: Arc<SessionContext>,
        client: ClientConn,
        identity: ClientIdentity,
        database: String,
        first: (Target, PooledBackend),
    ) -> Self {
        let (target, conn) = first;
        let held = Held { conn, synced: 0 };
        let (primary, replica) = match target {
            Target::Replica(index) => (None, Some(HeldReplica { index, held })),
            Target::Primary => (Some(held), None),
        };
        Session {
            ctx,
            client,
            identity,
            database,
            primary,
            replica,
            last_target: Target::Primary,
            routing: RoutingState::default(),
            emulated: EmulatedTransaction::default(),
            prepared: PreparedStatements::default(),
        }
    }

    /// Serves requests until the client disconnects.
    pub async fn run(mut self) -> Result<(), SessionError> {
        let result = self.serve().await;
        match &result {
            Err(SessionError::StateLost(detail)) => {
                let error = ClientError::state_lost(detail);
                self.send_error(&error).await.ok();
                self.client.shutdown().await;
            }
            Err(SessionError::BackendLost(_)) => self.client.shutdown().await,
            _ => {}
        }
        result
    }

    async fn serve(&mut self) -> Result<(), SessionError> {
        loop {
            let packet = match self.client.next_request().await {
                Ok(p) => p,
                Err(ReadError::Closed) => return Ok(()),
                Err(ReadError::Malformed(e)) => return self.refuse(ClientError::protocol(e)).await,
                Err(e) => return Err(e.into()),
            };
            match packet.ty() {
                ty if ty.is_request() => self.handle_request(packet).await?,
                PacketType::ATTENTION => self.handle_idle_attention().await?,
                ty => {
                    let detail = format!("unexpected packet type 0x{:02X} after login", ty.0);
                    return self.refuse(ClientError::protocol(detail)).await;
                }
            }
        }
    }

    /// Sends a final error to the client and ends the session.
    async fn refuse(&mut self, error: ClientError) -> Result<(), SessionError> {
        let reason = error.message.clone();
        self.send_error(&error).await.ok();
        Err(SessionError::Protocol(reason))
    }

    async fn send_error(&mut self, error: &ClientError) -> std::io::Result<()> {
        let payload = error_response(error, &self.ctx.server_name);
        self.client.send_message(&payload).await
    }

    async fn handle_request(&mut self, first: Packet) -> Result<(), SessionError> {
        let request = self.buffer_request(first).await?;
        self.client_reset(request.first_status());
        if request.ty() == PacketType::TRANSACTION_MANAGER && self.ctx.emulate_transaction_requests
        {
            return self.emulate_transaction_request(request).await;
        }
        let head = request::decode(&request);
        match head {
            RequestHead::Prepare { sql, params } => self.prepare(sql, params, request).await,
            RequestHead::Execute(handle) => self.execute_prepared(handle, request).await,
            RequestHead::Unprepare(handle) => self.unprepare(handle, request).await,
            RequestHead::BatchedPrepared => {
                // Forwarding it would send Sluice's handle numbers to a
                // server that numbers its own: refuse rather than misrun.
                let error = ClientError::request(
                    "Sluice: an RPC request with several calls, one of them a prepared-statement \
                     call (sp_prepare, sp_prepexec, sp_execute, sp_unprepare), is not supported; \
                     send such calls one per request",
                );
                self.fail_request(request.is_complete(), error).await
            }
            head => {
                let decision = self.route(&head);
                tracing::debug!(spid = self.client.spid(), target = ?decision.target, reason = %decision.reason, "routed");
                self.execute(decision.target, Outgoing::AsIs(request), None)
                    .await
                    .map(drop)
            }
        }
    }

    fn view(&self) -> crate::router::SessionView<'_> {
        let mut view = self.routing.view(
            &self.identity.user,
            &self.identity.application,
            &self.database,
            self.emulated.is_open(),
        );
        view.current_replica = self.replica.as_ref().map(|r| r.index);
        view
    }

    /// Asks the router, then records what the request does to the session.
    fn route(&mut self, head: &RequestHead) -> Decision {
        let request = match head {
            RequestHead::Sql(sql) | RequestHead::Prepare { sql, .. } => {
                crate::router::Request::Sql(sql)
            }
            RequestHead::Procedure(name) => crate::router::Request::Procedure(name),
            RequestHead::Cursor => crate::router::Request::PrimaryOnly("API server cursor"),
            RequestHead::BatchedPrepared => {
                crate::router::Request::PrimaryOnly("batched prepared-statement calls")
            }
            RequestHead::Execute(_) | RequestHead::Unprepare(_) => {
                crate::router::Request::PrimaryOnly("prepared statement call")
            }
            RequestHead::PrimaryOnly(why) => crate::router::Request::PrimaryOnly(why),
        };
        let decision = self.route_request(request);
        if matches!(head, RequestHead::Cursor) {
            self.routing.pin_to_primary(PinReason::Cursor);
        }
        decision
    }

    fn route_request(&mut self, request: crate::router::Request<'_>) -> Decision {
        let now = Instant::now();
        let replicas = self.ctx.cluster.replica_views();
        let decision = self.ctx.router.route(request, &self.view(), &replicas, now);
        match (&decision.classification, request) {
            (Some(c), _) => self.routing.apply(c, now),
            (None, crate::router::Request::PrimaryOnly(_)) => self.routing.record_write(now),
            (None, _) => {}
        }
        decision
    }

    /// A client's own reset bit starts a new logical session
    /// [MS-TDS 2.2.3.1.2]. RESETCONNECTION clears everything;
    /// RESETCONNECTIONSKIPTRAN keeps an open transaction, and then the
    /// primary connection (which carries it, and gets the client's bit with
    /// this request) must not get a full reset of Sluice's.
    fn client_reset(&mut self, status: Status) {
        let keeps_transaction = !status.contains(Status::RESET_CONNECTION)
            && status.contains(Status::RESET_CONNECTION_SKIP_TRAN)
            && (self.routing.in_transaction() || self.emulated.is_open());
        if keeps_transaction {
            self.routing.reset_keeping_transaction();
        } else if status.resets_connection() {
            self.routing.reset();
            if let Some(held) = self.primary.as_mut() {
                held.conn.reset_on_next_request();
            }
        } else {
            return;
        }
        // The replica connection still has the old session's settings and
        // statements: back to the pool, where it will be reset before its
        // next use.
        self.release_replica();
        self.prepared.clear();
        if let Some(held) = self.primary.as_mut() {
            held.synced = self.routing.version();
        }
    }

    /// Runs the request on `target` and relays the answer. A read whose
    /// replica fails before any byte of the answer reached the client runs
    /// again on the primary, invisibly. Returns where the request ran
    /// (`None`: it failed and the client got an error instead).
    async fn execute(
        &mut self,
        target: Target,
        outgoing: Outgoing,
        client_handle: Option<i32>,
    ) -> Result<Option<Served>, SessionError> {
        let mut target = target;
        let mut outgoing = outgoing;
        loop {
            let complete = outgoing.is_complete();
            let retryable = target.is_replica() && complete && outgoing.is_retryable();
            let spare = retryable.then(|| outgoing.clone());
            let failure = match self.attempt(target, outgoing, client_handle).await? {
                Attempt::Served(served) => return Ok(Some(served)),
                Attempt::Failed(failure) => failure,
            };
            match spare {
                Some(copy) => {
                    tracing::warn!(error = %failure.error, ?target, "replica failed before replying; retrying on the primary");
                    target = Target::Primary;
                    outgoing = copy;
                }
                None => {
                    let error = ClientError::backend_failed(&failure.error);
                    self.fail_request(failure.request_consumed, error).await?;
                    return Ok(None);
                }
            }
        }
    }

    /// One try on one target.
    async fn attempt(
        &mut self,
        target: Target,
        outgoing: Outgoing,
        client_handle: Option<i32>,
    ) -> Result<Attempt, SessionError> {
        let complete = outgoing.is_complete();
        let mut held = match self.take_synced(target).await {
            Ok(held) => held,
            Err(e) => {
                tracing::warn!(error = %e, ?target, "no backend connection for a request");
                return self.unavailable(target, e.client_message(), complete);
            }
        };
        let request = match self.bind(&mut held, outgoing).await {
            Ok(request) => request,
            Err(e) => return self.lost(target, held, e, complete),
        };
        if let Err(e) = held.conn.send(&request).await {
            return self.lost(target, held, e.to_string(), complete);
        }
        if !request.is_complete() {
            if let Err(e) = self.stream_request_tail(&mut held.conn, request.ty()).await {
                return self.lost(target, held, e.to_string(), true);
            }
        }
        self.relay_response(target, held, false, client_handle)
            .await
    }

    /// No connection could be had for `target`. If the session's state
    /// lived on the connection it had there, that state is gone.
    fn unavailable(
        &mut self,
        target: Target,
        error: String,
        request_consumed: bool,
    ) -> Result<Attempt, SessionError> {
        if target == Target::Primary && self.routing.has_unmovable_state() {
            return Err(SessionError::StateLost(error));
        }
        Ok(Attempt::failed(error, request_consumed))
    }

    /// The connection failed before any of its response reached the client.
    /// Only a session without state on it may go on with another one.
    fn lost(
        &mut self,
        target: Target,
        mut held: Held,
        error: String,
        request_consumed: bool,
    ) -> Result<Attempt, SessionError> {
        held.conn.mark_broken();
        self.prepared.forget_connection(held.conn.id());
        let error = format!("backend {} failed: {error}", held.conn.name());
        self.note_backend_failure(target);
        drop(held);
        self.unavailable(target, error, request_consumed)
    }

    /// A replica's connection-level failure counts against its health;
    /// client faults never do.
    fn note_backend_failure(&mut self, target: Target) {
        if let Target::Replica(index) = target {
            if let Some(replica) = self.ctx.cluster.replica(index) {
                replica.report_failure();
            }
        }
    }

    /// The held connection for `target` (checked out on first use, kept for
    /// the session), brought up to the session's settings.
    async fn take_synced(&mut self, target: Target) -> Result<Held, BackendError> {
        let mut held = self.take(target).await?;
        let version = self.routing.version();
        if held.synced < version {
            let replay = self.routing.replay_batch();
            if !replay.is_empty() {
                if let Err(e) = self.replay_settings(&mut held, &replay).await {
                    held.conn.mark_broken();
                    return Err(e);
                }
            }
            held.synced = version;
        }
        Ok(held)
    }

    async fn replay_settings(&mut self, held: &mut Held, replay: &str) -> Result<(), BackendError> {
        let backend = held.conn.name().clone();
        let protocol = |detail: String| BackendError::Protocol {
            backend: backend.clone(),
            detail,
        };
        let reply = held
            .conn
            .run_batch(replay)
            .await
            .map_err(|e| protocol(format!("replaying session settings: {e}")))?;
        if reply_has_error(&reply) {
            return Err(protocol("replaying session settings failed".into()));
        }
        Ok(())
    }

    async fn take(&mut self, target: Target) -> Result<Held, BackendError> {
        match target {
            Target::Primary => match self.primary.take() {
                Some(held) => Ok(held),
                None => Ok(Held {
                    conn: self.ctx.cluster.primary().get(&self.database).await?,
                    synced: 0,
                }),
            },
            Target::Replica(index) => {
                if let Some(current) = self.replica.take() {
                    if current.index == index {
                        return Ok(current.held);
                    }
                    self.prepared.forget_connection(current.held.conn.id());
                }
                let replica =
                    self.ctx
                        .cluster
                        .replica(index)
                        .ok_or_else(|| BackendError::Protocol {
                            backend: Arc::from("replica"),
                            detail: format!("no replica #{index}"),
                        })?;
                Ok(Held {
                    conn: replica.pools().get(&self.database).await?,
                    synced: 0,
                })
            }
        }
    }

    fn put_back(&mut self, target: Target, held: Held) {
        match target {
            Target::Primary => self.primary = Some(held),
            Target::Replica(index) => self.replica = Some(HeldReplica { index, held }),
        }
        self.last_target = target;
    }

    fn release_replica(&mut self) {
        if let Some(current) = self.replica.take() {
            self.prepared.forget_connection(current.held.conn.id());
        }
    }

    /// Reads request packets until EOM or until the buffer limit; the
    /// buffered head is what routing gets to look at.
    async fn buffer_request(&mut self, first: Packet) -> Result<Request, SessionError> {
        let limit = self.ctx.limits.request_buffer_bytes;
        let ty = first.ty();
        let mut request = Request::new(first);
        while !request.is_complete() && request.buffered_len() < limit {
            let packet = self.client.read_packet().await?;
            check_continuation(ty, &packet)?;
            request.push(packet);
        }
        Ok(request)
    }

    /// Answers a request that could not be forwarded with an error. The
    /// client may still be sending it: the rest is read and dropped first.
    async fn fail_request(
        &mut self,
        complete: bool,
        error: ClientError,
    ) -> Result<(), SessionError> {
        tracing::warn!(spid = self.client.spid(), error = %error.message, "request failed before reaching a backend");
        if !complete {
            loop {
                if self.client.read_packet().await?.is_eom() {
                    break;
                }
            }
        }
        self.send_error(&error)
            .await
            .map_err(SessionError::ClientGone)
    }

    /// Streams the rest of a request bigger than the buffer limit.
    async fn stream_request_tail(
        &mut self,
        conn: &mut PooledBackend,
        ty: PacketType,
    ) -> Result<(), std::io::Error> {
        loop {
            let packet = self
                .client
                .read_packet()
                .await
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            if packet.ty() != ty {
                conn.mark_broken();
                return Err(std::io::Error::other(
                    "packet type changed inside a request",
                ));
            }
            conn.send_continuation(&packet).await?;
            if packet.is_eom() {
                return Ok(());
            }
        }
    }

    /// An attention with no request running (it crossed the end of the
    /// response): the backend that served the last request must still
    /// acknowledge it.
    async fn handle_idle_attention(&mut self) -> Result<(), SessionError> {
        let target = self.last_target;
        let held = match target {
            Target::Primary => self.primary.take(),
            Target::Replica(_) => self.replica.take().map(|r| r.held),
        };
        let Some(mut held) = held else {
            return self
                .client
                .send_message(&attention_ack())
                .await
                .map_err(SessionError::ClientGone);
        };
        if let Err(e) = held.conn.attention().await {
            return Err(SessionError::BackendLost(e.to_string()));
        }
        match self.relay_response(target, held, true, None).await? {
            Attempt::Served(_) => Ok(()),
            Attempt::Failed(failure) => Err(SessionError::BackendLost(failure.error)),
        }
    }

    /// Streams the response of `held` and decides what its end means.
    async fn relay_response(
        &mut self,
        target: Target,
        mut held: Held,
        attention_sent: bool,
        client_handle: Option<i32>,
    ) -> Result<Attempt, SessionError> {
        let _in_flight = match target {
            Target::Replica(index) => self.ctx.cluster.replica(index).map(|r| r.in_flight()),
            Target::Primary => None,
        };
        let missing_handle_error = client_handle.map(|_| {
            let error = ClientError::request(format!(
                "Sluice: backend {} answered a prepare (sp_prepare/sp_prepexec) with neither a statement handle nor an error",
                held.conn.name()
            ));
            Arc::new(error.to_token(&self.ctx.server_name))
        });
        let options = RelayOptions {
            attention_sent,
            drain_timeout: self.ctx.limits.drain_timeout(),
            client_handle,
            missing_handle_error,
        };
        let relayed = held.conn.relay(&mut self.client, options).await;
        self.learn(&relayed.summary);
        match relayed.end {
            RelayEnd::Complete => {
                let served = Served {
                    conn: Some(held.conn.id()),
                    summary: relayed.summary,
                };
                self.put_back(target, held);
                Ok(Attempt::Served(served))
            }
            // The relay cancelled and drained the connection (or marked it
            // broken); dropping it returns it to the pool.
            RelayEnd::ClientGone(e) => Err(SessionError::ClientGone(e)),
            RelayEnd::ClientViolation(detail) => Err(SessionError::Protocol(detail)),
            RelayEnd::AttentionUnacknowledged => Err(SessionError::BackendLost(format!(
                "backend {} did not acknowledge ATTENTION within limits.drain_timeout_ms",
                held.conn.name()
            ))),
            RelayEnd::BackendFailed {
                error,
                forwarded,
                at_token_boundary,
            } => {
                if !forwarded {
                    return self.lost(target, held, error, true);
                }
                let error = format!("backend {} failed: {error}", held.conn.name());
                self.prepared.forget_connection(held.conn.id());
                self.note_backend_failure(target);
                drop(held);
                if target == Target::Primary && self.routing.has_unmovable_state() {
                    return Err(SessionError::StateLost(error));
                }
                if !at_token_boundary {
                    // The client holds part of a token: no clean way to
                    // finish that message but to close the connection.
                    return Err(SessionError::BackendLost(error));
                }
                // Finish the half-sent message with an error the driver
                // reports, and keep the session: the next request gets a
                // new backend connection.
                let error =
                    ClientError::backend_failed(format!("{error} while sending this result"));
                self.send_error(&error)
                    .await
                    .map_err(SessionError::ClientGone)?;
                // Answered (with an error): not to be retried, and nothing
                // it returned (a handle) is usable.
                Ok(Attempt::Served(Served {
                    conn: None,
                    summary: ResponseSummary::default(),
                }))
            }
        }
    }

    /// What a response said about the session: the server's word on
    /// transactions and the database; a stream Sluice could not follow
    /// pins the session to the primary (it may have missed a BEGIN).
    fn learn(&mut self, summary: &ResponseSummary) {
        if let Some(open) = summary.transaction {
            self.routing.observe_transaction(open);
        }
        if let Some(database) = &summary.database {
            self.database.clone_from(database);
        }
        if summary.unreadable {
            self.routing.pin_to_primary(PinReason::UnreadableResponse);
        }
    }
}

/// Whether a whole reply carries an ERROR token (or cannot be read).
pub(super) fn reply_has_error(reply: &[u8]) -> bool {
    use crate::tds::token::walker::{TokenEvent, TokenWalker};
    let mut events = Vec::new();
    let walked = TokenWalker::new().feed(reply, &mut events);
    walked.is_err() || events.iter().any(|e| matches!(e, TokenEvent::Error(_)))
}

fn check_continuation(ty: PacketType, packet: &Packet) -> Result<(), SessionError> {
    if packet.ty() != ty {
        return Err(SessionError::Protocol(format!(
            "packet type 0x{:02X} inside a message of type 0x{:02X}",
            packet.ty().0,
            ty.0
        )));
    }
    Ok(())
}
