//! PRELOGIN [MS-TDS 2.2.6.5]: the first message of a connection, from the
//! client (packet type 0x12) and the server's reply (packet type 0x04).
//!
//! The payload is an option table of `PL_OPTION_TOKEN PL_OFFSET PL_OPTION_LENGTH`
//! entries (offset and length are big-endian USHORTs, offsets from the start of
//! the payload) closed by a 0xFF terminator, followed by the option data.

use super::error::DecodeError;
use super::read::Reader;

const CONTEXT: &str = "PRELOGIN";

/// `PL_OPTION_TOKEN` values [MS-TDS 2.2.6.5].
pub mod token {
    pub const VERSION: u8 = 0x00;
    pub const ENCRYPTION: u8 = 0x01;
    pub const INSTOPT: u8 = 0x02;
    pub const THREADID: u8 = 0x03;
    pub const MARS: u8 = 0x04;
    pub const TRACEID: u8 = 0x05;
    pub const FEDAUTHREQUIRED: u8 = 0x06;
    pub const NONCEOPT: u8 = 0x07;
    pub const TERMINATOR: u8 = 0xFF;
}

/// `B_FENCRYPTION` values of the ENCRYPTION option [MS-TDS 2.2.6.5].
pub mod encryption {
    /// Encryption is available but off (login packet only).
    pub const OFF: u8 = 0x00;
    /// Encryption is available and on.
    pub const ON: u8 = 0x01;
    /// Encryption is not available.
    pub const NOT_SUP: u8 = 0x02;
    /// Encryption is required.
    pub const REQ: u8 = 0x03;
    /// Client certificate authentication requested; OR-ed with one of the above.
    pub const CLIENT_CERT: u8 = 0x80;
}

/// The VERSION option: `UL_VERSION US_SUBBUILD` [MS-TDS 2.2.6.5].
///
/// `version` is read big-endian, so its bytes are major, minor, then the build
/// as a big-endian USHORT (0x0F0007D0 is 15.0.2000). The sub-build is
/// little-endian: that is what Microsoft.Data.SqlClient writes ("Sub-build
/// (Little Endian)"); tiberius reads it big-endian, which only matters for
/// display since nothing negotiates on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PreLoginVersion {
    pub version: u32,
    pub sub_build: u16,
}

/// A decoded PRELOGIN payload. Each option is `None` when absent (or sent with
/// length 0); options the spec does not define are kept in `unknown`, sorted
/// by token.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PreLogin {
    pub version: Option<PreLoginVersion>,
    /// One of [`encryption`]'s values.
    pub encryption: Option<u8>,
    /// The raw INSTOPT data: a client sends the instance name followed by
    /// 0x00; a server answers one byte, 0x00 when the name matched.
    pub instance: Option<Vec<u8>>,
    /// Read big-endian, as Microsoft.Data.SqlClient and tiberius write it.
    pub thread_id: Option<u32>,
    /// `B_MARS`: 0x01 when the sender wants (client) or offers (server) MARS.
    pub mars: Option<u8>,
    /// Raw TRACEID data (TDS 7.4): `GUID_CONNID` then `ACTIVITYID`, 36 bytes.
    pub trace_id: Option<Vec<u8>>,
    pub fed_auth_required: Option<u8>,
    /// Raw NONCEOPT data, 32 bytes from a conforming sender.
    pub nonce: Option<Vec<u8>>,
    pub unknown: Vec<(u8, Vec<u8>)>,
}

impl PreLogin {
    /// Decodes a PRELOGIN payload (without the packet header). Options may come
    /// in any order; each must appear at most once and lie inside the payload,
    /// and the table must end with the terminator.
    pub fn decode(payload: &[u8]) -> Result<Self, DecodeError> {
        let mut table = Reader::new(payload, CONTEXT);
        let mut seen = [false; 256];
        let mut prelogin = PreLogin::default();
        loop {
            let token = table.u8()?;
            if token == token::TERMINATOR {
                break;
            }
            let offset = table.u16_be()? as usize;
            let length = table.u16_be()? as usize;
            if std::mem::replace(&mut seen[token as usize], true) {
                return Err(DecodeError::invalid(
                    CONTEXT,
                    format!("option 0x{token:02X} appears twice"),
                ));
            }
            prelogin.set_option(token, option_data(payload, token, offset, length)?)?;
        }
        prelogin.unknown.sort_by_key(|(token, _)| *token);
        Ok(prelogin)
    }

