//! ENVCHANGE [MS-TDS 2.2.7.9]: the server reports a change of session state
//! (database, language, packet size, collation, transaction) or a routing
//! redirect. Each type has its own layout of NewValue and OldValue.

use super::{fit_utf16, put_u16_token, TokenType};
use crate::tds::error::DecodeError;
use crate::tds::read::{put_b_varchar, put_us_varchar, Reader};

const DATABASE: u8 = 1;
const LANGUAGE: u8 = 2;
const CHARACTER_SET: u8 = 3;
const PACKET_SIZE: u8 = 4;
const UNICODE_SORTING_LOCAL_ID: u8 = 5;
const UNICODE_SORTING_COMPARISON_FLAGS: u8 = 6;
const SQL_COLLATION: u8 = 7;
const BEGIN_TRANSACTION: u8 = 8;
const COMMIT_TRANSACTION: u8 = 9;
const ROLLBACK_TRANSACTION: u8 = 10;
const ENLIST_DTC_TRANSACTION: u8 = 11;
const DEFECT_TRANSACTION: u8 = 12;
const REAL_TIME_LOG_SHIPPING: u8 = 13;
const PROMOTE_TRANSACTION: u8 = 15;
const TRANSACTION_MANAGER_ADDRESS: u8 = 16;
const TRANSACTION_ENDED: u8 = 17;
const RESET_CONNECTION_ACK: u8 = 18;
const USER_INSTANCE_STARTED: u8 = 19;
const ROUTING: u8 = 20;

/// Longest routing server name written, in UTF-16 code units, so that the
/// routing value and the token stay within their USHORT lengths.
const MAX_ROUTING_SERVER_UNITS: usize = 32_000;

/// One environment change. Transaction descriptors are the 8-byte values the
/// client echoes in the ALL_HEADERS transaction descriptor [2.2.5.3.2].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum EnvChange {
    /// Type 1: B_VARCHAR new, B_VARCHAR old.
    Database { new: String, old: String },
    /// Type 2: B_VARCHAR new, B_VARCHAR old.
    Language { new: String, old: String },
    /// Type 3: B_VARCHAR new, B_VARCHAR old.
    CharacterSet { new: String, old: String },
    /// Type 4: the packet size as decimal text, B_VARCHAR new and old.
    PacketSize { new: String, old: String },
    /// Type 7: B_VARBYTE new and old, 5-byte collations (old may be empty).
    SqlCollation { new: Vec<u8>, old: Vec<u8> },
    /// Type 8: B_VARBYTE new (the descriptor), 0x00 old.
    BeginTransaction { descriptor: u64 },
    /// Type 9: 0x00 new, B_VARBYTE old (the descriptor that ended).
    CommitTransaction { descriptor: u64 },
    /// Type 10: 0x00 new, B_VARBYTE old.
    RollbackTransaction { descriptor: u64 },
    /// Type 11: enlisted in a DTC transaction.
    EnlistDtc,
    /// Type 12: defected from a DTC transaction.
    DefectTransaction,
    /// Type 17: a batch ended a transaction it did not start; B_VARBYTE old.
    TransactionEnded { descriptor: u64 },
    /// Type 18: acknowledges RESETCONNECTION; 0x00 new, 0x00 old.
    ResetConnectionAck,
    /// Type 20: reconnect to `server`:`port` (TCP) [2.2.7.9 routing].
    Routing { port: u16, server: String },
    /// A type without its own variant (5, 6, 13, 15, 16, 19 and unknown
    /// types). Its values are skipped, and encode writes them empty.
    Other { ty: u8 },
}

impl EnvChange {
    /// Whether a transaction is open after this change: `Some(true)` after a
    /// begin, `Some(false)` after a commit, rollback or a batch that ended
    /// one; `None` for changes that say nothing about transactions.
    pub fn transaction_state(&self) -> Option<bool> {
        match self {
            EnvChange::BeginTransaction { .. } => Some(true),
            EnvChange::CommitTransaction { .. }
            | EnvChange::RollbackTransaction { .. }
            | EnvChange::TransactionEnded { .. } => Some(false),
            _ => None,
        }
    }

