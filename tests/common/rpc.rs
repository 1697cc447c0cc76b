//! RPCRequest payloads [MS-TDS 2.2.6.6] as a driver builds them for
//! prepared statements (JDBC, ODBC): what tiberius never sends, so that a
//! test can speak them through `RawClient`.
#![allow(dead_code)]

use sluice::tds::read::{put_b_varchar, put_utf16};
use sluice::tds::request::{encode_all_headers, proc_id};

/// Parameter StatusFlags fByRefValue: an OUTPUT parameter.
const BY_REF: u8 = 0x01;
const INTN: u8 = 0x26;
const NVARCHAR: u8 = 0xE7;
/// Latin1_General_CI_AS.
const COLLATION: [u8; 5] = [0x09, 0x04, 0xD0, 0x00, 0x34];

/// ALL_HEADERS (transaction descriptor 0, one outstanding request), then
/// a call by ProcID with no option flags.
fn call(id: u16) -> Vec<u8> {
    let mut out = Vec::new();
    encode_all_headers(&mut out, 0, 1);
    out.extend_from_slice(&0xFFFFu16.to_le_bytes());
    out.extend_from_slice(&id.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out
}

/// A call of a procedure by name with NVARCHAR arguments (`""` for a
/// positional one), as ADO.NET sends a `CommandType.StoredProcedure`.
pub fn by_name(procedure: &str, arguments: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_all_headers(&mut out, 0, 1);
    sluice::tds::read::put_us_varchar(&mut out, procedure);
    out.extend_from_slice(&0u16.to_le_bytes());
    for (name, value) in arguments {
        nvarchar_param(&mut out, name, value);
    }
    out
}

/// An API server cursor call by ProcID with no parameters (enough for
/// routing; a server answers it with an error).
pub fn cursor_call(id: u16) -> Vec<u8> {
    call(id)
}

/// An INTN(4) parameter: `None` is NULL.
pub fn int_param(out: &mut Vec<u8>, name: &str, output: bool, value: Option<i32>) {
    put_b_varchar(out, name);
    out.push(if output { BY_REF } else { 0 });
    out.extend_from_slice(&[INTN, 4]);
    match value {
        None => out.push(0),
        Some(v) => {
            out.push(4);
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
}

/// An NVARCHAR(4000) input parameter.
pub fn nvarchar_param(out: &mut Vec<u8>, name: &str, value: &str) {
    put_b_varchar(out, name);
    out.push(0);
    out.push(NVARCHAR);
    out.extend_from_slice(&8000u16.to_le_bytes());
    out.extend_from_slice(&COLLATION);
    let mut text = Vec::new();
    put_utf16(&mut text, value);
    out.extend_from_slice(&(text.len() as u16).to_le_bytes());
    out.extend_from_slice(&text);
}

/// `sp_prepare @handle OUTPUT, @params, @stmt`.
pub fn sp_prepare(params: &str, statement: &str) -> Vec<u8> {
    prepare(proc_id::SP_PREPARE, params, statement)
}

/// `sp_prepexec @handle OUTPUT, @params, @stmt` (no bound values).
pub fn sp_prepexec(params: &str, statement: &str) -> Vec<u8> {
    prepare(proc_id::SP_PREPEXEC, params, statement)
}

fn prepare(id: u16, params: &str, statement: &str) -> Vec<u8> {
    let mut out = call(id);
    int_param(&mut out, "@handle", true, None);
    nvarchar_param(&mut out, "@params", params);
    nvarchar_param(&mut out, "@stmt", statement);
    out
}

/// `sp_execute handle, @name = value ...` with INT values.
pub fn sp_execute(handle: i32, values: &[(&str, i32)]) -> Vec<u8> {
    let mut out = call(proc_id::SP_EXECUTE);
    int_param(&mut out, "", false, Some(handle));
    for (name, value) in values {
        int_param(&mut out, name, false, Some(*value));
    }
    out
}

/// `sp_unprepare handle`.
pub fn sp_unprepare(handle: i32) -> Vec<u8> {
    let mut out = call(proc_id::SP_UNPREPARE);
    int_param(&mut out, "", false, Some(handle));
    out
}

/// Several calls in one RPCRequest: ALL_HEADERS once, then the calls
/// separated by BatchFlag (0xFF), as JDBC's executeBatch sends them.
pub fn batched(calls: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, call) in calls.iter().enumerate() {
        let headers = u32::from_le_bytes([call[0], call[1], call[2], call[3]]) as usize;
        if i == 0 {
            out.extend_from_slice(call);
        } else {
            out.push(0xFF);
            out.extend_from_slice(&call[headers..]);
        }
    }
    out
}
