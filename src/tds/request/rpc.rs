//! RPCRequest [MS-TDS 2.2.6.6]: the head of the first call (procedure,
//! option flags, the statement text and prepared handle it carries, whether
//! more calls follow), and re-expressing `sp_execute` as `sp_executesql`.

use std::borrow::Cow;

use super::all_headers::split_all_headers;
use crate::tds::error::DecodeError;
use crate::tds::read::{utf16_to_string, Reader};
use crate::tds::token::type_info::{
    decode_integer, read_plp, read_type_info_at, skip_b_varchar, DataType, TypeInfoSite,
    ValueFraming,
};

/// Well-known ProcIDs, sent after ProcIDSwitch 0xFFFF [MS-TDS 2.2.6.6].
pub mod proc_id {
    pub const SP_CURSOR: u16 = 1;
    pub const SP_CURSOROPEN: u16 = 2;
    pub const SP_CURSORPREPARE: u16 = 3;
    pub const SP_CURSOREXECUTE: u16 = 4;
    pub const SP_CURSORPREPEXEC: u16 = 5;
    pub const SP_CURSORUNPREPARE: u16 = 6;
    pub const SP_CURSORFETCH: u16 = 7;
    pub const SP_CURSOROPTION: u16 = 8;
    pub const SP_CURSORCLOSE: u16 = 9;
    pub const SP_EXECUTESQL: u16 = 10;
    pub const SP_PREPARE: u16 = 11;
    pub const SP_EXECUTE: u16 = 12;
    pub const SP_PREPEXEC: u16 = 13;
    pub const SP_PREPEXECRPC: u16 = 14;
    pub const SP_UNPREPARE: u16 = 15;
}

const PROC_NAMES: [(&str, u16); 15] = [
    ("sp_cursor", proc_id::SP_CURSOR),
    ("sp_cursoropen", proc_id::SP_CURSOROPEN),
    ("sp_cursorprepare", proc_id::SP_CURSORPREPARE),
    ("sp_cursorexecute", proc_id::SP_CURSOREXECUTE),
    ("sp_cursorprepexec", proc_id::SP_CURSORPREPEXEC),
    ("sp_cursorunprepare", proc_id::SP_CURSORUNPREPARE),
    ("sp_cursorfetch", proc_id::SP_CURSORFETCH),
    ("sp_cursoroption", proc_id::SP_CURSOROPTION),
    ("sp_cursorclose", proc_id::SP_CURSORCLOSE),
    ("sp_executesql", proc_id::SP_EXECUTESQL),
    ("sp_prepare", proc_id::SP_PREPARE),
    ("sp_execute", proc_id::SP_EXECUTE),
    ("sp_prepexec", proc_id::SP_PREPEXEC),
    ("sp_prepexecrpc", proc_id::SP_PREPEXECRPC),
    ("sp_unprepare", proc_id::SP_UNPREPARE),
];

/// RPC OptionFlags bits [MS-TDS 2.2.6.6].
pub mod rpc_option {
    pub const F_WITH_RECOMP: u16 = 0x0001;
    pub const F_NO_METADATA: u16 = 0x0002;
    pub const F_REUSE_METADATA: u16 = 0x0004;
}

/// Parameter StatusFlags bits [MS-TDS 2.2.6.6].
pub mod param_status {
    pub const F_BY_REF_VALUE: u8 = 0x01;
    pub const F_DEFAULT_VALUE: u8 = 0x02;
    /// Always Encrypted: ParamCipherInfo follows TYPE_INFO (TDS 7.4).
    pub const F_ENCRYPTED: u8 = 0x08;
}

/// NameLenProcID: a procedure by name (US_VARCHAR) or by well-known ProcID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProcRef {
    Id(u16),
    Name(String),
}

impl ProcRef {
    /// The well-known ProcID, also for a call by name such as
    /// `sp_executesql` or `[sys].[sp_prepexec]` (any case).
    pub fn well_known_id(&self) -> Option<u16> {
        match self {
            ProcRef::Id(id) => Some(*id).filter(|id| (1..=15).contains(id)),
            ProcRef::Name(name) => {
                let last = name
                    .rsplit('.')
                    .next()?
                    .trim_matches(|c| c == '[' || c == ']');
                PROC_NAMES
                    .iter()
                    .find(|(known, _)| known.eq_ignore_ascii_case(last))
                    .map(|(_, id)| *id)
            }
        }
    }
}

/// The first RPC of an RPCRequest, up to the SQL text it carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RpcHead {
    pub procedure: ProcRef,
    /// [`rpc_option`] bits.
    pub option_flags: u16,
    /// The statement of a procedure that takes one: sp_executesql's first
    /// parameter, the third of sp_prepare / sp_prepexec (after @handle OUTPUT
    /// and @params), and likewise for the cursor procedures. `None` for other
    /// procedures, a NULL or non-Unicode value, or a call that stops early.
    pub sql_text: Option<String>,
    /// The prepared handle the call uses: the first parameter of sp_execute
    /// and sp_unprepare (a handle from sp_prepare / sp_prepexec), or of
    /// sp_cursorexecute and sp_cursorunprepare (a handle from
    /// sp_cursorprepare / sp_cursorprepexec). Drivers send it as INT4 or
    /// INTN(4); any integer type whose value fits an int is taken, as the
    /// server converts it. `None` for other procedures, a NULL, non-integer
    /// or out-of-range value, or a call without parameters.
    pub handle: Option<i32>,
    /// More RPCs follow this one in the same message (BatchFlag): routing
    /// the message by its first call alone would be unsafe.
    pub batched: bool,
    /// The parameter declarations (`@P1 int, ...`) of sp_prepare /
    /// sp_prepexec, the parameter before the statement.
    pub params_decl: Option<String>,
}

impl RpcHead {
    /// Decodes the head of an RPCRequest payload, ALL_HEADERS included.
    pub fn decode(payload: &[u8]) -> Result<Self, DecodeError> {
        let (_, body) = split_all_headers(payload)?;
        Self::decode_body(body)
    }

