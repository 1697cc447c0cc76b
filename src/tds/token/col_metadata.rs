//! COLMETADATA [MS-TDS 2.2.7.4]: the columns of the rows that follow,
//! reduced to how each column's values are framed.

use super::type_info::{
    read_full_type_info, skip_b_varchar, skip_us_varchar, TypeInfo, ValueFraming,
};
use crate::tds::error::DecodeError;
use crate::tds::read::Reader;

/// Count 0xFFFF: NoMetaData, the rows reuse the previous metadata.
const NO_METADATA: u16 = 0xFFFF;
/// Flags.fEncrypted: the column carries CryptoMetaData [2.2.7.4], which is
/// only sent when column encryption was negotiated.
pub(crate) const FLAG_ENCRYPTED: u16 = 0x0800;

/// Reads Count and the ColumnData entries after the token type. Returns
/// None for NoMetaData.
pub(crate) fn read_col_metadata(
    r: &mut Reader<'_>,
) -> Result<Option<Vec<ValueFraming>>, DecodeError> {
    read_columns(r, |info| info.framing)
}

/// Like [`read_col_metadata`], with each column's whole TYPE_INFO, for
/// reading values rather than stepping over them.
pub(crate) fn read_col_metadata_types(
    r: &mut Reader<'_>,
) -> Result<Option<Vec<TypeInfo>>, DecodeError> {
    read_columns(r, |info| info)
}

fn read_columns<T>(
    r: &mut Reader<'_>,
    keep: impl Fn(TypeInfo) -> T,
) -> Result<Option<Vec<T>>, DecodeError> {
    let count = r.u16_le()?;
    if count == NO_METADATA {
        return Ok(None);
    }
    let mut columns = Vec::with_capacity(count as usize);
    for _ in 0..count {
        columns.push(keep(read_column(r)?));
    }
    Ok(Some(columns))
}

/// ColumnData: UserType, Flags, TYPE_INFO, [TableName], ColName.
fn read_column(r: &mut Reader<'_>) -> Result<TypeInfo, DecodeError> {
    r.skip(4)?;
    check_not_encrypted(r.u16_le()?, "COLMETADATA")?;
    let info = read_full_type_info(r)?;
    if info.framing == ValueFraming::TextPtr {
        skip_table_name(r)?;
    }
    skip_b_varchar(r)?;
    Ok(info)
}

/// Encrypted columns put CryptoMetaData (and a CekTable) in the stream, whose
/// layout depends on a feature the proxy never negotiates.
pub(crate) fn check_not_encrypted(flags: u16, context: &'static str) -> Result<(), DecodeError> {
    if flags & FLAG_ENCRYPTED != 0 {
        return Err(DecodeError::invalid(
            context,
            "encrypted column (Always Encrypted) is not supported",
        ));
    }
    Ok(())
}

/// TableName of TEXT, NTEXT and IMAGE columns: NumParts, then US_VARCHAR parts.
fn skip_table_name(r: &mut Reader<'_>) -> Result<(), DecodeError> {
    let parts = r.u8()?;
    for _ in 0..parts {
        skip_us_varchar(r)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(bytes: &[u8]) -> Result<Option<Vec<ValueFraming>>, DecodeError> {
        let mut r = Reader::new(bytes, "test");
        let cols = read_col_metadata(&mut r)?;
        assert_eq!(r.remaining(), 0);
        Ok(cols)
    }

    #[test]
    fn spec_select_example() {
        // COLMETADATA of the SQL batch response example [MS-TDS 4.7], after
        // the token type: one varchar(3) column named "bar".
        let bytes = [
            0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x20, 0x00, 0xA7, 0x03, 0x00, 0x09, 0x04, 0xD0,
            0x00, 0x34, 0x03, 0x62, 0x00, 0x61, 0x00, 0x72, 0x00,
        ];
        assert_eq!(read(&bytes).unwrap(), Some(vec![ValueFraming::UShortLen]));
    }

    #[test]
    fn no_metadata() {
        assert_eq!(read(&[0xFF, 0xFF]).unwrap(), None);
        assert_eq!(read(&[0, 0]).unwrap(), Some(vec![]));
    }

    #[test]
    fn text_column_has_a_table_name() {
        // ntext column of table dbo.t (two parts), named "n".
        let bytes = [
            0x01, 0x00, 0, 0, 0, 0, 0x01, 0x00, 0x63, 0xFF, 0xFF, 0xFF, 0x7F, 0x09, 0x04, 0xD0,
            0x00, 0x34, 0x02, 0x03, 0x00, b'd', 0, b'b', 0, b'o', 0, 0x01, 0x00, b't', 0, 0x01,
            b'n', 0,
        ];
        assert_eq!(read(&bytes).unwrap(), Some(vec![ValueFraming::TextPtr]));
    }

    #[test]
    fn encrypted_column_is_rejected() {
        let bytes = [0x01, 0x00, 0, 0, 0, 0, 0x01, 0x08, 0x38, 0x00];
        assert!(matches!(read(&bytes), Err(DecodeError::Invalid { .. })));
    }
}
