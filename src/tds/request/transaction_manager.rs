//! TransactionManagerRequest [MS-TDS 2.2.6.9]: begin, commit, roll back
//! or save a transaction, and the DTC requests, as drivers send them.

use super::all_headers::{split_all_headers, AllHeaders};
use crate::tds::error::DecodeError;
use crate::tds::read::{utf16_to_string, Reader};

/// RequestType values [MS-TDS 2.2.6.9].
pub mod tm_request_type {
    pub const TM_GET_DTC_ADDRESS: u16 = 0;
    pub const TM_PROPAGATE_XACT: u16 = 1;
    pub const TM_BEGIN_XACT: u16 = 5;
    pub const TM_PROMOTE_XACT: u16 = 6;
    pub const TM_COMMIT_XACT: u16 = 7;
    pub const TM_ROLLBACK_XACT: u16 = 8;
    pub const TM_SAVE_XACT: u16 = 9;
}

/// ISOLATION_LEVEL values of TM_BEGIN_XACT [MS-TDS 2.2.6.9].
pub mod isolation_level {
    pub const NO_CHANGE: u8 = 0x00;
    pub const READ_UNCOMMITTED: u8 = 0x01;
    pub const READ_COMMITTED: u8 = 0x02;
    pub const REPEATABLE_READ: u8 = 0x03;
    pub const SERIALIZABLE: u8 = 0x04;
    pub const SNAPSHOT: u8 = 0x05;
}

/// XACT_FLAGS fBeginXact: begin a new transaction after the commit/rollback.
const F_BEGIN_XACT: u8 = 0x01;

/// The isolation level and (possibly empty) name of a transaction to begin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BeginXact {
    /// One of [`isolation_level`]'s values, as sent.
    pub isolation_level: u8,
    pub name: String,
}

/// RequestPayload of a TransactionManagerRequest [MS-TDS 2.2.6.9].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TmRequest {
    GetDtcAddress,
    /// TM_PROPAGATE_XACT: a DTC transaction cookie.
    PropagateXact {
        cookie: Vec<u8>,
    },
    BeginXact(BeginXact),
    PromoteXact,
    /// `begin` is set when fBeginXact asks for a new transaction afterwards.
    CommitXact {
        name: String,
        begin: Option<BeginXact>,
    },
    RollbackXact {
        name: String,
        begin: Option<BeginXact>,
    },
    SaveXact {
        name: String,
    },
}

/// A TransactionManagerRequest (packet type 0x0E) [MS-TDS 2.2.6.9].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionManagerRequest {
    pub headers: AllHeaders,
    pub request: TmRequest,
}

impl TransactionManagerRequest {
    /// Decodes ALL_HEADERS, RequestType and its payload. Transaction names are
    /// B_VARBYTE (a byte count, then UTF-16LE), as Microsoft.Data.SqlClient and
    /// tedious send them. Bytes after the payload are ignored.
    pub fn decode(payload: &[u8]) -> Result<Self, DecodeError> {
        let (headers, body) = split_all_headers(payload)?;
        let mut r = Reader::new(body, "TransactionManagerRequest");
        let request = match r.u16_le()? {
            tm_request_type::TM_GET_DTC_ADDRESS => TmRequest::GetDtcAddress,
            tm_request_type::TM_PROPAGATE_XACT => TmRequest::PropagateXact {
                cookie: us_varbyte(&mut r)?.to_vec(),
            },
            tm_request_type::TM_BEGIN_XACT => TmRequest::BeginXact(begin_xact(&mut r)?),
            tm_request_type::TM_PROMOTE_XACT => TmRequest::PromoteXact,
            tm_request_type::TM_COMMIT_XACT => {
                let (name, begin) = end_xact(&mut r)?;
                TmRequest::CommitXact { name, begin }
            }
            tm_request_type::TM_ROLLBACK_XACT => {
                let (name, begin) = end_xact(&mut r)?;
                TmRequest::RollbackXact { name, begin }
            }
            tm_request_type::TM_SAVE_XACT => TmRequest::SaveXact {
                name: xact_name(&mut r)?,
            },
            other => {
                return Err(DecodeError::invalid(
                    "TransactionManagerRequest",
                    format!("unknown RequestType {other}"),
                ))
            }
        };
        Ok(TransactionManagerRequest { headers, request })
    }

    /// The RequestType this request was sent with.
    pub fn request_type(&self) -> u16 {
        match self.request {
            TmRequest::GetDtcAddress => tm_request_type::TM_GET_DTC_ADDRESS,
            TmRequest::PropagateXact { .. } => tm_request_type::TM_PROPAGATE_XACT,
            TmRequest::BeginXact(_) => tm_request_type::TM_BEGIN_XACT,
            TmRequest::PromoteXact => tm_request_type::TM_PROMOTE_XACT,
            TmRequest::CommitXact { .. } => tm_request_type::TM_COMMIT_XACT,
            TmRequest::RollbackXact { .. } => tm_request_type::TM_ROLLBACK_XACT,
            TmRequest::SaveXact { .. } => tm_request_type::TM_SAVE_XACT,
        }
    }
}

