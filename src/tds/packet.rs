//! The TDS packet header [MS-TDS 2.2.3.1] and splitting a message into packets.

use super::error::DecodeError;
use super::read::Reader;

/// Length of the packet header that precedes every TDS packet.
pub const HEADER_LEN: usize = 8;
/// Largest packet size a LOGIN7 may negotiate [MS-TDS 2.2.6.4].
pub const MAX_PACKET_SIZE: usize = 32767;
/// Smallest packet size a LOGIN7 may negotiate.
pub const MIN_PACKET_SIZE: usize = 512;
/// Packet size used before login has negotiated one [MS-TDS 2.2.6.4].
pub const DEFAULT_PACKET_SIZE: usize = 4096;

/// The message type carried in byte 0 of the header [MS-TDS 2.2.3.1.1].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PacketType(pub u8);

impl PacketType {
    pub const SQL_BATCH: PacketType = PacketType(0x01);
    pub const PRE_TDS7_LOGIN: PacketType = PacketType(0x02);
    pub const RPC: PacketType = PacketType(0x03);
    pub const TABULAR_RESULT: PacketType = PacketType(0x04);
    pub const ATTENTION: PacketType = PacketType(0x06);
    pub const BULK_LOAD: PacketType = PacketType(0x07);
    pub const FED_AUTH_TOKEN: PacketType = PacketType(0x08);
    pub const TRANSACTION_MANAGER: PacketType = PacketType(0x0E);
    pub const LOGIN7: PacketType = PacketType(0x10);
    pub const SSPI: PacketType = PacketType(0x11);
    pub const PRELOGIN: PacketType = PacketType(0x12);

    /// Requests a logged-in client may send outside of a response.
    pub fn is_request(self) -> bool {
        matches!(
            self,
            PacketType::SQL_BATCH
                | PacketType::RPC
                | PacketType::BULK_LOAD
                | PacketType::TRANSACTION_MANAGER
        )
    }
}

/// The status byte [MS-TDS 2.2.3.1.2]. These are independent bits: a client
/// sends EOM | RESETCONNECTION (0x09) on a one-packet request after a pool
/// reuse. Bits the spec leaves reserved are kept as they came
/// (`from_bits_retain`), never dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Status(pub u8);

bitflags::bitflags! {
    impl Status: u8 {
        /// End of message: the last packet of a message.
        const EOM = 0x01;
        /// The sender asks the receiver to ignore this message (client to server only).
        const IGNORE = 0x02;
        /// Reset the connection's session state before running the request.
        const RESET_CONNECTION = 0x08;
        /// Like RESET_CONNECTION but keep the transaction state.
        const RESET_CONNECTION_SKIP_TRAN = 0x10;
        // Every other bit is an open flag too.
        const _ = !0;
    }
}

impl Status {
    /// No bit set: a packet before the last of its message.
    pub const NORMAL: Status = Status::empty();

    /// This status with the bits of `other` added.
    pub fn with(self, other: Status) -> Status {
        self.union(other)
    }

    /// This status with the bits of `other` cleared.
    pub fn without(self, other: Status) -> Status {
        self.difference(other)
    }

    pub fn is_eom(self) -> bool {
        self.contains(Status::EOM)
    }

    /// Either of the two reset bits.
    pub fn resets_connection(self) -> bool {
        self.intersects(Status::RESET_CONNECTION | Status::RESET_CONNECTION_SKIP_TRAN)
    }
}

/// One packet header. `length` includes the header itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketHeader {
    pub ty: PacketType,
    pub status: Status,
    pub length: u16,
    pub spid: u16,
    pub packet_id: u8,
    pub window: u8,
}

impl PacketHeader {
    pub fn new(ty: PacketType, status: Status, payload_len: usize) -> Self {
        PacketHeader {
            ty,
            status,
            length: (payload_len + HEADER_LEN) as u16,
            spid: 0,
            packet_id: 1,
            window: 0,
        }
    }

    /// Decodes and validates a header: the length must cover the header and
    /// stay within `max_len` (the negotiated packet size, or the protocol maximum).
    pub fn decode(bytes: &[u8], max_len: usize) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes, "packet header");
        let ty = PacketType(r.u8()?);
        let status = Status::from_bits_retain(r.u8()?);
        let length = r.u16_be()?;
        let spid = r.u16_be()?;
        let packet_id = r.u8()?;
        let window = r.u8()?;
        if (length as usize) < HEADER_LEN {
            return Err(DecodeError::invalid(
                "packet header",
                format!("length {length} is shorter than the 8-byte header"),
            ));
        }
        if length as usize > max_len {
            return Err(DecodeError::invalid(
                "packet header",
                format!("length {length} exceeds the packet size limit {max_len}"),
            ));
        }
        Ok(PacketHeader {
            ty,
            status,
            length,
            spid,
            packet_id,
            window,
        })
    }

    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let len = self.length.to_be_bytes();
        let spid = self.spid.to_be_bytes();
        [
            self.ty.0,
            self.status.bits(),
            len[0],
            len[1],
            spid[0],
            spid[1],
            self.packet_id,
            self.window,
        ]
    }

    pub fn payload_len(&self) -> usize {
        self.length as usize - HEADER_LEN
    }
}