    /// Decodes the head of the RPCReqBatch that follows ALL_HEADERS.
    pub fn decode_body(body: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(body, "RPCRequest");
        let procedure = decode_proc_ref(&mut r)?;
        let option_flags = r.u16_le()?;
        let params = r.rest();
        let id = procedure.well_known_id();
        let sql_text = match id.and_then(statement_position) {
            Some(position) => statement_text(&mut Reader::new(params, "RPCRequest"), position)?,
            None => None,
        };
        let handle = match id.filter(|&id| takes_prepared_handle(id)) {
            Some(_) => handle_param(&mut Reader::new(params, "RPCRequest"))?,
            None => None,
        };
        let params_decl = match id {
            Some(proc_id::SP_PREPARE | proc_id::SP_PREPEXEC) => {
                statement_text(&mut Reader::new(params, "RPCRequest"), 1)?
            }
            _ => None,
        };
        Ok(RpcHead {
            procedure,
            option_flags,
            sql_text,
            handle,
            batched: more_calls_follow(params)?,
            params_decl,
        })
    }
}

/// One argument of an RPC call: what routing needs of a procedure whose
/// effect on the session depends on a string argument (`sp_getapplock`'s
/// `@LockOwner`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RpcArgument {
    /// The parameter name as sent (`@LockOwner`); empty when positional.
    pub name: String,
    /// The value of a character parameter (Unicode, or single-byte read as
    /// UTF-8 with replacement); `None` for NULL and other types.
    pub text: Option<String>,
}

/// The arguments of the first call of an RPCRequest payload (ALL_HEADERS
/// included), in order.
pub fn call_arguments(payload: &[u8]) -> Result<Vec<RpcArgument>, DecodeError> {
    let (_, body) = split_all_headers(payload)?;
    let mut r = Reader::new(body, "RPCRequest");
    decode_proc_ref(&mut r)?;
    r.u16_le()?; // option flags
    let mut arguments = Vec::new();
    while !params_ended(&r) {
        let name = r.b_varchar()?;
        let param = read_param_after_name(&mut r)?;
        let text = match (param.data_type, param.value) {
            (DataType::NVARCHAR | DataType::NCHAR | DataType::NTEXT, Some(bytes)) => {
                Some(utf16_to_string(&bytes, "RPCRequest")?)
            }
            (
                DataType::BIGVARCHAR
                | DataType::BIGCHAR
                | DataType::VARCHAR
                | DataType::CHAR
                | DataType::TEXT,
                Some(bytes),
            ) => Some(String::from_utf8_lossy(&bytes).into_owned()),
            _ => None,
        };
        arguments.push(RpcArgument { name, text });
    }
    Ok(arguments)
}

/// Re-expresses `sp_execute handle, values...` as `sp_executesql statement,
/// params_decl, values...`: the same statement and bound values, runnable
/// on a connection that never prepared the handle. ALL_HEADERS, option flags
/// and the bound values are kept byte for byte.
pub fn execute_as_executesql(
    payload: &[u8],
    statement: &str,
    params_decl: &str,
) -> Result<Vec<u8>, DecodeError> {
    let (_, body) = split_all_headers(payload)?;
    let headers_len = payload.len() - body.len();
    let mut r = Reader::new(body, "RPCRequest");
    if decode_proc_ref(&mut r)?.well_known_id() != Some(proc_id::SP_EXECUTE) {
        return Err(DecodeError::invalid("RPCRequest", "not an sp_execute call"));
    }
    let option_flags = r.u16_le()?;
    // A BatchFlag right away means a call without its handle; read as a
    // parameter it would swallow the next call.
    if params_ended(&r) {
        return Err(DecodeError::invalid(
            "RPCRequest",
            "sp_execute without a handle",
        ));
    }
    read_param(&mut r)?;
    let mut out =
        Vec::with_capacity(payload.len() + 2 * (statement.len() + params_decl.len()) + 64);
    out.extend_from_slice(&payload[..headers_len]);
    out.extend_from_slice(&0xFFFFu16.to_le_bytes());
    out.extend_from_slice(&proc_id::SP_EXECUTESQL.to_le_bytes());
    out.extend_from_slice(&option_flags.to_le_bytes());
    put_nvarchar_param(&mut out, statement);
    put_nvarchar_param(&mut out, params_decl);
    out.extend_from_slice(r.rest());
    Ok(out)
}

/// The same sp_execute / sp_unprepare call with its handle (the first
/// parameter) replaced by `handle` as INT4: how a handle Sluice showed the
/// client becomes the handle the serving connection issued. The parameter's
/// name and status, the other parameters and ALL_HEADERS are kept byte for
/// byte.
pub fn with_prepared_handle(payload: &[u8], handle: i32) -> Result<Vec<u8>, DecodeError> {
    let (_, body) = split_all_headers(payload)?;
    let headers_len = payload.len() - body.len();
    let mut r = Reader::new(body, "RPCRequest");
    let id = decode_proc_ref(&mut r)?.well_known_id();
    if !id.is_some_and(takes_prepared_handle) {
        return Err(DecodeError::invalid(
            "RPCRequest",
            "not a call that takes a prepared handle",
        ));
    }
    r.u16_le()?; // option flags
    if params_ended(&r) {
        return Err(DecodeError::invalid("RPCRequest", "no handle parameter"));
    }
    let param_start = r.position();
    let name_and_status = 1 + 2 * usize::from(r.rest()[0]) + 1;
    read_param(&mut r)?;
    let param_end = r.position();
    let mut out = Vec::with_capacity(payload.len() + 8);
    out.extend_from_slice(&payload[..headers_len + param_start + name_and_status]);
    out.extend_from_slice(&[DataType::INTN.0, 4, 4]);
    out.extend_from_slice(&handle.to_le_bytes());
    out.extend_from_slice(&body[param_end..]);
    Ok(out)
}

