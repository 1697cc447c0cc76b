//! LOGINACK [MS-TDS 2.2.7.14]: the server accepted the login.

use super::{fit_utf16, put_u16_token, TokenType};
use crate::tds::error::DecodeError;
use crate::tds::read::{put_b_varchar, Reader};

/// The login acknowledgement.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LoginAck {
    /// 0 = SQL_DFLT, 1 = SQL_TSQL.
    pub interface: u8,
    /// The TDS version as the server writes it, most significant byte first
    /// on the wire: 0x74000004 is TDS 7.4, 0x72090002 is TDS 7.2.
    pub tds_version: u32,
    /// ProgName; SQL Server sends "Microsoft SQL Server" padded with NULs.
    pub prog_name: String,
    /// ProgVersion: major, minor, build number high byte, low byte.
    pub version: [u8; 4],
}

impl LoginAck {
    /// Appends the whole token. `prog_name` is cut to 255 UTF-16 code units.
    pub fn encode(&self, out: &mut Vec<u8>) {
        put_u16_token(out, TokenType::LOGINACK, |b| {
            b.push(self.interface);
            b.extend_from_slice(&self.tds_version.to_be_bytes());
            put_b_varchar(b, fit_utf16(&self.prog_name, 255));
            b.extend_from_slice(&self.version);
        });
    }

    /// Decodes the body after the token type and USHORT length. Bytes after
    /// ProgVersion are ignored: the length, not the fields, frames the token.
    pub fn decode(body: &[u8]) -> Result<LoginAck, DecodeError> {
        let mut r = Reader::new(body, "LOGINACK");
        let interface = r.u8()?;
        let tds_version = r.u32_be()?;
        let prog_name = r.b_varchar()?;
        let v = r.take(4)?;
        Ok(LoginAck {
            interface,
            tds_version,
            prog_name,
            version: [v[0], v[1], v[2], v[3]],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tds::read::put_utf16;

    /// The LOGINACK of the login response example [MS-TDS 4.4].
    fn spec_login_ack() -> Vec<u8> {
        let mut t = vec![0xAD, 0x36, 0x00, 0x01, 0x72, 0x09, 0x00, 0x02, 0x16];
        put_utf16(&mut t, "Microsoft SQL Server\0\0");
        t.extend_from_slice(&[0, 0, 0, 0]);
        t
    }

    #[test]
    fn decodes_the_spec_example() {
        let t = spec_login_ack();
        assert_eq!(t.len(), 3 + 0x36);
        let ack = LoginAck::decode(&t[3..]).unwrap();
        assert_eq!(ack.interface, 1);
        assert_eq!(ack.tds_version, 0x7209_0002);
        assert_eq!(ack.prog_name, "Microsoft SQL Server\0\0");
        assert_eq!(ack.version, [0, 0, 0, 0]);
        let mut out = Vec::new();
        ack.encode(&mut out);
        assert_eq!(out, t);
    }

    #[test]
    fn round_trip() {
        let ack = LoginAck {
            interface: 1,
            tds_version: 0x7400_0004,
            prog_name: "Sluice".into(),
            version: [16, 0, 0x10, 0x27],
        };
        let mut out = Vec::new();
        ack.encode(&mut out);
        assert_eq!(&out[..8], &[0xAD, 22, 0, 1, 0x74, 0, 0, 4]);
        assert_eq!(LoginAck::decode(&out[3..]).unwrap(), ack);
    }

    #[test]
    fn long_prog_name_is_cut_not_corrupted() {
        let ack = LoginAck {
            interface: 0,
            tds_version: 0x7400_0004,
            prog_name: "😀".repeat(200),
            version: [1, 2, 3, 4],
        };
        let mut out = Vec::new();
        ack.encode(&mut out);
        let back = LoginAck::decode(&out[3..]).unwrap();
        assert_eq!(back.prog_name, "😀".repeat(127));
        assert_eq!(back.version, [1, 2, 3, 4]);
    }

    #[test]
    fn short_body_is_an_error() {
        let t = spec_login_ack();
        assert!(LoginAck::decode(&t[3..t.len() - 1]).is_err());
        assert!(LoginAck::decode(&[]).is_err());
    }
}