    /// The ENVCHANGE Type byte.
    pub fn env_type(&self) -> u8 {
        match self {
            EnvChange::Database { .. } => DATABASE,
            EnvChange::Language { .. } => LANGUAGE,
            EnvChange::CharacterSet { .. } => CHARACTER_SET,
            EnvChange::PacketSize { .. } => PACKET_SIZE,
            EnvChange::SqlCollation { .. } => SQL_COLLATION,
            EnvChange::BeginTransaction { .. } => BEGIN_TRANSACTION,
            EnvChange::CommitTransaction { .. } => COMMIT_TRANSACTION,
            EnvChange::RollbackTransaction { .. } => ROLLBACK_TRANSACTION,
            EnvChange::EnlistDtc => ENLIST_DTC_TRANSACTION,
            EnvChange::DefectTransaction => DEFECT_TRANSACTION,
            EnvChange::TransactionEnded { .. } => TRANSACTION_ENDED,
            EnvChange::ResetConnectionAck => RESET_CONNECTION_ACK,
            EnvChange::Routing { .. } => ROUTING,
            EnvChange::Other { ty } => *ty,
        }
    }

    /// Appends the whole token. Names are cut to 255 UTF-16 code units and
    /// collations to 255 bytes, the most a B_VARCHAR/B_VARBYTE carries.
    pub fn encode(&self, out: &mut Vec<u8>) {
        put_u16_token(out, TokenType::ENVCHANGE, |b| {
            b.push(self.env_type());
            self.put_values(b);
        });
    }

    fn put_values(&self, b: &mut Vec<u8>) {
        match self {
            EnvChange::Database { new, old }
            | EnvChange::Language { new, old }
            | EnvChange::CharacterSet { new, old }
            | EnvChange::PacketSize { new, old } => {
                put_b_varchar(b, fit_utf16(new, 255));
                put_b_varchar(b, fit_utf16(old, 255));
            }
            EnvChange::SqlCollation { new, old } => {
                put_b_varbyte(b, new);
                put_b_varbyte(b, old);
            }
            EnvChange::BeginTransaction { descriptor } => {
                put_b_varbyte(b, &descriptor.to_le_bytes());
                b.push(0);
            }
            EnvChange::CommitTransaction { descriptor }
            | EnvChange::RollbackTransaction { descriptor }
            | EnvChange::TransactionEnded { descriptor } => {
                b.push(0);
                put_b_varbyte(b, &descriptor.to_le_bytes());
            }
            EnvChange::Routing { port, server } => put_routing(b, *port, server),
            EnvChange::Other {
                ty: PROMOTE_TRANSACTION,
            } => b.extend_from_slice(&[0, 0, 0, 0, 0]),
            EnvChange::EnlistDtc
            | EnvChange::DefectTransaction
            | EnvChange::ResetConnectionAck
            | EnvChange::Other { .. } => b.extend_from_slice(&[0, 0]),
        }
    }

    /// Decodes a body (the bytes after the USHORT length) that holds exactly
    /// one environment change.
    pub fn decode(body: &[u8]) -> Result<EnvChange, DecodeError> {
        let mut r = Reader::new(body, "ENVCHANGE");
        let change = EnvChange::read(&mut r)?;
        if r.remaining() != 0 {
            return Err(DecodeError::invalid(
                "ENVCHANGE",
                format!("{} byte(s) after the change", r.remaining()),
            ));
        }
        Ok(change)
    }

    /// Decodes every change in a body. SQL Server sends one per token, but
    /// drivers (SqlClient, go-mssqldb) accept several, and so does this.
    pub fn decode_all(body: &[u8]) -> Result<Vec<EnvChange>, DecodeError> {
        let mut r = Reader::new(body, "ENVCHANGE");
        let mut changes = Vec::with_capacity(1);
        while r.remaining() != 0 {
            changes.push(EnvChange::read(&mut r)?);
        }
        Ok(changes)
    }

