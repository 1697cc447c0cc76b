//! Packet-level I/O shared by the frontend and the backend: a boxed byte
//! stream (TCP, or TLS over TCP), a cancel-safe packet reader and packet writers.

use std::io;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::tds::packet::{PacketHeader, PacketType, Status, HEADER_LEN, MAX_PACKET_SIZE};
use crate::tds::DecodeError;

/// A connection to a client or a server, whatever its encryption.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send + Sync {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + Sync> Stream for T {}
pub type BoxStream = Box<dyn Stream>;

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

/// One TDS packet, header included, exactly as it came off the wire.
#[derive(Debug, Clone)]
pub struct Packet {
    pub header: PacketHeader,
    /// Header and payload; the header bytes can be rewritten in place.
    pub bytes: BytesMut,
}

impl Packet {
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

/// Reads whole packets. Cancel-safe: bytes read by a future that is dropped
/// stay in the buffer for the next call, so it can sit in a `select!`.
pub struct PacketReader<R> {
    inner: R,
    buf: BytesMut,
    max_packet: usize,
}

impl<R: AsyncRead + Unpin> PacketReader<R> {
    pub fn new(inner: R) -> Self {
        PacketReader {
            inner,
            buf: BytesMut::with_capacity(8 * 1024),
            max_packet: MAX_PACKET_SIZE,
        }
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
                return Ok(packet);
            }
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

    /// Check, then parse, then advance: a packet leaves the buffer only
    /// once all of it has arrived.
    fn split_packet(&mut self) -> Result<Option<Packet>, ReadError> {
        if self.buf.len() < HEADER_LEN {
            return Ok(None);
        }
        let header = PacketHeader::decode(&self.buf[..HEADER_LEN], self.max_packet)?;
        let len = header.length as usize;
        if self.buf.len() < len {
            self.buf.reserve(len - self.buf.len());
            return Ok(None);
        }
        let bytes = self.buf.split_to(len);
        Ok(Some(Packet { header, bytes }))
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
/// that fits goes as is, a bigger one is cut into several, only the last of
/// which keeps the EOM bit. Reset bits stay on the first piece.
pub async fn write_packet_resized<W: AsyncWrite + Unpin>(
    w: &mut W,
    packet: &Packet,
    packet_size: usize,
) -> io::Result<()> {
    if packet.bytes.len() <= packet_size {
        return w.write_all(&packet.bytes).await;
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
        w.write_all(&header.encode()).await?;
        w.write_all(&payload[..n]).await?;
        payload.advance(n);
        first = false;
    }
    Ok(())
}
