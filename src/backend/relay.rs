//! Streaming a response from a backend connection to the client, packet by
//! packet, while a resumable token walker follows what the session must
//! know (database and transaction ENVCHANGEs, errors, the handle a prepare
//! returned) and the client is watched for ATTENTION. The relay reports a
//! typed outcome; the session decides what it means.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::conn::BackendConn;
use crate::shutdown::PhaseWatch;
use crate::tds::packet::PacketType;
use crate::tds::token::done::{Done, DoneStatus};
use crate::tds::token::message::ServerMessage;
use crate::tds::token::walker::{TokenEvent, TokenWalker, ValueSpan};
use crate::tds::token::RowsDigest;
use crate::transport::{ClientConn, Packet, ReadError};

/// How to relay one response.
#[derive(Debug, Clone)]
pub struct RelayOptions {
    /// An ATTENTION was already sent for this request (it crossed the end
    /// of the previous response): the response ends at its acknowledgement.
    pub attention_sent: bool,
    /// How long an ATTENTION may wait for its acknowledgement.
    pub drain_timeout: Duration,
    /// Rewrite the prepared handle the response returns (RETURNVALUE
    /// ordinal 0) to this, the handle Sluice shows the client.
    pub client_handle: Option<i32>,
    /// For a prepare: the error to put before the final DONE when the
    /// response carries neither a handle nor an error. A server that
    /// answers a prepare with a bare DONE has not prepared anything, and a
    /// client must not take that for an empty result.
    pub missing_handle_error: Option<Arc<ServerMessage>>,
    /// Count the rows and checksum them as they pass (shadow mode compares
    /// the result with a replica's); see [`RowsDigest`].
    pub digest_rows: bool,
    /// Keep a copy of the response's token stream, up to this many bytes
    /// (the result cache stores it); a larger response drops the copy and
    /// streams on.
    pub capture: Option<usize>,
    /// Keep back the response's last packet and return it in
    /// [`Relayed::final_packet`] instead of forwarding it: the session has
    /// something to do (invalidate cached results of a write) before the
    /// client may see the response end.
    pub hold_final: bool,
}

/// What the response said that the session must know.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ResponseSummary {
    /// The last database change (ENVCHANGE 1).
    pub database: Option<String>,
    /// Whether a transaction is open after the response, if it said.
    pub transaction: Option<bool>,
    /// The integer value of RETURNVALUE ordinal 0: the handle of
    /// sp_prepare / sp_prepexec, as the backend numbered it.
    pub handle: Option<i32>,
    /// At least one ERROR token.
    pub error: bool,
    /// The token stream could not be followed: whatever it said about
    /// transactions or state is unknown.
    pub unreadable: bool,
    /// The request did not run to its end as far as Sluice saw: an
    /// ATTENTION cancelled it, or the relay stopped before the response's
    /// end (backend failure, client gone).
    pub interrupted: bool,
    /// The rows' count and checksum, when [`RelayOptions::digest_rows`]
    /// asked for them.
    pub rows: Option<RowsDigest>,
    /// Some ENVCHANGE token: the response changed the session (database,
    /// language, transaction, ...).
    pub env_changed: bool,
    /// The whole token stream, when [`RelayOptions::capture`] asked for it
    /// and it fit.
    pub captured: Option<bytes::Bytes>,
}

impl ResponseSummary {
    /// The request ran to its end without an error, and the whole response
    /// was read: what its statements did is done (a pin it ends has ended).
    pub fn ran_cleanly(&self) -> bool {
        !self.error && !self.unreadable && !self.interrupted
    }
}

