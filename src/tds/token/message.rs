//! ERROR and INFO [MS-TDS 2.2.7.10, 2.2.7.13]: a server message. Both tokens
//! share one layout; the token type says whether it is an error.

use super::{fit_utf16, put_u16_token, TokenType};
use crate::tds::error::DecodeError;
use crate::tds::read::{put_b_varchar, put_us_varchar, Reader};

/// Longest MsgText written, in UTF-16 code units. SQL Server messages are at
/// most 2047 characters; this bound keeps the token under 65535 bytes.
pub const MAX_MESSAGE_UNITS: usize = 16_000;

/// An ERROR or INFO message.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ServerMessage {
    pub number: u32,
    pub state: u8,
    /// Severity: 10 or less is informational, 11 and up is an error,
    /// 20 and up closes the connection.
    pub class: u8,
    pub message: String,
    pub server: String,
    pub procedure: String,
    pub line: u32,
}

impl ServerMessage {
    /// Appends an ERROR token. Text longer than the format allows is cut at a
    /// character boundary: MsgText at [`MAX_MESSAGE_UNITS`], names at 255.
    pub fn encode_error(&self, out: &mut Vec<u8>) {
        self.encode(TokenType::ERROR, out);
    }

    /// Appends an INFO token, cut like [`ServerMessage::encode_error`].
    pub fn encode_info(&self, out: &mut Vec<u8>) {
        self.encode(TokenType::INFO, out);
    }

    fn encode(&self, token_type: TokenType, out: &mut Vec<u8>) {
        put_u16_token(out, token_type, |b| {
            b.extend_from_slice(&self.number.to_le_bytes());
            b.push(self.state);
            b.push(self.class);
            put_us_varchar(b, fit_utf16(&self.message, MAX_MESSAGE_UNITS));
            put_b_varchar(b, fit_utf16(&self.server, 255));
            put_b_varchar(b, fit_utf16(&self.procedure, 255));
            b.extend_from_slice(&self.line.to_le_bytes());
        });
    }

    /// Decodes the body after the token type and USHORT length. Text is
    /// decoded lossily: a message may quote user data with unpaired
    /// surrogates, and that must not make the response undecodable.
    pub fn decode(body: &[u8]) -> Result<ServerMessage, DecodeError> {
        let mut r = Reader::new(body, "ERROR/INFO");
        let number = r.u32_le()?;
        let state = r.u8()?;
        let class = r.u8()?;
        let units = r.u16_le()? as usize;
        let message = utf16_lossy(r.take(units * 2)?);
        let units = r.u8()? as usize;
        let server = utf16_lossy(r.take(units * 2)?);
        let units = r.u8()? as usize;
        let procedure = utf16_lossy(r.take(units * 2)?);
        let line = r.u32_le()?;
        Ok(ServerMessage {
            number,
            state,
            class,
            message,
            server,
            procedure,
            line,
        })
    }
}

fn utf16_lossy(bytes: &[u8]) -> String {
    let units = bytes
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]));
    char::decode_utf16(units)
        .map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tds::read::put_utf16;

    /// The first INFO of the login response example [MS-TDS 4.4].
    fn spec_info_5701() -> Vec<u8> {
        let mut t = vec![
            0xAB, 0x58, 0x00, 0x45, 0x16, 0x00, 0x00, 0x02, 0x00, 0x25, 0x00,
        ];
        put_utf16(&mut t, "Changed database context to 'master'.");
        t.extend_from_slice(&[0x00, 0x00, 0x00, 0x00, 0x00, 0x00]);
        t
    }

    #[test]
    fn decodes_the_spec_example() {
        let t = spec_info_5701();
        assert_eq!(t.len(), 3 + 0x58);
        let m = ServerMessage::decode(&t[3..]).unwrap();
        assert_eq!(m.number, 5701);
        assert_eq!(m.state, 2);
        assert_eq!(m.class, 0);
        assert_eq!(m.message, "Changed database context to 'master'.");
        assert_eq!(m.server, "");
        assert_eq!(m.procedure, "");
        assert_eq!(m.line, 0);
        let mut out = Vec::new();
        m.encode_info(&mut out);
        assert_eq!(out, t);
    }

    fn sample() -> ServerMessage {
        ServerMessage {
            number: 18456,
            state: 1,
            class: 14,
            message: "Login failed for user 'sa'.".into(),
            server: "sluice".into(),
            procedure: "sp_who".into(),
            line: 42,
        }
    }

    #[test]
    fn round_trip_error_and_info() {
        let m = sample();
        let mut err = Vec::new();
        m.encode_error(&mut err);
        assert_eq!(err[0], TokenType::ERROR.0);
        assert_eq!(u16::from_le_bytes([err[1], err[2]]) as usize, err.len() - 3);
        assert_eq!(ServerMessage::decode(&err[3..]).unwrap(), m);
        let mut info = Vec::new();
        m.encode_info(&mut info);
        assert_eq!(info[0], TokenType::INFO.0);
        assert_eq!(&info[1..], &err[1..]);
    }

    #[test]
    fn oversized_text_is_cut_to_a_valid_token() {
        let m = ServerMessage {
            message: "é😀".repeat(40_000),
            server: "s".repeat(1000),
            ..sample()
        };
        let mut out = Vec::new();
        m.encode_error(&mut out);
        assert_eq!(u16::from_le_bytes([out[1], out[2]]) as usize, out.len() - 3);
        let back = ServerMessage::decode(&out[3..]).unwrap();
        assert!(back.message.encode_utf16().count() <= MAX_MESSAGE_UNITS);
        assert!(!back.message.contains(char::REPLACEMENT_CHARACTER));
        assert_eq!(back.server, "s".repeat(255));
        assert_eq!(back.line, 42);
    }

    #[test]
    fn unpaired_surrogate_is_replaced_not_rejected() {
        let mut t = spec_info_5701();
        t[11] = 0x00;
        t[12] = 0xD8; // first character becomes a lone high surrogate
        let m = ServerMessage::decode(&t[3..]).unwrap();
        assert!(m.message.starts_with(char::REPLACEMENT_CHARACTER));
    }

    #[test]
    fn short_body_is_an_error() {
        let t = spec_info_5701();
        for cut in 0..t.len() - 3 {
            assert!(
                ServerMessage::decode(&t[3..3 + cut]).is_err(),
                "cut at {cut}"
            );
        }
    }
}
