//! Packet-level I/O shared by the frontend and the backend: a connection
//! (TCP, or TLS over TCP) split into halves, a cancel-safe packet reader
//! and packet writers.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf, ReadHalf, WriteHalf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

use crate::tds::packet::{PacketHeader, PacketType, Status, HEADER_LEN, MAX_PACKET_SIZE};
use crate::tds::DecodeError;

/// A byte stream Sluice can hold as a [`NetStream`]: TLS, or a test's pipe.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send + Sync {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + Sync> Stream for T {}

/// A connection to a client or a server: plain TCP, or any other stream
/// (TLS over TCP). TCP is kept apart so that [`split`] can give it
/// tokio's owned halves, which poll the socket directly.
pub enum NetStream {
    Tcp(TcpStream),
    Boxed(Box<dyn Stream>),
}

impl NetStream {
    pub fn boxed(stream: impl Stream + 'static) -> NetStream {
        NetStream::Boxed(Box::new(stream))
    }
}

/// The reading half of a [`NetStream`] ([`split`]).
pub enum ReadSide {
    Tcp(OwnedReadHalf),
    Boxed(ReadHalf<Box<dyn Stream>>),
}

/// The writing half of a [`NetStream`] ([`split`]).
pub enum WriteSide {
    Tcp(OwnedWriteHalf),
    Boxed(WriteHalf<Box<dyn Stream>>),
}

/// Splits a connection into halves that a session reads and writes
/// independently. TCP gets tokio's owned halves; another stream goes
/// through `tokio::io::split`, whose halves take a lock on every poll
/// (about 400 instructions per request between the two).
pub fn split(stream: NetStream) -> (ReadSide, WriteSide) {
    match stream {
        NetStream::Tcp(tcp) => {
            let (read, write) = tcp.into_split();
            (ReadSide::Tcp(read), WriteSide::Tcp(write))
        }
        NetStream::Boxed(stream) => {
            let (read, write) = tokio::io::split(stream);
            (ReadSide::Boxed(read), WriteSide::Boxed(write))
        }
    }
}

/// `AsyncRead` for an enum of readers, each variant delegating.
macro_rules! delegate_async_read {
    ($ty:ident { $($variant:ident),* }) => {
        impl AsyncRead for $ty {
            fn poll_read(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &mut ReadBuf<'_>,
            ) -> Poll<io::Result<()>> {
                match self.get_mut() {
                    $($ty::$variant(s) => Pin::new(s).poll_read(cx, buf),)*
                }
            }
        }
    };
}

delegate_async_read!(NetStream { Tcp, Boxed });
delegate_async_read!(ReadSide { Tcp, Boxed });

/// `AsyncWrite` for an enum of writers, each variant delegating.
macro_rules! delegate_async_write {
    ($ty:ident { $($variant:ident),* }) => {
        impl AsyncWrite for $ty {
            fn poll_write(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &[u8],
            ) -> Poll<io::Result<usize>> {
                match self.get_mut() {
                    $($ty::$variant(s) => Pin::new(s).poll_write(cx, buf),)*
                }
            }

            fn poll_write_vectored(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                bufs: &[io::IoSlice<'_>],
            ) -> Poll<io::Result<usize>> {
                match self.get_mut() {
                    $($ty::$variant(s) => Pin::new(s).poll_write_vectored(cx, bufs),)*
                }
            }

            fn is_write_vectored(&self) -> bool {
                match self {
                    $($ty::$variant(s) => s.is_write_vectored(),)*
                }
            }

            fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                match self.get_mut() {
                    $($ty::$variant(s) => Pin::new(s).poll_flush(cx),)*
                }
            }

            fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                match self.get_mut() {
                    $($ty::$variant(s) => Pin::new(s).poll_shutdown(cx),)*
                }
            }
        }
    };
}

delegate_async_write!(NetStream { Tcp, Boxed });
delegate_async_write!(WriteSide { Tcp, Boxed });