/// Appends `payload` to `out` as one message of packets no larger than
/// `packet_size`; the first packet carries `first_status` (a reset bit, say),
/// the last one EOM. An empty payload still makes one (EOM) packet.
pub fn encode_message(
    out: &mut Vec<u8>,
    ty: PacketType,
    first_status: Status,
    spid: u16,
    payload: &[u8],
    packet_size: usize,
) {
    let chunk = packet_size.clamp(MIN_PACKET_SIZE, MAX_PACKET_SIZE) - HEADER_LEN;
    let count = payload.len().div_ceil(chunk).max(1);
    for i in 0..count {
        let part = &payload[(i * chunk).min(payload.len())..((i + 1) * chunk).min(payload.len())];
        let mut status = if i == 0 { first_status } else { Status::NORMAL };
        if i + 1 == count {
            status = status.with(Status::EOM);
        }
        let mut header = PacketHeader::new(ty, status, part.len());
        header.spid = spid;
        header.packet_id = ((i + 1) % 256) as u8;
        out.extend_from_slice(&header.encode());
        out.extend_from_slice(part);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_spec_prelogin_header() {
        // MS-TDS 4.1 PRELOGIN client request: 12 01 00 2F 00 00 01 00
        let h = PacketHeader::decode(
            &[0x12, 0x01, 0x00, 0x2F, 0x00, 0x00, 0x01, 0x00],
            MAX_PACKET_SIZE,
        )
        .unwrap();
        assert_eq!(h.ty, PacketType::PRELOGIN);
        assert!(h.status.is_eom());
        assert_eq!(h.length, 0x2F);
        assert_eq!(h.payload_len(), 0x27);
        assert_eq!(h.encode(), [0x12, 0x01, 0x00, 0x2F, 0x00, 0x00, 0x01, 0x00]);
    }

    #[test]
    fn status_bits_combine() {
        let s = Status(0x09);
        assert!(s.is_eom());
        assert!(s.contains(Status::RESET_CONNECTION));
        assert!(s.resets_connection());
        assert_eq!(s.without(Status::RESET_CONNECTION), Status::EOM);
    }

    #[test]
    fn status_is_an_open_set_of_flags() {
        // EOM | RESETCONNECTION as a pooled client sends it, through the header.
        let h = PacketHeader::decode(&[1, 0x09, 0, 8, 0, 0, 1, 0], 4096).unwrap();
        assert_eq!(h.status, Status::EOM | Status::RESET_CONNECTION);
        assert_eq!(h.encode()[1], 0x09);
        // Reserved bits survive decode, encode and the flag operations.
        let h = PacketHeader::decode(&[1, 0xE5, 0, 8, 0, 0, 1, 0], 4096).unwrap();
        assert_eq!(h.status.bits(), 0xE5);
        assert_eq!(h.encode()[1], 0xE5);
        assert_eq!(h.status.without(Status::EOM).bits(), 0xE4);
        assert_eq!(h.status.with(Status::RESET_CONNECTION).bits(), 0xED);
        assert!(!h.status.resets_connection());
        assert!(Status::RESET_CONNECTION_SKIP_TRAN.resets_connection());
        assert!(!Status::NORMAL.resets_connection() && !Status::NORMAL.is_eom());
        assert_eq!(Status::from_bits(0xFF), Some(Status(0xFF)));
    }

    #[test]
    fn rejects_bad_lengths() {
        assert!(PacketHeader::decode(&[1, 1, 0, 4, 0, 0, 1, 0], 4096).is_err());
        assert!(PacketHeader::decode(&[1, 1, 0x10, 1, 0, 0, 1, 0], 4096).is_err());
        assert!(PacketHeader::decode(&[1, 1, 0], 4096).is_err());
    }

    #[test]
    fn splits_a_message_into_packets() {
        let payload = vec![7u8; 1000];
        let mut out = Vec::new();
        encode_message(
            &mut out,
            PacketType::SQL_BATCH,
            Status::RESET_CONNECTION,
            3,
            &payload,
            512,
        );
        // 504 payload bytes per packet: 504 + 496.
        assert_eq!(out.len(), 1000 + 2 * HEADER_LEN);
        let first = PacketHeader::decode(&out[..8], 512).unwrap();
        assert_eq!(first.status, Status::RESET_CONNECTION);
        assert_eq!(first.length, 512);
        let second = PacketHeader::decode(&out[512..520], 512).unwrap();
        assert_eq!(second.status, Status::EOM);
        assert_eq!(second.packet_id, 2);
        assert_eq!(second.spid, 3);
    }
}
