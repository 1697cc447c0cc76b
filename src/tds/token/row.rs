//! ROW and NBCROW [MS-TDS 2.2.7.20, 2.2.7.15] read into values: the first
//! row of a whole, small reply to a batch Sluice runs itself (health check,
//! lag query, heartbeat), and the reply's ERROR tokens.
//!
//! The data path never decodes values (it forwards rows untouched); this is
//! the control plane's only reader, for the few types a lag source returns:
//! NULL, the integers (TINYINT, SMALLINT, INT, BIGINT, INTN), BIT, DECIMAL
//! and NUMERIC, REAL and FLOAT, and character strings (CHAR, VARCHAR,
//! NCHAR, NVARCHAR, with `max`). Any other type is stepped over and reported
//! as [`SqlValue::Unsupported`] with its name, so the caller can say which
//! type it got.

use super::col_metadata::read_col_metadata_types;
use super::return_value::read_return_value_header;
use super::type_info::{decode_integer, read_plp, DataType, TypeInfo, ValueFraming};
use super::walker::{is_skipped_token, report_token, skipped_token_len, text_len};
use super::{DoneStatus, ServerMessage, TokenEvent, TokenType, TokenWalker};
use crate::tds::error::DecodeError;
use crate::tds::read::{utf16_to_string, Reader};

/// DECIMAL/NUMERIC carry at most 38 digits [2.2.5.5.1.6].
const MAX_DECIMAL_PRECISION: u8 = 38;

/// One column value of a row.
#[derive(Debug, Clone, PartialEq)]
pub enum SqlValue {
    Null,
    /// TINYINT (unsigned), SMALLINT, INT, BIGINT.
    Int(i64),
    Bit(bool),
    /// DECIMAL or NUMERIC: `value / 10^scale`.
    Decimal {
        value: i128,
        scale: u8,
    },
    /// REAL or FLOAT.
    Float(f64),
    /// CHAR, VARCHAR, NCHAR, NVARCHAR. Single-byte text is read as UTF-8,
    /// lossily: the control plane only looks for numbers in it, and the
    /// collation's code page is not consulted.
    Text(String),
    /// A value of a type this reader does not interpret (stepped over).
    Unsupported(DataType),
}

impl SqlValue {
    /// What the value is, for messages: "NULL", "a bigint", "a datetime2".
    pub fn describe(&self) -> String {
        match self {
            SqlValue::Null => "NULL".to_string(),
            SqlValue::Int(_) => "an integer".to_string(),
            SqlValue::Bit(_) => "a bit".to_string(),
            SqlValue::Decimal { .. } => "a decimal".to_string(),
            SqlValue::Float(_) => "a float".to_string(),
            SqlValue::Text(_) => "a string".to_string(),
            SqlValue::Unsupported(ty) => format!("a value of type {}", ty.name()),
        }
    }
}

/// What a reply to one SQL batch held, as far as the control plane cares.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BatchReply {
    /// The first row of the first result set that has one, if any.
    pub first_row: Option<Vec<SqlValue>>,
    /// Every ERROR token, in order.
    pub errors: Vec<ServerMessage>,
}

impl BatchReply {
    /// Reads a whole reply (the payload of a TABULAR_RESULT message). The
    /// token walker checks the whole stream first and collects the errors;
    /// then the tokens up to the first row are read again, this time with
    /// each column's type.
    pub fn decode(reply: &[u8]) -> Result<BatchReply, DecodeError> {
        let mut events = Vec::new();
        let mut walker = TokenWalker::new();
        walker.feed(reply, &mut events)?;
        if !walker.at_token_boundary() {
            return Err(DecodeError::invalid(
                "token stream",
                "the reply ends inside a token",
            ));
        }
        // A whole reply ends with a DONE that announces nothing more [2.2.7.6].
        let last_done = events.iter().rev().find_map(|event| match event {
            TokenEvent::Done(done) => Some(done.status),
            _ => None,
        });
        if last_done.is_none_or(|status| status.contains(DoneStatus::MORE)) {
            return Err(DecodeError::invalid(
                "token stream",
                "the reply does not end with a final DONE",
            ));
        }
        let errors = events
            .into_iter()
            .filter_map(|event| match event {
                TokenEvent::Error(e) => Some(e),
                _ => None,
            })
            .collect();
        Ok(BatchReply {
            first_row: first_row(reply)?,
            errors,
        })
    }