/// Why a packet could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("connection closed")]
    Closed,
    #[error("connection closed in the middle of a packet")]
    Truncated,
    #[error("malformed packet: {0}")]
    Malformed(#[from] DecodeError),
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// TCP keepalive on a socket, so a peer that vanished without a FIN or
/// RST (a crashed host, a dropped NAT entry) is noticed; `None` leaves it off.
pub fn set_keepalive(tcp: &tokio::net::TcpStream, idle: Option<Duration>) {
    let Some(idle) = idle else { return };
    let keepalive = socket2::TcpKeepalive::new().with_time(idle).with_interval(
        idle.min(Duration::from_secs(10))
            .max(Duration::from_secs(1)),
    );
    if let Err(e) = socket2::SockRef::from(tcp).set_tcp_keepalive(&keepalive) {
        tracing::debug!(error = %e, "could not set TCP keepalive");
    }
}

/// One TDS packet, header included, exactly as it came off the wire. Its
/// fields are private: a packet is only made by decoding a header whose
/// length matches the bytes, so no code can hold a short one.
#[derive(Debug, Clone)]
pub struct Packet {
    header: PacketHeader,
    /// Header and payload; the header bytes can be rewritten in place.
    bytes: BytesMut,
}

impl Packet {
    /// Splits one whole packet off the front of `buf`, if all of it is
    /// there. Check, then parse, then advance.
    fn split_from(buf: &mut BytesMut, max_packet: usize) -> Result<Option<Packet>, DecodeError> {
        if buf.len() < HEADER_LEN {
            return Ok(None);
        }
        let header = PacketHeader::decode(&buf[..HEADER_LEN], max_packet)?;
        let len = header.length as usize;
        if buf.len() < len {
            return Ok(None);
        }
        let bytes = buf.split_to(len);
        Ok(Some(Packet { header, bytes }))
    }

    pub fn header(&self) -> &PacketHeader {
        &self.header
    }

    /// The whole packet as it goes on the wire.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Length on the wire, header included.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.len() <= HEADER_LEN
    }

    pub fn status(&self) -> Status {
        self.header.status
    }

    /// The payload bytes, for a caller that rewrites a value in place
    /// (same length, so the header stays true).
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.bytes[HEADER_LEN..]
    }

    pub fn payload(&self) -> &[u8] {
        &self.bytes[HEADER_LEN..]
    }

    pub fn ty(&self) -> PacketType {
        self.header.ty
    }

    pub fn is_eom(&self) -> bool {
        self.header.status.is_eom()
    }

    /// Rewrites the status byte, in the header struct and in the bytes.
    pub fn set_status(&mut self, status: Status) {
        self.header.status = status;
        self.bytes[1] = status.0;
    }

    /// Rewrites the SPID field, so that a client sees one SPID whichever
    /// backend connection served it.
    pub fn set_spid(&mut self, spid: u16) {
        self.header.spid = spid;
        self.bytes[4..6].copy_from_slice(&spid.to_be_bytes());
    }
}

/// What a read asks for before a packet's header says how long it is:
/// the default packet size, so most packets arrive in one read.
const READ_CHUNK: usize = 4096;

/// What a backend connection's reads ask for: several packets of a
/// streaming result per read syscall.
pub const BACKEND_READ_CHUNK: usize = 32 * 1024;

/// Reads whole packets. Cancel-safe: bytes read by a future that is dropped
/// stay in the buffer for the next call, so it can sit in a `select!`.
///
/// Its buffer never holds more than one partial packet plus one read
/// (at most `max_packet + chunk` bytes): a read is made only when no whole
/// packet is buffered.
pub struct PacketReader<R> {
    inner: R,
    buf: BytesMut,
    max_packet: usize,
    /// How many bytes a read asks for.
    chunk: usize,
    /// Whether the buffer is kept when empty (a backend connection, which
    /// reads responses in chunks) or let go (a client, mostly idle).
    keep_buffer: bool,
    /// A read error [`packet_ready`](Self::packet_ready) met, for the next
    /// [`read_packet`](Self::read_packet) to report.
    failed: Option<io::Error>,
}

