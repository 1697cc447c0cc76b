//! One logged-in backend connection, and the protocol it owns: sending a
//! request (with the one RESETCONNECTION a reused connection needs), the
//! small exchanges Sluice makes itself, attention and drain. The session
//! decides what to run where; the connection knows how, and knows its own
//! state (reset pending, in a request, in a transaction, broken).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use tokio::io::AsyncWriteExt;

use crate::tds::packet::{PacketHeader, PacketType, Status};
use crate::tds::token::walker::{TokenEvent, TokenWalker};
use crate::transport::{
    encode_packet_resized, write_packet_resized, Packet, PacketReader, ReadError, ReadSide,
    Request, WriteSide, BACKEND_READ_CHUNK,
};

use super::settings::Settings;

/// Largest reply to a batch Sluice runs itself (settings replay, health
/// checks, lag queries): a few tokens, never a client's result.
const MAX_OWN_REPLY: usize = 1024 * 1024;

/// What a backend told Sluice when it logged in. The client's login reply
/// mirrors these values, since Sluice answers the client's login itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerInfo {
    pub tds_version: u32,
    pub prog_name: String,
    pub prog_version: [u8; 4],
    /// The 5-byte SQL collation of the login database.
    pub collation: Vec<u8>,
    pub database: String,
    pub language: String,
}

/// Identifies one backend connection for its whole life, so that a
/// prepared handle can name the connection that issued it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnId(u64);

impl ConnId {
    fn next() -> ConnId {
        // Only uniqueness matters; a counter shared by every pool gives it.
        static NEXT: AtomicU64 = AtomicU64::new(1);
        ConnId(NEXT.fetch_add(1, Ordering::Relaxed))
    }
}

/// A raw TDS connection to a backend, after LOGIN7. Requests and responses
/// pass through it as packets.
pub struct BackendConn {
    reader: PacketReader<ReadSide>,
    writer: WriteSide,
    /// Packet size the backend agreed to in its login reply.
    packet_size: usize,
    info: Arc<ServerInfo>,
    name: Arc<str>,
    id: ConnId,
    /// Served a client before: the next request carries RESETCONNECTION.
    reset_pending: bool,
    /// A client's reset bits, moved onto the request Sluice sends before
    /// the client's (its settings batch), so the reset does not undo it.
    carried_reset: Option<Status>,
    /// The client's reset ran with Sluice's request: its own request goes
    /// without the bits.
    reset_carried: bool,
    /// A request was sent and its response has not been read to its end.
    in_request: bool,
    /// The server reported an open transaction (ENVCHANGE 8 without 9/10/17).
    in_transaction: bool,
    /// In an unknown protocol state (an I/O error, a failed drain): the pool
    /// drops it instead of handing it out again.
    broken: bool,
    /// The session settings it carries beyond its login's.
    settings: Settings,
    /// Statements prepared on it, shared by every session it serves.
    prepared: PreparedCache,
    created: Instant,
    /// A request's packets, gathered for one write; empty between writes.
    out: Vec<u8>,
}

/// How many bytes of a request one write to the backend carries at most
/// (plus the packet that crosses it); also the most its write buffer keeps
/// between requests.
const REQUEST_WRITE_BYTES: usize = 32 * 1024;

/// The statements prepared on one connection, by text (parameter
/// declarations and statement), least recently used first out. A handle
/// that leaves the cache is queued for sp_unprepare, so the server's
/// handles stay bounded however many sessions use the connection.
#[derive(Debug, Default)]
struct PreparedCache {
    capacity: usize,
    tick: u64,
    by_text: HashMap<Arc<str>, (i32, u64)>,
    to_unprepare: Vec<i32>,
}

impl PreparedCache {
    fn get(&mut self, key: &str) -> Option<i32> {
        self.tick += 1;
        let tick = self.tick;
        self.by_text.get_mut(key).map(|entry| {
            entry.1 = tick;
            entry.0
        })
    }