/// How a relay ended.
#[derive(Debug)]
pub enum RelayEnd {
    /// The response was read and forwarded to its end.
    Complete,
    /// The client vanished (closed, reset, stopped reading past the write
    /// timeout) mid-response.
    ClientGone(std::io::Error),
    /// The client sent something other than ATTENTION mid-response.
    ClientViolation(String),
    /// An ATTENTION was not acknowledged within the drain timeout.
    AttentionUnacknowledged,
    /// The drain's time ran out (`listen.shutdown_timeout_ms`) before the
    /// response ended. The request is abandoned and its connection
    /// discarded: the server rolls back what it did.
    ShuttingDown {
        /// What was forwarded ends between two tokens (or nothing was), so
        /// the message can still be finished with an ERROR and a DONE.
        at_token_boundary: bool,
    },
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

/// A relay's end and what the response said up to it.
#[derive(Debug)]
pub struct Relayed {
    pub end: RelayEnd,
    pub summary: ResponseSummary,
    /// The last packet, kept back as [`RelayOptions::hold_final`] asked:
    /// the caller forwards it.
    pub final_packet: Option<Packet>,
}

/// The state of one response being relayed.
struct Response {
    walker: TokenWalker,
    events: Vec<TokenEvent>,
    summary: ResponseSummary,
    attention_sent: bool,
    attention_acked: bool,
    /// The last DONE-family token seen.
    last_done: Option<Done>,
    /// A packet kept back one step while a handle may still need
    /// rewriting in it (a value can straddle two packets), and the stream
    /// offset of its payload.
    held: Option<(Packet, u64)>,
    /// Stream offset of the next packet's payload.
    offset: u64,
    forwarded: bool,
    /// The copy [`RelayOptions::capture`] asked for, and its limit.
    capture: Option<(Vec<u8>, usize)>,
    final_packet: Option<Packet>,
}

impl Response {
    fn new(options: &RelayOptions) -> Response {
        let mut walker = TokenWalker::new();
        if options.digest_rows {
            walker.digest_rows();
        }
        Response {
            walker,
            events: Vec::new(),
            summary: ResponseSummary::default(),
            attention_sent: options.attention_sent,
            attention_acked: false,
            last_done: None,
            held: None,
            offset: 0,
            forwarded: false,
            capture: options.capture.map(|limit| (Vec::new(), limit)),
            final_packet: None,
        }
    }

    /// Appends a packet's payload to the copy, or drops the copy once the
    /// response outgrows it.
    fn capture(&mut self, packet: &Packet) {
        if let Some((copy, limit)) = &mut self.capture {
            if copy.len() + packet.payload().len() > *limit {
                self.capture = None;
            } else {
                copy.extend_from_slice(packet.payload());
            }
        }
    }

    /// Walks one packet's tokens and applies them to `conn` and the summary.
    fn observe(&mut self, conn: &mut BackendConn, packet: &Packet) -> Vec<ValueSpan> {
        if let Err(e) = self.walker.feed(packet.payload(), &mut self.events) {
            if !self.summary.unreadable {
                tracing::warn!(backend = %conn.name(), error = %e, "response token walk failed; the session stays on the primary");
            }
            self.summary.unreadable = true;
        }
        for event in self.events.drain(..) {
            conn.observe(&event);
            if !matches!(event, TokenEvent::Done(_)) {
                self.last_done = None;
            }
            match &event {
                TokenEvent::EnvChange(change) => {
                    self.summary.env_changed = true;
                    if let Some(open) = change.transaction_state() {
                        self.summary.transaction = Some(open);
                    }
                    if let crate::tds::token::env_change::EnvChange::Database { new, .. } = change {
                        self.summary.database = Some(new.clone());
                    }
                }
                TokenEvent::Error(_) => self.summary.error = true,
                TokenEvent::Done(done) => {
                    self.attention_acked |= done.status.contains(DoneStatus::ATTN);
                    self.summary.error |= done.status.contains(DoneStatus::ERROR);
                    self.last_done = Some(*done);
                }
                TokenEvent::ReturnValue {
                    ordinal: 0,
                    value: Some(v),
                    ..
                } => self.summary.handle = i32::try_from(*v).ok(),
                _ => {}
            }
        }
        if self.summary.unreadable {
            // Values read from a stream that later proved malformed are not trusted.
            self.summary.handle = None;
        }
        self.walker.take_value_spans()
    }