impl<R: AsyncRead + Unpin> PacketReader<R> {
    pub fn new(inner: R) -> Self {
        PacketReader {
            inner,
            buf: BytesMut::new(),
            max_packet: MAX_PACKET_SIZE,
            chunk: READ_CHUNK,
            keep_buffer: false,
            failed: None,
        }
    }

    /// Reads ask for `chunk` bytes, and the buffer is kept and reused from
    /// read to read (a backend connection, whose responses stream).
    pub fn set_read_chunk(&mut self, chunk: usize) {
        self.chunk = chunk.max(HEADER_LEN);
        self.keep_buffer = true;
    }

    /// Packets longer than `max` are refused (the negotiated packet size).
    pub fn set_max_packet(&mut self, max: usize) {
        self.max_packet = max.min(MAX_PACKET_SIZE);
    }

    pub fn get_mut(&mut self) -> &mut R {
        &mut self.inner
    }

    /// Bytes received but not yet returned as a packet.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    pub fn into_parts(self) -> (R, BytesMut) {
        (self.inner, self.buf)
    }

    pub async fn read_packet(&mut self) -> Result<Packet, ReadError> {
        loop {
            if let Some(packet) = self.split_packet()? {
                if self.buf.is_empty() && !self.keep_buffer {
                    // Nothing more has arrived: let go of the buffer (it
                    // lives on only while the packet does), so an idle
                    // connection holds no read buffer.
                    self.buf = BytesMut::new();
                }
                return Ok(packet);
            }
            if let Some(e) = self.failed.take() {
                return Err(e.into());
            }
            self.make_room();
            let read = match self.inner.read_buf(&mut self.buf).await {
                Ok(n) => n,
                // TLS peers (most drivers) close the socket without
                // close_notify; between packets that is an ordinary close.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => 0,
                Err(e) => return Err(e.into()),
            };
            if read == 0 {
                return Err(if self.buf.is_empty() {
                    ReadError::Closed
                } else {
                    ReadError::Truncated
                });
            }
        }
    }

    /// Whether the next packet can be had without waiting: it is buffered,
    /// or the bytes it lacks are already on the socket (read now, with no
    /// waiting; a socket with nothing to read costs no syscall once its
    /// readiness is known to be clear).
    pub fn packet_ready(&mut self) -> bool {
        if self.has_packet() {
            return true;
        }
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        loop {
            self.make_room();
            let before = self.buf.len();
            let read = std::pin::pin!(self.inner.read_buf(&mut self.buf));
            match std::future::Future::poll(read, &mut cx) {
                std::task::Poll::Ready(Ok(n)) if n > 0 => {}
                // The end of the stream: `read_packet` finds it again.
                std::task::Poll::Ready(Ok(_)) => return true,
                std::task::Poll::Ready(Err(e)) => {
                    self.failed = Some(e);
                    return true;
                }
                std::task::Poll::Pending => return false,
            }
            debug_assert!(self.buf.len() > before);
            if self.has_packet() {
                return true;
            }
        }
    }

    /// A whole packet is buffered (or at least its length says so; a
    /// malformed header is reported by the read that splits it).
    fn has_packet(&self) -> bool {
        self.buf.len() >= HEADER_LEN
            && self.buf.len() >= usize::from(u16::from_be_bytes([self.buf[2], self.buf[3]]))
    }

    /// Before a read: room for a chunk, or for the rest of the packet whose
    /// header is buffered if that is more. The allocation is reused once
    /// the packets split from it are dropped; otherwise a new one of just
    /// that size takes the partial packet (never a doubling, so a packet
    /// kept alive across reads cannot make the buffer grow).
    fn make_room(&mut self) {
        let mut want = self.chunk;
        if self.buf.len() >= HEADER_LEN {
            let len = usize::from(u16::from_be_bytes([self.buf[2], self.buf[3]]));
            want = want.max(len.saturating_sub(self.buf.len()));
        }
        if self.buf.capacity() - self.buf.len() >= want || self.buf.try_reclaim(want) {
            return;
        }
        let mut fresh = BytesMut::with_capacity(self.buf.len() + want);
        fresh.extend_from_slice(&self.buf);
        self.buf = fresh;
    }

    /// Check, then parse, then advance: a packet leaves the buffer only
    /// once all of it has arrived.
    fn split_packet(&mut self) -> Result<Option<Packet>, ReadError> {
        Ok(Packet::split_from(&mut self.buf, self.max_packet)?)
    }

    /// Reads packets until EOM and returns the concatenated payload. Refuses
    /// a message bigger than `limit` bytes or of a type other than `expected`.
    pub async fn read_message(
        &mut self,
        expected: &[PacketType],
        limit: usize,
    ) -> Result<(PacketHeader, Vec<u8>), ReadError> {
        let mut payload = Vec::new();
        loop {
            let packet = self.read_packet().await?;
            if !expected.contains(&packet.ty()) {
                return Err(DecodeError::invalid(
                    "message",
                    format!("unexpected packet type 0x{:02X}", packet.ty().0),
                )
                .into());
            }
            if payload.len() + packet.payload().len() > limit {
                return Err(DecodeError::invalid(
                    "message",
                    format!("longer than the {limit}-byte limit"),
                )
                .into());
            }
            payload.extend_from_slice(packet.payload());
            if packet.is_eom() {
                return Ok((packet.header, payload));
            }
        }
    }
}