    fn insert(&mut self, key: Arc<str>, handle: i32) {
        self.tick += 1;
        if let Some((displaced, _)) = self.by_text.insert(key, (handle, self.tick)) {
            if displaced != handle {
                self.to_unprepare.push(displaced);
            }
        }
        while self.by_text.len() > self.capacity.max(1) {
            let oldest = self
                .by_text
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(k, (h, _))| (k.clone(), *h));
            let Some((key, handle)) = oldest else { break };
            self.by_text.remove(&key);
            self.to_unprepare.push(handle);
        }
    }

    /// A reset frees every handle on the server.
    fn clear(&mut self) {
        self.by_text.clear();
        self.to_unprepare.clear();
    }
}

/// Why a connection could not serve a request Sluice made itself.
#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Read(#[from] ReadError),
}

impl BackendConn {
    pub(super) fn new(
        mut reader: PacketReader<ReadSide>,
        writer: WriteSide,
        packet_size: usize,
        info: ServerInfo,
        name: Arc<str>,
    ) -> BackendConn {
        // Responses stream: several packets per read, into one buffer.
        reader.set_read_chunk(BACKEND_READ_CHUNK);
        BackendConn {
            reader,
            writer,
            packet_size,
            info: Arc::new(info),
            name,
            id: ConnId::next(),
            reset_pending: false,
            carried_reset: None,
            reset_carried: false,
            in_request: false,
            in_transaction: false,
            broken: false,
            settings: Settings::default(),
            prepared: PreparedCache {
                capacity: 256,
                ..PreparedCache::default()
            },
            created: Instant::now(),
            out: Vec::new(),
        }
    }

    /// How many statements may stay prepared on it.
    pub(super) fn set_prepared_capacity(&mut self, capacity: usize) {
        self.prepared.capacity = capacity;
    }

    pub fn created(&self) -> Instant {
        self.created
    }

    /// The session settings it carries beyond its login's.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Records that it now carries `settings` (after Sluice or the
    /// client's own request applied them).
    pub fn set_settings(&mut self, settings: &Settings) {
        if self.settings != *settings {
            self.settings.clone_from(settings);
        }
    }

    /// Its own handle for a statement (parameter declarations and text, as
    /// the session keys it), if it prepared it.
    pub fn prepared_handle(&mut self, key: &str) -> Option<i32> {
        self.prepared.get(key)
    }

    /// Records the handle it issued for a statement.
    pub fn remember_prepared(&mut self, key: Arc<str>, handle: i32) {
        self.prepared.insert(key, handle);
    }

    /// Unprepares the handles its statement cache let go of, in one round
    /// trip; nothing to do most of the time.
    pub async fn unprepare_evicted(&mut self) -> Result<(), ExchangeError> {
        if self.reset_pending {
            // The pending reset frees them.
            self.prepared.to_unprepare.clear();
        }
        // Inside a transaction a request needs its descriptor: they wait.
        if self.prepared.to_unprepare.is_empty() || self.in_transaction {
            return Ok(());
        }
        let handles = std::mem::take(&mut self.prepared.to_unprepare);
        let mut headers = Vec::new();
        crate::tds::request::encode_all_headers(&mut headers, 0, 1);
        let payload = crate::tds::request::encode_sp_unprepare(&headers, &handles);
        self.exchange(PacketType::RPC, &payload).await.map(drop)
    }

    pub fn id(&self) -> ConnId {
        self.id
    }

    /// The backend's configured name (never its address: that stays in logs).
    pub fn name(&self) -> &Arc<str> {
        &self.name
    }

    pub fn info(&self) -> &Arc<ServerInfo> {
        &self.info
    }

    pub fn packet_size(&self) -> usize {
        self.packet_size
    }

    pub fn is_broken(&self) -> bool {
        self.broken
    }

    pub fn mark_broken(&mut self) {
        self.broken = true;
    }

    pub fn in_transaction(&self) -> bool {
        self.in_transaction
    }

    pub fn in_request(&self) -> bool {
        self.in_request
    }