    /// A response ends at EOM, unless an attention is still owed its
    /// acknowledgement (a DONE with the ATTN bit) [MS-TDS 2.2.1.7].
    fn finished_at_eom(&self) -> bool {
        !self.attention_sent || self.attention_acked
    }

    /// At the end of a prepare's response: no handle, no error, the stream
    /// read cleanly and no attention in play.
    fn lacks_handle(&self) -> bool {
        self.summary.handle.is_none()
            && !self.summary.error
            && !self.summary.unreadable
            && !self.attention_sent
    }

    fn failed(&self, error: String) -> RelayEnd {
        RelayEnd::BackendFailed {
            error,
            forwarded: self.forwarded,
            at_token_boundary: self.at_token_boundary(),
        }
    }

    /// What the client got ends between two tokens: the walker is between
    /// tokens and no walked packet is kept back from the client.
    fn at_token_boundary(&self) -> bool {
        !self.summary.unreadable && self.held.is_none() && self.walker.at_token_boundary()
    }
}

impl BackendConn {
    /// Streams the response to the request in flight to `client`. Once the
    /// proxy's drain reaches `closing` ([`crate::shutdown::Phase::Closing`]: the process is
    /// about to exit) the relay stops where it is.
    pub async fn relay(
        &mut self,
        client: &mut ClientConn,
        options: RelayOptions,
        closing: &mut PhaseWatch,
    ) -> Relayed {
        let mut response = Response::new(&options);
        let mut deadline = options
            .attention_sent
            .then(|| Instant::now() + options.drain_timeout);
        let closing = closing.reached();
        tokio::pin!(closing);
        let end = loop {
            let step = tokio::select! {
                biased;
                // First, so that a response that streams without a pause
                // cannot hold it off.
                _ = &mut closing => Some(RelayEnd::ShuttingDown {
                    at_token_boundary: response.at_token_boundary(),
                }),
                packet = self.read_response_packet() => match packet {
                    Ok(packet) => self.relay_packet(client, &mut response, packet, &options).await,
                    Err(e) => Some(response.failed(e.to_string())),
                },
                packet = client.read_packet() => match packet {
                    Ok(p) if p.ty() == PacketType::ATTENTION => {
                        if !response.attention_sent {
                            if let Err(e) = self.attention().await {
                                break response.failed(format!("sending ATTENTION: {e}"));
                            }
                            response.attention_sent = true;
                            deadline = Some(Instant::now() + options.drain_timeout);
                        }
                        None
                    }
                    Ok(p) => Some(RelayEnd::ClientViolation(format!(
                        "packet type 0x{:02X} while a response was streaming (MARS is off)",
                        p.ty().0
                    ))),
                    Err(ReadError::Closed) => Some(RelayEnd::ClientGone(
                        std::io::ErrorKind::ConnectionReset.into(),
                    )),
                    Err(ReadError::Io(e)) => Some(RelayEnd::ClientGone(e)),
                    Err(e) => Some(RelayEnd::ClientViolation(e.to_string())),
                },
                _ = sleep_until(deadline) => Some(RelayEnd::AttentionUnacknowledged),
            };
            if let Some(end) = step {
                break end;
            }
        };
        response.summary.interrupted =
            response.attention_sent || !matches!(end, RelayEnd::Complete);
        response.summary.rows = response.walker.rows_digest();
        if matches!(end, RelayEnd::Complete) {
            response.summary.captured = response.capture.take().map(|(copy, _)| copy.into());
        }
        match &end {
            RelayEnd::Complete => {}
            RelayEnd::ClientGone(_) => {
                self.cancel_and_drain(&mut response, options.drain_timeout)
                    .await
            }
            // The backend or the protocol state is unknown, or the request
            // is abandoned mid-way: never reuse it.
            _ => self.mark_broken(),
        }
        Relayed {
            end,
            summary: response.summary,
            final_packet: response.final_packet,
        }
    }