    /// The first column of the first row: `None` when there is no row.
    pub fn first_value(self) -> Option<SqlValue> {
        self.first_row.and_then(|row| row.into_iter().next())
    }
}

/// Reads tokens up to the first ROW or NBCROW and decodes it.
fn first_row(reply: &[u8]) -> Result<Option<Vec<SqlValue>>, DecodeError> {
    Ok(rows(reply, 1)?.into_iter().next())
}

/// The rows of a whole reply, in order, at most `limit` of them (the rest
/// are not read). Rows of every result set count.
pub fn rows(reply: &[u8], limit: usize) -> Result<Vec<Vec<SqlValue>>, DecodeError> {
    let mut r = Reader::new(reply, "ROW");
    let mut columns: Option<Vec<TypeInfo>> = None;
    let mut scratch = Vec::new();
    let mut rows = Vec::new();
    while r.remaining() > 0 && rows.len() < limit {
        let ty = TokenType(r.u8()?);
        match ty {
            TokenType::COLMETADATA => {
                if let Some(read) = read_col_metadata_types(&mut r)? {
                    columns = Some(read);
                }
            }
            TokenType::ROW | TokenType::NBCROW => {
                let columns = columns
                    .as_deref()
                    .ok_or_else(|| DecodeError::invalid("ROW", "row before any COLMETADATA"))?;
                let null_bitmap = if ty == TokenType::NBCROW {
                    r.take(columns.len().div_ceil(8))?
                } else {
                    &[]
                };
                rows.push(read_row(&mut r, columns, null_bitmap)?);
            }
            TokenType::RETURNVALUE => {
                let header = read_return_value_header(&mut r)?;
                read_value(&mut r, header.data_type, header.framing, 0)?;
            }
            _ if is_skipped_token(ty) => {
                let n = skipped_token_len(ty, &mut r)?;
                r.skip(usize::try_from(n).unwrap_or(usize::MAX))?;
            }
            _ => {
                scratch.clear();
                report_token(ty, &mut r, &mut scratch)?;
            }
        }
    }
    Ok(rows)
}

/// The values of one row; NULL columns of an NBCROW have no bytes.
fn read_row(
    r: &mut Reader<'_>,
    columns: &[TypeInfo],
    null_bitmap: &[u8],
) -> Result<Vec<SqlValue>, DecodeError> {
    let mut row = Vec::with_capacity(columns.len());
    for (i, column) in columns.iter().enumerate() {
        let null = null_bitmap
            .get(i / 8)
            .is_some_and(|byte| byte >> (i % 8) & 1 == 1);
        row.push(if null {
            SqlValue::Null
        } else {
            read_value(r, column.data_type, column.framing, column.scale)?
        });
    }
    Ok(row)
}

/// One value as its TYPE_INFO frames it [2.2.5.2.3], then interpreted
/// [2.2.5.5.1].
fn read_value(
    r: &mut Reader<'_>,
    data_type: DataType,
    framing: ValueFraming,
    scale: u8,
) -> Result<SqlValue, DecodeError> {
    let bytes: Vec<u8> = match framing {
        ValueFraming::Fixed(n) => r.take(usize::from(n))?.to_vec(),
        // BYTELEN 0 is NULL for every type framed so (GEN_NULL).
        ValueFraming::ByteLen => match r.u8()? {
            0 => return Ok(SqlValue::Null),
            n => r.take(usize::from(n))?.to_vec(),
        },
        ValueFraming::UShortLen => match r.u16_le()? {
            0xFFFF => return Ok(SqlValue::Null),
            n => r.take(usize::from(n))?.to_vec(),
        },
        // Only RPC parameters are framed so; a row never is.
        ValueFraming::LongLen => match r.u32_le()? {
            0xFFFF_FFFF => return Ok(SqlValue::Null),
            n => r.take(n as usize)?.to_vec(),
        },
        ValueFraming::Plp => match read_plp(r)? {
            None => return Ok(SqlValue::Null),
            Some(bytes) => bytes,
        },
        ValueFraming::TextPtr => {
            return match text_len(r)? {
                None => Ok(SqlValue::Null),
                Some(n) => {
                    r.skip(usize::try_from(n).unwrap_or(usize::MAX))?;
                    Ok(SqlValue::Unsupported(data_type))
                }
            }
        }
        ValueFraming::Variant => {
            return match r.u32_le()? {
                0 | u32::MAX => Ok(SqlValue::Null),
                n => {
                    r.skip(usize::try_from(n).unwrap_or(usize::MAX))?;
                    Ok(SqlValue::Unsupported(data_type))
                }
            }
        }
    };
    interpret(data_type, &bytes, scale)
}

