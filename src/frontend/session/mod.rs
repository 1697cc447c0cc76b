//! The request loop of one logged-in client: read a request, route it,
//! forward it on the chosen backend connection, stream the response back.

mod emulation;
mod prepared;
mod relay;
mod request;
mod state;

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncWriteExt, ReadHalf, WriteHalf};

use super::reply::{attention_ack, error_response, ClientError};
use super::transaction_emulation::EmulatedTransaction;
use crate::backend::{BackendError, BackendPools, PooledBackend};
use crate::router::{Decision, ReplicaView, Request, Target};
use crate::server::Proxy;
use crate::tds::packet::{PacketType, Status};
use crate::transport::{
    write_message, write_packet_resized, BoxStream, Packet, PacketReader, ReadError,
};
use prepared::ReplicaStatement;
use relay::{cancel_and_drain, relay, reply_has_error, run_batch, send_attention, Relay};
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
}

/// The client half of a session.
pub struct ClientConn {
    pub reader: PacketReader<ReadHalf<BoxStream>>,
    pub writer: WriteHalf<BoxStream>,
    /// SPID Sluice shows this client in every packet header.
    pub spid: u16,
    pub packet_size: usize,
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

pub struct Session {
    proxy: Arc<Proxy>,
    client: ClientConn,
    identity: ClientIdentity,
    /// Current database (login database, then ENVCHANGEs).
    database: String,
    primary: Option<Held>,
    replica: Option<(usize, Held)>,
    /// Where the last request went: a late attention goes there too.
    last_target: Target,
    routing: RoutingState,
    emulated: EmulatedTransaction,
    /// Handles of statements prepared on the replica connection.
    prepared: HashMap<i32, ReplicaStatement>,
    /// Integer output parameters of the last response (a new handle).
    return_values: Vec<i64>,
}

impl Drop for Session {
    /// A client that leaves inside an emulated transaction leaves it open on
    /// a backend that may not roll it back on RESETCONNECTION: that
    /// connection is discarded instead of pooled.
    fn drop(&mut self) {
        if self.emulated.is_open() {
            if let Some(held) = self.primary.as_mut() {
                held.conn.mark_broken();
            }
        }
    }
}

impl Session {
    pub fn new(
        proxy: Arc<Proxy>,
        client: ClientConn,
        identity: ClientIdentity,
        database: String,
        first: (Target, PooledBackend),
    ) -> Self {
        let (target, conn) = first;
        let held = Held { conn, synced: 0 };
        let (primary, replica) = match target {
            Target::Primary => (Some(held), None),
            Target::Replica(i) => (None, Some((i, held))),
        };
        Session {
            proxy,
            client,
            identity,
            database,
            primary,
            replica,
            last_target: Target::Primary,
            routing: RoutingState::default(),
            emulated: EmulatedTransaction::default(),
            prepared: HashMap::new(),
            return_values: Vec::new(),
        }
    }