    /// Appends the payload, options in ascending token order. Options whose
    /// data would end past byte 65,535 cannot be addressed by a USHORT offset
    /// and are left out; a real PRELOGIN is a few dozen bytes.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let options = addressable(self.options());
        let mut offset = options.len() * 5 + 1;
        for (token, data) in &options {
            out.push(*token);
            out.extend_from_slice(&(offset as u16).to_be_bytes());
            out.extend_from_slice(&(data.len() as u16).to_be_bytes());
            offset += data.len();
        }
        out.push(token::TERMINATOR);
        for (_, data) in &options {
            out.extend_from_slice(data);
        }
    }

    fn set_option(&mut self, token: u8, data: &[u8]) -> Result<(), DecodeError> {
        match token {
            token::VERSION => self.version = fixed::<6>(token, data)?.map(version_from),
            token::ENCRYPTION => self.encryption = fixed::<1>(token, data)?.map(|b| b[0]),
            token::INSTOPT => self.instance = Some(data.to_vec()),
            token::THREADID => self.thread_id = fixed::<4>(token, data)?.map(u32::from_be_bytes),
            token::MARS => self.mars = fixed::<1>(token, data)?.map(|b| b[0]),
            token::TRACEID => self.trace_id = Some(data.to_vec()),
            token::FEDAUTHREQUIRED => {
                self.fed_auth_required = fixed::<1>(token, data)?.map(|b| b[0])
            }
            token::NONCEOPT => self.nonce = Some(data.to_vec()),
            _ => self.unknown.push((token, data.to_vec())),
        }
        Ok(())
    }

    /// Every present option as (token, data), sorted by token.
    fn options(&self) -> Vec<(u8, Vec<u8>)> {
        let mut options: Vec<(u8, Vec<u8>)> = Vec::new();
        if let Some(v) = self.version {
            let mut data = v.version.to_be_bytes().to_vec();
            data.extend_from_slice(&v.sub_build.to_le_bytes());
            options.push((token::VERSION, data));
        }
        let bytes = [
            (token::ENCRYPTION, self.encryption.map(|b| vec![b])),
            (token::INSTOPT, self.instance.clone()),
            (
                token::THREADID,
                self.thread_id.map(|t| t.to_be_bytes().to_vec()),
            ),
            (token::MARS, self.mars.map(|b| vec![b])),
            (token::TRACEID, self.trace_id.clone()),
            (
                token::FEDAUTHREQUIRED,
                self.fed_auth_required.map(|b| vec![b]),
            ),
            (token::NONCEOPT, self.nonce.clone()),
        ];
        options.extend(bytes.into_iter().filter_map(|(t, d)| d.map(|d| (t, d))));
        options.extend(self.unknown.iter().cloned());
        options.sort_by_key(|(token, _)| *token);
        options
    }
}

/// The data of one option, checked to lie inside the payload.
fn option_data(
    payload: &[u8],
    token: u8,
    offset: usize,
    length: usize,
) -> Result<&[u8], DecodeError> {
    payload.get(offset..offset + length).ok_or_else(|| {
        DecodeError::invalid(
            CONTEXT,
            format!(
                "option 0x{token:02X} at offset {offset} length {length} ends past the {}-byte payload",
                payload.len()
            ),
        )
    })
}

/// A fixed-size option value; length 0 means the option carries no value.
fn fixed<const N: usize>(token: u8, data: &[u8]) -> Result<Option<[u8; N]>, DecodeError> {
    if data.is_empty() {
        return Ok(None);
    }
    <[u8; N]>::try_from(data).map(Some).map_err(|_| {
        DecodeError::invalid(
            CONTEXT,
            format!(
                "option 0x{token:02X} has length {}, expected {N}",
                data.len()
            ),
        )
    })
}

fn version_from(b: [u8; 6]) -> PreLoginVersion {
    PreLoginVersion {
        version: u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
        sub_build: u16::from_le_bytes([b[4], b[5]]),
    }
}

