//! The request loop of one logged-in client: read a request, pick the
//! backend connection, forward the request, stream the response back.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};

use super::reply::{attention_ack, error_response, ClientError};
use super::transaction_emulation::{self, EmulatedTransaction};
use crate::backend::{BackendError, PooledBackend};
use crate::server::Proxy;
use crate::tds::packet::{PacketHeader, PacketType, Status};
use crate::tds::request::TransactionManagerRequest;
use crate::tds::token::done::DoneStatus;
use crate::tds::token::walker::{TokenEvent, TokenWalker};
use crate::transport::{
    write_message, write_packet_resized, BoxStream, Packet, PacketReader, ReadError,
};

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

/// Where a request goes. Routing (next issue) picks between these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Primary,
}

/// The client half of a session.
pub struct ClientConn {
    pub reader: PacketReader<ReadHalf<BoxStream>>,
    pub writer: WriteHalf<BoxStream>,
    /// SPID Sluice shows this client in every packet header.
    pub spid: u16,
    pub packet_size: usize,
}

pub struct Session {
    proxy: Arc<Proxy>,
    client: ClientConn,
    database: String,
    primary: Option<PooledBackend>,
    emulated: EmulatedTransaction,
}

impl Drop for Session {
    /// A client that leaves inside an emulated transaction leaves it open on
    /// a backend that may not roll it back on RESETCONNECTION: that
    /// connection is discarded instead of pooled.
    fn drop(&mut self) {
        if self.emulated.is_open() {
            if let Some(conn) = self.primary.as_mut() {
                conn.mark_broken();
            }
        }
    }
}

/// Largest backend reply to an emulated Transaction Manager request.
const MAX_EMULATED_REPLY: usize = 1024 * 1024;

/// How a response relay ended.
enum Relay {
    Complete,
    /// The client vanished; the backend connection was cancelled and drained
    /// (or marked broken).
    ClientGone(std::io::Error),
}

impl Session {
    pub fn new(
        proxy: Arc<Proxy>,
        client: ClientConn,
        database: String,
        primary: Option<PooledBackend>,
    ) -> Self {
        Session {
            proxy,
            client,
            database,
            primary,
            emulated: EmulatedTransaction::default(),
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
        let c = &mut self.client;
        write_message(
            &mut c.writer,
            PacketType::TABULAR_RESULT,
            c.spid,
            &payload,
            c.packet_size,
        )
        .await
    }

    async fn handle_request(&mut self, first: Packet) -> Result<(), SessionError> {
        let (buffered, complete) = self.buffer_request(first).await?;
        let target = Target::Primary;
        if buffered[0].ty() == PacketType::TRANSACTION_MANAGER
            && self.proxy.primary.target().emulate_transaction_requests
        {
            return self.emulate_transaction_request(buffered, complete).await;
        }
        let mut conn = match self.checkout(target).await {
            Ok(conn) => conn,
            Err(e) => {
                return self
                    .fail_request(complete, ClientError::backend_unavailable(e))
                    .await
            }
        };
        if let Err(e) = self.send_request(&mut conn, buffered, complete).await {
            conn.mark_broken();
            return self
                .fail_request(true, ClientError::backend_unavailable(e))
                .await;
        }
        self.primary = Some(conn);
        self.relay_response(false).await
    }

    /// Runs a Transaction Manager request as T-SQL and answers as SQL
    /// Server would (see `transaction_emulation`).
    async fn emulate_transaction_request(
        &mut self,
        packets: Vec<Packet>,
        complete: bool,
    ) -> Result<(), SessionError> {
        let payload: Vec<u8> = packets
            .iter()
            .flat_map(|p| p.payload().iter().copied())
            .collect();
        let decoded = TransactionManagerRequest::decode(&payload)
            .map_err(|e| {
                ClientError::request(format!("malformed Transaction Manager request: {e}"))
            })
            .and_then(|r| {
                let sql =
                    transaction_emulation::to_sql(&r.request).map_err(ClientError::request)?;
                Ok((r, sql))
            });
        let (request, sql) = match decoded {
            Ok(ok) if complete => ok,
            Ok(_) => {
                return self
                    .fail_request(
                        false,
                        ClientError::request("oversized Transaction Manager request"),
                    )
                    .await
            }
            Err(error) => return self.fail_request(complete, error).await,
        };
        let mut conn = match self.checkout(Target::Primary).await {
            Ok(conn) => conn,
            Err(e) => {
                return self
                    .fail_request(true, ClientError::backend_unavailable(e))
                    .await
            }
        };
        let reply =
            match run_batch(&mut conn, &payload[..request_headers_len(&payload)], &sql).await {
                Ok(reply) => reply,
                Err(e) => {
                    conn.mark_broken();
                    return self
                        .fail_request(true, ClientError::backend_unavailable(e))
                        .await;
                }
            };
        self.primary = Some(conn);
        let answer = if reply_has_error(&reply) {
            reply
        } else {
            self.emulated.reply(&request.request)
        };
        let c = &mut self.client;
        write_message(
            &mut c.writer,
            PacketType::TABULAR_RESULT,
            c.spid,
            &answer,
            c.packet_size,
        )
        .await
        .map_err(SessionError::ClientGone)
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
            self.check_continuation(ty, &packet)?;
            size += packet.bytes.len();
            complete = packet.is_eom();
            packets.push(packet);
        }
        Ok((packets, complete))
    }