/// The client side of a session: the packet reader (watched for ATTENTION
/// while a response streams), the writer, the SPID Sluice shows this client
/// and its negotiated packet size.
pub struct ClientConn {
    reader: PacketReader<ReadSide>,
    writer: WriteSide,
    spid: u16,
    packet_size: usize,
    /// A client that stops reading is dropped after this long, instead of
    /// holding a backend connection forever.
    write_timeout: Duration,
    /// A client that sends no request for this long gets the message and
    /// is disconnected (`listen.idle_client_timeout_ms`).
    idle: Option<IdleLimit>,
    /// `sluice_client_bytes_received_total` and `..._sent_total`.
    bytes_received: metrics::Counter,
    bytes_sent: metrics::Counter,
    /// Relayed packets that fit the client's packet size, waiting to go
    /// out together in one vectored write, where they were read (see
    /// [`ClientConn::forward_coalesced`]); at most [`MAX_QUEUED`] packets
    /// and about [`COALESCE_BYTES`]. Empty between writes, let go at the
    /// end of each response.
    queued: Vec<Packet>,
    queued_bytes: usize,
    /// Bytes that had to be written by Sluice: packets re-cut to the
    /// client's packet size, Sluice's own messages. They follow the queued
    /// packets. Empty between writes, let go at the end of each response.
    out: Vec<u8>,
}

/// How many relayed packets one vectored client write gathers at most.
const MAX_QUEUED: usize = 64;

/// How many bytes of relayed packets one client write gathers at most
/// (plus the packet that crosses it).
const COALESCE_BYTES: usize = 32 * 1024;

/// How long a client may stay idle between requests, and the message
/// (Sluice's own ERROR and DONE) it gets before it is disconnected.
pub struct IdleLimit {
    pub after: Duration,
    pub farewell: Vec<u8>,
}

impl ClientConn {
    pub fn new(
        reader: PacketReader<ReadSide>,
        writer: WriteSide,
        spid: u16,
        packet_size: usize,
        write_timeout: Duration,
    ) -> ClientConn {
        ClientConn {
            reader,
            writer,
            spid,
            packet_size,
            write_timeout,
            idle: None,
            bytes_received: metrics::counter!(crate::metrics::CLIENT_BYTES_RECEIVED),
            bytes_sent: metrics::counter!(crate::metrics::CLIENT_BYTES_SENT),
            queued: Vec::new(),
            queued_bytes: 0,
            out: Vec::new(),
        }
    }

    /// Disconnects the client when it stays idle past `limit` (see
    /// [`ClientConn::next_request`]).
    pub fn with_idle_limit(mut self, limit: Option<IdleLimit>) -> ClientConn {
        self.idle = limit;
        self
    }