    /// How many bytes after the USHORT length belong to the token, given the
    /// declared length and the bytes that follow it. For type 15 (Promote
    /// Transaction) the L_VARBYTE value is not counted by every server's
    /// Length (SqlClient reads it outside the Length), so its size comes from
    /// the value itself.
    pub(crate) fn body_len(declared: u16, rest: &[u8]) -> Result<usize, DecodeError> {
        let declared = declared as usize;
        // Which rule applies hangs on the type byte: until it has arrived,
        // the token's end is unknown (a walker fed in pieces must wait for
        // it, or it would end a type-15 token early).
        let Some(&ty) = rest.first() else {
            return Err(DecodeError::Truncated {
                context: "ENVCHANGE",
                needed: 1,
            });
        };
        if ty != PROMOTE_TRANSACTION {
            return Ok(declared);
        }
        let mut r = Reader::new(rest, "ENVCHANGE");
        r.skip(1)?;
        let value_len = r.u32_le()? as usize;
        // Type, L_VARBYTE length and value, OldValue 0x00.
        Ok(declared.max(value_len.saturating_add(6)))
    }

    fn read(r: &mut Reader<'_>) -> Result<EnvChange, DecodeError> {
        let ty = r.u8()?;
        let change = match ty {
            DATABASE => {
                let (new, old) = two_b_varchars(r)?;
                EnvChange::Database { new, old }
            }
            LANGUAGE => {
                let (new, old) = two_b_varchars(r)?;
                EnvChange::Language { new, old }
            }
            CHARACTER_SET => {
                let (new, old) = two_b_varchars(r)?;
                EnvChange::CharacterSet { new, old }
            }
            PACKET_SIZE => {
                let (new, old) = two_b_varchars(r)?;
                EnvChange::PacketSize { new, old }
            }
            SQL_COLLATION => EnvChange::SqlCollation {
                new: b_varbyte(r)?.to_vec(),
                old: b_varbyte(r)?.to_vec(),
            },
            BEGIN_TRANSACTION => {
                let (new, _) = (b_varbyte(r)?, b_varbyte(r)?);
                EnvChange::BeginTransaction {
                    descriptor: descriptor(new)?,
                }
            }
            COMMIT_TRANSACTION => EnvChange::CommitTransaction {
                descriptor: old_descriptor(r)?,
            },
            ROLLBACK_TRANSACTION => EnvChange::RollbackTransaction {
                descriptor: old_descriptor(r)?,
            },
            TRANSACTION_ENDED => EnvChange::TransactionEnded {
                descriptor: old_descriptor(r)?,
            },
            ENLIST_DTC_TRANSACTION | DEFECT_TRANSACTION | RESET_CONNECTION_ACK => {
                let _ = (b_varbyte(r)?, b_varbyte(r)?);
                match ty {
                    ENLIST_DTC_TRANSACTION => EnvChange::EnlistDtc,
                    DEFECT_TRANSACTION => EnvChange::DefectTransaction,
                    _ => EnvChange::ResetConnectionAck,
                }
            }
            ROUTING => read_routing(r)?,
            _ => {
                skip_other(ty, r)?;
                EnvChange::Other { ty }
            }
        };
        Ok(change)
    }
}

/// B_VARBYTE: a one-byte length, then that many bytes (cut to 255).
fn put_b_varbyte(b: &mut Vec<u8>, bytes: &[u8]) {
    let bytes = &bytes[..bytes.len().min(255)];
    b.push(bytes.len() as u8);
    b.extend_from_slice(bytes);
}

fn b_varbyte<'a>(r: &mut Reader<'a>) -> Result<&'a [u8], DecodeError> {
    let n = r.u8()? as usize;
    r.take(n)
}