    /// The next request starts a new server session (RESETCONNECTION).
    /// The next request of Sluice's own (a settings batch) carries the
    /// reset bits of the client request that follows it, and that request
    /// goes without them: the reset runs first, then the settings, then
    /// the client's request, which finds its settings in place.
    pub fn carry_client_reset(&mut self, client: Status) {
        let bits = Status::RESET_CONNECTION.with(Status::RESET_CONNECTION_SKIP_TRAN);
        let carried = client.intersection(bits);
        if !carried.is_empty() {
            self.carried_reset = Some(carried);
        }
    }

    /// The client's own request will carry a reset bit: its tracked state
    /// is from now on what a reset leaves.
    pub fn expect_client_reset(&mut self) {
        self.settings = self.settings.after_reset();
        self.prepared.clear();
    }

    /// Its tracked state is from now on what a reset leaves.
    pub fn reset_on_next_request(&mut self) {
        self.reset_pending = true;
        self.settings = self.settings.after_reset();
        self.prepared.clear();
    }

    /// Fit to go back to the pool: not mid-request, no open transaction
    /// (its locks would outlive the client), not broken.
    pub fn is_clean(&self) -> bool {
        !self.broken && !self.in_request && !self.in_transaction
    }

    /// The status of a request's first packet: the client's own bits, plus
    /// RESETCONNECTION when the connection served someone before. The one
    /// place that sets the bit.
    fn first_status(&mut self, client: Status) -> Status {
        let reset_bits = Status::RESET_CONNECTION.with(Status::RESET_CONNECTION_SKIP_TRAN);
        let client = match self.carried_reset.take() {
            // Sluice's own request goes first and carries the client's reset.
            Some(bits) => {
                self.reset_carried = true;
                client.with(bits)
            }
            // The client's request: its reset already ran.
            None if self.reset_carried && client.resets_connection() => {
                self.reset_carried = false;
                client.without(reset_bits)
            }
            None => client,
        };
        let status = if self.reset_pending && !client.resets_connection() {
            client.with(Status::RESET_CONNECTION)
        } else {
            client
        };
        if status.contains(Status::RESET_CONNECTION) {
            // A full reset ends any transaction [MS-TDS 2.2.3.1.2];
            // RESETCONNECTIONSKIPTRAN keeps it.
            self.in_transaction = false;
        }
        if status.resets_connection() {
            // Either reset frees prepared handles and restores the login's
            // settings (sp_reset_connection), bar a leaking isolation level.
            self.settings = self.settings.after_reset();
            self.prepared.clear();
        }
        self.reset_pending = false;
        status
    }

    /// Writes a buffered request. The rest of a request that is not
    /// complete follows with [`send_continuation`](Self::send_continuation);
    /// its response with [`read_response_packet`](Self::read_response_packet).
    pub async fn send(&mut self, request: &Request) -> std::io::Result<()> {
        self.in_request = true;
        let result = self.write_request(request).await;
        if result.is_err() {
            self.broken = true;
        }
        result
    }

    /// Writes the request's buffered packets in as few writes as their
    /// size allows (one, for a request of up to 32 KiB).
    async fn write_request(&mut self, request: &Request) -> std::io::Result<()> {
        self.out.clear();
        let mut result = Ok(());
        for (i, packet) in request.packets().iter().enumerate() {
            let start = self.out.len();
            encode_packet_resized(&mut self.out, packet, self.packet_size);
            if i == 0 {
                let status = self.first_status(packet.status());
                if status != packet.status() {
                    // The first piece carries the request's status bits;
                    // EOM stays as the re-cut left it.
                    let eom = self.out[start + 1] & Status::EOM.0;
                    self.out[start + 1] = status.without(Status::EOM).0 | eom;
                }
            }
            if self.out.len() >= REQUEST_WRITE_BYTES {
                result = self.writer.write_all(&self.out).await;
                self.out.clear();
                if result.is_err() {
                    break;
                }
            }
        }
        if result.is_ok() && !self.out.is_empty() {
            result = self.writer.write_all(&self.out).await;
        }
        self.out.clear();
        if self.out.capacity() > 2 * REQUEST_WRITE_BYTES {
            self.out = Vec::new();
        }
        result?;
        if request.is_complete() {
            self.writer.flush().await?;
        }
        Ok(())
    }