/// `sp_prepare @handle OUTPUT, params_decl, statement` as an RPC payload
/// after `headers` (the ALL_HEADERS of the client request it serves, so it
/// runs in that request's transaction) [MS-TDS 2.2.6.6]: how Sluice
/// prepares a client's statement again on a connection that lacks it.
pub fn encode_sp_prepare(headers: &[u8], statement: &str, params_decl: &str) -> Vec<u8> {
    let mut out =
        Vec::with_capacity(headers.len() + 2 * (statement.len() + params_decl.len()) + 48);
    out.extend_from_slice(headers);
    out.extend_from_slice(&0xFFFFu16.to_le_bytes());
    out.extend_from_slice(&proc_id::SP_PREPARE.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    // @handle: unnamed, by reference (OUTPUT), INTN(4), NULL.
    out.extend_from_slice(&[0, param_status::F_BY_REF_VALUE, DataType::INTN.0, 4, 0]);
    put_nvarchar_param(&mut out, params_decl);
    put_nvarchar_param(&mut out, statement);
    out
}

/// `sp_unprepare` of the given handles, as one RPCRequest with a call per
/// handle separated by BatchFlag (0xFF) [MS-TDS 2.2.6.6].
pub fn encode_sp_unprepare(headers: &[u8], handles: &[i32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(headers.len() + handles.len() * 16);
    out.extend_from_slice(headers);
    for (i, handle) in handles.iter().enumerate() {
        if i > 0 {
            out.push(0xFF);
        }
        out.extend_from_slice(&0xFFFFu16.to_le_bytes());
        out.extend_from_slice(&proc_id::SP_UNPREPARE.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        // @handle: unnamed, input, INTN(4), the value.
        out.extend_from_slice(&[0, 0, DataType::INTN.0, 4, 4]);
        out.extend_from_slice(&handle.to_le_bytes());
    }
    out
}

/// The ALL_HEADERS block at the start of a request payload.
pub fn all_headers_bytes(payload: &[u8]) -> Result<&[u8], DecodeError> {
    let (_, body) = split_all_headers(payload)?;
    Ok(&payload[..payload.len() - body.len()])
}

/// An unnamed NVARCHAR input parameter: NVARCHAR(4000) when it fits, else
/// NVARCHAR(MAX) as one PLP chunk [MS-TDS 2.2.5.2.3].
fn put_nvarchar_param(out: &mut Vec<u8>, value: &str) {
    /// Latin1_General_CI_AS; the server converts to the column collation.
    const COLLATION: [u8; 5] = [0x09, 0x04, 0xD0, 0x00, 0x34];
    let mut bytes = Vec::with_capacity(value.len() * 2);
    crate::tds::read::put_utf16(&mut bytes, value);
    out.extend_from_slice(&[0, 0, DataType::NVARCHAR.0]);
    if bytes.len() <= 8000 {
        out.extend_from_slice(&8000u16.to_le_bytes());
        out.extend_from_slice(&COLLATION);
        out.extend_from_slice(&(bytes.len() as u16).to_le_bytes());
    } else {
        out.extend_from_slice(&0xFFFFu16.to_le_bytes());
        out.extend_from_slice(&COLLATION);
        out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
        out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    }
    out.extend_from_slice(&bytes);
    if bytes.len() > 8000 {
        out.extend_from_slice(&0u32.to_le_bytes());
    }
}

/// The procedures of every call in an RPCRequest (ALL_HEADERS included),
/// in order: the calls after the first follow a BatchFlag (0xFF) or
/// NoExecFlag (0xFE) [MS-TDS 2.2.6.6].
pub fn batch_procedures(payload: &[u8]) -> Result<Vec<ProcRef>, DecodeError> {
    let (_, body) = split_all_headers(payload)?;
    let mut r = Reader::new(body, "RPCRequest");
    let mut procedures = Vec::new();
    loop {
        procedures.push(decode_proc_ref(&mut r)?);
        r.u16_le()?; // option flags
        while !params_ended(&r) {
            read_param(&mut r)?;
        }
        if r.remaining() == 0 {
            return Ok(procedures);
        }
        r.u8()?; // the flag that starts the next call
        if r.remaining() == 0 {
            return Ok(procedures);
        }
    }
}

/// Skips the first call's parameters; anything left is another call.
fn more_calls_follow(params: &[u8]) -> Result<bool, DecodeError> {
    let mut r = Reader::new(params, "RPCRequest");
    while !params_ended(&r) {
        read_param(&mut r)?;
    }
    Ok(r.remaining() > 0)
}

fn decode_proc_ref(r: &mut Reader<'_>) -> Result<ProcRef, DecodeError> {
    match r.u16_le()? {
        0xFFFF => Ok(ProcRef::Id(r.u16_le()?)),
        0 => Err(DecodeError::invalid("RPCRequest", "empty procedure name")),
        chars => Ok(ProcRef::Name(r.utf16(chars as usize)?)),
    }
}

/// Zero-based position of the statement among a system procedure's
/// parameters (documented signatures, e.g. `sp_prepexec handle OUTPUT,
/// params, stmt`, `sp_cursorprepexec handle OUTPUT, cursor OUTPUT, params,
/// stmt`).
fn statement_position(id: u16) -> Option<usize> {
    match id {
        proc_id::SP_EXECUTESQL => Some(0),
        proc_id::SP_CURSOROPEN => Some(1),
        proc_id::SP_PREPARE | proc_id::SP_PREPEXEC | proc_id::SP_CURSORPREPARE => Some(2),
        proc_id::SP_CURSORPREPEXEC => Some(3),
        _ => None,
    }
}

/// Procedures whose first parameter is an existing prepared handle
/// (`sp_execute handle [, bound param ...]`, `sp_unprepare handle`,
/// `sp_cursorexecute prepared_handle, cursor ...`,
/// `sp_cursorunprepare prepared_handle`).
fn takes_prepared_handle(id: u16) -> bool {
    matches!(
        id,
        proc_id::SP_EXECUTE
            | proc_id::SP_UNPREPARE
            | proc_id::SP_CURSOREXECUTE
            | proc_id::SP_CURSORUNPREPARE
    )
}

/// The first parameter as a handle: a non-NULL integer that fits an int.
fn handle_param(r: &mut Reader<'_>) -> Result<Option<i32>, DecodeError> {
    if params_ended(r) {
        return Ok(None);
    }
    let param = read_param(r)?;
    Ok(param
        .value
        .filter(|_| param.data_type.is_integer())
        .and_then(|bytes| decode_integer(&bytes))
        .and_then(|value| i32::try_from(value).ok()))
}

/// Skips `position` parameters and decodes the next as text.
fn statement_text(r: &mut Reader<'_>, position: usize) -> Result<Option<String>, DecodeError> {
    for _ in 0..position {
        if params_ended(r) {
            return Ok(None);
        }
        read_param(r)?;
    }
    if params_ended(r) {
        return Ok(None);
    }
    let param = read_param(r)?;
    match (param.data_type, param.value) {
        (DataType::NVARCHAR | DataType::NCHAR | DataType::NTEXT, Some(bytes)) => {
            utf16_to_string(&bytes, "RPCRequest").map(Some)
        }
        _ => Ok(None),
    }
}

/// The parameter list ends at the end of the message or at the BatchFlag
/// (0xFF) / NoExecFlag (0xFE) that starts the next RPC; no B_VARCHAR
/// parameter name is that long.
fn params_ended(r: &Reader<'_>) -> bool {
    matches!(r.rest().first(), None | Some(0xFF | 0xFE))
}

/// One decoded parameter: its data type and value (`None` for NULL).
struct Param<'a> {
    data_type: DataType,
    value: Option<Cow<'a, [u8]>>,
}

/// ParameterData: ParamMetaData (B_VARCHAR name, StatusFlags, TYPE_INFO) and
/// ParamLenData [MS-TDS 2.2.6.6]. TYPE_INFO is read by the same parser as a
/// column's; UDT and TVP parameters are not supported.
fn read_param<'a>(r: &mut Reader<'a>) -> Result<Param<'a>, DecodeError> {
    skip_b_varchar(r)?;
    read_param_after_name(r)
}

