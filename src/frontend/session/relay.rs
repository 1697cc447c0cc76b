//! Streaming a backend's response to the client, and the small exchanges
//! Sluice makes on its own (settings replay, emulated transactions, the
//! cancel-and-drain after a client left).

use std::time::Duration;

use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::state::RoutingState;
use super::{ClientConn, SessionError};
use crate::backend::PooledBackend;
use crate::tds::packet::{PacketHeader, PacketType, Status};
use crate::tds::token::done::DoneStatus;
use crate::tds::token::walker::{TokenEvent, TokenWalker};
use crate::transport::{write_packet_resized, Packet, ReadError};

/// Largest backend reply to a request Sluice makes itself.
const MAX_OWN_REPLY: usize = 1024 * 1024;

/// How a response relay ended.
pub enum Relay {
    Complete,
    /// The client vanished mid-response.
    ClientGone(std::io::Error),
    /// The backend failed; `forwarded` says whether any of its response
    /// already reached the client (if not, the request may be retried).
    BackendFailed {
        error: String,
        forwarded: bool,
        /// What was forwarded ends between two tokens, so the message can
        /// still be finished cleanly with an ERROR and a DONE.
        at_token_boundary: bool,
    },
}

/// Length of the ALL_HEADERS block that starts a request (validated by the
/// request's decoder before this is called).
pub fn request_headers_len(payload: &[u8]) -> usize {
    payload
        .get(..4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
        .unwrap_or(0)
        .min(payload.len())
}

/// Sends one SQL batch (with the client's ALL_HEADERS) and returns the
/// whole reply; used only for small, Sluice-made requests.
pub async fn run_batch(
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
        .read_message(&[PacketType::TABULAR_RESULT], MAX_OWN_REPLY)
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    Ok(reply)
}

pub fn reply_has_error(reply: &[u8]) -> bool {
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
    /// Notes attention acknowledgements and hands every event to `seen`.
    fn observe(&mut self, events: &mut Vec<TokenEvent>, mut seen: impl FnMut(&TokenEvent)) {
        for event in events.drain(..) {
            if let TokenEvent::Done(done) = &event {
                if done.status.contains(DoneStatus::ATTN) {
                    self.attention_acked = true;
                }
            }
            seen(&event);
        }
    }

    /// A response ends at EOM, unless an attention is still owed its
    /// acknowledgement (a DONE with the ATTN bit) [MS-TDS 2.2.1.7].
    fn finished_at_eom(&self) -> bool {
        !self.attention_sent || self.attention_acked
    }
}

/// Streams one response, packet by packet, to the client while watching
/// the client for an attention; session-relevant tokens update `routing`
/// and `database`; integer output parameters (prepared handles) are
/// collected in `return_values`.
pub async fn relay(
    client: &mut ClientConn,
    conn: &mut PooledBackend,
    attention_sent: bool,
    routing: &mut RoutingState,
    database: &mut String,
    return_values: &mut Vec<i64>,
) -> Result<Relay, SessionError> {
    let mut walker = TokenWalker::new();
    let mut events = Vec::new();
    let mut walk_failed = false;
    let mut forwarded = false;
    let mut state = ResponseState {
        attention_sent,
        attention_acked: false,
    };
    loop {
        tokio::select! {
            biased;
            packet = conn.reader.read_packet() => {
                let mut packet = match packet {
                    Ok(packet) => packet,
                    Err(e) => {
                        return Ok(Relay::BackendFailed {
                            error: e.to_string(),
                            forwarded,
                            at_token_boundary: !walk_failed && walker.at_token_boundary(),
                        })
                    }
                };
                let eom = packet.is_eom();
                if let Err(e) = walker.feed(packet.payload(), &mut events) {
                    if !walk_failed {
                        tracing::warn!(backend = %conn.backend, error = %e, "response token walk failed");
                    }
                    walk_failed = true;
                }
                state.observe(&mut events, |event| {
                    if let Some(db) = routing.observe(event) {
                        *database = db;
                    }
                    if let TokenEvent::ReturnValue { value: Some(v), .. } = event {
                        return_values.push(*v);
                    }
                });
                if walk_failed {
                    // Values read from a stream that later proved malformed
                    // are not trusted.
                    return_values.clear();
                }
                packet.set_spid(client.spid);
                forwarded = true;
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
pub async fn send_attention(conn: &mut PooledBackend) -> std::io::Result<()> {
    let header = PacketHeader::new(PacketType::ATTENTION, Status::EOM, 0);
    conn.writer.write_all(&header.encode()).await?;
    conn.writer.flush().await
}

/// The client left mid-response: cancel the request and read the backend
/// up to the attention acknowledgement, so the connection can serve
/// another client. If that does not finish in time, the connection is
/// marked broken and the pool drops it.
pub async fn cancel_and_drain(conn: &mut PooledBackend, timeout: Duration) {
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
        state.observe(&mut events, |_| {});
        if packet.is_eom() {
            walker.reset();
            if state.finished_at_eom() {
                return Ok(());
            }
        }
    }
}