fn two_b_varchars(r: &mut Reader<'_>) -> Result<(String, String), DecodeError> {
    Ok((r.b_varchar()?, r.b_varchar()?))
}

/// A transaction descriptor: 8 bytes, or an empty value read as 0.
fn descriptor(bytes: &[u8]) -> Result<u64, DecodeError> {
    match <[u8; 8]>::try_from(bytes) {
        Ok(d) => Ok(u64::from_le_bytes(d)),
        Err(_) if bytes.is_empty() => Ok(0),
        Err(_) => Err(DecodeError::invalid(
            "ENVCHANGE",
            format!(
                "transaction descriptor of {} bytes, expected 8",
                bytes.len()
            ),
        )),
    }
}

/// Types 9, 10 and 17 carry the descriptor in OldValue.
fn old_descriptor(r: &mut Reader<'_>) -> Result<u64, DecodeError> {
    let _new = b_varbyte(r)?;
    descriptor(b_varbyte(r)?)
}

/// Skips the values of a type without its own variant.
fn skip_other(ty: u8, r: &mut Reader<'_>) -> Result<(), DecodeError> {
    match ty {
        // B_VARCHAR new, B_VARCHAR (or 0x00) old.
        UNICODE_SORTING_LOCAL_ID
        | UNICODE_SORTING_COMPARISON_FLAGS
        | REAL_TIME_LOG_SHIPPING
        | USER_INSTANCE_STARTED => {
            for _ in 0..2 {
                let chars = r.u8()? as usize;
                r.skip(chars * 2)?;
            }
        }
        // B_VARBYTE new (the DTC address), 0x00 old, as SqlClient reads it.
        TRANSACTION_MANAGER_ADDRESS => {
            b_varbyte(r)?;
            b_varbyte(r)?;
        }
        // L_VARBYTE new (the DTC token), 0x00 old.
        PROMOTE_TRANSACTION => {
            let n = r.u32_le()? as usize;
            r.skip(n)?;
            b_varbyte(r)?;
        }
        // Unknown layout: the rest of the token is this change's values.
        _ => r.skip(r.remaining())?,
    }
    Ok(())
}

/// Type 20 NewValue: ValueLength USHORT, then Protocol BYTE (0 = TCP),
/// ProtocolProperty USHORT (the port) and AlternateServer US_VARCHAR.
/// OldValue is an empty USHORT-length value.
fn put_routing(b: &mut Vec<u8>, port: u16, server: &str) {
    let server = fit_utf16(server, MAX_ROUTING_SERVER_UNITS);
    let units = server.encode_utf16().count();
    let value_len = (1 + 2 + 2 + 2 * units) as u16;
    b.extend_from_slice(&value_len.to_le_bytes());
    b.push(0);
    b.extend_from_slice(&port.to_le_bytes());
    put_us_varchar(b, server);
    b.extend_from_slice(&[0, 0]);
}