    /// The client left mid-response: cancel the request and read the rest
    /// of the response up to the attention acknowledgement, with the same
    /// walker (so tokens are never read from the middle), within `timeout`.
    /// Otherwise the connection is marked broken and the pool drops it.
    async fn cancel_and_drain(&mut self, response: &mut Response, timeout: Duration) {
        let drained = tokio::time::timeout(timeout, async {
            if !response.attention_sent {
                self.attention().await?;
                response.attention_sent = true;
            }
            loop {
                let packet = self
                    .read_response_packet()
                    .await
                    .map_err(|e| std::io::Error::other(e.to_string()))?;
                response.observe(self, &packet);
                if response.summary.unreadable {
                    return Err(std::io::Error::other("unreadable response"));
                }
                if packet.is_eom() {
                    response.walker.reset();
                    if response.finished_at_eom() {
                        return Ok(());
                    }
                }
            }
        })
        .await;
        match drained {
            Ok(Ok(())) => {
                self.finish_request();
                tracing::debug!(backend = %self.name(), "cancelled and drained after the client left");
            }
            _ => {
                tracing::warn!(backend = %self.name(), "could not drain backend connection; discarding it");
                self.mark_broken();
            }
        }
    }

    /// Forwards one packet; `Some` when the response ended.
    async fn relay_packet(
        &mut self,
        client: &mut ClientConn,
        response: &mut Response,
        mut packet: Packet,
        options: &RelayOptions,
    ) -> Option<RelayEnd> {
        let eom = packet.is_eom();
        let spans = response.observe(self, &packet);
        response.capture(&packet);
        let base = response.offset;
        response.offset += packet.payload().len() as u64;
        if let Some(handle) = options.client_handle {
            for span in spans.iter().filter(|s| s.ordinal == 0) {
                rewrite_value(span, handle, &mut response.held, (&mut packet, base));
            }
            if eom && response.lacks_handle() {
                if let Some(error) = &options.missing_handle_error {
                    let end = finish_with_error(client, response, packet, error).await;
                    if matches!(end, Some(RelayEnd::Complete)) {
                        self.finish_request();
                    }
                    return end;
                }
            }
            let previous = response.held.take();
            if let Some((held, _)) = previous {
                let more = self.response_ready();
                if let Err(e) = client.forward_coalesced(held, more).await {
                    return Some(RelayEnd::ClientGone(e));
                }
                response.forwarded = true;
            }
            if !eom {
                response.held = Some((packet, base));
                return None;
            }
        }
        if eom && options.hold_final && response.finished_at_eom() {
            response.final_packet = Some(packet);
            response.walker.reset();
            response.offset = 0;
            self.finish_request();
            return Some(RelayEnd::Complete);
        }
        // An EOM packet never waits for the next, so the read-ahead that
        // tells whether one is there is not worth its read (nor, with this
        // packet still sharing the read buffer, a fresh buffer for it).
        let more = !eom && self.response_ready();
        if let Err(e) = client.forward_coalesced(packet, more).await {
            return Some(RelayEnd::ClientGone(e));
        }
        response.forwarded = true;
        if eom {
            response.walker.reset();
            response.offset = 0;
            if response.finished_at_eom() {
                self.finish_request();
                return Some(RelayEnd::Complete);
            }
        }
        None
    }
}

/// A response read to its end with no client to forward it to (a shadow
/// read): what comparing it with another server's answer needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consumed {
    pub rows: RowsDigest,
    /// The first ERROR token, if any.
    pub error: Option<ServerMessage>,
}

