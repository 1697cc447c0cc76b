//! TYPE_INFO [MS-TDS 2.2.5.6] and the data type ids [2.2.5.4]: what a
//! column or parameter declares, reduced to how its values are framed
//! [2.2.5.2.3], which is all a walker needs to step over them. The one
//! parser serves COLMETADATA and RETURNVALUE [2.2.7.4, 2.2.7.19] and the
//! parameters of an RPCRequest [2.2.6.6]; [`TypeInfoSite`] holds the few
//! ways the two places differ.

use crate::tds::error::DecodeError;
use crate::tds::read::Reader;

/// A data type id, the first byte of TYPE_INFO [2.2.5.4].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DataType(pub u8);

impl DataType {
    // Fixed-length types [2.2.5.4.2].
    pub const NULL: DataType = DataType(0x1F);
    pub const INT1: DataType = DataType(0x30);
    pub const BIT: DataType = DataType(0x32);
    pub const INT2: DataType = DataType(0x34);
    pub const INT4: DataType = DataType(0x38);
    pub const DATETIM4: DataType = DataType(0x3A);
    pub const FLT4: DataType = DataType(0x3B);
    pub const MONEY: DataType = DataType(0x3C);
    pub const DATETIME: DataType = DataType(0x3D);
    pub const FLT8: DataType = DataType(0x3E);
    pub const MONEY4: DataType = DataType(0x7A);
    pub const INT8: DataType = DataType(0x7F);

    // Variable-length types with a BYTELEN value length [2.2.5.4.3].
    pub const GUID: DataType = DataType(0x24);
    pub const INTN: DataType = DataType(0x26);
    pub const DECIMAL: DataType = DataType(0x37);
    pub const NUMERIC: DataType = DataType(0x3F);
    pub const BITN: DataType = DataType(0x68);
    pub const DECIMALN: DataType = DataType(0x6A);
    pub const NUMERICN: DataType = DataType(0x6C);
    pub const FLTN: DataType = DataType(0x6D);
    pub const MONEYN: DataType = DataType(0x6E);
    pub const DATETIMN: DataType = DataType(0x6F);
    pub const DATEN: DataType = DataType(0x28);
    pub const TIMEN: DataType = DataType(0x29);
    pub const DATETIME2N: DataType = DataType(0x2A);
    pub const DATETIMEOFFSETN: DataType = DataType(0x2B);
    pub const CHAR: DataType = DataType(0x2F);
    pub const VARCHAR: DataType = DataType(0x27);
    pub const BINARY: DataType = DataType(0x2D);
    pub const VARBINARY: DataType = DataType(0x25);

    // USHORTLEN types; a maximum length of 0xFFFF means PLP values.
    pub const BIGVARBINARY: DataType = DataType(0xA5);
    pub const BIGVARCHAR: DataType = DataType(0xA7);
    pub const BIGBINARY: DataType = DataType(0xAD);
    pub const BIGCHAR: DataType = DataType(0xAF);
    pub const NVARCHAR: DataType = DataType(0xE7);
    pub const NCHAR: DataType = DataType(0xEF);
    /// Always PLP values; TYPE_INFO carries XML_INFO instead of a length.
    pub const XML: DataType = DataType(0xF1);
    /// Always PLP values; TYPE_INFO carries UDT_INFO.
    pub const UDT: DataType = DataType(0xF0);

    // LONGLEN types.
    pub const TEXT: DataType = DataType(0x23);
    pub const IMAGE: DataType = DataType(0x22);
    pub const NTEXT: DataType = DataType(0x63);
    pub const SSVARIANT: DataType = DataType(0x62);

    /// Table-valued parameters only travel from client to server.
    pub const TVP: DataType = DataType(0xF3);

    /// TINYINT, SMALLINT, INT, BIGINT and their nullable INTN form
    /// [2.2.5.5.1.1].
    pub fn is_integer(self) -> bool {
        matches!(
            self,
            DataType::INT1 | DataType::INT2 | DataType::INT4 | DataType::INT8 | DataType::INTN
        )
    }