    fn check_continuation(&self, ty: PacketType, packet: &Packet) -> Result<(), SessionError> {
        if packet.ty() != ty {
            return Err(SessionError::Protocol(format!(
                "packet type 0x{:02X} inside a message of type 0x{:02X}",
                packet.ty().0,
                ty.0
            )));
        }
        Ok(())
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

    /// The connection for `target`, checked out on first use and held for
    /// the session (session pool mode).
    async fn checkout(&mut self, target: Target) -> Result<PooledBackend, BackendError> {
        match target {
            Target::Primary => match self.primary.take() {
                Some(conn) => Ok(conn),
                None => self.proxy.primary.get(&self.database).await,
            },
        }
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
        let mut first = true;
        let ty = packets.first().map(|p| p.ty());
        for mut packet in packets {
            if first && conn.needs_reset && !packet.header.status.resets_connection() {
                let status = packet.header.status.with(Status::RESET_CONNECTION);
                packet.set_status(status);
            }
            first = false;
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
    /// response): the backend, if any, must still acknowledge it.
    async fn handle_idle_attention(&mut self) -> Result<(), SessionError> {
        match self.primary.as_mut() {
            Some(conn) => {
                send_attention(conn)
                    .await
                    .map_err(|e| SessionError::BackendLost(e.to_string()))?;
                self.relay_response(true).await
            }
            None => {
                let c = &mut self.client;
                write_message(
                    &mut c.writer,
                    PacketType::TABULAR_RESULT,
                    c.spid,
                    &attention_ack(),
                    c.packet_size,
                )
                .await
                .map_err(SessionError::ClientGone)
            }
        }
    }

    /// Streams the response of the held primary connection to the client,
    /// packet by packet, while watching the client for an attention.
    async fn relay_response(&mut self, attention_sent: bool) -> Result<(), SessionError> {
        let Some(mut conn) = self.primary.take() else {
            return Err(SessionError::BackendLost("no backend connection".into()));
        };
        let drain = Duration::from_millis(self.proxy.config.limits.drain_timeout_ms);
        let result = relay(&mut self.client, &mut conn, attention_sent).await;
        match result {
            Ok(Relay::Complete) => {
                self.primary = Some(conn);
                Ok(())
            }
            Ok(Relay::ClientGone(e)) => {
                cancel_and_drain(&mut conn, drain).await;
                Err(SessionError::ClientGone(e))
            }
            Err(e) => {
                conn.mark_broken();
                Err(e)
            }
        }
    }
}

/// Length of the ALL_HEADERS block that starts a request (validated by the
/// request's decoder before this is called).
fn request_headers_len(payload: &[u8]) -> usize {
    payload
        .get(..4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
        .unwrap_or(0)
        .min(payload.len())
}

/// Sends one SQL batch (with the client's ALL_HEADERS) and returns the
/// whole reply; used only for small, Sluice-made requests.
async fn run_batch(
    conn: &mut PooledBackend,
    headers: &[u8],
    sql: &str,
) -> Result<Vec<u8>, std::io::Error> {
    let mut payload = headers.to_vec();
    crate::tds::read::put_utf16(&mut payload, sql);
    let first_status = if conn.needs_reset {
        Status::RESET_CONNECTION
    } else {
        Status::NORMAL
    };
    let mut out = Vec::new();
    crate::tds::packet::encode_message(
        &mut out,
        PacketType::SQL_BATCH,
        first_status,
        0,
        &payload,
        conn.packet_size,
    );
    conn.writer.write_all(&out).await?;
    conn.writer.flush().await?;
    conn.needs_reset = false;
    let (_, reply) = conn
        .reader
        .read_message(&[PacketType::TABULAR_RESULT], MAX_EMULATED_REPLY)
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    Ok(reply)
}

fn reply_has_error(reply: &[u8]) -> bool {
    let mut events = Vec::new();
    let walked = TokenWalker::new().feed(reply, &mut events);
    walked.is_err() || events.iter().any(|e| matches!(e, TokenEvent::Error(_)))
}

/// What the response stream has shown so far.
#[derive(Default)]
struct ResponseState {
    attention_sent: bool,
    attention_acked: bool,
}

impl ResponseState {
    fn observe(&mut self, events: &mut Vec<TokenEvent>) {
        for event in events.drain(..) {
            if let TokenEvent::Done(done) = event {
                if done.status.contains(DoneStatus::ATTN) {
                    self.attention_acked = true;
                }
            }
        }
    }

    /// A response ends at EOM, unless an attention is still owed its
    /// acknowledgement (a DONE with the ATTN bit) [MS-TDS 2.2.1.7].
    fn finished_at_eom(&self) -> bool {
        !self.attention_sent || self.attention_acked
    }
}

async fn relay(
    client: &mut ClientConn,
    conn: &mut PooledBackend,
    attention_sent: bool,
) -> Result<Relay, SessionError> {
    let mut walker = TokenWalker::new();
    let mut events = Vec::new();
    let mut state = ResponseState {
        attention_sent,
        attention_acked: false,
    };
    loop {
        tokio::select! {
            biased;
            packet = conn.reader.read_packet() => {
                let mut packet = packet.map_err(|e| SessionError::BackendLost(e.to_string()))?;
                let eom = packet.is_eom();
                if let Err(e) = walker.feed(packet.payload(), &mut events) {
                    tracing::warn!(backend = %conn.backend, error = %e, "response token walk failed");
                }
                state.observe(&mut events);
                packet.set_spid(client.spid);
                if let Err(e) = forward(&mut client.writer, &packet, client.packet_size).await {
                    return Ok(Relay::ClientGone(e));
                }
                if eom {
                    walker.reset();
                    if state.finished_at_eom() {
                        return Ok(Relay::Complete);
                    }
                }
            }
            packet = client.reader.read_packet(), if !state.attention_sent => {
                match packet {
                    Ok(p) if p.ty() == PacketType::ATTENTION => {
                        send_attention(conn).await.map_err(|e| SessionError::BackendLost(e.to_string()))?;
                        state.attention_sent = true;
                    }
                    Ok(p) => {
                        return Err(SessionError::Protocol(format!(
                            "packet type 0x{:02X} while a response was streaming (MARS is off)", p.ty().0
                        )))
                    }
                    Err(ReadError::Closed) => {
                        return Ok(Relay::ClientGone(std::io::ErrorKind::ConnectionReset.into()))
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        }
    }
}

async fn forward<W: AsyncWrite + Unpin>(
    w: &mut W,
    packet: &Packet,
    packet_size: usize,
) -> std::io::Result<()> {
    write_packet_resized(w, packet, packet_size).await?;
    w.flush().await
}

/// An ATTENTION packet: a header alone, with EOM [MS-TDS 2.2.1.7].
async fn send_attention(conn: &mut PooledBackend) -> std::io::Result<()> {
    let header = PacketHeader::new(PacketType::ATTENTION, Status::EOM, 0);
    conn.writer.write_all(&header.encode()).await?;
    conn.writer.flush().await
}

/// The client left mid-response: cancel the request and read the backend
/// up to the attention acknowledgement, so the connection can serve
/// another client. If that does not finish in time, the connection is
/// marked broken and the pool drops it.
async fn cancel_and_drain(conn: &mut PooledBackend, timeout: Duration) {
    let drained = tokio::time::timeout(timeout, async {
        send_attention(conn).await?;
        drain_until_attention_ack(conn).await
    })
    .await;
    match drained {
        Ok(Ok(())) => {
            tracing::debug!(backend = %conn.backend, "cancelled and drained after client left")
        }
        _ => {
            tracing::warn!(backend = %conn.backend, "could not drain backend connection; discarding it");
            conn.mark_broken();
        }
    }
}

async fn drain_until_attention_ack(conn: &mut PooledBackend) -> std::io::Result<()> {
    let mut walker = TokenWalker::new();
    let mut events = Vec::new();
    let mut state = ResponseState {
        attention_sent: true,
        attention_acked: false,
    };
    loop {
        let packet = conn
            .reader
            .read_packet()
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        walker
            .feed(packet.payload(), &mut events)
            .map_err(std::io::Error::other)?;
        state.observe(&mut events);
        if packet.is_eom() {
            walker.reset();
            if state.finished_at_eom() {
                return Ok(());
            }
        }
    }
}
