//! RETURNVALUE [MS-TDS 2.2.7.19]: an output parameter or a user-defined
//! function's return value. Only the header is read here; the value that
//! follows is framed by its TYPE_INFO like a column value.

use super::col_metadata::check_not_encrypted;
use super::type_info::{read_type_info, skip_b_varchar, ValueFraming};
use crate::tds::error::DecodeError;
use crate::tds::read::Reader;

/// Reads ParamOrdinal, ParamName, Status, UserType, Flags and TYPE_INFO
/// (the bytes after the token type) and returns the value's framing.
pub(crate) fn read_return_value_header(r: &mut Reader<'_>) -> Result<ValueFraming, DecodeError> {
    r.skip(2)?;
    skip_b_varchar(r)?;
    r.skip(1 + 4)?;
    check_not_encrypted(r.u16_le()?, "RETURNVALUE")?;
    read_type_info(r)
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
        assert_eq!(
            read_return_value_header(&mut r).unwrap(),
            ValueFraming::ByteLen
        );
        assert_eq!(r.rest(), &[4, 42, 0, 0, 0]);
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
}