    /// The SQL Server name of the type, for messages ("a bigint column").
    /// Nullable forms name the type family (INTN: "int", FLTN: "float").
    pub fn name(self) -> &'static str {
        match self {
            DataType::NULL => "null",
            DataType::INT1 => "tinyint",
            DataType::BIT | DataType::BITN => "bit",
            DataType::INT2 => "smallint",
            DataType::INT4 | DataType::INTN => "int",
            DataType::INT8 => "bigint",
            DataType::DATETIM4 => "smalldatetime",
            DataType::FLT4 => "real",
            DataType::FLT8 | DataType::FLTN => "float",
            DataType::MONEY | DataType::MONEY4 | DataType::MONEYN => "money",
            DataType::DATETIME | DataType::DATETIMN => "datetime",
            DataType::GUID => "uniqueidentifier",
            DataType::DECIMAL | DataType::DECIMALN => "decimal",
            DataType::NUMERIC | DataType::NUMERICN => "numeric",
            DataType::DATEN => "date",
            DataType::TIMEN => "time",
            DataType::DATETIME2N => "datetime2",
            DataType::DATETIMEOFFSETN => "datetimeoffset",
            DataType::CHAR | DataType::BIGCHAR => "char",
            DataType::VARCHAR | DataType::BIGVARCHAR => "varchar",
            DataType::BINARY | DataType::BIGBINARY => "binary",
            DataType::VARBINARY | DataType::BIGVARBINARY => "varbinary",
            DataType::NVARCHAR => "nvarchar",
            DataType::NCHAR => "nchar",
            DataType::XML => "xml",
            DataType::UDT => "a user-defined type",
            DataType::TEXT => "text",
            DataType::IMAGE => "image",
            DataType::NTEXT => "ntext",
            DataType::SSVARIANT => "sql_variant",
            DataType::TVP => "a table type",
            _ => "an unknown type",
        }
    }

    /// Value size of a fixed-length type [2.2.5.4.2], or None.
    pub fn fixed_len(self) -> Option<u8> {
        let n = match self {
            DataType::NULL => 0,
            DataType::INT1 | DataType::BIT => 1,
            DataType::INT2 => 2,
            DataType::INT4 | DataType::DATETIM4 | DataType::FLT4 | DataType::MONEY4 => 4,
            DataType::MONEY | DataType::DATETIME | DataType::FLT8 | DataType::INT8 => 8,
            _ => return None,
        };
        Some(n)
    }
}

/// An integer's little-endian bytes [2.2.5.5.1.1]: TINYINT (1 byte) is
/// unsigned, SMALLINT, INT and BIGINT (2, 4, 8 bytes) are signed. None for
/// any other length.
pub(crate) fn decode_integer(bytes: &[u8]) -> Option<i64> {
    Some(match *bytes {
        [a] => i64::from(a),
        [a, b] => i64::from(i16::from_le_bytes([a, b])),
        [a, b, c, d] => i64::from(i32::from_le_bytes([a, b, c, d])),
        [a, b, c, d, e, f, g, h] => i64::from_le_bytes([a, b, c, d, e, f, g, h]),
        _ => return None,
    })
}

/// COLLATION is five bytes: LCID and flags, then a sort id [2.2.5.1.2].
const COLLATION_LEN: usize = 5;
/// A USHORTLEN maximum length of 0xFFFF marks a PLP type (varchar(max) ...).
const PLP_MAX_LEN: u16 = 0xFFFF;
/// PLP_NULL: the PLP value is NULL [2.2.5.2.3].
pub(crate) const PLP_NULL: u64 = u64::MAX;
/// UNKNOWN_PLP_LEN: the total length is not sent, only the chunks.
pub(crate) const PLP_UNKNOWN_LEN: u64 = u64::MAX - 1;
/// TIME, DATETIME2 and DATETIMEOFFSET allow a scale of 0 to 7.
const MAX_TIME_SCALE: u8 = 7;