fn us_varbyte<'a>(r: &mut Reader<'a>) -> Result<&'a [u8], DecodeError> {
    let len = r.u16_le()? as usize;
    r.take(len)
}

/// XACT_NAME / BEGIN_XACT_NAME: B_VARBYTE holding UTF-16LE.
fn xact_name(r: &mut Reader<'_>) -> Result<String, DecodeError> {
    let len = r.u8()? as usize;
    utf16_to_string(r.take(len)?, "TransactionManagerRequest")
}

fn begin_xact(r: &mut Reader<'_>) -> Result<BeginXact, DecodeError> {
    let isolation_level = r.u8()?;
    let name = xact_name(r)?;
    Ok(BeginXact {
        isolation_level,
        name,
    })
}

/// TM_COMMIT_XACT / TM_ROLLBACK_XACT: XACT_NAME XACT_FLAGS, then the new
/// transaction's ISOLATION_LEVEL and BEGIN_XACT_NAME when fBeginXact is set.
fn end_xact(r: &mut Reader<'_>) -> Result<(String, Option<BeginXact>), DecodeError> {
    let name = xact_name(r)?;
    let begin = if r.u8()? & F_BEGIN_XACT != 0 {
        Some(begin_xact(r)?)
    } else {
        None
    };
    Ok((name, begin))
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::tds::read::put_utf16;
    use crate::tds::request::tests::all_headers;

    pub(in crate::tds::request) fn tm(request_type: u16, body: &[u8]) -> Vec<u8> {
        let mut v = all_headers(0x1122_3344_5566_7788);
        v.extend_from_slice(&request_type.to_le_bytes());
        v.extend_from_slice(body);
        v
    }

    fn b_varbyte_utf16(s: &str) -> Vec<u8> {
        let mut text = Vec::new();
        put_utf16(&mut text, s);
        [vec![text.len() as u8], text].concat()
    }

    #[test]
    fn decodes_transaction_manager_requests() {
        let begin = [vec![isolation_level::SNAPSHOT], b_varbyte_utf16("tx1")].concat();
        let req = TransactionManagerRequest::decode(&tm(5, &begin)).unwrap();
        assert_eq!(
            req.headers.transaction_descriptor,
            Some(0x1122_3344_5566_7788)
        );
        assert_eq!(
            req.request,
            TmRequest::BeginXact(BeginXact {
                isolation_level: isolation_level::SNAPSHOT,
                name: "tx1".into()
            })
        );
        assert_eq!(req.request_type(), tm_request_type::TM_BEGIN_XACT);

        let commit = TransactionManagerRequest::decode(&tm(7, &[0, 0])).unwrap();
        assert_eq!(
            commit.request,
            TmRequest::CommitXact {
                name: String::new(),
                begin: None
            }
        );

        let chained = [
            vec![0, F_BEGIN_XACT, isolation_level::READ_COMMITTED],
            b_varbyte_utf16(""),
        ]
        .concat();
        let rollback = TransactionManagerRequest::decode(&tm(8, &chained)).unwrap();
        assert_eq!(
            rollback.request,
            TmRequest::RollbackXact {
                name: String::new(),
                begin: Some(BeginXact {
                    isolation_level: isolation_level::READ_COMMITTED,
                    name: String::new()
                })
            }
        );

        let save = TransactionManagerRequest::decode(&tm(9, &b_varbyte_utf16("sp1"))).unwrap();
        assert_eq!(save.request, TmRequest::SaveXact { name: "sp1".into() });
        let propagate = TransactionManagerRequest::decode(&tm(1, &[2, 0, 9, 9])).unwrap();
        assert_eq!(
            propagate.request,
            TmRequest::PropagateXact { cookie: vec![9, 9] }
        );
        let dtc = TransactionManagerRequest::decode(&tm(0, &[0, 0])).unwrap();
        assert_eq!(dtc.request_type(), tm_request_type::TM_GET_DTC_ADDRESS);
        let promote = TransactionManagerRequest::decode(&tm(6, &[])).unwrap();
        assert_eq!(promote.request, TmRequest::PromoteXact);
    }

    #[test]
    fn rejects_bad_transaction_manager_requests() {
        assert!(TransactionManagerRequest::decode(&tm(4, &[])).is_err()); // unknown type
        assert!(TransactionManagerRequest::decode(&tm(5, &[1])).is_err()); // no name
        assert!(TransactionManagerRequest::decode(&tm(7, &[0])).is_err()); // no flags
        assert!(TransactionManagerRequest::decode(&tm(9, &[3, b'a', 0, b'b'])).is_err());
        // odd
    }
}