    pub fn spid(&self) -> u16 {
        self.spid
    }

    /// The client's next packet; cancel-safe (see [`PacketReader`]).
    pub async fn read_packet(&mut self) -> Result<Packet, ReadError> {
        let packet = self.reader.read_packet().await?;
        self.bytes_received.increment(packet.len() as u64);
        Ok(packet)
    }

    /// The first packet of the client's next request, read between
    /// requests. With an idle limit, a client that sends nothing for that
    /// long gets the farewell message, its side is shut down, and the read
    /// fails as timed out.
    pub async fn next_request(&mut self) -> Result<Packet, ReadError> {
        let Some(after) = self.idle.as_ref().map(|idle| idle.after) else {
            return self.read_packet().await;
        };
        if let Ok(read) = tokio::time::timeout(after, self.read_packet()).await {
            return read;
        }
        let farewell = self
            .idle
            .take()
            .map(|idle| idle.farewell)
            .unwrap_or_default();
        self.send_message(&farewell).await.ok();
        self.shutdown().await;
        Err(ReadError::Io(io::Error::new(
            io::ErrorKind::TimedOut,
            format!(
                "no request for {} ms (listen.idle_client_timeout_ms)",
                after.as_millis()
            ),
        )))
    }

    /// Forwards one response packet with this client's SPID, re-cut to its
    /// packet size, and writes it at once.
    pub async fn forward(&mut self, packet: Packet) -> io::Result<()> {
        self.forward_coalesced(packet, false).await
    }

    /// Forwards one response packet with this client's SPID, re-cut to its
    /// packet size. When `more_ready` (the next packet can be had without
    /// waiting, see [`PacketReader::packet_ready`]) it may wait to go out
    /// with the packets after it, in one write of up to [`COALESCE_BYTES`];
    /// a packet never waits for bytes that may not come, and an EOM packet
    /// never waits. A packet that fits is written from where it was read
    /// (a vectored write gathers several), one that does not is re-cut
    /// into the write buffer. Every write that happens is bounded by the
    /// write timeout.
    pub async fn forward_coalesced(
        &mut self,
        mut packet: Packet,
        more_ready: bool,
    ) -> io::Result<()> {
        packet.set_spid(self.spid);
        self.bytes_sent.increment(packet.len() as u64);
        let eom = packet.is_eom();
        let wait = more_ready && !eom;
        let fits = packet.len() <= self.packet_size;
        let result = if fits && !wait && self.queued.is_empty() && self.out.is_empty() {
            // Alone and as it is (most responses): one write, nothing kept.
            let (writer, bytes) = (&mut self.writer, packet.as_bytes());
            bounded(self.write_timeout, async {
                writer.write_all(bytes).await?;
                writer.flush().await
            })
            .await
        } else if fits && self.out.is_empty() {
            self.queued_bytes += packet.len();
            self.queued.push(packet);
            let room = self.queued_bytes < COALESCE_BYTES && self.queued.len() < MAX_QUEUED;
            if wait && room {
                return Ok(());
            }
            self.write_out().await
        } else {
            // Re-cut: after the packets queued before it.
            self.write_out().await?;
            if self.out.capacity() == 0 {
                self.out
                    .reserve(COALESCE_BYTES + packet.len() + packet.len() / 64 * HEADER_LEN);
            }
            encode_packet_resized(&mut self.out, &packet, self.packet_size);
            if wait && self.out.len() < COALESCE_BYTES {
                return Ok(());
            }
            self.write_out().await
        };
        if eom {
            // The response is over: an idle client holds no write buffers.
            self.queued = Vec::new();
            self.out = Vec::new();
        }
        result
    }