    /// Serves requests until the client disconnects.
    pub async fn run(mut self) -> Result<(), SessionError> {
        loop {
            let packet = match self.client.reader.read_packet().await {
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
        let payload = error_response(error, &self.proxy.config.listen.server_name);
        self.send_to_client(&payload).await
    }

    async fn send_to_client(&mut self, payload: &[u8]) -> std::io::Result<()> {
        let c = &mut self.client;
        write_message(
            &mut c.writer,
            PacketType::TABULAR_RESULT,
            c.spid,
            payload,
            c.packet_size,
        )
        .await
    }

    async fn handle_request(&mut self, first: Packet) -> Result<(), SessionError> {
        let (buffered, complete) = self.buffer_request(first).await?;
        if buffered[0].header.status.resets_connection() {
            self.client_reset();
        }
        if buffered[0].ty() == PacketType::TRANSACTION_MANAGER
            && self.proxy.primary.target().emulate_transaction_requests
        {
            return self.emulate_transaction_request(buffered, complete).await;
        }
        let head = request::decode(&buffered, complete);
        if let Some(statement) = self.replica_statement(&head) {
            return self
                .run_replica_statement(&head, statement, buffered, complete)
                .await;
        }
        let mut decision = self.route(&head);
        self.keep_handles_followable(&head, &mut decision);
        tracing::debug!(spid = self.client.spid, target = ?decision.target, reason = %decision.reason, "routed");
        let ran_on = self.execute(decision, buffered, complete).await?;
        if let (RequestHead::Prepare { sql, params }, Some(Target::Replica(replica))) =
            (&head, ran_on)
        {
            self.remember_handle(replica, sql, params);
        }
        Ok(())
    }

    fn view(&self) -> crate::router::SessionView<'_> {
        let mut view = self.routing.view(
            &self.identity.user,
            &self.identity.application,
            &self.database,
            self.emulated.is_open(),
        );
        view.current_replica = self.replica.as_ref().map(|(i, _)| *i);
        view
    }

    /// Asks the router, then records what the request does to the session.
    fn route(&mut self, head: &RequestHead) -> Decision {
        let request = match head {
            RequestHead::Sql(sql) | RequestHead::Prepare { sql, .. } => Request::Sql(sql),
            RequestHead::Procedure(name) => Request::Procedure(name),
            // Handles not prepared on the replica were prepared on the primary.
            RequestHead::Execute(_) | RequestHead::Unprepare(_) => {
                Request::PrimaryOnly("statement prepared on the primary")
            }
            RequestHead::PrimaryOnly(why) => Request::PrimaryOnly(why),
        };
        let now = Instant::now();
        let decision = self
            .proxy
            .router
            .route(request, &self.view(), &self.replica_views(), now);
        match (&decision.classification, head) {
            (Some(c), _) => self.routing.apply(c, now),
            (None, RequestHead::PrimaryOnly(_)) => self.routing.record_write(now),
            (None, _) => {}
        }
        decision
    }

    fn replica_views(&self) -> Vec<ReplicaView> {
        self.proxy
            .replicas
            .iter()
            .zip(&self.proxy.config.replicas)
            .enumerate()
            .map(|(i, (pools, cfg))| ReplicaView {
                available: self.proxy.replica_available(i),
                weight: cfg.weight,
                outstanding: pools.in_flight.load(Ordering::Relaxed),
                lag: self.proxy.replica_lag(i),
            })
            .collect()
    }

    /// The client's own RESETCONNECTION starts a new logical session.
    fn client_reset(&mut self) {
        self.routing.reset();
        // The replica connection still has the old session's settings and
        // statements: back to the pool, where it will be reset before its
        // next use.
        self.replica = None;
        self.prepared.clear();
        if let Some(held) = self.primary.as_mut() {
            held.conn.needs_reset = true;
            held.synced = self.routing.version();
        }
    }

    /// Forwards the request to the decided target and relays the answer.
    /// A replica that cannot be reached sends the read to the primary.
    /// Runs the request on the decided target and relays the answer. A read
    /// whose replica fails before any byte of the answer reached the client
    /// runs again on the primary, invisibly. Returns where the request ran
    /// (`None`: it failed and the client got an error instead).
    async fn execute(
        &mut self,
        decision: Decision,
        packets: Vec<Packet>,
        complete: bool,
    ) -> Result<Option<Target>, SessionError> {
        let mut target = decision.target;
        let mut packets = packets;
        loop {
            let spare = (target.is_replica() && complete).then(|| packets.clone());
            let failure = match self.attempt(target, packets, complete).await? {
                Attempt::Served => return Ok(Some(target)),
                Attempt::Failed(failure) => failure,
            };
            match spare {
                Some(copy) => {
                    tracing::warn!(error = %failure.error, ?target, "replica failed before replying; retrying on the primary");
                    self.note_replica_failure(target);
                    target = Target::Primary;
                    packets = copy;
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
        packets: Vec<Packet>,
        complete: bool,
    ) -> Result<Attempt, SessionError> {
        let mut held = match self.take_synced(target).await {
            Ok(held) => held,
            Err(e) => {
                tracing::warn!(error = %e, ?target, "no backend connection for a request");
                return Ok(Attempt::failed(e.client_message(), complete));
            }
        };
        held.synced = self.routing.version();
        if let Err(e) = self.send_request(&mut held.conn, packets, complete).await {
            held.conn.mark_broken();
            let error = format!("backend {} failed: {e}", held.conn.backend);
            return Ok(Attempt::failed(error, true));
        }
        self.put_back(target, held);
        self.relay_response(target, false).await
    }

    /// A replica that failed a request: its handles are gone with the
    /// connection, and the failure counts against its health.
    fn note_replica_failure(&mut self, target: Target) {
        if let Target::Replica(i) = target {
            self.forget_handles(i);
            self.proxy.report_replica_failure(i);
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
                    if !target.is_replica() {
                        held.conn.mark_broken();
                    }
                    return Err(e);
                }
            }
            held.synced = version;
        }
        Ok(held)
    }

    async fn replay_settings(&mut self, held: &mut Held, replay: &str) -> Result<(), BackendError> {
        let backend = held.conn.backend.clone();
        let protocol = |detail: String| BackendError::Protocol {
            backend: backend.clone(),
            detail,
        };
        let mut headers = Vec::new();
        crate::tds::request::encode_all_headers(&mut headers, 0, 1);
        let reply = run_batch(&mut held.conn, &headers, replay)
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
                    conn: self.proxy.primary_unless_down(&self.database).await?,
                    synced: 0,
                }),
            },
            Target::Replica(index) => match self.replica.take() {
                Some((i, held)) if i == index => Ok(held),
                other => {
                    if let Some((old, _)) = other {
                        self.forget_handles(old);
                    }
                    Ok(Held {
                        conn: self.replica_pools(index)?.get(&self.database).await?,
                        synced: 0,
                    })
                }
            },
        }
    }

    fn replica_pools(&self, index: usize) -> Result<Arc<BackendPools>, BackendError> {
        self.proxy
            .replicas
            .get(index)
            .cloned()
            .ok_or_else(|| BackendError::Protocol {
                backend: Arc::from("replica"),
                detail: format!("no replica #{index}"),
            })
    }

    fn put_back(&mut self, target: Target, held: Held) {
        match target {
            Target::Primary => self.primary = Some(held),
            Target::Replica(index) => self.replica = Some((index, held)),
        }
        self.last_target = target;
    }

    /// Reads request packets until EOM or until the buffer limit; the
    /// buffered head is what routing gets to look at.
    async fn buffer_request(&mut self, first: Packet) -> Result<(Vec<Packet>, bool), SessionError> {
        let limit = self.proxy.config.limits.request_buffer_bytes;
        let ty = first.ty();
        let mut size = first.bytes.len();
        let mut complete = first.is_eom();
        let mut packets = vec![first];
        while !complete && size < limit {
            let packet = self.client.reader.read_packet().await?;
            check_continuation(ty, &packet)?;
            size += packet.bytes.len();
            complete = packet.is_eom();
            packets.push(packet);
        }
        Ok((packets, complete))
    }

    /// Answers a request that could not be forwarded with an error. The
    /// client may still be sending it: the rest is read and dropped first.
    async fn fail_request(
        &mut self,
        complete: bool,
        error: ClientError,
    ) -> Result<(), SessionError> {
        tracing::warn!(spid = self.client.spid, error = %error.message, "request failed before reaching a backend");
        if !complete {
            loop {
                if self.client.reader.read_packet().await?.is_eom() {
                    break;
                }
            }
        }
        self.send_error(&error)
            .await
            .map_err(SessionError::ClientGone)
    }

    /// Writes the buffered request and streams the rest of it, cut to the
    /// backend's packet size. A reused connection gets RESETCONNECTION on
    /// the first packet so it starts clean for this client.
    async fn send_request(
        &mut self,
        conn: &mut PooledBackend,
        packets: Vec<Packet>,
        complete: bool,
    ) -> Result<(), std::io::Error> {
        let ty = packets.first().map(|p| p.ty());
        for (i, mut packet) in packets.into_iter().enumerate() {
            if i == 0 && conn.needs_reset && !packet.header.status.resets_connection() {
                let status = packet.header.status.with(Status::RESET_CONNECTION);
                packet.set_status(status);
            }
            let size = conn.packet_size;
            write_packet_resized(&mut conn.writer, &packet, size).await?;
        }
        conn.needs_reset = false;
        if !complete {
            self.stream_request_tail(conn, ty).await?;
        }
        conn.writer.flush().await
    }

    async fn stream_request_tail(
        &mut self,
        conn: &mut PooledBackend,
        ty: Option<PacketType>,
    ) -> Result<(), std::io::Error> {
        loop {
            let packet = self
                .client
                .reader
                .read_packet()
                .await
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            if Some(packet.ty()) != ty {
                conn.mark_broken();
                return Err(std::io::Error::other(
                    "packet type changed inside a request",
                ));
            }
            let size = conn.packet_size;
            write_packet_resized(&mut conn.writer, &packet, size).await?;
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
            Target::Primary => self.primary.as_mut(),
            Target::Replica(_) => self.replica.as_mut().map(|(_, h)| h),
        };
        match held {
            Some(held) => {
                send_attention(&mut held.conn)
                    .await
                    .map_err(|e| SessionError::BackendLost(e.to_string()))?;
                match self.relay_response(target, true).await? {
                    Attempt::Served => Ok(()),
                    Attempt::Failed(failure) => Err(SessionError::BackendLost(failure.error)),
                }
            }
            None => self
                .send_to_client(&attention_ack())
                .await
                .map_err(SessionError::ClientGone),
        }
    }

    /// Streams the response of the held connection for `target`.
    async fn relay_response(
        &mut self,
        target: Target,
        attention_sent: bool,
    ) -> Result<Attempt, SessionError> {
        let taken = match target {
            Target::Primary => self.primary.take(),
            Target::Replica(_) => self.replica.take().map(|(_, h)| h),
        };
        let Some(mut held) = taken else {
            return Err(SessionError::BackendLost("no backend connection".into()));
        };
        let in_flight = self.replica_pools_for(target);
        if let Some(pools) = &in_flight {
            pools.in_flight.fetch_add(1, Ordering::Relaxed);
        }
        let drain = Duration::from_millis(self.proxy.config.limits.drain_timeout_ms);
        self.return_values.clear();
        let result = relay(
            &mut self.client,
            &mut held.conn,
            attention_sent,
            &mut self.routing,
            &mut self.database,
            &mut self.return_values,
        )
        .await;
        if let Some(pools) = &in_flight {
            pools.in_flight.fetch_sub(1, Ordering::Relaxed);
        }
        match result {
            Ok(Relay::Complete) => {
                self.put_back(target, held);
                Ok(Attempt::Served)
            }
            Ok(Relay::ClientGone(e)) => {
                cancel_and_drain(&mut held.conn, drain).await;
                Err(SessionError::ClientGone(e))
            }
            Ok(Relay::BackendFailed {
                error,
                forwarded,
                at_token_boundary,
            }) => {
                held.conn.mark_broken();
                self.note_replica_failure(target);
                let error = format!("backend {} failed: {error}", held.conn.backend);
                if !forwarded {
                    return Ok(Attempt::failed(error, true));
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
                Ok(Attempt::Served)
            }
            Err(e) => {
                held.conn.mark_broken();
                self.note_replica_failure(target);
                Err(e)
            }
        }
    }

    /// The replica whose in-flight count a request to `target` raises.
    fn replica_pools_for(&self, target: Target) -> Option<Arc<BackendPools>> {
        match target {
            Target::Primary => None,
            Target::Replica(i) => self.proxy.replicas.get(i).cloned(),
        }
    }
}

/// How one try of a request went.
enum Attempt {
    Served,
    /// Nothing reached the client; the request may run elsewhere.
    Failed(AttemptFailure),
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
