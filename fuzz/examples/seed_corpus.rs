//! Writes the seed corpora in `fuzz/corpus/<target>/`: the MS-TDS spec
//! examples the unit tests use, messages built with the crate's own
//! encoders, and the labelled statements of `tests/corpus/*.sql`.
//!
//! Run from the repository root after changing a wire format or a target's
//! input layout (each target's header comment describes its layout):
//!
//! ```sh
//! cargo run --manifest-path fuzz/Cargo.toml --example seed_corpus
//! ```
//!
//! Seeds are named, not hashed, so a diff shows which one changed. The
//! fuzzer's own finds are never written here (see .ci/fuzz.sh).

use std::fs;
use std::path::{Path, PathBuf};

use sluice::tds::login7::Login7;
use sluice::tds::packet::{encode_message, PacketType, Status};
use sluice::tds::prelogin::{PreLogin, PreLoginVersion};
use sluice::tds::read::{put_b_varchar, put_us_varchar, put_utf16};
use sluice::tds::request::{
    encode_all_headers, execute_as_executesql, proc_id, tm_request_type, RpcHead,
};
use sluice::tds::token::{
    Done, DoneKind, DoneStatus, EnvChange, FeatureExtAck, LoginAck, ServerMessage, TokenWalker,
};

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let mut corpus = Corpus { root };

    let prelogin = &SPEC_4_1_PRELOGIN[8..];
    let login_4_2 = hex(SPEC_4_2_LOGIN);
    let batch_4_6 = hex(SPEC_4_6_SQL_BATCH);
    let rpc_4_8 = hex(SPEC_4_8_RPC);
    let login_response = hex(SPEC_4_4_LOGIN_RESPONSE);
    let select_response = hex(SPEC_4_7_SELECT_RESPONSE);

    // Packet headers: one of each kind a proxy sees.
    for (name, packet) in [
        ("prelogin", &SPEC_4_1_PRELOGIN[..]),
        ("login7", &login_4_2[..]),
        ("sql_batch", &batch_4_6[..]),
        ("rpc", &rpc_4_8[..]),
        ("tabular_result", &select_response[..]),
    ] {
        corpus.put("packet_header", name, &packet[..8]);
    }

    corpus.put("prelogin", "spec_4_1", prelogin);
    let mut encoded = Vec::new();
    PreLogin {
        version: Some(PreLoginVersion {
            version: 0x1000_0FA0,
            sub_build: 0,
        }),
        encryption: Some(1),
        instance: Some(b"MSSQLServer\0".to_vec()),
        thread_id: Some(1234),
        mars: Some(0),
        trace_id: Some(vec![7; 36]),
        ..PreLogin::default()
    }
    .encode(&mut encoded);
    corpus.put("prelogin", "every_option", &encoded);

    corpus.put("login7", "spec_4_2", &login_4_2[8..]);
    let mut encoded = Vec::new();
    Login7::new_client("sa", "secret", "shop").encode(&mut encoded);
    corpus.put("login7", "new_client", &encoded);

    // ALL_HEADERS and SQLBatch.
    corpus.put("all_headers", "spec_4_6", &batch_4_6[8..]);
    corpus.put("sql_batch", "spec_4_6", &batch_4_6[8..]);
    for (name, sql) in [
        ("select", "SELECT id, name FROM dbo.items WHERE id = 1"),
        ("update_in_tran", "BEGIN TRAN; UPDATE t SET x = 1; COMMIT"),
    ] {
        let payload = sql_batch(7, sql);
        corpus.put("all_headers", name, &payload);
        corpus.put("sql_batch", name, &payload);
    }

    // RPCRequest: the spec example and each call shape the proxy reads.
    let decl = "@P1 int";
    let stmt = "SELECT name FROM dbo.items WHERE id = @P1";
    let rpcs = [
        ("spec_4_8", rpc_4_8[8..].to_vec()),
        (
            "sp_executesql",
            rpc_id(
                proc_id::SP_EXECUTESQL,
                &[nvarchar("", stmt), nvarchar("", decl), int4("@P1", 2)],
            ),
        ),
        (
            "sp_prepexec",
            rpc_id(
                proc_id::SP_PREPEXEC,
                &[
                    handle(None),
                    nvarchar("", decl),
                    nvarchar("", stmt),
                    int4("", 2),
                ],
            ),
        ),
        (
            "sp_prepare_by_name",
            rpc_name(
                "sys.sp_prepare",
                &[handle(None), nvarchar("", decl), nvarchar("", stmt)],
            ),
        ),
        ("sp_execute", sp_execute(Some(1), &[int4("", 2)])),
        (
            "sp_executesql_plp",
            rpc_id(proc_id::SP_EXECUTESQL, &[nvarchar_max("@stmt", stmt)]),
        ),
        (
            "sp_unprepare",
            rpc_id(proc_id::SP_UNPREPARE, &[int4("", 1)]),
        ),
        ("batched", {
            let mut v = sp_execute(Some(1), &[int4("", 2)]);
            v.push(0xFF);
            v.extend_from_slice(&rpc_body_name("dbo.GetOrders", &[int4("@id", 3)]));
            v
        }),
    ];
    for (name, payload) in &rpcs {
        // A seed that fails to decode only exercises the error path.
        RpcHead::decode(payload).unwrap_or_else(|e| panic!("rpc seed {name}: {e}"));
        corpus.put("rpc", name, payload);
    }

    // TransactionManagerRequest [2.2.6.9].
    for (name, ty, data) in [
        (
            "begin",
            tm_request_type::TM_BEGIN_XACT,
            xact(&[2], "t1", &[]),
        ),
        (
            "commit",
            tm_request_type::TM_COMMIT_XACT,
            xact(&[], "t1", &[0]),
        ),
        (
            "rollback_and_begin",
            tm_request_type::TM_ROLLBACK_XACT,
            xact(&[], "", &[1, 4, 0]),
        ),
        ("save", tm_request_type::TM_SAVE_XACT, xact(&[], "sp1", &[])),
        (
            "get_dtc_address",
            tm_request_type::TM_GET_DTC_ADDRESS,
            vec![0, 0],
        ),
    ] {
        let mut payload = all_headers(0x0100_0000_0000_0000);
        payload.extend_from_slice(&ty.to_le_bytes());
        payload.extend_from_slice(&data);
        corpus.put("transaction_manager", name, &payload);
    }

    // sp_execute → sp_executesql: [repeat][stmt_len][decl_len][stmt][decl][payload].
    let executes = [
        (
            "int_value",
            0,
            stmt,
            decl,
            sp_execute(Some(1), &[int4("", 2)]),
        ),
        (
            "nvarchar_value",
            0,
            "SELECT * FROM t WHERE n = @P1",
            "@P1 nvarchar(10)",
            sp_execute(Some(7), &[nvarchar("@P1", "abc")]),
        ),
        ("no_values", 0, "SELECT 1", "", sp_execute(Some(3), &[])),
        (
            "null_handle",
            0,
            stmt,
            decl,
            sp_execute(None, &[int4("", 2)]),
        ),
        (
            "long_statement_plp",
            // 151 × 29 characters: past the 4000-character NVARCHAR(MAX) switch.
            150,
            "SELECT a, b, c FROM dbo.t -- ",
            decl,
            sp_execute(Some(1), &[int4("", 2)]),
        ),
        ("batched", 0, stmt, decl, rpcs[7].1.clone()),
        (
            "by_name",
            0,
            stmt,
            decl,
            rpc_name("sp_execute", &[int4("", 5), int4("", 2)]),
        ),
    ];
    for (name, repeat, stmt, decl, payload) in executes {
        execute_as_executesql(&payload, stmt, decl)
            .unwrap_or_else(|e| panic!("execute_as_executesql seed {name}: {e}"));
        let mut input = vec![repeat];
        input.extend_from_slice(&(stmt.len() as u16).to_le_bytes());
        input.extend_from_slice(&(decl.len() as u16).to_le_bytes());
        input.extend_from_slice(stmt.as_bytes());
        input.extend_from_slice(decl.as_bytes());
        input.extend_from_slice(&payload);
        corpus.put("execute_as_executesql", name, &input);
    }

    // Packet streams: [size u16 LE][step][stream]. size is taken modulo the
    // 512..=32767 range from 512, so 0 is 512 and 3584 is 4096.
    let long_batch = sql_batch(0, &"SELECT 1;".repeat(180));
    let mut two_messages = Vec::new();
    encode_message(
        &mut two_messages,
        PacketType::SQL_BATCH,
        Status::RESET_CONNECTION,
        0,
        &long_batch,
        4096,
    );
    encode_message(
        &mut two_messages,
        PacketType::RPC,
        Status::NORMAL,
        0,
        &rpcs[1].1,
        4096,
    );
    let mut ignored = Vec::new();
    encode_message(
        &mut ignored,
        PacketType::SQL_BATCH,
        Status::IGNORE,
        0,
        &long_batch,
        1024,
    );
    for (name, size, step, stream) in [
        ("reset_then_rpc_to_512", 0u16, 0u8, &two_messages),
        ("reset_then_rpc_bytewise", 0, 1, &two_messages),
        ("ignore_to_600", 88, 7, &ignored),
        ("spec_select_to_4096", 3584, 3, &select_response),
        ("spec_login_response", 0, 0, &login_response),
    ] {
        let mut input = size.to_le_bytes().to_vec();
        input.push(step);
        input.extend_from_slice(stream);
        corpus.put("packet_resize", name, &input);
    }

    // Token streams: spec responses and every token the crate encodes.
    let mut encoded_tokens = Vec::new();
    EnvChange::BeginTransaction {
        descriptor: 0x0100_0000_0000_0000,
    }
    .encode(&mut encoded_tokens);
    EnvChange::Routing {
        port: 1433,
        server: "replica-1".into(),
    }
    .encode(&mut encoded_tokens);
    EnvChange::Database {
        new: "shop".into(),
        old: "master".into(),
    }
    .encode(&mut encoded_tokens);
    ServerMessage {
        number: 8179,
        state: 1,
        class: 16,
        message: "Could not find prepared statement with handle 1.".into(),
        server: "sluice".into(),
        procedure: String::new(),
        line: 1,
    }
    .encode_error(&mut encoded_tokens);
    LoginAck {
        interface: 1,
        tds_version: 0x7400_0004,
        prog_name: "Microsoft SQL Server".into(),
        version: [16, 0, 0x0F, 0xA0],
    }
    .encode(&mut encoded_tokens);
    FeatureExtAck {
        features: vec![(0x0A, vec![1]), (0x01, vec![])],
    }
    .encode(&mut encoded_tokens);
    done(DoneKind::Done, DoneStatus::FINAL, 0).encode(&mut encoded_tokens);

    let streams = [
        ("spec_login_response", login_response[8..].to_vec()),
        ("spec_select_response", select_response[8..].to_vec()),
        ("encoded_tokens", encoded_tokens),
        ("sp_prepexec_reply", sp_prepexec_reply()),
        ("nbcrow_and_plp", nbcrow_and_plp()),
        ("skipped_tokens", skipped_tokens()),
    ];
    for (name, stream) in &streams {
        let mut walker = TokenWalker::new();
        walker
            .feed(stream, &mut Vec::new())
            .unwrap_or_else(|e| panic!("token stream seed {name}: {e}"));
        assert!(
            walker.at_token_boundary(),
            "token stream seed {name} ends mid-token"
        );
        // token_walker: [split u16][stream]; split in the middle.
        let mut input = ((stream.len() / 2) as u16).to_le_bytes().to_vec();
        input.extend_from_slice(stream);
        corpus.put("token_walker", name, &input);
        // walker_chunks: [n][cuts][stream]; n = 3 gives 5 cuts, 6 pieces.
        let mut input = vec![3u8];
        for k in 1..=5 {
            input.extend_from_slice(&((stream.len() * k / 6) as u16).to_le_bytes());
        }
        input.extend_from_slice(stream);
        corpus.put("walker_chunks", name, &input);
    }

    // Admin API request heads: what a probe, `sluice status` and a browser send.
    for (name, head) in [
        ("probe", &b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:9930\r\n\r\n"[..]),
        (
            "status_with_token",
            b"GET /status HTTP/1.1\r\nHost: sluice\r\nAuthorization: Bearer abc\r\nConnection: close\r\n\r\n",
        ),
        (
            "browser",
            b"GET /metrics?x=1 HTTP/1.0\r\nUser-Agent: curl/8\r\nAccept: */*\r\n\r\n",
        ),
        ("post", b"POST /status HTTP/1.1\r\nContent-Length: 0\r\n\r\n"),
    ] {
        corpus.put("admin_http_head", name, head);
    }

    // Classifier: every labelled statement of the corpus, one file each.
    let sql_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/corpus");
    let mut files: Vec<PathBuf> = fs::read_dir(&sql_dir)
        .expect("tests/corpus exists")
        .map(|e| e.expect("readable tests/corpus entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "sql"))
        .collect();
    files.sort();
    for file in files {
        let text = fs::read_to_string(&file).expect("corpus file is UTF-8");
        let stem = file
            .file_stem()
            .and_then(|s| s.to_str())
            .expect("UTF-8 file name");
        for (i, sql) in corpus_statements(&text).iter().enumerate() {
            corpus.put(
                "classify_read_property",
                &format!("{stem}_{:03}", i + 1),
                sql.as_bytes(),
            );
        }
    }
}

struct Corpus {
    root: PathBuf,
}

impl Corpus {
    fn put(&mut self, target: &str, name: &str, bytes: &[u8]) {
        let dir = self.root.join(target);
        fs::create_dir_all(&dir).expect("create corpus dir");
        fs::write(dir.join(name), bytes).expect("write seed");
    }
}

/// The SQL of each `-- expect:` entry (format in the header of each file),
/// without its `-- expect:` / `-- why:` lines.
fn corpus_statements(text: &str) -> Vec<String> {
    let mut entries: Vec<Vec<&str>> = Vec::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.to_ascii_lowercase().starts_with("-- expect:") {
            entries.push(Vec::new());
        } else if let Some(entry) = entries.last_mut() {
            if !(entry.is_empty() && trimmed.to_ascii_lowercase().starts_with("-- why:")) {
                entry.push(line);
            }
        }
    }
    entries
        .into_iter()
        .map(|lines| lines.join("\n").trim().to_string())
        .filter(|sql| !sql.is_empty())
        .collect()
}

// ---- Requests [MS-TDS 2.2.6] ----

const NVARCHARTYPE: u8 = 0xE7;
const INTNTYPE: u8 = 0x26;
const INT4TYPE: u8 = 0x38;
const COLLATION: [u8; 5] = [0x09, 0x04, 0xD0, 0x00, 0x34];

fn all_headers(descriptor: u64) -> Vec<u8> {
    let mut v = Vec::new();
    encode_all_headers(&mut v, descriptor, 1);
    v
}

fn sql_batch(descriptor: u64, sql: &str) -> Vec<u8> {
    let mut v = all_headers(descriptor);
    put_utf16(&mut v, sql);
    v
}

fn rpc_id(id: u16, params: &[Vec<u8>]) -> Vec<u8> {
    let mut v = all_headers(0);
    v.extend_from_slice(&[0xFF, 0xFF]);
    v.extend_from_slice(&id.to_le_bytes());
    v.extend_from_slice(&0u16.to_le_bytes());
    params.iter().for_each(|p| v.extend_from_slice(p));
    v
}

fn rpc_body_name(name: &str, params: &[Vec<u8>]) -> Vec<u8> {
    let mut v = Vec::new();
    put_us_varchar(&mut v, name);
    v.extend_from_slice(&0u16.to_le_bytes());
    params.iter().for_each(|p| v.extend_from_slice(p));
    v
}

fn rpc_name(name: &str, params: &[Vec<u8>]) -> Vec<u8> {
    let mut v = all_headers(0);
    v.extend_from_slice(&rpc_body_name(name, params));
    v
}

fn sp_execute(handle: Option<i32>, values: &[Vec<u8>]) -> Vec<u8> {
    let mut params = vec![match handle {
        Some(h) => int4("", h),
        None => intn_null(""),
    }];
    params.extend_from_slice(values);
    rpc_id(proc_id::SP_EXECUTE, &params)
}

fn param_head(name: &str, status: u8, type_id: u8) -> Vec<u8> {
    let mut v = Vec::new();
    put_b_varchar(&mut v, name);
    v.extend_from_slice(&[status, type_id]);
    v
}

fn int4(name: &str, value: i32) -> Vec<u8> {
    let mut v = param_head(name, 0, INT4TYPE);
    v.extend_from_slice(&value.to_le_bytes());
    v
}

fn intn_null(name: &str) -> Vec<u8> {
    let mut v = param_head(name, 0, INTNTYPE);
    v.extend_from_slice(&[4, 0]);
    v
}

/// `@handle int OUTPUT`, NULL or a value, as JDBC sends it.
fn handle(value: Option<i32>) -> Vec<u8> {
    let mut v = param_head("@handle", 0x01, INTNTYPE);
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

fn nvarchar(name: &str, value: &str) -> Vec<u8> {
    let mut v = param_head(name, 0, NVARCHARTYPE);
    v.extend_from_slice(&8000u16.to_le_bytes());
    v.extend_from_slice(&COLLATION);
    let mut text = Vec::new();
    put_utf16(&mut text, value);
    v.extend_from_slice(&(text.len() as u16).to_le_bytes());
    v.extend_from_slice(&text);
    v
}

/// nvarchar(max) as two PLP chunks of unknown total length.
fn nvarchar_max(name: &str, value: &str) -> Vec<u8> {
    let mut v = param_head(name, 0, NVARCHARTYPE);
    v.extend_from_slice(&[0xFF, 0xFF]);
    v.extend_from_slice(&COLLATION);
    v.extend_from_slice(&(u64::MAX - 1).to_le_bytes());
    let mut text = Vec::new();
    put_utf16(&mut text, value);
    // An odd cut splits a UTF-16 code unit between chunks, as drivers may.
    let (a, b) = text.split_at(text.len() / 2 | 1);
    for chunk in [a, b] {
        v.extend_from_slice(&(chunk.len() as u32).to_le_bytes());
        v.extend_from_slice(chunk);
    }
    v.extend_from_slice(&0u32.to_le_bytes());
    v
}

/// XACT data: [isolation], B_VARBYTE UTF-16 name, then trailing bytes.
fn xact(prefix: &[u8], name: &str, suffix: &[u8]) -> Vec<u8> {
    let mut text = Vec::new();
    put_utf16(&mut text, name);
    let mut v = prefix.to_vec();
    v.push(text.len() as u8);
    v.extend_from_slice(&text);
    v.extend_from_slice(suffix);
    v
}

// ---- Responses [MS-TDS 2.2.7] ----

fn done(kind: DoneKind, status: DoneStatus, row_count: u64) -> Done {
    Done {
        kind,
        status,
        cur_cmd: 0xC1,
        row_count,
    }
}

/// COLMETADATA for the given TYPE_INFOs, columns named "c".
fn colmetadata(type_infos: &[&[u8]]) -> Vec<u8> {
    let mut out = vec![0x81];
    out.extend_from_slice(&(type_infos.len() as u16).to_le_bytes());
    for ti in type_infos {
        out.extend_from_slice(&[0, 0, 0, 0, 1, 0]);
        out.extend_from_slice(ti);
        out.extend_from_slice(&[1, b'c', 0]);
    }
    out
}

/// sp_prepexec's reply: RETURNVALUE @handle, one int row, DONEINPROC,
/// RETURNSTATUS, DONEPROC.
fn sp_prepexec_reply() -> Vec<u8> {
    let mut out = vec![0xAC, 0, 0];
    put_b_varchar(&mut out, "@handle");
    out.extend_from_slice(&[1, 0, 0, 0, 0, 1, 0, INTNTYPE, 4, 4]);
    out.extend_from_slice(&1i32.to_le_bytes());
    out.extend_from_slice(&colmetadata(&[&[INTNTYPE, 4]]));
    out.extend_from_slice(&[0xD1, 4, 42, 0, 0, 0]);
    done(DoneKind::DoneInProc, DoneStatus::COUNT, 1).encode(&mut out);
    out.extend_from_slice(&[0x79, 0, 0, 0, 0]);
    done(DoneKind::DoneProc, DoneStatus::FINAL, 0).encode(&mut out);
    out
}

/// A nullable int, an nvarchar(max) and a varchar(10) column; one NBCROW
/// with the int NULL and a two-chunk PLP value, one ROW with all three.
fn nbcrow_and_plp() -> Vec<u8> {
    let nvarchar_max: &[u8] = &[NVARCHARTYPE, 0xFF, 0xFF, 0x09, 0x04, 0xD0, 0x00, 0x34];
    let varchar: &[u8] = &[0xA7, 10, 0, 0x09, 0x04, 0xD0, 0x00, 0x34];
    let mut out = colmetadata(&[&[INTNTYPE, 4], nvarchar_max, varchar]);
    out.extend_from_slice(&[0xD2, 0b0000_0001]);
    out.extend_from_slice(&6u64.to_le_bytes());
    out.extend_from_slice(&[
        2, 0, 0, 0, b'h', 0, 4, 0, 0, 0, b'i', 0, b'!', 0, 0, 0, 0, 0,
    ]);
    out.extend_from_slice(&[2, 0, b'o', b'k']);
    out.extend_from_slice(&[0xD1, 4, 7, 0, 0, 0]);
    out.extend_from_slice(&u64::MAX.to_le_bytes());
    out.extend_from_slice(&[3, 0, b'a', b'b', b'c']);
    done(DoneKind::Done, DoneStatus::COUNT, 2).encode(&mut out);
    out
}

/// Tokens the walker steps over by length: ORDER, TABNAME, COLINFO,
/// SESSIONSTATE, then INFO and DONE.
fn skipped_tokens() -> Vec<u8> {
    let mut out = vec![0xA9, 2, 0, 1, 0];
    out.extend_from_slice(&[0xA4, 3, 0, 1, 2, 3]);
    out.extend_from_slice(&[0xA5, 3, 0, 1, 1, 0]);
    out.extend_from_slice(&[0xE4, 4, 0, 0, 0, 9, 9, 9, 9]);
    ServerMessage {
        number: 5701,
        state: 2,
        class: 0,
        message: "Changed database context to 'shop'.".into(),
        server: String::new(),
        procedure: String::new(),
        line: 0,
    }
    .encode_info(&mut out);
    done(DoneKind::Done, DoneStatus::FINAL, 0).encode(&mut out);
    out
}

// ---- Spec examples [MS-TDS 4], packet header included ----

fn hex(s: &str) -> Vec<u8> {
    s.split_whitespace()
        .map(|b| u8::from_str_radix(b, 16).expect("spec hex"))
        .collect()
}

/// [MS-TDS 4.1] Pre-Login Request.
const SPEC_4_1_PRELOGIN: [u8; 47] = [
    0x12, 0x01, 0x00, 0x2F, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x1A, 0x00, 0x06, 0x01, 0x00, 0x20,
    0x00, 0x01, 0x02, 0x00, 0x21, 0x00, 0x01, 0x03, 0x00, 0x22, 0x00, 0x04, 0x04, 0x00, 0x26, 0x00,
    0x01, 0xFF, 0x09, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0xB8, 0x0D, 0x00, 0x00, 0x01,
];

/// [MS-TDS 4.2] Login Request.
const SPEC_4_2_LOGIN: &str = "10 01 00 90 00 00 01 00 88 00 00 00 02 00 09 72
     00 10 00 00 00 00 00 07 00 01 00 00 00 00 00 00
     E0 03 00 00 00 00 00 00 09 04 00 00 5E 00 08 00
     6E 00 02 00 72 00 00 00 72 00 07 00 80 00 00 00
     80 00 00 00 80 00 04 00 88 00 00 00 88 00 00 00
     00 50 8B E2 B7 8F 88 00 00 00 88 00 00 00 88 00
     00 00 00 00 00 00 73 00 6B 00 6F 00 73 00 74 00
     6F 00 76 00 31 00 73 00 61 00 4F 00 53 00 51 00
     4C 00 2D 00 33 00 32 00 4F 00 44 00 42 00 43 00";

/// [MS-TDS 4.4] Login Response.
const SPEC_4_4_LOGIN_RESPONSE: &str = "04 01 01 61 00 00 01 00 E3 1B 00 01 06 6D 00 61
     00 73 00 74 00 65 00 72 00 06 6D 00 61 00 73 00
     74 00 65 00 72 00 AB 58 00 45 16 00 00 02 00 25
     00 43 00 68 00 61 00 6E 00 67 00 65 00 64 00 20
     00 64 00 61 00 74 00 61 00 62 00 61 00 73 00 65
     00 20 00 63 00 6F 00 6E 00 74 00 65 00 78 00 74
     00 20 00 74 00 6F 00 20 00 27 00 6D 00 61 00 73
     00 74 00 65 00 72 00 27 00 2E 00 00 00 00 00 00
     00 E3 08 00 07 05 09 04 D0 00 34 00 E3 17 00 02
     0A 75 00 73 00 5F 00 65 00 6E 00 67 00 6C 00 69
     00 73 00 68 00 00 E3 13 00 04 04 34 00 30 00 39
     00 36 00 04 34 00 30 00 39 00 36 00 AB 5C 00 47
     16 00 00 01 00 27 00 43 00 68 00 61 00 6E 00 67
     00 65 00 64 00 20 00 6C 00 61 00 6E 00 67 00 75
     00 61 00 67 00 65 00 20 00 73 00 65 00 74 00 74
     00 69 00 6E 00 67 00 20 00 74 00 6F 00 20 00 75
     00 73 00 5F 00 65 00 6E 00 67 00 6C 00 69 00 73
     00 68 00 2E 00 00 00 00 00 00 00 AD 36 00 01 72
     09 00 02 16 4D 00 69 00 63 00 72 00 6F 00 73 00
     6F 00 66 00 74 00 20 00 53 00 51 00 4C 00 20 00
     53 00 65 00 72 00 76 00 65 00 72 00 00 00 00 00
     00 00 00 00 FD 00 00 00 00 00 00 00 00 00 00 00
     00";

/// [MS-TDS 4.6] SQL Batch Client Request.
const SPEC_4_6_SQL_BATCH: &str = "01 01 00 5C 00 00 01 00 16 00 00 00 12 00 00 00
     02 00 00 00 00 00 00 00 00 01 00 00 00 00 0A 00
     73 00 65 00 6C 00 65 00 63 00 74 00 20 00 27 00
     66 00 6F 00 6F 00 27 00 20 00 61 00 73 00 20 00
     27 00 62 00 61 00 72 00 27 00 0A 00 20 00 20 00
     20 00 20 00 20 00 20 00 20 00 20 00";

/// [MS-TDS 4.7] SQL Batch Server Response to `select 'foo' as 'bar'`.
const SPEC_4_7_SELECT_RESPONSE: &str = "04 01 00 33 00 00 01 00 81 01 00 00 00 00 00 20
     00 A7 03 00 09 04 D0 00 34 03 62 00 61 00 72 00
     D1 03 00 66 6F 6F FD 10 00 C1 00 01 00 00 00 00
     00 00 00";

/// [MS-TDS 4.8] RPC Client Request.
const SPEC_4_8_RPC: &str = "03 01 00 2F 00 00 01 00 16 00 00 00 12 00 00 00
     02 00 00 00 00 00 00 00 00 01 00 00 00 00 04 00
     66 00 6F 00 6F 00 33 00 00 00 00 02 26 02 00";