    /// Writes the queued packets, then the write buffer, within the write
    /// timeout.
    async fn write_out(&mut self) -> io::Result<()> {
        if !self.queued.is_empty() {
            let (writer, queued) = (&mut self.writer, &self.queued);
            let result = bounded(self.write_timeout, async {
                write_packets(writer, queued).await?;
                writer.flush().await
            })
            .await;
            self.queued.clear();
            self.queued_bytes = 0;
            result?;
        }
        if self.out.is_empty() {
            return Ok(());
        }
        let (writer, out) = (&mut self.writer, &self.out);
        let result = bounded(self.write_timeout, async {
            writer.write_all(out).await?;
            writer.flush().await
        })
        .await;
        self.out.clear();
        result
    }

    /// Sends a whole message Sluice wrote itself (errors, emulated replies),
    /// after any relayed packets still in the write buffer, in one write.
    pub async fn send_message(&mut self, payload: &[u8]) -> io::Result<()> {
        let ty = PacketType::TABULAR_RESULT;
        let before = self.out.len();
        crate::tds::packet::encode_message(
            &mut self.out,
            ty,
            Status::NORMAL,
            self.spid,
            payload,
            self.packet_size,
        );
        self.bytes_sent.increment((self.out.len() - before) as u64);
        let result = self.write_out().await;
        if self.out.capacity() > COALESCE_BYTES * 2 {
            self.out = Vec::new();
        }
        result
    }

    /// Closes the client's side of the connection after a final message
    /// (relayed packets still in the write buffer go first).
    pub async fn shutdown(&mut self) {
        let _ = self.write_out().await;
        let _ = bounded(self.write_timeout, self.writer.shutdown()).await;
    }
}

/// Writes `packets` (at most [`MAX_QUEUED`]) as they are, in as few
/// vectored writes as the socket takes.
async fn write_packets<W: AsyncWrite + Unpin>(
    writer: &mut W,
    packets: &[Packet],
) -> io::Result<()> {
    let mut slices = [io::IoSlice::new(&[]); MAX_QUEUED];
    let count = packets.len().min(MAX_QUEUED);
    for (slice, packet) in slices.iter_mut().zip(packets) {
        *slice = io::IoSlice::new(packet.as_bytes());
    }
    let mut unwritten = &mut slices[..count];
    while !unwritten.is_empty() {
        let written = writer.write_vectored(unwritten).await?;
        if written == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        io::IoSlice::advance_slices(&mut unwritten, written);
    }
    Ok(())
}

/// A client write that does not finish within `limit` fails as timed out.
/// The timer is armed only for a write the socket does not take at once:
/// most writes fit in the send buffer, and a timer per write would cost
/// more than the write.
async fn bounded(
    limit: Duration,
    write: impl std::future::Future<Output = io::Result<()>>,
) -> io::Result<()> {
    let mut write = std::pin::pin!(write);
    let first = std::future::poll_fn(|cx| {
        std::task::Poll::Ready(std::future::Future::poll(write.as_mut(), cx))
    })
    .await;
    if let std::task::Poll::Ready(result) = first {
        return result;
    }
    match tokio::time::timeout(limit, write).await {
        Ok(result) => result,
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("the client read nothing for {} ms", limit.as_millis()),
        )),
    }
}

/// A packet of `payload`, for unit tests.
#[cfg(test)]
pub(crate) fn test_packet(payload: &[u8], eom: bool) -> Packet {
    let status = if eom { Status::EOM } else { Status::NORMAL };
    let header = PacketHeader::new(PacketType::TABULAR_RESULT, status, payload.len());
    let mut bytes = header.encode().to_vec();
    bytes.extend_from_slice(payload);
    let mut buf = BytesMut::from(&bytes[..]);
    Packet::split_from(&mut buf, MAX_PACKET_SIZE)
        .ok()
        .flatten()
        .expect("a whole test packet")
}

/// One client request message: the packets buffered so far (the head that
/// routing looks at) and whether they reach its EOM. A request bigger than
/// the buffer limit is forwarded head first, then streamed.
#[derive(Debug, Clone)]
pub struct Request {
    packets: Vec<Packet>,
    complete: bool,
}