/// How one value of a column or parameter is laid out in ROW, NBCROW and
/// RETURNVALUE (TYPE_VARBYTE [2.2.5.2.3]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum ValueFraming {
    /// FIXEDLENTYPE: exactly this many bytes, no length prefix.
    Fixed(u8),
    /// BYTELEN length then data; 0 is NULL.
    ByteLen,
    /// USHORTCHARBINLEN length then data; 0xFFFF is NULL.
    UShortLen,
    /// TEXT, NTEXT, IMAGE: B_VARBYTE TEXTPTR (empty is NULL), an 8-byte
    /// TIMESTAMP, then LONGLEN length and data.
    TextPtr,
    /// sql_variant: LONGLEN length (0 is NULL), then the variant [2.2.5.5.4].
    Variant,
    /// LONGLEN length then data; 0xFFFFFFFF is NULL. TEXT, NTEXT and IMAGE
    /// as RPC parameters, which carry no TEXTPTR or TIMESTAMP [2.2.6.6].
    LongLen,
    /// PLP_BODY: ULONGLONGLEN total, then chunks up to a zero terminator.
    Plp,
}

/// Where a TYPE_INFO stands. The rule is the same in both [2.2.5.6]; the
/// places differ in what follows it and in the types they carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TypeInfoSite {
    /// COLMETADATA or RETURNVALUE, from the server.
    Response,
    /// ParamMetaData of an RPCRequest, from the client [2.2.6.6]. TEXT,
    /// NTEXT and IMAGE values there are TYPE_VARBYTE alone, without the
    /// TEXTPTR and TIMESTAMP of a ROW [2.2.7.20]. UDT_INFO there is only
    /// the three names (UDT_INFO_IN_RPC), and TVP_TYPE_INFO replaces
    /// TYPE_INFO for a table-valued parameter: neither is decoded.
    RpcParameter,
}

/// What one TYPE_INFO declares: the data type, how its values are framed,
/// and what reading a value needs beyond that.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TypeInfo {
    pub data_type: DataType,
    pub framing: ValueFraming,
    /// DECIMAL and NUMERIC: digits in all; 0 for other types.
    pub precision: u8,
    /// DECIMAL and NUMERIC: digits after the point; TIME, DATETIME2 and
    /// DATETIMEOFFSET: fractional-second digits; 0 for other types.
    pub scale: u8,
}

/// Reads one TYPE_INFO in a response and returns its data type and how its
/// values are framed.
pub(crate) fn read_typed_info(r: &mut Reader<'_>) -> Result<(DataType, ValueFraming), DecodeError> {
    read_type_info_at(r, TypeInfoSite::Response)
}

/// Reads one TYPE_INFO in a response, with precision and scale.
pub(crate) fn read_full_type_info(r: &mut Reader<'_>) -> Result<TypeInfo, DecodeError> {
    read_full_type_info_at(r, TypeInfoSite::Response)
}

/// Reads one TYPE_INFO at `site` and returns its data type and how its
/// values are framed there.
pub(crate) fn read_type_info_at(
    r: &mut Reader<'_>,
    site: TypeInfoSite,
) -> Result<(DataType, ValueFraming), DecodeError> {
    read_full_type_info_at(r, site).map(|info| (info.data_type, info.framing))
}