/// Keeps the options whose data still ends within a USHORT offset.
fn addressable(options: Vec<(u8, Vec<u8>)>) -> Vec<(u8, Vec<u8>)> {
    let mut end = options.len() * 5 + 1;
    let mut kept = Vec::with_capacity(options.len());
    for (token, data) in options {
        if end + data.len() <= u16::MAX as usize {
            end += data.len();
            kept.push((token, data));
        }
    }
    kept
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::tds::packet::{PacketHeader, PacketType, MAX_PACKET_SIZE};
    use crate::testing::XorShift;

    /// MS-TDS 4.1 Pre-Login Request, packet header included.
    const SPEC_4_1: [u8; 47] = [
        0x12, 0x01, 0x00, 0x2F, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x1A, 0x00, 0x06, 0x01, 0x00,
        0x20, 0x00, 0x01, 0x02, 0x00, 0x21, 0x00, 0x01, 0x03, 0x00, 0x22, 0x00, 0x04, 0x04, 0x00,
        0x26, 0x00, 0x01, 0xFF, 0x09, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0xB8, 0x0D, 0x00,
        0x00, 0x01,
    ];

    fn spec_payload() -> &'static [u8] {
        &SPEC_4_1[8..]
    }

    #[test]
    fn decodes_spec_4_1_client_request() {
        let header = PacketHeader::decode(&SPEC_4_1[..8], MAX_PACKET_SIZE).unwrap();
        assert_eq!(header.ty, PacketType::PRELOGIN);
        assert_eq!(header.payload_len(), spec_payload().len());

        let p = PreLogin::decode(spec_payload()).unwrap();
        let version = p.version.unwrap();
        assert_eq!(
            version.version >> 24,
            9,
            "major version 9 (SQL Server 2005)"
        );
        assert_eq!(version.sub_build, 0);
        assert_eq!(p.encryption, Some(encryption::ON));
        assert_eq!(p.instance.as_deref(), Some(&[0x00][..]));
        assert_eq!(p.thread_id, Some(0xB80D_0000));
        assert_eq!(p.mars, Some(1));
        assert_eq!(p.trace_id, None);
        assert!(p.unknown.is_empty());
    }

    #[test]
    fn re_encodes_spec_4_1_byte_for_byte() {
        let p = PreLogin::decode(spec_payload()).unwrap();
        let mut out = Vec::new();
        p.encode(&mut out);
        assert_eq!(out, spec_payload());
    }

    #[test]
    fn version_build_is_big_endian_and_sub_build_little_endian() {
        let p = PreLogin {
            version: Some(PreLoginVersion {
                version: 0x0F00_07D0,
                sub_build: 0x0102,
            }),
            ..PreLogin::default()
        };
        let mut out = Vec::new();
        p.encode(&mut out);
        assert_eq!(&out[6..], &[0x0F, 0x00, 0x07, 0xD0, 0x02, 0x01]);
    }

    #[test]
    fn round_trips_every_option() {
        let p = PreLogin {
            version: Some(PreLoginVersion {
                version: 0x1000_0FA0,
                sub_build: 7,
            }),
            encryption: Some(encryption::REQ | encryption::CLIENT_CERT),
            instance: Some(b"MSSQLServer\0".to_vec()),
            thread_id: Some(4242),
            mars: Some(0),
            trace_id: Some((0..36).collect()),
            fed_auth_required: Some(1),
            nonce: Some(vec![0xAB; 32]),
            unknown: vec![(0x08, vec![1, 2]), (0x20, vec![])],
        };
        let mut out = Vec::new();
        p.encode(&mut out);
        assert_eq!(PreLogin::decode(&out).unwrap(), p);
        let tokens: Vec<u8> = out.chunks(5).take(10).map(|c| c[0]).collect();
        assert_eq!(tokens, [0, 1, 2, 3, 4, 5, 6, 7, 8, 0x20]);
    }

    #[test]
    fn accepts_options_in_any_order() {
        // MARS first, then VERSION.
        let payload = [
            0x04, 0x00, 0x0B, 0x00, 0x01, 0x00, 0x00, 0x0C, 0x00, 0x06, 0xFF, 0x01, 0x0E, 0x00,
            0x00, 0x00, 0x00, 0x00,
        ];
        let p = PreLogin::decode(&payload).unwrap();
        assert_eq!(p.mars, Some(1));
        assert_eq!(p.version.unwrap().version, 0x0E00_0000);
    }

    #[test]
    fn zero_length_options_are_absent() {
        // A server's reply may carry THREADID with length 0.
        let payload = [0x03, 0x00, 0x06, 0x00, 0x00, 0xFF];
        assert_eq!(PreLogin::decode(&payload).unwrap().thread_id, None);
    }

    #[test]
    fn rejects_malformed_tables() {
        let cases: [&[u8]; 6] = [
            &[],                                         // no terminator
            &[0x00, 0x00, 0x06, 0x00, 0x06],             // no terminator after an option
            &[0x01, 0x00, 0x06, 0x00, 0x01, 0xFF],       // data past the end
            &[0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF],       // offset overflow
            &[0x01, 0x00, 0x06, 0x00, 0x02, 0xFF, 1, 2], // ENCRYPTION of length 2
            &[
                0x01, 0x00, 0x0B, 0x00, 0x01, 0x01, 0x00, 0x0B, 0x00, 0x01, 0xFF, 0x00,
            ], // twice
        ];
        for case in cases {
            assert!(PreLogin::decode(case).is_err(), "{case:02X?}");
        }
    }

    #[test]
    fn never_panics_on_random_or_mutated_input() {
        let mut rng = XorShift::new(0x5eed_0001);
        for _ in 0..10_000 {
            let _ = PreLogin::decode(&rng.bytes(64));
        }
        for input in rng.mutations(spec_payload(), 20_000) {
            if let Ok(p) = PreLogin::decode(&input) {
                let mut out = Vec::new();
                p.encode(&mut out);
                assert_eq!(PreLogin::decode(&out).unwrap(), p);
            }
        }
    }
}
