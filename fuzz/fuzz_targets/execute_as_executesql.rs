//! sp_execute → sp_executesql rewrite [MS-TDS 2.2.6.6]: the session runs a
//! statement prepared on a replica on the primary by rewriting the client's
//! `sp_execute handle, values...` payload. The payload comes from the
//! client, so the rewrite must never panic, and what it sends on must be an
//! RPC the proxy itself reads back as the same call.
//!
//! Input layout (so the fuzzer can vary the strings and the payload apart):
//! `[repeat u8][stmt_len u16 LE][decl_len u16 LE][stmt][decl][payload...]`.
//! The statement is `stmt` repeated `1 + repeat` times, so that a few input
//! bytes reach the NVARCHAR(MAX)/PLP encoding used past 4000 characters.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice::tds::request::{execute_as_executesql, proc_id, split_all_headers, RpcHead};

/// Keeps one execution cheap; still well past the 4000-character switch.
const MAX_STATEMENT_CHARS: usize = 40_000;

fuzz_target!(|data: &[u8]| {
    let Some(((repeat, stmt), decl, payload)) = split_input(data) else {
        return;
    };
    let statement = String::from_utf8_lossy(stmt).repeat(1 + repeat as usize);
    if statement.len() > MAX_STATEMENT_CHARS {
        return;
    }
    let params_decl = String::from_utf8_lossy(decl);

    let Ok(out) = execute_as_executesql(payload, &statement, &params_decl) else {
        return;
    };

    // ALL_HEADERS (the transaction descriptor) is kept byte for byte.
    let (_, body) = split_all_headers(payload).expect("Ok implies ALL_HEADERS decoded");
    let headers = &payload[..payload.len() - body.len()];
    assert!(out.starts_with(headers), "ALL_HEADERS changed");

    // The head is decoded the way the session decodes every RPC. Bound values
    // after the handle are copied unread, so a malformed value list in the
    // input must stay malformed in the output and a valid one valid: the
    // rewrite neither hides nor introduces a framing error.
    let before = RpcHead::decode(payload);
    let after = RpcHead::decode(&out);
    assert_eq!(
        before.is_ok(),
        after.is_ok(),
        "rewrite changed decodability: before {before:?}, after {after:?}"
    );
    let (Ok(before), Ok(after)) = (before, after) else {
        return;
    };
    assert_eq!(before.procedure.well_known_id(), Some(proc_id::SP_EXECUTE));
    assert_eq!(
        after.procedure.well_known_id(),
        Some(proc_id::SP_EXECUTESQL)
    );
    assert_eq!(after.option_flags, before.option_flags);
    assert_eq!(after.sql_text.as_deref(), Some(statement.as_str()));
    assert_eq!(after.batched, before.batched, "BatchFlag / next RPC lost");

    // After the two new parameters come the bound values, byte for byte.
    let prefix =
        headers.len() + 6 + nvarchar_param_len(&statement) + nvarchar_param_len(&params_decl);
    assert!(
        out.len() >= prefix,
        "output shorter than its new parameters"
    );
    assert!(payload.ends_with(&out[prefix..]), "bound values changed");

    // RpcHead only reads the declarations of sp_prepare / sp_prepexec, where
    // they are the second parameter, as in sp_executesql. Relabelling the two
    // new parameters as an sp_prepexec call (ProcID right after ALL_HEADERS
    // and the 0xFFFF switch; the bound values cut off, since sp_prepexec
    // would read the first one as its statement) lets the crate's own
    // decoder read them back.
    let mut relabelled = out[..prefix].to_vec();
    let at = headers.len() + 2;
    relabelled[at..at + 2].copy_from_slice(&proc_id::SP_PREPEXEC.to_le_bytes());
    let as_prepexec = RpcHead::decode(&relabelled).expect("relabelled output decodes");
    assert_eq!(as_prepexec.params_decl.as_deref(), Some(&*params_decl));
});

/// Encoded size of an unnamed NVARCHAR parameter [MS-TDS 2.2.6.6]: name
/// length, status, type, max length, collation, then a USHORT length and
/// the UTF-16 bytes up to 8000 bytes, else NVARCHAR(MAX): a PLP body of one
/// chunk (ULONGLONG total, DWORD chunk length, data, DWORD 0 terminator).
/// Written from the spec, not from the encoder, to check it.
fn nvarchar_param_len(value: &str) -> usize {
    let bytes = value.encode_utf16().count() * 2;
    let framing = if bytes <= 8000 { 2 } else { 8 + 4 + 4 };
    1 + 1 + 1 + 2 + 5 + framing + bytes
}

type Parts<'a> = ((u8, &'a [u8]), &'a [u8], &'a [u8]);

fn split_input(data: &[u8]) -> Option<Parts<'_>> {
    let (&[repeat, s0, s1, d0, d1], rest) = data.split_first_chunk::<5>()?;
    let stmt_len = u16::from_le_bytes([s0, s1]) as usize;
    let decl_len = u16::from_le_bytes([d0, d1]) as usize;
    let stmt = rest.get(..stmt_len)?;
    let rest = &rest[stmt_len..];
    let decl = rest.get(..decl_len)?;
    Some(((repeat, stmt), decl, &rest[decl_len..]))
}