/// The value of `data_type` in `bytes` (not NULL).
fn interpret(data_type: DataType, bytes: &[u8], scale: u8) -> Result<SqlValue, DecodeError> {
    let bad = |what: &str| {
        DecodeError::invalid(
            "ROW",
            format!("{} value of {} bytes{what}", data_type.name(), bytes.len()),
        )
    };
    Ok(match data_type {
        DataType::NULL => SqlValue::Null,
        ty if ty.is_integer() => SqlValue::Int(decode_integer(bytes).ok_or_else(|| bad(""))?),
        DataType::BIT | DataType::BITN => match bytes {
            [b] => SqlValue::Bit(*b != 0),
            _ => return Err(bad("")),
        },
        DataType::FLT4 | DataType::FLT8 | DataType::FLTN => match *bytes {
            [a, b, c, d] => SqlValue::Float(f64::from(f32::from_le_bytes([a, b, c, d]))),
            [a, b, c, d, e, f, g, h] => {
                SqlValue::Float(f64::from_le_bytes([a, b, c, d, e, f, g, h]))
            }
            _ => return Err(bad("")),
        },
        DataType::DECIMAL | DataType::NUMERIC | DataType::DECIMALN | DataType::NUMERICN => {
            decimal(bytes, scale).ok_or_else(|| bad(", not sign and 4, 8, 12 or 16 bytes"))?
        }
        DataType::CHAR | DataType::VARCHAR | DataType::BIGCHAR | DataType::BIGVARCHAR => {
            SqlValue::Text(String::from_utf8_lossy(bytes).into_owned())
        }
        DataType::NCHAR | DataType::NVARCHAR => SqlValue::Text(utf16_to_string(bytes, "ROW")?),
        other => SqlValue::Unsupported(other),
    })
}