    /// One more packet of a request that streams past the buffer limit.
    pub async fn send_continuation(&mut self, packet: &Packet) -> std::io::Result<()> {
        let mut result = write_packet_resized(&mut self.writer, packet, self.packet_size).await;
        if result.is_ok() && packet.is_eom() {
            result = self.writer.flush().await;
        }
        if result.is_err() {
            self.broken = true;
        }
        result
    }

    /// Whether the next packet of the response can be read without
    /// waiting (see [`PacketReader::packet_ready`]): a relayed packet may
    /// then wait to share a client write with it.
    pub fn response_ready(&mut self) -> bool {
        self.reader.packet_ready()
    }

    /// The next packet of the response to the request in flight. A read
    /// error leaves the connection broken.
    pub async fn read_response_packet(&mut self) -> Result<Packet, ReadError> {
        let result = self.reader.read_packet().await;
        if result.is_err() {
            self.broken = true;
        }
        result
    }

    /// The response was read to its end (EOM, and any attention acknowledged).
    pub(crate) fn finish_request(&mut self) {
        self.in_request = false;
    }

    /// Follows the server's word on transactions.
    pub(crate) fn observe(&mut self, event: &TokenEvent) {
        if let TokenEvent::EnvChange(change) = event {
            if let Some(open) = change.transaction_state() {
                self.in_transaction = open;
            }
        }
    }

    /// Sends one SQL batch of Sluice's own (with the given ALL_HEADERS) and
    /// returns the whole, bounded reply.
    pub async fn run_batch_with_headers(
        &mut self,
        headers: &[u8],
        sql: &str,
    ) -> Result<Vec<u8>, ExchangeError> {
        let mut payload = headers.to_vec();
        crate::tds::read::put_utf16(&mut payload, sql);
        self.exchange(PacketType::SQL_BATCH, &payload).await
    }

    /// Sends one SQL batch outside any client transaction and returns the
    /// whole, bounded reply (settings replay, health checks).
    pub async fn run_batch(&mut self, sql: &str) -> Result<Vec<u8>, std::io::Error> {
        let mut headers = Vec::new();
        crate::tds::request::encode_all_headers(&mut headers, 0, 1);
        self.run_batch_with_headers(&headers, sql)
            .await
            .map_err(|e| match e {
                ExchangeError::Io(e) => e,
                other => std::io::Error::other(other.to_string()),
            })
    }

    /// A small request Sluice makes itself and its whole reply; the reply's
    /// tokens update the connection's state like a client's would.
    pub async fn exchange(
        &mut self,
        ty: PacketType,
        payload: &[u8],
    ) -> Result<Vec<u8>, ExchangeError> {
        let request = Request::from_payload(ty, Status::NORMAL, payload);
        self.send(&request).await?;
        let read = self
            .reader
            .read_message(&[PacketType::TABULAR_RESULT], MAX_OWN_REPLY);
        let (_, reply) = match read.await {
            Ok(reply) => reply,
            Err(e) => {
                self.broken = true;
                return Err(e.into());
            }
        };
        self.in_request = false;
        let mut events = Vec::new();
        if TokenWalker::new().feed(&reply, &mut events).is_ok() {
            events.iter().for_each(|e| self.observe(e));
        }
        Ok(reply)
    }

    /// An ATTENTION packet: a header alone, with EOM [MS-TDS 2.2.1.7].
    pub async fn attention(&mut self) -> std::io::Result<()> {
        let header = PacketHeader::new(PacketType::ATTENTION, Status::EOM, 0);
        let mut result = self.writer.write_all(&header.encode()).await;
        if result.is_ok() {
            result = self.writer.flush().await;
        }
        if result.is_err() {
            self.broken = true;
        }
        result
    }
}

impl std::fmt::Debug for BackendConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackendConn")
            .field("backend", &self.name)
            .field("id", &self.id)
            .field("packet_size", &self.packet_size)
            .field("reset_pending", &self.reset_pending)
            .field("in_request", &self.in_request)
            .field("in_transaction", &self.in_transaction)
            .field("broken", &self.broken)
            .finish()
    }
}