impl BackendConn {
    /// Reads the response to the request in flight to its end, a packet at
    /// a time, counting and checksumming its rows; nothing is kept. A
    /// stream the walker cannot follow leaves the connection broken, as an
    /// I/O error does.
    pub async fn consume_response(&mut self) -> Result<Consumed, String> {
        let mut walker = TokenWalker::new();
        walker.digest_rows();
        let mut events = Vec::new();
        let mut error = None;
        loop {
            let packet = self
                .read_response_packet()
                .await
                .map_err(|e| e.to_string())?;
            if let Err(e) = walker.feed(packet.payload(), &mut events) {
                self.mark_broken();
                return Err(format!("unreadable response: {e}"));
            }
            for event in events.drain(..) {
                self.observe(&event);
                if let TokenEvent::Error(message) = event {
                    error.get_or_insert(message);
                }
            }
            if packet.is_eom() {
                if !walker.at_token_boundary() {
                    self.mark_broken();
                    return Err("the response ends inside a token".into());
                }
                self.finish_request();
                let rows = walker.rows_digest().unwrap_or_default();
                return Ok(Consumed { rows, error });
            }
        }
    }
}

/// Forwards the rest of a response (the packet kept back and the last one)
/// with `error` put before its final DONE, which gets the error bit.
async fn finish_with_error(
    client: &mut ClientConn,
    response: &mut Response,
    last: Packet,
    error: &ServerMessage,
) -> Option<RelayEnd> {
    const DONE_LEN: usize = 13;
    let mut tail = Vec::new();
    if let Some((held, _)) = response.held.take() {
        tail.extend_from_slice(held.payload());
    }
    tail.extend_from_slice(last.payload());
    let Some(done) = response.last_done.filter(|_| tail.len() >= DONE_LEN) else {
        // No final DONE where one must be: close rather than guess.
        return Some(RelayEnd::BackendFailed {
            error: "a prepare's response did not end with DONE".into(),
            forwarded: response.forwarded,
            at_token_boundary: false,
        });
    };
    tail.truncate(tail.len() - DONE_LEN);
    error.encode_error(&mut tail);
    Done {
        status: done.status.with(DoneStatus::ERROR),
        ..done
    }
    .encode(&mut tail);
    if let Err(e) = client.send_message(&tail).await {
        return Some(RelayEnd::ClientGone(e));
    }
    response.forwarded = true;
    response.walker.reset();
    response.offset = 0;
    response.finished_at_eom().then_some(RelayEnd::Complete)
}

/// Writes `handle` over the value `span` points at, in the packet kept
/// back and the current one (a 4-byte value may straddle the two).
fn rewrite_value(
    span: &ValueSpan,
    handle: i32,
    held: &mut Option<(Packet, u64)>,
    current: (&mut Packet, u64),
) {
    let width = usize::from(span.width);
    let bytes = i64::from(handle).to_le_bytes();
    let (packet, base) = current;
    let mut targets: Vec<(&mut [u8], u64)> = vec![(packet.payload_mut(), base)];
    if let Some((packet, base)) = held.as_mut() {
        targets.push((packet.payload_mut(), *base));
    }
    for (i, &byte) in bytes.iter().enumerate().take(width) {
        let at = span.at + i as u64;
        for (payload, base) in targets.iter_mut() {
            let end = *base + payload.len() as u64;
            if (*base..end).contains(&at) {
                payload[(at - *base) as usize] = byte;
            }
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_handle_straddling_two_packets_is_rewritten_in_both() {
        let span = ValueSpan {
            ordinal: 0,
            at: 6,
            width: 4,
        };
        let mut first = crate::transport::test_packet(&[0u8; 8], false);
        let mut second = crate::transport::test_packet(&[0u8; 8], true);
        let mut held = Some((first.clone(), 0));
        rewrite_value(&span, 0x0403_0201, &mut held, (&mut second, 8));
        first = held.unwrap().0;
        assert_eq!(first.payload(), &[0, 0, 0, 0, 0, 0, 1, 2]);
        assert_eq!(second.payload(), &[3, 4, 0, 0, 0, 0, 0, 0]);
    }
}