/// A parameter from its StatusFlags on (its name already read).
fn read_param_after_name<'a>(r: &mut Reader<'a>) -> Result<Param<'a>, DecodeError> {
    if r.u8()? & param_status::F_ENCRYPTED != 0 {
        return Err(DecodeError::invalid(
            "RPCRequest",
            "encrypted (Always Encrypted) parameters are not supported",
        ));
    }
    let (data_type, framing) = read_type_info_at(r, TypeInfoSite::RpcParameter)?;
    let value = read_value(r, framing)?;
    Ok(Param { data_type, value })
}

/// ParamLenData, TYPE_VARBYTE [MS-TDS 2.2.5.2.3]: the value framed as its
/// TYPE_INFO says. Values are borrowed, except PLP ones whose chunks are
/// joined.
fn read_value<'a>(
    r: &mut Reader<'a>,
    framing: ValueFraming,
) -> Result<Option<Cow<'a, [u8]>>, DecodeError> {
    let n = match framing {
        ValueFraming::Fixed(n) => usize::from(n),
        ValueFraming::ByteLen => match r.u8()? {
            0 => return Ok(None),
            n => usize::from(n),
        },
        ValueFraming::UShortLen => match r.u16_le()? {
            u16::MAX => return Ok(None),
            n => usize::from(n),
        },
        ValueFraming::LongLen | ValueFraming::Variant => match r.u32_le()? {
            u32::MAX => return Ok(None),
            n => n as usize,
        },
        ValueFraming::Plp => return read_plp(r).map(|v| v.map(Cow::Owned)),
        ValueFraming::TextPtr => {
            return Err(DecodeError::invalid(
                "RPCRequest",
                "a parameter value framed with a TEXTPTR",
            ))
        }
    };
    Ok(Some(Cow::Borrowed(r.take(n)?)))
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::tds::login7::tests::hex;
    use crate::tds::read::put_utf16;
    use crate::tds::request::tests::all_headers;
    use crate::tds::token::type_info::{PLP_NULL, PLP_UNKNOWN_LEN};

    /// MS-TDS 4.8 RPC Client Request, packet header included.
    pub(in crate::tds::request) fn spec_4_8() -> Vec<u8> {
        hex("03 01 00 2F 00 00 01 00 16 00 00 00 12 00 00 00
             02 00 00 00 00 00 00 00 00 01 00 00 00 00 04 00
             66 00 6F 00 6F 00 33 00 00 00 00 02 26 02 00")
    }

    pub(in crate::tds::request) fn rpc(proc_ref: &ProcRef, params: &[Vec<u8>]) -> Vec<u8> {
        let mut v = all_headers(0);
        match proc_ref {
            ProcRef::Id(id) => {
                v.extend_from_slice(&[0xFF, 0xFF]);
                v.extend_from_slice(&id.to_le_bytes());
            }
            ProcRef::Name(name) => crate::tds::read::put_us_varchar(&mut v, name),
        }
        v.extend_from_slice(&0u16.to_le_bytes());
        params.iter().for_each(|p| v.extend_from_slice(p));
        v
    }

    fn param_head(name: &str, status: u8, type_id: u8) -> Vec<u8> {
        let mut v = Vec::new();
        crate::tds::read::put_b_varchar(&mut v, name);
        v.extend_from_slice(&[status, type_id]);
        v
    }

    const COLLATION: [u8; 5] = [0x09, 0x04, 0xD0, 0x00, 0x34];

    pub(in crate::tds::request) fn nvarchar(name: &str, value: Option<&str>) -> Vec<u8> {
        let mut v = param_head(name, 0, DataType::NVARCHAR.0);
        v.extend_from_slice(&8000u16.to_le_bytes());
        v.extend_from_slice(&COLLATION);
        match value {
            None => v.extend_from_slice(&[0xFF, 0xFF]),
            Some(s) => {
                let mut text = Vec::new();
                put_utf16(&mut text, s);
                v.extend_from_slice(&(text.len() as u16).to_le_bytes());
                v.extend_from_slice(&text);
            }
        }
        v
    }

    /// nvarchar(max): PLP with the given chunk sizes in bytes (the last
    /// chunk takes the rest).
    pub(in crate::tds::request) fn nvarchar_max(
        value: &str,
        chunks: &[usize],
        known_len: bool,
    ) -> Vec<u8> {
        let mut v = param_head("@stmt", 0, DataType::NVARCHAR.0);
        v.extend_from_slice(&[0xFF, 0xFF]);
        v.extend_from_slice(&COLLATION);
        let mut text = Vec::new();
        put_utf16(&mut text, value);
        let total = if known_len {
            text.len() as u64
        } else {
            PLP_UNKNOWN_LEN
        };
        v.extend_from_slice(&total.to_le_bytes());
        let mut rest = &text[..];
        for (i, size) in chunks.iter().enumerate() {
            let size = if i + 1 == chunks.len() {
                rest.len()
            } else {
                *size
            };
            v.extend_from_slice(&(size as u32).to_le_bytes());
            v.extend_from_slice(&rest[..size]);
            rest = &rest[size..];
        }
        v.extend_from_slice(&0u32.to_le_bytes());
        v
    }

    pub(in crate::tds::request) fn ntext(value: &str) -> Vec<u8> {
        let mut v = param_head("", 0, DataType::NTEXT.0);
        v.extend_from_slice(&0x7FFF_FFFFu32.to_le_bytes());
        v.extend_from_slice(&COLLATION);
        let mut text = Vec::new();
        put_utf16(&mut text, value);
        v.extend_from_slice(&(text.len() as u32).to_le_bytes());
        v.extend_from_slice(&text);
        v
    }

    /// `@handle int OUTPUT` as JDBC sends it: INTN, NULL or a value.
    pub(in crate::tds::request) fn handle(value: Option<i32>) -> Vec<u8> {
        let mut v = param_head("@handle", param_status::F_BY_REF_VALUE, DataType::INTN.0);
        v.push(4);
        match value {
            None => v.push(0),
            Some(h) => {
                v.push(4);
                v.extend_from_slice(&h.to_le_bytes());
            }
        }
        v
    }

    #[test]
    fn decodes_spec_4_8_rpc_by_name() {
        let packet = spec_4_8();
        assert_eq!(packet.len(), 0x2F);
        let head = RpcHead::decode(&packet[8..]).unwrap();
        assert_eq!(head.procedure, ProcRef::Name("foo3".into()));
        assert_eq!(head.option_flags, 0);
        assert_eq!(head.sql_text, None);
        assert_eq!(head.procedure.well_known_id(), None);
    }

    #[test]
    fn sp_executesql_text_is_the_first_parameter() {
        let payload = rpc(
            &ProcRef::Id(proc_id::SP_EXECUTESQL),
            &[
                nvarchar("@stmt", Some("SELECT * FROM t WHERE id = @p0")),
                nvarchar("@params", Some("@p0 int")),
                handle(Some(42)),
            ],
        );
        let head = RpcHead::decode(&payload).unwrap();
        assert_eq!(head.procedure, ProcRef::Id(proc_id::SP_EXECUTESQL));
        assert_eq!(
            head.sql_text.as_deref(),
            Some("SELECT * FROM t WHERE id = @p0")
        );
    }

    #[test]
    fn sp_prepexec_and_sp_prepare_text_follows_handle_and_params() {
        for id in [proc_id::SP_PREPEXEC, proc_id::SP_PREPARE] {
            let payload = rpc(
                &ProcRef::Id(id),
                &[
                    handle(None),
                    nvarchar("", Some("@P0 nvarchar(4000)")),
                    nvarchar("", Some("UPDATE t SET a = @P0")),
                    nvarchar("", Some("x")),
                ],
            );
            let head = RpcHead::decode(&payload).unwrap();
            assert_eq!(
                head.sql_text.as_deref(),
                Some("UPDATE t SET a = @P0"),
                "{id}"
            );
        }
    }

    #[test]
    fn cursor_procedures_locate_their_statement() {
        let stmt = || nvarchar("", Some("SELECT 1"));
        let cases = [
            (proc_id::SP_CURSOROPEN, vec![handle(None), stmt()]),
            (
                proc_id::SP_CURSORPREPARE,
                vec![handle(None), nvarchar("", None), stmt()],
            ),
            (
                proc_id::SP_CURSORPREPEXEC,
                vec![handle(None), handle(None), nvarchar("", None), stmt()],
            ),
        ];
        for (id, params) in cases {
            let head = RpcHead::decode(&rpc(&ProcRef::Id(id), &params)).unwrap();
            assert_eq!(head.sql_text.as_deref(), Some("SELECT 1"), "{id}");
        }
    }

    #[test]
    fn plp_nvarchar_max_chunks_are_joined() {
        let text = "SELECT 'é', N'𝄞' FROM big";
        // 3-byte chunks split UTF-16 code units across chunk boundaries.
        for (chunks, known) in [
            (&[3, 5, 7][..], true),
            (&[1, 0][..], false),
            (&[64][..], true),
        ] {
            let payload = rpc(
                &ProcRef::Id(proc_id::SP_EXECUTESQL),
                &[nvarchar_max(text, chunks, known)],
            );
            assert_eq!(
                RpcHead::decode(&payload).unwrap().sql_text.as_deref(),
                Some(text)
            );
        }
    }

    #[test]
    fn plp_length_mismatch_and_null_are_handled() {
        let mut param = nvarchar_max("abc", &[6], true);
        let total_at = 1 + 10 + 2 + 2 + 5; // name, status, type, maxlen, collation
        param[total_at] = 8;
        let payload = rpc(&ProcRef::Id(proc_id::SP_EXECUTESQL), &[param]);
        assert!(RpcHead::decode(&payload).is_err());

        let mut null = param_head("", 0, DataType::NVARCHAR.0);
        null.extend_from_slice(&[0xFF, 0xFF]);
        null.extend_from_slice(&COLLATION);
        null.extend_from_slice(&PLP_NULL.to_le_bytes());
        let payload = rpc(&ProcRef::Id(proc_id::SP_EXECUTESQL), &[null]);
        assert_eq!(RpcHead::decode(&payload).unwrap().sql_text, None);
    }

    #[test]
    fn ntext_statement_and_call_by_name() {
        let payload = rpc(
            &ProcRef::Name("[sys].[SP_EXECUTESQL]".into()),
            &[ntext("SELECT 2")],
        );
        let head = RpcHead::decode(&payload).unwrap();
        assert_eq!(head.procedure.well_known_id(), Some(proc_id::SP_EXECUTESQL));
        assert_eq!(head.sql_text.as_deref(), Some("SELECT 2"));
    }

    #[test]
    fn missing_or_null_statement_is_none() {
        let empty = rpc(&ProcRef::Id(proc_id::SP_EXECUTESQL), &[]);
        assert_eq!(RpcHead::decode(&empty).unwrap().sql_text, None);
        let mut batched = rpc(&ProcRef::Id(proc_id::SP_PREPEXEC), &[handle(None)]);
        batched.push(0xFF); // BatchFlag: the next RPC starts
        assert_eq!(RpcHead::decode(&batched).unwrap().sql_text, None);
        let null = rpc(&ProcRef::Id(proc_id::SP_EXECUTESQL), &[nvarchar("", None)]);
        assert_eq!(RpcHead::decode(&null).unwrap().sql_text, None);
        let execute = rpc(&ProcRef::Id(proc_id::SP_EXECUTE), &[handle(Some(1))]);
        assert_eq!(RpcHead::decode(&execute).unwrap().sql_text, None);
    }

    #[test]
    fn skips_parameters_of_many_types() {
        let mut params = Vec::new();
        let mut int4 = param_head("", 0, DataType::INT4.0);
        int4.extend_from_slice(&5i32.to_le_bytes());
        params.push(int4);
        let mut decimal = param_head("", 0, DataType::DECIMALN.0);
        decimal.extend_from_slice(&[17, 38, 2, 5, 1, 0x10, 0x27, 0, 0]);
        params.push(decimal);
        let mut datetime2 = param_head("", 0, DataType::DATETIME2N.0);
        datetime2.extend_from_slice(&[7, 8, 1, 2, 3, 4, 5, 6, 7, 8]);
        params.push(datetime2);
        let mut varbinary_max = param_head("", 0, DataType::BIGVARBINARY.0);
        varbinary_max.extend_from_slice(&[0xFF, 0xFF]);
        varbinary_max.extend_from_slice(&PLP_UNKNOWN_LEN.to_le_bytes());
        varbinary_max.extend_from_slice(&[2, 0, 0, 0, 0xAB, 0xCD, 0, 0, 0, 0]);
        params.push(varbinary_max);
        let mut xml = param_head("", 0, DataType::XML.0);
        xml.extend_from_slice(&[1, 1, b'd', 0, 0, 1, 0, b'c', 0]);
        xml.extend_from_slice(&PLP_NULL.to_le_bytes());
        params.push(xml);
        let mut all: Vec<u8> = params.concat();
        all.extend(nvarchar("", Some("tail")));
        let mut r = Reader::new(&all, "test");
        for _ in 0..5 {
            read_param(&mut r).unwrap();
        }
        let last = read_param(&mut r).unwrap();
        assert_eq!(
            last.value.as_deref(),
            Some(&[b't', 0, b'a', 0, b'i', 0, b'l', 0][..])
        );
        assert_eq!(r.remaining(), 0);
    }

    #[test]
    fn parameter_values_of_every_type_class() {
        // (TYPE_INFO after the type byte, value bytes, the value read back).
        let typed = |type_id: DataType, info: &[u8], value: &[u8]| {
            let mut v = param_head("@p", 0, type_id.0);
            v.extend_from_slice(info);
            v.extend_from_slice(value);
            v
        };
        let plp = |data: &[u8]| {
            let mut v = (data.len() as u64).to_le_bytes().to_vec();
            v.extend_from_slice(&(data.len() as u32).to_le_bytes());
            v.extend_from_slice(data);
            v.extend_from_slice(&0u32.to_le_bytes());
            v
        };
        type Case<'a> = (Vec<u8>, DataType, Option<&'a [u8]>);
        let cases: Vec<Case> = vec![
            (
                typed(DataType::INT4, &[], &[7, 0, 0, 0]),
                DataType::INT4,
                Some(&[7, 0, 0, 0]),
            ),
            (typed(DataType::BIT, &[], &[1]), DataType::BIT, Some(&[1])),
            (typed(DataType::INTN, &[8], &[0]), DataType::INTN, None),
            (
                typed(DataType::DECIMALN, &[17, 38, 2], &[5, 1, 0x10, 0x27, 0, 0]),
                DataType::DECIMALN,
                Some(&[1, 0x10, 0x27, 0, 0]),
            ),
            (
                typed(DataType::DATEN, &[], &[3, 1, 2, 3]),
                DataType::DATEN,
                Some(&[1, 2, 3]),
            ),
            (
                typed(DataType::TIMEN, &[0], &[3, 1, 2, 3]),
                DataType::TIMEN,
                Some(&[1, 2, 3]),
            ),
            (
                typed(
                    DataType::NVARCHAR,
                    &[[0x40, 0x1F].as_slice(), &COLLATION].concat(),
                    &[2, 0, b'x', 0],
                ),
                DataType::NVARCHAR,
                Some(&[b'x', 0]),
            ),
            (
                typed(DataType::BIGVARBINARY, &[0x40, 0x1F], &[0xFF, 0xFF]),
                DataType::BIGVARBINARY,
                None,
            ),
            // nchar(max) does not exist: 0xFFFF is a USHORT length here.
            (
                typed(
                    DataType::NCHAR,
                    &[[0xFF, 0xFF].as_slice(), &COLLATION].concat(),
                    &[0, 0],
                ),
                DataType::NCHAR,
                Some(&[]),
            ),
            (
                typed(
                    DataType::BIGVARCHAR,
                    &[[0xFF, 0xFF].as_slice(), &COLLATION].concat(),
                    &plp(b"ab"),
                ),
                DataType::BIGVARCHAR,
                Some(b"ab"),
            ),
            (
                typed(DataType::XML, &[0], &plp(b"<a/>")),
                DataType::XML,
                Some(b"<a/>"),
            ),
            // TEXT, NTEXT and IMAGE parameters: LONGLEN and data, no TEXTPTR.
            (
                typed(
                    DataType::TEXT,
                    &[[0xFF, 0xFF, 0xFF, 0x7F].as_slice(), &COLLATION].concat(),
                    &[1, 0, 0, 0, b'z'],
                ),
                DataType::TEXT,
                Some(b"z"),
            ),
            (
                typed(DataType::IMAGE, &[0xFF, 0xFF, 0xFF, 0x7F], &[0xFF; 4]),
                DataType::IMAGE,
                None,
            ),
            (
                typed(
                    DataType::SSVARIANT,
                    &[0x10, 0x1F, 0, 0],
                    &[3, 0, 0, 0, 0x30, 0, 9],
                ),
                DataType::SSVARIANT,
                Some(&[0x30, 0, 9]),
            ),
        ];
        for (bytes, data_type, value) in cases {
            let mut r = Reader::new(&bytes, "test");
            let param = read_param(&mut r).unwrap();
            assert_eq!(param.data_type, data_type, "{bytes:02X?}");
            assert_eq!(param.value.as_deref(), value, "{bytes:02X?}");
            assert_eq!(r.remaining(), 0, "{bytes:02X?}");
        }
    }

    #[test]
    fn unsupported_types_and_encrypted_parameters_are_errors() {
        let tvp = param_head("", 0, 0xF3);
        let payload = rpc(&ProcRef::Id(proc_id::SP_PREPEXEC), &[tvp]);
        assert!(RpcHead::decode(&payload).is_err());
        let mut encrypted = nvarchar("", Some("x"));
        encrypted[1] = param_status::F_ENCRYPTED;
        let payload = rpc(&ProcRef::Id(proc_id::SP_EXECUTESQL), &[encrypted]);
        assert!(RpcHead::decode(&payload).is_err());
    }

    /// An input parameter of a fixed-length type, or of INTN with the given
    /// maximum length (`None` value: NULL).
    fn int_param(type_id: u8, intn_max: u8, value: Option<&[u8]>) -> Vec<u8> {
        let mut v = param_head("", 0, type_id);
        if type_id == DataType::INTN.0 {
            v.push(intn_max);
            v.push(value.map_or(0, |b| b.len() as u8));
        }
        v.extend_from_slice(value.unwrap_or_default());
        v
    }

    /// `sp_execute 7, @P0 = N'x'` as JDBC sends it: the handle as an
    /// unnamed INTN(4) input, then the bound parameters.
    pub(in crate::tds::request) fn sp_execute_7() -> Vec<u8> {
        rpc(
            &ProcRef::Id(proc_id::SP_EXECUTE),
            &[
                int_param(DataType::INTN.0, 4, Some(&7i32.to_le_bytes())),
                nvarchar("@P0", Some("x")),
            ],
        )
    }

    #[test]
    fn sp_execute_and_sp_unprepare_carry_the_handle() {
        let head = RpcHead::decode(&sp_execute_7()).unwrap();
        assert_eq!(head.procedure, ProcRef::Id(proc_id::SP_EXECUTE));
        assert_eq!(head.handle, Some(7));
        assert_eq!(head.sql_text, None);
        let unprepare = rpc(
            &ProcRef::Id(proc_id::SP_UNPREPARE),
            &[int_param(DataType::INTN.0, 4, Some(&7i32.to_le_bytes()))],
        );
        assert_eq!(RpcHead::decode(&unprepare).unwrap().handle, Some(7));
        // By name, with INT4, and a batched RPC after it.
        let mut by_name = rpc(
            &ProcRef::Name("sys.sp_unprepare".into()),
            &[int_param(DataType::INT4.0, 0, Some(&(-3i32).to_le_bytes()))],
        );
        assert!(!RpcHead::decode(&by_name).unwrap().batched);
        by_name.push(0xFF);
        let head = RpcHead::decode(&by_name).unwrap();
        assert_eq!(head.handle, Some(-3));
        assert!(
            head.batched,
            "a BatchFlag after the first call means more calls"
        );
        for id in [proc_id::SP_CURSOREXECUTE, proc_id::SP_CURSORUNPREPARE] {
            let payload = rpc(
                &ProcRef::Id(id),
                &[
                    int_param(DataType::INTN.0, 4, Some(&9i32.to_le_bytes())),
                    handle(None),
                ],
            );
            assert_eq!(RpcHead::decode(&payload).unwrap().handle, Some(9), "{id}");
        }
    }

    #[test]
    fn a_prepared_handle_is_replaced_and_the_rest_kept() {
        let original = sp_execute_7();
        let rewritten = with_prepared_handle(&original, 70_000).unwrap();
        let head = RpcHead::decode(&rewritten).unwrap();
        assert_eq!(head.procedure, ProcRef::Id(proc_id::SP_EXECUTE));
        assert_eq!(head.handle, Some(70_000));
        // The bound parameter follows unchanged.
        assert!(rewritten.ends_with(&nvarchar("@P0", Some("x"))));
        // By name and as INT4 (one byte shorter than INTN(4)).
        let by_name = rpc(
            &ProcRef::Name("sp_unprepare".into()),
            &[int_param(DataType::INT4.0, 0, Some(&(-3i32).to_le_bytes()))],
        );
        let rewritten = with_prepared_handle(&by_name, 5).unwrap();
        assert_eq!(RpcHead::decode(&rewritten).unwrap().handle, Some(5));
        let executesql = rpc(
            &ProcRef::Id(proc_id::SP_EXECUTESQL),
            &[nvarchar("", Some("SELECT 1"))],
        );
        assert!(with_prepared_handle(&executesql, 1).is_err());
    }

    #[test]
    fn sp_execute_without_a_handle_is_not_rewritten() {
        // Found by the execute_as_executesql fuzz target: a BatchFlag where
        // the handle should be was read as a parameter, and the rewrite
        // swallowed the next call.
        let mut batch = rpc(&ProcRef::Id(proc_id::SP_EXECUTE), &[]);
        let second = rpc(&ProcRef::Name("dbo.p".into()), &[]);
        let headers = all_headers_bytes(&second).unwrap().len();
        batch.push(0xFF);
        batch.extend_from_slice(&second[headers..]);
        assert!(RpcHead::decode(&batch).unwrap().batched);
        assert!(execute_as_executesql(&batch, "SELECT 1", "").is_err());
    }

    #[test]
    fn every_call_of_a_batch_is_named() {
        let mut batch = sp_execute_7();
        let second = rpc(&ProcRef::Name("dbo.p".into()), &[]);
        let headers = all_headers_bytes(&second).unwrap().len();
        batch.push(0xFF);
        batch.extend_from_slice(&second[headers..]);
        assert_eq!(
            batch_procedures(&batch).unwrap(),
            [
                ProcRef::Id(proc_id::SP_EXECUTE),
                ProcRef::Name("dbo.p".into())
            ]
        );
        assert_eq!(batch_procedures(&sp_execute_7()).unwrap().len(), 1);
        assert!(batch_procedures(&batch[..batch.len() - 1]).is_err());
    }

    #[test]
    fn sp_prepare_of_our_own_decodes_like_a_client_one() {
        let headers = all_headers_bytes(&sp_execute_7()).unwrap().to_vec();
        let payload = encode_sp_prepare(&headers, "SELECT @a", "@a int");
        let head = RpcHead::decode(&payload).unwrap();
        assert_eq!(head.procedure, ProcRef::Id(proc_id::SP_PREPARE));
        assert_eq!(head.sql_text.as_deref(), Some("SELECT @a"));
        assert_eq!(head.params_decl.as_deref(), Some("@a int"));
        assert!(!head.batched);
    }

    #[test]
    fn handle_of_other_integer_types() {
        let execute = |param: Vec<u8>| {
            RpcHead::decode(&rpc(&ProcRef::Id(proc_id::SP_EXECUTE), &[param]))
                .map(|head| head.handle)
        };
        assert_eq!(
            execute(int_param(DataType::INTN.0, 8, Some(&7i64.to_le_bytes()))),
            Ok(Some(7))
        );
        assert_eq!(
            execute(int_param(DataType::INT8.0, 0, Some(&7i64.to_le_bytes()))),
            Ok(Some(7))
        );
        assert_eq!(
            execute(int_param(DataType::INT2.0, 0, Some(&[7, 0]))),
            Ok(Some(7))
        );
        assert_eq!(
            execute(int_param(DataType::INT1.0, 0, Some(&[200]))),
            Ok(Some(200))
        );
        let too_big = (i64::from(i32::MAX) + 1).to_le_bytes();
        assert_eq!(
            execute(int_param(DataType::INT8.0, 0, Some(&too_big))),
            Ok(None)
        );
    }

    #[test]
    fn no_handle_when_absent_null_or_not_an_integer() {
        let execute = |params: &[Vec<u8>]| {
            RpcHead::decode(&rpc(&ProcRef::Id(proc_id::SP_EXECUTE), params)).map(|head| head.handle)
        };
        assert_eq!(execute(&[]), Ok(None));
        assert_eq!(execute(&[int_param(DataType::INTN.0, 4, None)]), Ok(None));
        assert_eq!(execute(&[nvarchar("", Some("7"))]), Ok(None));
        let mut float = param_head("", 0, DataType::FLT8.0);
        float.extend_from_slice(&7f64.to_le_bytes());
        assert_eq!(execute(&[float]), Ok(None));
        // Other procedures report no handle, even with an int first.
        let executesql = rpc(
            &ProcRef::Id(proc_id::SP_EXECUTESQL),
            &[int_param(DataType::INT4.0, 0, Some(&[7, 0, 0, 0]))],
        );
        assert_eq!(RpcHead::decode(&executesql).unwrap().handle, None);
        let prepexec = rpc(&ProcRef::Id(proc_id::SP_PREPEXEC), &[handle(Some(7))]);
        assert_eq!(RpcHead::decode(&prepexec).unwrap().handle, None);
        // A truncated handle is an error, not a guess.
        let mut cut = sp_execute_7();
        let handle_end = cut.len() - nvarchar("@P0", Some("x")).len();
        cut.truncate(handle_end - 1);
        assert!(RpcHead::decode(&cut).is_err());
    }

    #[test]
    fn call_arguments_are_named_or_positional_text() {
        let payload = rpc(
            &ProcRef::Name("sp_getapplock".into()),
            &[
                nvarchar("", Some("orders")),
                nvarchar("@LockMode", Some("Exclusive")),
                nvarchar("@LockOwner", Some("Session")),
                int_param(DataType::INT4.0, 0, Some(&[0, 0, 0, 0])),
                nvarchar("@DbPrincipal", None),
            ],
        );
        let args = call_arguments(&payload).unwrap();
        let pairs: Vec<(&str, Option<&str>)> = args
            .iter()
            .map(|a| (a.name.as_str(), a.text.as_deref()))
            .collect();
        assert_eq!(
            pairs,
            [
                ("", Some("orders")),
                ("@LockMode", Some("Exclusive")),
                ("@LockOwner", Some("Session")),
                ("", None),
                ("@DbPrincipal", None),
            ]
        );
        assert_eq!(
            call_arguments(&rpc(&ProcRef::Name("p".into()), &[])),
            Ok(vec![])
        );
        let mut cut = payload.clone();
        cut.truncate(payload.len() - 3);
        assert!(call_arguments(&cut).is_err());
    }
}