impl Request {
    /// A request that starts with `first`.
    pub fn new(first: Packet) -> Request {
        let complete = first.is_eom();
        Request {
            packets: vec![first],
            complete,
        }
    }

    /// A whole request Sluice builds itself (a rewritten RPC), cut into
    /// packets as a client would send it.
    pub fn from_payload(ty: PacketType, first_status: Status, payload: &[u8]) -> Request {
        let mut encoded = Vec::new();
        crate::tds::packet::encode_message(
            &mut encoded,
            ty,
            first_status.without(Status::EOM),
            0,
            payload,
            crate::tds::packet::DEFAULT_PACKET_SIZE,
        );
        let mut buf = BytesMut::from(&encoded[..]);
        let mut packets = Vec::new();
        while let Ok(Some(packet)) = Packet::split_from(&mut buf, MAX_PACKET_SIZE) {
            packets.push(packet);
        }
        Request {
            packets,
            complete: true,
        }
    }

    /// Adds the next packet of the message.
    pub fn push(&mut self, packet: Packet) {
        self.complete = packet.is_eom();
        self.packets.push(packet);
    }

    pub fn ty(&self) -> PacketType {
        self.first().ty()
    }

    /// The status of the first packet, where the reset bits live.
    pub fn first_status(&self) -> Status {
        self.first().status()
    }

    fn first(&self) -> &Packet {
        // A Request is made from at least one packet and never emptied.
        &self.packets[0]
    }

    /// Every packet up to EOM is buffered.
    pub fn is_complete(&self) -> bool {
        self.complete
    }

    /// Bytes buffered, headers included.
    pub fn buffered_len(&self) -> usize {
        self.packets.iter().map(Packet::len).sum()
    }

    pub fn packets(&self) -> &[Packet] {
        &self.packets
    }

    /// The payload of the buffered packets: borrowed when the request is one
    /// packet (the usual case), joined otherwise.
    pub fn payload(&self) -> std::borrow::Cow<'_, [u8]> {
        match &self.packets[..] {
            [only] => std::borrow::Cow::Borrowed(only.payload()),
            many => std::borrow::Cow::Owned(
                many.iter()
                    .flat_map(|p| p.payload().iter().copied())
                    .collect(),
            ),
        }
    }
}

/// Writes one message, split into packets of at most `packet_size` bytes.
pub async fn write_message<W: AsyncWrite + Unpin>(
    w: &mut W,
    ty: PacketType,
    spid: u16,
    payload: &[u8],
    packet_size: usize,
) -> io::Result<()> {
    let mut out = Vec::with_capacity(payload.len() + HEADER_LEN * 2);
    crate::tds::packet::encode_message(&mut out, ty, Status::NORMAL, spid, payload, packet_size);
    w.write_all(&out).await?;
    w.flush().await
}

/// Forwards a packet to a peer whose packet size may be smaller: a packet
/// that fits goes as is, a bigger one is cut into several (see
/// [`encode_packet_resized`]) and written at once.
pub async fn write_packet_resized<W: AsyncWrite + Unpin>(
    w: &mut W,
    packet: &Packet,
    packet_size: usize,
) -> io::Result<()> {
    if packet.bytes.len() <= packet_size {
        return w.write_all(&packet.bytes).await;
    }
    let mut out = Vec::with_capacity(packet.len() + packet.len() / 64 * HEADER_LEN);
    encode_packet_resized(&mut out, packet, packet_size);
    w.write_all(&out).await
}