/// DECIMAL/NUMERIC [2.2.5.5.1.6]: a sign byte (0 negative, 1 positive),
/// then the magnitude, little-endian, in 4, 8, 12 or 16 bytes.
fn decimal(bytes: &[u8], scale: u8) -> Option<SqlValue> {
    let (&sign, magnitude) = bytes.split_first()?;
    if !matches!(magnitude.len(), 4 | 8 | 12 | 16) || scale > MAX_DECIMAL_PRECISION {
        return None;
    }
    let mut le = [0u8; 16];
    le[..magnitude.len()].copy_from_slice(magnitude);
    let value = i128::try_from(u128::from_le_bytes(le)).ok()?;
    let value = if sign == 0 { -value } else { value };
    Some(SqlValue::Decimal { value, scale })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tds::token::done::{Done, DoneKind};

    /// COLMETADATA with one column per TYPE_INFO, named "c".
    fn col_metadata(types: &[&[u8]]) -> Vec<u8> {
        let mut out = vec![0x81];
        out.extend_from_slice(&(types.len() as u16).to_le_bytes());
        for ti in types {
            out.extend_from_slice(&[0, 0, 0, 0, 0x01, 0x00]);
            out.extend_from_slice(ti);
            out.extend_from_slice(&[1, b'c', 0]);
        }
        out
    }

    fn done(out: &mut Vec<u8>) {
        Done {
            kind: DoneKind::Done,
            status: DoneStatus::COUNT,
            cur_cmd: 0xC1,
            row_count: 1,
        }
        .encode(out);
    }

    fn reply(types: &[&[u8]], row: &[u8]) -> Vec<u8> {
        let mut out = col_metadata(types);
        out.push(0xD1);
        out.extend_from_slice(row);
        done(&mut out);
        out
    }

    fn first(types: &[&[u8]], row: &[u8]) -> Vec<SqlValue> {
        BatchReply::decode(&reply(types, row))
            .expect("decodes")
            .first_row
            .expect("a row")
    }

    const COLLATION: [u8; 5] = [0x09, 0x04, 0xD0, 0x00, 0x34];

    #[test]
    fn integers_fixed_and_nullable() {
        assert_eq!(first(&[&[0x38]], &[1, 0, 0, 0]), [SqlValue::Int(1)]);
        assert_eq!(first(&[&[0x30]], &[0xFF]), [SqlValue::Int(255)]);
        assert_eq!(first(&[&[0x34]], &[0xFE, 0xFF]), [SqlValue::Int(-2)]);
        let big = 1_709_251_198_123i64;
        assert_eq!(first(&[&[0x7F]], &big.to_le_bytes()), [SqlValue::Int(big)]);
        let mut intn = vec![8];
        intn.extend_from_slice(&big.to_le_bytes());
        assert_eq!(first(&[&[0x26, 8]], &intn), [SqlValue::Int(big)]);
        assert_eq!(first(&[&[0x26, 8]], &[0]), [SqlValue::Null]);
        assert_eq!(first(&[&[0x26, 4]], &[2, 7, 0]), [SqlValue::Int(7)]);
    }

    #[test]
    fn bit_float_decimal() {
        assert_eq!(first(&[&[0x32]], &[1]), [SqlValue::Bit(true)]);
        assert_eq!(first(&[&[0x68, 1]], &[1, 0]), [SqlValue::Bit(false)]);
        let mut flt = vec![8];
        flt.extend_from_slice(&2.5f64.to_le_bytes());
        assert_eq!(first(&[&[0x6D, 8]], &flt), [SqlValue::Float(2.5)]);
        let mut real = vec![4];
        real.extend_from_slice(&1.5f32.to_le_bytes());
        assert_eq!(first(&[&[0x6D, 4]], &real), [SqlValue::Float(1.5)]);
        // DECIMAL(10,2) 12.60: sign 1, 1260 in 8 bytes.
        let mut dec = vec![9, 1];
        dec.extend_from_slice(&1260u64.to_le_bytes());
        assert_eq!(
            first(&[&[0x6A, 9, 10, 2]], &dec),
            [SqlValue::Decimal {
                value: 1260,
                scale: 2
            }]
        );
        // NUMERIC(5,1) -3.5: sign 0, 35 in 4 bytes.
        assert_eq!(
            first(&[&[0x6C, 5, 5, 1]], &[5, 0, 35, 0, 0, 0]),
            [SqlValue::Decimal {
                value: -35,
                scale: 1
            }]
        );
        assert!(BatchReply::decode(&reply(&[&[0x6A, 9, 10, 2]], &[3, 1, 0, 0])).is_err());
    }

    #[test]
    fn strings_short_and_max() {
        let mut nvarchar = vec![0xE7, 40, 0];
        nvarchar.extend_from_slice(&COLLATION);
        assert_eq!(
            first(&[&nvarchar], &[4, 0, b'4', 0, b'2', 0]),
            [SqlValue::Text("42".into())]
        );
        assert_eq!(first(&[&nvarchar], &[0xFF, 0xFF]), [SqlValue::Null]);
        let mut varchar = vec![0xA7, 20, 0];
        varchar.extend_from_slice(&COLLATION);
        assert_eq!(
            first(&[&varchar], &[3, 0, b' ', b'7', b' ']),
            [SqlValue::Text(" 7 ".into())]
        );
        let mut max = vec![0xE7, 0xFF, 0xFF];
        max.extend_from_slice(&COLLATION);
        let mut plp = 4u64.to_le_bytes().to_vec();
        plp.extend_from_slice(&[2, 0, 0, 0, b'1', 0, 2, 0, 0, 0, b'0', 0, 0, 0, 0, 0]);
        assert_eq!(first(&[&max], &plp), [SqlValue::Text("10".into())]);
        let null = u64::MAX.to_le_bytes();
        assert_eq!(first(&[&max], &null), [SqlValue::Null]);
    }

    #[test]
    fn other_types_are_named_not_read() {
        // datetime2(3), 7 bytes, then an int: the int is still read.
        let row = [7, 1, 2, 3, 4, 5, 6, 7, 9, 0, 0, 0];
        assert_eq!(
            first(&[&[0x2A, 3], &[0x38]], &row),
            [
                SqlValue::Unsupported(DataType::DATETIME2N),
                SqlValue::Int(9)
            ]
        );
        assert_eq!(
            SqlValue::Unsupported(DataType::DATETIME2N).describe(),
            "a value of type datetime2"
        );
    }

    #[test]
    fn nbcrow_nulls_have_no_bytes() {
        let mut out = col_metadata(&[&[0x26, 8], &[0x38]]);
        out.extend_from_slice(&[0xD2, 0b01, 5, 0, 0, 0]);
        done(&mut out);
        let row = BatchReply::decode(&out).unwrap().first_row.unwrap();
        assert_eq!(row, [SqlValue::Null, SqlValue::Int(5)]);
    }

    #[test]
    fn errors_and_no_row() {
        let message = ServerMessage {
            number: 208,
            state: 1,
            class: 16,
            message: "Invalid object name 'dbo.nope'.".into(),
            server: "s".into(),
            procedure: String::new(),
            line: 1,
        };
        let mut out = Vec::new();
        message.encode_error(&mut out);
        done(&mut out);
        let decoded = BatchReply::decode(&out).unwrap();
        assert_eq!(decoded.first_row, None);
        assert_eq!(decoded.errors, [message]);
        // A result set without rows.
        let mut out = col_metadata(&[&[0x38]]);
        done(&mut out);
        assert_eq!(BatchReply::decode(&out).unwrap().first_value(), None);
    }

    #[test]
    fn statements_before_the_row_are_passed() {
        // SET NOCOUNT ON; SELECT 3: a DONE with MORE, then the result.
        let mut out = Vec::new();
        Done {
            kind: DoneKind::Done,
            status: DoneStatus::MORE,
            cur_cmd: 0xB9,
            row_count: 0,
        }
        .encode(&mut out);
        out.extend_from_slice(&reply(&[&[0x38]], &[3, 0, 0, 0]));
        let decoded = BatchReply::decode(&out).unwrap();
        assert_eq!(decoded.first_value(), Some(SqlValue::Int(3)));
    }

    #[test]
    fn broken_replies_are_errors() {
        let whole = reply(&[&[0x38]], &[1, 0, 0, 0]);
        for cut in 1..whole.len() {
            assert!(
                BatchReply::decode(&whole[..cut]).is_err(),
                "cut at {cut} accepted"
            );
        }
        // A row without metadata.
        assert!(BatchReply::decode(&[0xD1, 1, 0, 0, 0]).is_err());
        // PLP chunks that do not add up.
        let mut max = vec![0xE7, 0xFF, 0xFF];
        max.extend_from_slice(&COLLATION);
        let mut plp = 9u64.to_le_bytes().to_vec();
        plp.extend_from_slice(&[2, 0, 0, 0, b'1', 0, 0, 0, 0, 0]);
        assert!(BatchReply::decode(&reply(&[&max], &plp)).is_err());
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        // Every prefix and single-byte corruption of a valid reply.
        let mut nvarchar = vec![0xE7, 40, 0];
        nvarchar.extend_from_slice(&COLLATION);
        let whole = reply(
            &[&[0x26, 8], &nvarchar, &[0x6A, 9, 10, 2]],
            &[
                8, 1, 0, 0, 0, 0, 0, 0, 0, 2, 0, b'1', 0, 9, 1, 1, 0, 0, 0, 0, 0, 0, 0,
            ],
        );
        assert!(BatchReply::decode(&whole).is_ok());
        for i in 0..whole.len() {
            for b in [0x00, 0x01, 0x7F, 0x80, 0xFE, 0xFF] {
                let mut bad = whole.clone();
                bad[i] = b;
                let _ = BatchReply::decode(&bad);
            }
        }
    }
}
