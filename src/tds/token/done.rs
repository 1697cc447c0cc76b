//! DONE, DONEPROC and DONEINPROC [MS-TDS 2.2.7.6, 2.2.7.8, 2.2.7.7]: the end
//! of a statement, of a stored procedure, or of a statement inside one.

use super::TokenType;
use crate::tds::error::DecodeError;
use crate::tds::read::Reader;

/// The Status field of a DONE token. These are independent bits: an error
/// inside a transaction with more results to come is MORE | ERROR | INXACT.
/// Bits the spec does not name are kept as they came (`from_bits_retain`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct DoneStatus(pub u16);

bitflags::bitflags! {
    impl DoneStatus: u16 {
        /// DONE_MORE: more results follow in this response.
        const MORE = 0x0001;
        /// DONE_ERROR: the statement failed.
        const ERROR = 0x0002;
        /// DONE_INXACT: a transaction is in progress.
        const INXACT = 0x0004;
        /// DONE_COUNT: `row_count` is valid.
        const COUNT = 0x0010;
        /// DONE_ATTN: acknowledges an attention (cancel) request.
        const ATTN = 0x0020;
        /// DONE_SRVERROR: a severe server error; the results so far are void.
        const SRVERROR = 0x0100;
        // Every other bit is an open flag too.
        const _ = !0;
    }
}

impl DoneStatus {
    /// DONE_FINAL: the last DONE of the response (no bit set).
    pub const FINAL: DoneStatus = DoneStatus::empty();

    /// This status with the bits of `other` added.
    pub fn with(self, other: DoneStatus) -> DoneStatus {
        self.union(other)
    }
}

/// Which of the three DONE tokens this is; they share one layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DoneKind {
    /// DONE [2.2.7.6]: end of a SQL statement or batch.
    Done,
    /// DONEPROC [2.2.7.8]: end of a stored procedure.
    DoneProc,
    /// DONEINPROC [2.2.7.7]: end of a statement inside a stored procedure.
    DoneInProc,
}

impl DoneKind {
    pub fn token_type(self) -> TokenType {
        match self {
            DoneKind::Done => TokenType::DONE,
            DoneKind::DoneProc => TokenType::DONEPROC,
            DoneKind::DoneInProc => TokenType::DONEINPROC,
        }
    }

    pub fn from_token_type(token_type: TokenType) -> Option<DoneKind> {
        match token_type {
            TokenType::DONE => Some(DoneKind::Done),
            TokenType::DONEPROC => Some(DoneKind::DoneProc),
            TokenType::DONEINPROC => Some(DoneKind::DoneInProc),
            _ => None,
        }
    }
}

/// A DONE-family token with the TDS 7.2+ eight-byte row count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Done {
    pub kind: DoneKind,
    pub status: DoneStatus,
    /// The token of the statement that completed (e.g. 0xC1 for SELECT).
    pub cur_cmd: u16,
    /// Rows affected; meaningful only with [`DoneStatus::COUNT`].
    pub row_count: u64,
}

impl Done {
    /// Bytes after the token type: Status, CurCmd, DoneRowCount.
    pub const BODY_LEN: usize = 12;

    /// Appends the whole token, token type included.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.push(self.kind.token_type().0);
        out.extend_from_slice(&self.status.bits().to_le_bytes());
        out.extend_from_slice(&self.cur_cmd.to_le_bytes());
        out.extend_from_slice(&self.row_count.to_le_bytes());
    }

    /// Decodes the [`Done::BODY_LEN`] bytes that follow the token type.
    pub fn decode(kind: DoneKind, body: &[u8]) -> Result<Done, DecodeError> {
        let mut r = Reader::new(body, "DONE");
        let done = Done {
            kind,
            status: DoneStatus::from_bits_retain(r.u16_le()?),
            cur_cmd: r.u16_le()?,
            row_count: r.u64_le()?,
        };
        if r.remaining() != 0 {
            return Err(DecodeError::invalid("DONE", "body longer than 12 bytes"));
        }
        Ok(done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_select_done_bytes() {
        // The DONE closing the SQL batch response example [MS-TDS 4.7]:
        // DONE_COUNT, CurCmd 0xC1 (SELECT), one row.
        let bytes = [0xFD, 0x10, 0x00, 0xC1, 0x00, 1, 0, 0, 0, 0, 0, 0, 0];
        let done = Done::decode(DoneKind::Done, &bytes[1..]).unwrap();
        assert_eq!(
            done,
            Done {
                kind: DoneKind::Done,
                status: DoneStatus::COUNT,
                cur_cmd: 0xC1,
                row_count: 1,
            }
        );
        let mut out = Vec::new();
        done.encode(&mut out);
        assert_eq!(out, bytes);
    }

    #[test]
    fn round_trip_every_kind() {
        for kind in [DoneKind::Done, DoneKind::DoneProc, DoneKind::DoneInProc] {
            let done = Done {
                kind,
                status: DoneStatus::ERROR
                    .with(DoneStatus::MORE)
                    .with(DoneStatus::SRVERROR),
                cur_cmd: 0xE0,
                row_count: u64::MAX - 7,
            };
            let mut out = Vec::new();
            done.encode(&mut out);
            assert_eq!(out.len(), 1 + Done::BODY_LEN);
            let kind_back = DoneKind::from_token_type(TokenType(out[0])).unwrap();
            assert_eq!(Done::decode(kind_back, &out[1..]).unwrap(), done);
        }
    }

    #[test]
    fn status_bits_are_flags() {
        let s = DoneStatus::MORE
            .with(DoneStatus::ERROR)
            .with(DoneStatus::INXACT);
        assert_eq!(s, DoneStatus(0x0007));
        assert!(s.contains(DoneStatus::ERROR));
        assert!(s.contains(DoneStatus::MORE.with(DoneStatus::INXACT)));
        assert!(!s.contains(DoneStatus::ATTN));
        assert!(s.contains(DoneStatus::FINAL));
        assert_eq!(DoneStatus::COUNT.0 | DoneStatus::ATTN.0, 0x30);
    }

    #[test]
    fn unnamed_status_bits_are_kept() {
        // 0x0040 and 0x8000 have no name in [2.2.7.6]; they pass through.
        let bytes = [0xFD, 0x51, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        let done = Done::decode(DoneKind::Done, &bytes[1..]).unwrap();
        assert_eq!(done.status.bits(), 0x8051);
        assert!(done.status.contains(DoneStatus::MORE | DoneStatus::COUNT));
        assert!(!done.status.intersects(DoneStatus::ERROR | DoneStatus::ATTN));
        let mut out = Vec::new();
        done.encode(&mut out);
        assert_eq!(out, bytes);
        assert_eq!(DoneStatus::FINAL, DoneStatus::empty());
    }

    #[test]
    fn wrong_length_is_an_error() {
        assert!(matches!(
            Done::decode(DoneKind::Done, &[0; 8]),
            Err(DecodeError::Truncated { needed: 4, .. })
        ));
        assert!(Done::decode(DoneKind::Done, &[0; 13]).is_err());
        assert_eq!(DoneKind::from_token_type(TokenType::ROW), None);
    }
}