fn read_routing(r: &mut Reader<'_>) -> Result<EnvChange, DecodeError> {
    let value_len = r.u16_le()? as usize;
    let mut value = Reader::new(r.take(value_len)?, "ENVCHANGE routing");
    let protocol = value.u8()?;
    if protocol != 0 {
        return Err(DecodeError::invalid(
            "ENVCHANGE routing",
            format!("protocol {protocol}, only 0 (TCP) is defined"),
        ));
    }
    let port = value.u16_le()?;
    let server = value.us_varchar()?;
    let old_len = r.u16_le()? as usize;
    r.skip(old_len)?;
    Ok(EnvChange::Routing { port, server })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tds::read::put_utf16;

    fn body(token: &[u8]) -> &[u8] {
        assert_eq!(token[0], 0xE3);
        assert_eq!(
            u16::from_le_bytes([token[1], token[2]]) as usize,
            token.len() - 3
        );
        &token[3..]
    }

    fn encoded(change: &EnvChange) -> Vec<u8> {
        let mut out = Vec::new();
        change.encode(&mut out);
        out
    }

    #[test]
    fn spec_login_response_examples() {
        // The four ENVCHANGE tokens of the login response example [MS-TDS 4.4].
        let mut db = vec![0xE3, 0x1B, 0x00, 0x01, 0x06];
        put_utf16(&mut db, "master");
        db.push(0x06);
        put_utf16(&mut db, "master");
        let collation = [
            0xE3, 0x08, 0x00, 0x07, 0x05, 0x09, 0x04, 0xD0, 0x00, 0x34, 0x00,
        ];
        let mut lang = vec![0xE3, 0x17, 0x00, 0x02, 0x0A];
        put_utf16(&mut lang, "us_english");
        lang.push(0x00);
        let mut size = vec![0xE3, 0x13, 0x00, 0x04, 0x04];
        put_utf16(&mut size, "4096");
        size.push(0x04);
        put_utf16(&mut size, "4096");

        let cases = [
            (
                db,
                EnvChange::Database {
                    new: "master".into(),
                    old: "master".into(),
                },
            ),
            (
                collation.to_vec(),
                EnvChange::SqlCollation {
                    new: vec![0x09, 0x04, 0xD0, 0x00, 0x34],
                    old: vec![],
                },
            ),
            (
                lang,
                EnvChange::Language {
                    new: "us_english".into(),
                    old: String::new(),
                },
            ),
            (
                size,
                EnvChange::PacketSize {
                    new: "4096".into(),
                    old: "4096".into(),
                },
            ),
        ];
        for (token, want) in cases {
            assert_eq!(EnvChange::decode(body(&token)).unwrap(), want);
            assert_eq!(encoded(&want), token);
        }
    }

    #[test]
    fn transaction_layouts() {
        let d = 0x0102_0304_0506_0708u64;
        let begin = encoded(&EnvChange::BeginTransaction { descriptor: d });
        assert_eq!(&begin[3..], &[8, 8, 8, 7, 6, 5, 4, 3, 2, 1, 0]);
        let commit = encoded(&EnvChange::CommitTransaction { descriptor: d });
        assert_eq!(&commit[3..], &[9, 0, 8, 8, 7, 6, 5, 4, 3, 2, 1]);
        let rollback = encoded(&EnvChange::RollbackTransaction { descriptor: d });
        assert_eq!(&rollback[3..], &[10, 0, 8, 8, 7, 6, 5, 4, 3, 2, 1]);
        let ended = encoded(&EnvChange::TransactionEnded { descriptor: d });
        assert_eq!(&ended[3..], &[17, 0, 8, 8, 7, 6, 5, 4, 3, 2, 1]);
    }

    #[test]
    fn routing_layout() {
        let routing = encoded(&EnvChange::Routing {
            port: 1433,
            server: "db2".into(),
        });
        let mut want = vec![0xE3, 0x10, 0x00, 20, 11, 0, 0, 0x99, 0x05, 3, 0];
        put_utf16(&mut want, "db2");
        want.extend_from_slice(&[0, 0]);
        assert_eq!(routing, want);
    }

    #[test]
    fn round_trip_every_variant() {
        let all = [
            EnvChange::Database {
                new: "sales".into(),
                old: "master".into(),
            },
            EnvChange::Language {
                new: "Deutsch".into(),
                old: "us_english".into(),
            },
            EnvChange::CharacterSet {
                new: "iso_1".into(),
                old: String::new(),
            },
            EnvChange::PacketSize {
                new: "8000".into(),
                old: "4096".into(),
            },
            EnvChange::SqlCollation {
                new: vec![9, 4, 0xD0, 0, 0x34],
                old: vec![9, 4, 0xD0, 0, 0x36],
            },
            EnvChange::BeginTransaction { descriptor: 42 },
            EnvChange::CommitTransaction { descriptor: 42 },
            EnvChange::RollbackTransaction {
                descriptor: u64::MAX,
            },
            EnvChange::EnlistDtc,
            EnvChange::DefectTransaction,
            EnvChange::TransactionEnded { descriptor: 7 },
            EnvChange::ResetConnectionAck,
            EnvChange::Routing {
                port: 11000,
                server: "replica.example.net".into(),
            },
            EnvChange::Other {
                ty: UNICODE_SORTING_LOCAL_ID,
            },
            EnvChange::Other {
                ty: UNICODE_SORTING_COMPARISON_FLAGS,
            },
            EnvChange::Other {
                ty: REAL_TIME_LOG_SHIPPING,
            },
            EnvChange::Other {
                ty: PROMOTE_TRANSACTION,
            },
            EnvChange::Other {
                ty: TRANSACTION_MANAGER_ADDRESS,
            },
            EnvChange::Other {
                ty: USER_INSTANCE_STARTED,
            },
            EnvChange::Other { ty: 99 },
        ];
        for change in all {
            let token = encoded(&change);
            assert_eq!(
                EnvChange::decode(body(&token)).unwrap(),
                change,
                "{change:?}"
            );
            assert_eq!(
                EnvChange::body_len(u16::from_le_bytes([token[1], token[2]]), &token[3..]).unwrap(),
                token.len() - 3
            );
        }
    }

    #[test]
    fn other_types_skip_their_values() {
        // Type 13 (real-time log shipping partner) with a B_VARCHAR partner name.
        let mut b = vec![13, 3];
        put_utf16(&mut b, "dr1");
        b.push(0);
        assert_eq!(EnvChange::decode(&b).unwrap(), EnvChange::Other { ty: 13 });
        // Type 15 with a 3-byte DTC token.
        let b = [15, 3, 0, 0, 0, 0xAA, 0xBB, 0xCC, 0];
        assert_eq!(EnvChange::decode(&b).unwrap(), EnvChange::Other { ty: 15 });
    }

    #[test]
    fn promote_transaction_length_comes_from_its_value() {
        // A server may declare Length = 1 (just the type) for type 15.
        let rest = [15, 3, 0, 0, 0, 0xAA, 0xBB, 0xCC, 0, 0xFD];
        assert_eq!(EnvChange::body_len(1, &rest).unwrap(), 9);
        assert_eq!(EnvChange::body_len(9, &rest).unwrap(), 9);
        assert!(matches!(
            EnvChange::body_len(1, &rest[..3]),
            Err(DecodeError::Truncated { .. })
        ));
        assert_eq!(EnvChange::body_len(5, &[1, 0]).unwrap(), 5);
    }

    #[test]
    fn several_changes_in_one_body() {
        let mut b = encoded(&EnvChange::BeginTransaction { descriptor: 1 })[3..].to_vec();
        b.extend_from_slice(&encoded(&EnvChange::ResetConnectionAck)[3..]);
        assert_eq!(
            EnvChange::decode_all(&b).unwrap(),
            vec![
                EnvChange::BeginTransaction { descriptor: 1 },
                EnvChange::ResetConnectionAck
            ]
        );
        assert!(EnvChange::decode(&b).is_err());
        assert_eq!(EnvChange::decode_all(&[]).unwrap(), vec![]);
    }

    #[test]
    fn malformed_values_are_errors() {
        // Descriptor of 4 bytes.
        assert!(EnvChange::decode(&[8, 4, 1, 2, 3, 4, 0]).is_err());
        // Empty descriptor is read as 0.
        assert_eq!(
            EnvChange::decode(&[9, 0, 0]).unwrap(),
            EnvChange::CommitTransaction { descriptor: 0 }
        );
        // Routing over a protocol other than TCP.
        let mut r = encoded(&EnvChange::Routing {
            port: 1,
            server: "x".into(),
        })[3..]
            .to_vec();
        r[3] = 1;
        assert!(EnvChange::decode(&r).is_err());
        // Name longer than the body.
        assert!(matches!(
            EnvChange::decode(&[1, 5, b'a', 0]),
            Err(DecodeError::Truncated { .. })
        ));
    }
}