/// Reads one TYPE_INFO [2.2.5.6] at `site`: TYPE_VARLEN, PRECISION, SCALE
/// and COLLATION as the data type has them (collations are stepped over).
fn read_full_type_info_at(r: &mut Reader<'_>, site: TypeInfoSite) -> Result<TypeInfo, DecodeError> {
    let ty = DataType(r.u8()?);
    let mut info = TypeInfo {
        data_type: ty,
        framing: ValueFraming::ByteLen,
        precision: 0,
        scale: 0,
    };
    if let Some(n) = ty.fixed_len() {
        info.framing = ValueFraming::Fixed(n);
        return Ok(info);
    }
    info.framing = match ty {
        DataType::DATEN => ValueFraming::ByteLen,
        DataType::TIMEN | DataType::DATETIME2N | DataType::DATETIMEOFFSETN => {
            info.scale = read_scale(r)?;
            ValueFraming::ByteLen
        }
        DataType::GUID
        | DataType::INTN
        | DataType::BITN
        | DataType::FLTN
        | DataType::MONEYN
        | DataType::DATETIMN
        | DataType::CHAR
        | DataType::VARCHAR
        | DataType::BINARY
        | DataType::VARBINARY => {
            r.skip(1)?;
            ValueFraming::ByteLen
        }
        // Length, precision, scale.
        DataType::DECIMAL | DataType::NUMERIC | DataType::DECIMALN | DataType::NUMERICN => {
            r.skip(1)?;
            info.precision = r.u8()?;
            info.scale = r.u8()?;
            ValueFraming::ByteLen
        }
        DataType::BIGVARCHAR | DataType::BIGCHAR | DataType::NVARCHAR | DataType::NCHAR => {
            let max = r.u16_le()?;
            r.skip(COLLATION_LEN)?;
            ushort_or_plp(ty, max)
        }
        DataType::BIGVARBINARY | DataType::BIGBINARY => ushort_or_plp(ty, r.u16_le()?),
        DataType::XML => {
            skip_xml_info(r)?;
            ValueFraming::Plp
        }
        DataType::UDT if site == TypeInfoSite::Response => {
            skip_udt_info(r)?;
            ValueFraming::Plp
        }
        DataType::TEXT | DataType::NTEXT => {
            r.skip(4 + COLLATION_LEN)?;
            text_framing(site)
        }
        DataType::IMAGE => {
            r.skip(4)?;
            text_framing(site)
        }
        DataType::SSVARIANT => {
            r.skip(4)?;
            ValueFraming::Variant
        }
        other => return Err(unsupported_type(other, site)),
    };
    Ok(info)
}

fn unsupported_type(ty: DataType, site: TypeInfoSite) -> DecodeError {
    match site {
        TypeInfoSite::Response => DecodeError::invalid(
            "TYPE_INFO",
            format!("data type 0x{:02X} is not valid in a response", ty.0),
        ),
        TypeInfoSite::RpcParameter => DecodeError::invalid(
            "RPCRequest",
            format!("unsupported parameter type 0x{:02X}", ty.0),
        ),
    }
}

/// Only the PARTLENTYPEs varchar, varbinary and nvarchar become PLP with a
/// maximum length of 0xFFFF [2.2.5.4.4]; char, binary and nchar never do.
fn ushort_or_plp(ty: DataType, max: u16) -> ValueFraming {
    let partlen = matches!(
        ty,
        DataType::BIGVARCHAR | DataType::BIGVARBINARY | DataType::NVARCHAR
    );
    if partlen && max == PLP_MAX_LEN {
        ValueFraming::Plp
    } else {
        ValueFraming::UShortLen
    }
}

fn text_framing(site: TypeInfoSite) -> ValueFraming {
    match site {
        TypeInfoSite::Response => ValueFraming::TextPtr,
        TypeInfoSite::RpcParameter => ValueFraming::LongLen,
    }
}

fn read_scale(r: &mut Reader<'_>) -> Result<u8, DecodeError> {
    let scale = r.u8()?;
    if scale > MAX_TIME_SCALE {
        return Err(DecodeError::invalid(
            "TYPE_INFO",
            format!("time scale {scale}, at most {MAX_TIME_SCALE}"),
        ));
    }
    Ok(scale)
}

/// XML_INFO: SCHEMA_PRESENT, then if set DBNAME and OWNING_SCHEMA
/// (B_VARCHAR) and XML_SCHEMA_COLLECTION (US_VARCHAR).
fn skip_xml_info(r: &mut Reader<'_>) -> Result<(), DecodeError> {
    if r.u8()? != 0 {
        skip_b_varchar(r)?;
        skip_b_varchar(r)?;
        skip_us_varchar(r)?;
    }
    Ok(())
}

/// UDT_INFO in a response: MAX_BYTE_SIZE, DB_NAME, SCHEMA_NAME, TYPE_NAME
/// (B_VARCHAR), ASSEMBLY_QUALIFIED_NAME (US_VARCHAR).
fn skip_udt_info(r: &mut Reader<'_>) -> Result<(), DecodeError> {
    r.skip(2)?;
    for _ in 0..3 {
        skip_b_varchar(r)?;
    }
    skip_us_varchar(r)
}