/// Appends `packet` to `out` for a peer whose packet size may be smaller:
/// a packet that fits goes as is, a bigger one is cut into several, only
/// the last of which keeps the EOM bit. Reset bits stay on the first piece.
pub fn encode_packet_resized(out: &mut Vec<u8>, packet: &Packet, packet_size: usize) {
    if packet.bytes.len() <= packet_size {
        out.extend_from_slice(&packet.bytes);
        return;
    }
    let chunk = packet_size - HEADER_LEN;
    let mut payload = &packet.bytes[HEADER_LEN..];
    let mut first = true;
    while !payload.is_empty() {
        let n = payload.len().min(chunk);
        let last = n == payload.len();
        let mut status = packet.header.status.without(Status::EOM);
        if !first {
            status = Status(status.0 & Status::IGNORE.0);
        }
        if last && packet.header.status.is_eom() {
            status = status.with(Status::EOM);
        }
        let mut header = packet.header;
        header.status = status;
        header.length = (n + HEADER_LEN) as u16;
        out.extend_from_slice(&header.encode());
        out.extend_from_slice(&payload[..n]);
        payload.advance(n);
        first = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client connection over an in-memory pipe with `packet_size`, and
    /// the far end, where what it writes arrives.
    fn client(packet_size: usize) -> (ClientConn, tokio::io::DuplexStream) {
        let (near, far) = tokio::io::duplex(1 << 20);
        let (read, write) = split(NetStream::boxed(near));
        let conn = ClientConn::new(
            PacketReader::new(read),
            write,
            77,
            packet_size,
            Duration::from_secs(5),
        );
        (conn, far)
    }

    /// The next `n` packets as the far end reads them: (SPID, status,
    /// payload).
    async fn received(far: &mut tokio::io::DuplexStream, n: usize) -> Vec<(u16, u8, Vec<u8>)> {
        let mut reader = PacketReader::new(far);
        let mut packets = Vec::new();
        for _ in 0..n {
            let p = reader.read_packet().await.expect("a packet");
            packets.push((p.header().spid, p.status().0, p.payload().to_vec()));
        }
        packets
    }

    #[tokio::test]
    async fn queued_recut_and_own_packets_arrive_in_order_with_the_clients_spid() {
        let (mut conn, mut far) = client(512);
        let small = |byte: u8| test_packet(&[byte; 100], false);
        // Two queued, one re-cut into three, one queued after it, Sluice's
        // own message, then the EOM.
        conn.forward_coalesced(small(1), true).await.unwrap();
        conn.forward_coalesced(small(2), true).await.unwrap();
        conn.forward_coalesced(test_packet(&[3; 1200], false), true)
            .await
            .unwrap();
        conn.forward_coalesced(small(4), true).await.unwrap();
        conn.send_message(&[5; 10]).await.unwrap();
        conn.forward_coalesced(test_packet(&[6; 20], true), true)
            .await
            .unwrap();
        let packets = received(&mut far, 8).await;
        let payloads: Vec<(u8, usize)> = packets.iter().map(|p| (p.2[0], p.2.len())).collect();
        assert_eq!(
            payloads,
            [
                (1, 100),
                (2, 100),
                (3, 504),
                (3, 504),
                (3, 192),
                (4, 100),
                (5, 10),
                (6, 20)
            ]
        );
        assert!(packets.iter().all(|p| p.0 == 77), "{packets:?}");
        // Sluice's own message is a whole one: its packet carries EOM too.
        let eoms: Vec<bool> = packets.iter().map(|p| p.1 & Status::EOM.0 != 0).collect();
        assert_eq!(eoms, [false, false, false, false, false, false, true, true]);
    }

    #[tokio::test]
    async fn a_packet_waits_only_while_more_is_ready_and_the_queue_has_room() {
        let (mut conn, mut far) = client(4096);
        for _ in 0..MAX_QUEUED + 3 {
            conn.forward_coalesced(test_packet(&[9; 16], false), true)
                .await
                .unwrap();
        }
        // MAX_QUEUED packets went out when the queue filled; three wait.
        assert_eq!(conn.queued.len(), 3);
        conn.forward_coalesced(test_packet(&[9; 16], false), false)
            .await
            .unwrap();
        assert!(conn.queued.is_empty(), "nothing more was ready: written");
        conn.forward_coalesced(test_packet(&[9; 16], true), false)
            .await
            .unwrap();
        assert_eq!(
            received(&mut far, MAX_QUEUED + 5).await.len(),
            MAX_QUEUED + 5
        );
        assert_eq!(
            conn.queued.capacity(),
            0,
            "let go at the end of the response"
        );
    }
}
