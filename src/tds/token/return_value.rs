//! RETURNVALUE [MS-TDS 2.2.7.19]: an output parameter or a user-defined
//! function's return value, such as the handle sp_prepare and sp_prepexec
//! return. The header is read here, and an integer value; any other value is
//! framed by its TYPE_INFO like a column value and stepped over.

use super::col_metadata::check_not_encrypted;
use super::type_info::{decode_integer, read_typed_info, DataType, ValueFraming};
use crate::tds::error::DecodeError;
use crate::tds::read::Reader;

/// A RETURNVALUE token up to its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ReturnValueHeader {
    /// ParamOrdinal: the parameter's position in the RPC call, from 0.
    pub ordinal: u16,
    /// ParamName, such as `@handle`; empty for a parameter sent unnamed.
    pub name: String,
    pub data_type: DataType,
    pub framing: ValueFraming,
}

/// Reads ParamOrdinal, ParamName, Status, UserType, Flags and TYPE_INFO
/// (the bytes after the token type), leaving the reader at the value.
pub(crate) fn read_return_value_header(
    r: &mut Reader<'_>,
) -> Result<ReturnValueHeader, DecodeError> {
    let ordinal = r.u16_le()?;
    let name = b_varchar_lossy(r)?;
    // Status (output parameter or UDF result), UserType (ULONG since 7.2).
    r.skip(1 + 4)?;
    check_not_encrypted(r.u16_le()?, "RETURNVALUE")?;
    let (data_type, framing) = read_typed_info(r)?;
    Ok(ReturnValueHeader {
        ordinal,
        name,
        data_type,
        framing,
    })
}

/// An INT1, INT2, INT4, INT8 or INTN value [2.2.5.5.1.1]; None for NULL.
/// An INTN value's BYTELEN prefix gives its width, 0 meaning NULL.
pub(crate) fn read_integer_value(
    r: &mut Reader<'_>,
    framing: ValueFraming,
) -> Result<Option<i64>, DecodeError> {
    let width = match framing {
        ValueFraming::Fixed(n) => n,
        ValueFraming::ByteLen => r.u8()?,
        other => {
            return Err(DecodeError::invalid(
                "RETURNVALUE",
                format!("an integer value framed as {other:?}"),
            ))
        }
    };
    let bytes = r.take(usize::from(width))?;
    if bytes.is_empty() {
        return Ok(None);
    }
    decode_integer(bytes).map(Some).ok_or_else(|| {
        DecodeError::invalid("RETURNVALUE", format!("an integer value of {width} bytes"))
    })
}

/// A B_VARCHAR decoded leniently: the name is only reported, so a malformed
/// one must not fail a token whose value the walker can still step over.
fn b_varchar_lossy(r: &mut Reader<'_>) -> Result<String, DecodeError> {
    let chars = usize::from(r.u8()?);
    let bytes = r.take(chars * 2)?;
    let units = bytes
        .chunks_exact(2)
        .map(|unit| u16::from_le_bytes([unit[0], unit[1]]));
    Ok(char::decode_utf16(units)
        .map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_up_to_the_value() {
        // Ordinal 1, name "@o", status 1 (output), user type 0, flags 1,
        // INTN(4), then the value 04 2A 00 00 00.
        let bytes = [
            1, 0, 2, b'@', 0, b'o', 0, 1, 0, 0, 0, 0, 1, 0, 0x26, 4, 4, 42, 0, 0, 0,
        ];
        let mut r = Reader::new(&bytes, "test");
        let header = read_return_value_header(&mut r).unwrap();
        assert_eq!(
            header,
            ReturnValueHeader {
                ordinal: 1,
                name: "@o".into(),
                data_type: DataType::INTN,
                framing: ValueFraming::ByteLen,
            }
        );
        assert_eq!(r.rest(), &[4, 42, 0, 0, 0]);
        assert_eq!(read_integer_value(&mut r, header.framing), Ok(Some(42)));
        assert_eq!(r.remaining(), 0);
    }

    #[test]
    fn truncated_header_is_truncated() {
        let bytes = [1, 0, 2, b'@', 0];
        let mut r = Reader::new(&bytes, "test");
        assert!(matches!(
            read_return_value_header(&mut r),
            Err(DecodeError::Truncated { .. })
        ));
    }

    #[test]
    fn a_malformed_name_is_replaced_not_rejected() {
        // An unpaired surrogate as the name, then INT4.
        let bytes = [0, 0, 1, 0x00, 0xD8, 1, 0, 0, 0, 0, 0, 0, 0x38];
        let header = read_return_value_header(&mut Reader::new(&bytes, "test")).unwrap();
        assert_eq!(header.name, "\u{FFFD}");
        assert_eq!(header.framing, ValueFraming::Fixed(4));
    }

    #[test]
    fn integer_values_of_every_width() {
        let int = |framing, bytes: &[u8]| {
            let mut r = Reader::new(bytes, "test");
            let value = read_integer_value(&mut r, framing);
            assert!(value.is_err() || r.remaining() == 0, "{bytes:02X?}");
            value
        };
        let fixed = ValueFraming::Fixed;
        assert_eq!(int(fixed(1), &[0xFF]), Ok(Some(255)));
        assert_eq!(int(fixed(2), &[0xFE, 0xFF]), Ok(Some(-2)));
        assert_eq!(int(fixed(4), &[0xFF; 4]), Ok(Some(-1)));
        assert_eq!(int(fixed(8), &[0, 0, 0, 0, 1, 0, 0, 0]), Ok(Some(1 << 32)));
        let intn = ValueFraming::ByteLen;
        assert_eq!(int(intn, &[0]), Ok(None));
        assert_eq!(int(intn, &[1, 7]), Ok(Some(7)));
        assert_eq!(int(intn, &[4, 1, 0, 0, 0]), Ok(Some(1)));
        assert_eq!(
            int(intn, &[8, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F]),
            Ok(Some(i64::MAX))
        );
        assert!(matches!(
            int(intn, &[3, 1, 2, 3]),
            Err(DecodeError::Invalid { .. })
        ));
        assert!(matches!(
            int(intn, &[4, 1, 2]),
            Err(DecodeError::Truncated { .. })
        ));
        assert!(matches!(
            int(ValueFraming::Plp, &[0; 8]),
            Err(DecodeError::Invalid { .. })
        ));
    }
}