/// Skips a B_VARCHAR (one-byte character count, UTF-16LE).
pub(crate) fn skip_b_varchar(r: &mut Reader<'_>) -> Result<(), DecodeError> {
    let chars = r.u8()? as usize;
    r.skip(chars * 2)
}

/// Skips a US_VARCHAR (two-byte character count, UTF-16LE).
pub(crate) fn skip_us_varchar(r: &mut Reader<'_>) -> Result<(), DecodeError> {
    let chars = r.u16_le()? as usize;
    r.skip(chars * 2)
}

/// PLP_BODY [2.2.5.2.3]: ULONGLONGLEN total (PLP_NULL for NULL), then
/// chunks up to a zero-length terminator. With a known total, the chunks
/// must add up to it.
pub(crate) fn read_plp(r: &mut Reader<'_>) -> Result<Option<Vec<u8>>, DecodeError> {
    let total = r.u64_le()?;
    if total == PLP_NULL {
        return Ok(None);
    }
    let mut out = Vec::new();
    loop {
        let n = r.u32_le()? as usize;
        if n == 0 {
            break;
        }
        out.extend_from_slice(r.take(n)?);
    }
    if total != PLP_UNKNOWN_LEN && total != out.len() as u64 {
        return Err(DecodeError::invalid(
            "PLP value",
            format!("{} bytes in chunks, {total} announced", out.len()),
        ));
    }
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framing(bytes: &[u8]) -> Result<ValueFraming, DecodeError> {
        let mut r = Reader::new(bytes, "test");
        let f = read_full_type_info(&mut r)?.framing;
        assert_eq!(r.remaining(), 0, "TYPE_INFO {bytes:02X?} not fully read");
        Ok(f)
    }

    #[test]
    fn fixed_length_types() {
        let cases = [
            (0x1F, 0),
            (0x30, 1),
            (0x32, 1),
            (0x34, 2),
            (0x38, 4),
            (0x3A, 4),
            (0x3B, 4),
            (0x3C, 8),
            (0x3D, 8),
            (0x3E, 8),
            (0x7A, 4),
            (0x7F, 8),
        ];
        for (ty, n) in cases {
            assert_eq!(framing(&[ty]).unwrap(), ValueFraming::Fixed(n));
        }
    }

    #[test]
    fn byte_length_types() {
        let cases: [&[u8]; 14] = [
            &[0x24, 16],
            &[0x26, 4],
            &[0x68, 1],
            &[0x6D, 8],
            &[0x6E, 8],
            &[0x6F, 8],
            &[0x28],
            &[0x29, 7],
            &[0x2A, 3],
            &[0x2B, 0],
            &[0x6A, 17, 38, 10],
            &[0x6C, 5, 9, 0],
            &[0x27, 30],
            &[0x25, 30],
        ];
        for ti in cases {
            assert_eq!(framing(ti).unwrap(), ValueFraming::ByteLen, "{ti:02X?}");
        }
    }

    #[test]
    fn ushort_length_and_plp_types() {
        let collation = [0x09, 0x04, 0xD0, 0x00, 0x34];
        let mut nvarchar = vec![0xE7, 100, 0];
        nvarchar.extend_from_slice(&collation);
        assert_eq!(framing(&nvarchar).unwrap(), ValueFraming::UShortLen);
        let mut nvarchar_max = vec![0xE7, 0xFF, 0xFF];
        nvarchar_max.extend_from_slice(&collation);
        assert_eq!(framing(&nvarchar_max).unwrap(), ValueFraming::Plp);
        assert_eq!(
            framing(&[0xA5, 0x40, 0x1F]).unwrap(),
            ValueFraming::UShortLen
        );
        assert_eq!(framing(&[0xA5, 0xFF, 0xFF]).unwrap(), ValueFraming::Plp);
    }

    #[test]
    fn xml_udt_text_variant() {
        assert_eq!(framing(&[0xF1, 0]).unwrap(), ValueFraming::Plp);
        // XML with a schema collection: db "d", schema "s", collection "c".
        let xml = [0xF1, 1, 1, b'd', 0, 1, b's', 0, 1, 0, b'c', 0];
        assert_eq!(framing(&xml).unwrap(), ValueFraming::Plp);
        // UDT: max size 0xFFFF, db "d", schema "s", type "t", assembly "a".
        let udt = [
            0xF0, 0xFF, 0xFF, 1, b'd', 0, 1, b's', 0, 1, b't', 0, 1, 0, b'a', 0,
        ];
        assert_eq!(framing(&udt).unwrap(), ValueFraming::Plp);
        let text = [0x23, 0xFF, 0xFF, 0xFF, 0x7F, 0x09, 0x04, 0xD0, 0x00, 0x34];
        assert_eq!(framing(&text).unwrap(), ValueFraming::TextPtr);
        assert_eq!(
            framing(&[0x22, 0xFF, 0xFF, 0xFF, 0x7F]).unwrap(),
            ValueFraming::TextPtr
        );
        assert_eq!(
            framing(&[0x62, 0x10, 0x1F, 0, 0]).unwrap(),
            ValueFraming::Variant
        );
    }

    #[test]
    fn integers_by_width() {
        assert_eq!(decode_integer(&[0xFF]), Some(255));
        assert_eq!(decode_integer(&[0xFF, 0xFF]), Some(-1));
        assert_eq!(decode_integer(&[0, 0, 0, 0x80]), Some(i64::from(i32::MIN)));
        assert_eq!(decode_integer(&[0xFF; 8]), Some(-1));
        assert_eq!(decode_integer(&[]), None);
        assert_eq!(decode_integer(&[1, 2, 3]), None);
    }

    /// TYPE_INFO as an RPC parameter declares it [MS-TDS 2.2.6.6].
    fn param_framing(bytes: &[u8]) -> Result<(DataType, ValueFraming), DecodeError> {
        let mut r = Reader::new(bytes, "test");
        let f = read_type_info_at(&mut r, TypeInfoSite::RpcParameter)?;
        assert_eq!(r.remaining(), 0, "TYPE_INFO {bytes:02X?} not fully read");
        Ok(f)
    }

    #[test]
    fn parameters_of_every_type_class() {
        let collation = [0x09, 0x04, 0xD0, 0x00, 0x34];
        let with_collation = |head: &[u8]| [head, &collation[..]].concat();
        let cases: [(Vec<u8>, DataType, ValueFraming); 16] = [
            (vec![0x38], DataType::INT4, ValueFraming::Fixed(4)),
            (vec![0x7F], DataType::INT8, ValueFraming::Fixed(8)),
            (vec![0x26, 4], DataType::INTN, ValueFraming::ByteLen),
            (
                vec![0x6A, 17, 38, 2],
                DataType::DECIMALN,
                ValueFraming::ByteLen,
            ),
            (vec![0x28], DataType::DATEN, ValueFraming::ByteLen),
            (vec![0x2A, 7], DataType::DATETIME2N, ValueFraming::ByteLen),
            (vec![0x24, 16], DataType::GUID, ValueFraming::ByteLen),
            (
                with_collation(&[0xE7, 0x40, 0x1F]),
                DataType::NVARCHAR,
                ValueFraming::UShortLen,
            ),
            (
                with_collation(&[0xE7, 0xFF, 0xFF]),
                DataType::NVARCHAR,
                ValueFraming::Plp,
            ),
            (
                vec![0xA5, 0xFF, 0xFF],
                DataType::BIGVARBINARY,
                ValueFraming::Plp,
            ),
            (vec![0xF1, 0], DataType::XML, ValueFraming::Plp),
            // No TEXTPTR in a parameter: LONGLEN and the data.
            (
                with_collation(&[0x63, 0xFF, 0xFF, 0xFF, 0x7F]),
                DataType::NTEXT,
                ValueFraming::LongLen,
            ),
            (
                with_collation(&[0x23, 0xFF, 0xFF, 0xFF, 0x7F]),
                DataType::TEXT,
                ValueFraming::LongLen,
            ),
            (
                vec![0x22, 0xFF, 0xFF, 0xFF, 0x7F],
                DataType::IMAGE,
                ValueFraming::LongLen,
            ),
            (
                vec![0x62, 0x10, 0x1F, 0, 0],
                DataType::SSVARIANT,
                ValueFraming::Variant,
            ),
            (vec![0x1F], DataType::NULL, ValueFraming::Fixed(0)),
        ];
        for (bytes, ty, framing) in cases {
            assert_eq!(param_framing(&bytes), Ok((ty, framing)), "{bytes:02X?}");
        }
    }

    #[test]
    fn parameters_and_columns_differ_only_where_the_spec_says() {
        // TEXT/NTEXT/IMAGE: TEXTPTR framing in a response only.
        let image = [0x22, 0xFF, 0xFF, 0xFF, 0x7F];
        assert_eq!(framing(&image).unwrap(), ValueFraming::TextPtr);
        assert_eq!(param_framing(&image).unwrap().1, ValueFraming::LongLen);
        // UDT_INFO differs (UDT_INFO_IN_RPC); UDT parameters are refused, as
        // are TVPs, with the request's context.
        let udt = [
            0xF0, 0xFF, 0xFF, 1, b'd', 0, 1, b's', 0, 1, b't', 0, 1, 0, b'a', 0,
        ];
        assert!(framing(&udt).is_ok());
        let refused: [&[u8]; 3] = [&udt, &[0xF0, 1, b'd', 0], &[0xF3]];
        for bytes in refused {
            assert!(matches!(
                param_framing(bytes),
                Err(DecodeError::Invalid {
                    context: "RPCRequest",
                    ..
                })
            ));
        }
        // Everything else reads the same bytes to the same framing.
        let same: [&[u8]; 5] = [
            &[0x38],
            &[0x6C, 5, 9, 0],
            &[0x29, 7],
            &[0xA5, 0x40, 0x1F],
            &[0xF1, 1, 1, b'd', 0, 1, b's', 0, 1, 0, b'c', 0],
        ];
        for bytes in same {
            assert_eq!(param_framing(bytes).unwrap().1, framing(bytes).unwrap());
        }
        assert!(param_framing(&[0x29, 8]).is_err());
    }

    #[test]
    fn only_var_types_are_plp_at_max_length() {
        // [2.2.5.4.4]: char, nchar and binary with 0xFFFF are not PLP.
        let collation = [0x09, 0x04, 0xD0, 0x00, 0x34];
        for head in [[0xEFu8, 0xFF, 0xFF], [0xAF, 0xFF, 0xFF]] {
            let bytes = [&head[..], &collation[..]].concat();
            assert_eq!(framing(&bytes).unwrap(), ValueFraming::UShortLen);
        }
        assert_eq!(
            framing(&[0xAD, 0xFF, 0xFF]).unwrap(),
            ValueFraming::UShortLen
        );
    }

    #[test]
    fn precision_and_scale_are_kept() {
        let mut r = Reader::new(&[0x6A, 17, 38, 10], "test");
        let info = read_full_type_info(&mut r).unwrap();
        assert_eq!(
            (info.data_type, info.precision, info.scale),
            (DataType::DECIMALN, 38, 10)
        );
        let mut r = Reader::new(&[0x2A, 3], "test");
        let info = read_full_type_info(&mut r).unwrap();
        assert_eq!((info.data_type, info.scale), (DataType::DATETIME2N, 3));
        let mut r = Reader::new(&[0x7F], "test");
        let info = read_full_type_info(&mut r).unwrap();
        assert_eq!(info.framing, ValueFraming::Fixed(8));
        assert_eq!(info.data_type.name(), "bigint");
    }

    #[test]
    fn invalid_types_and_scales() {
        assert!(framing(&[0xF3]).is_err());
        assert!(framing(&[0x00]).is_err());
        assert!(framing(&[0x29, 8]).is_err());
        assert!(matches!(
            framing(&[0xE7, 1, 0, 9]),
            Err(DecodeError::Truncated { .. })
        ));
    }
}
