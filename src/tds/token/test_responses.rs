//! Responses for the token tests: the examples of [MS-TDS 4] and a
//! synthetic response that uses every value framing and every token the
//! walker steps over, each with the events a walker must report.

use super::walker::TokenEvent;
use super::{Done, DoneKind, DoneStatus, EnvChange, FeatureExtAck, LoginAck, ServerMessage};
use crate::tds::read::{put_b_varchar, put_us_varchar, put_utf16};

pub(crate) fn hex(s: &str) -> Vec<u8> {
    s.split_whitespace()
        .map(|b| u8::from_str_radix(b, 16).expect("test hex"))
        .collect()
}

/// Login response example [MS-TDS 4.4], packet header included: ENVCHANGE
/// (database), INFO 5701, ENVCHANGE (collation, language, packet size),
/// INFO 5703, LOGINACK (TDS 7.2), DONE. The DONE row count is the 8-byte
/// form of TDS 7.2 and later.
pub(crate) fn spec_login_packet() -> Vec<u8> {
    hex("04 01 01 61 00 00 01 00 E3 1B 00 01 06 6D 00 61
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
         00")
}

pub(crate) fn spec_login_events() -> Vec<TokenEvent> {
    let info = |number, state, message: &str| {
        TokenEvent::Info(ServerMessage {
            number,
            state,
            class: 0,
            message: message.into(),
            server: String::new(),
            procedure: String::new(),
            line: 0,
        })
    };
    vec![
        TokenEvent::EnvChange(EnvChange::Database {
            new: "master".into(),
            old: "master".into(),
        }),
        info(5701, 2, "Changed database context to 'master'."),
        TokenEvent::EnvChange(EnvChange::SqlCollation {
            new: vec![0x09, 0x04, 0xD0, 0x00, 0x34],
            old: vec![],
        }),
        TokenEvent::EnvChange(EnvChange::Language {
            new: "us_english".into(),
            old: String::new(),
        }),
        TokenEvent::EnvChange(EnvChange::PacketSize {
            new: "4096".into(),
            old: "4096".into(),
        }),
        info(5703, 1, "Changed language setting to us_english."),
        TokenEvent::LoginAck(LoginAck {
            interface: 1,
            tds_version: 0x7209_0002,
            prog_name: "Microsoft SQL Server\0\0".into(),
            version: [0, 0, 0, 0],
        }),
        TokenEvent::Done(Done {
            kind: DoneKind::Done,
            status: DoneStatus::FINAL,
            cur_cmd: 0,
            row_count: 0,
        }),
    ]
}

/// SQL batch response example [MS-TDS 4.7] to `select 'foo' as 'bar'`,
/// packet header included: COLMETADATA (one varchar(3)), ROW, DONE.
pub(crate) fn spec_select_packet() -> Vec<u8> {
    hex("04 01 00 33 00 00 01 00 81 01 00 00 00 00 00 20
         00 A7 03 00 09 04 D0 00 34 03 62 00 61 00 72 00
         D1 03 00 66 6F 6F FD 10 00 C1 00 01 00 00 00 00
         00 00 00")
}

pub(crate) fn spec_select_events() -> Vec<TokenEvent> {
    vec![
        TokenEvent::ColMetadata { columns: 1 },
        TokenEvent::Done(Done {
            kind: DoneKind::Done,
            status: DoneStatus::COUNT,
            cur_cmd: 0xC1,
            row_count: 1,
        }),
    ]
}

const COLLATION: [u8; 5] = [0x09, 0x04, 0xD0, 0x00, 0x34];

/// A response and the events it must produce, built side by side.
pub(crate) struct Response {
    pub bytes: Vec<u8>,
    pub events: Vec<TokenEvent>,
}

impl Response {
    fn new() -> Response {
        Response {
            bytes: Vec::new(),
            events: Vec::new(),
        }
    }

    fn raw(&mut self, bytes: &[u8]) -> &mut Response {
        self.bytes.extend_from_slice(bytes);
        self
    }

    fn event(&mut self, event: TokenEvent) -> &mut Response {
        self.events.push(event);
        self
    }

    fn done(&mut self, kind: DoneKind, status: DoneStatus, row_count: u64) -> &mut Response {
        let done = Done {
            kind,
            status,
            cur_cmd: 0xC1,
            row_count,
        };
        done.encode(&mut self.bytes);
        self.event(TokenEvent::Done(done))
    }

    fn env_change(&mut self, change: EnvChange) -> &mut Response {
        change.encode(&mut self.bytes);
        self.event(TokenEvent::EnvChange(change))
    }
}

/// TYPE_INFO (plus TableName for TEXT, NTEXT and IMAGE) of one column of
/// every kind, and a non-NULL value for it.
fn every_column() -> Vec<(Vec<u8>, Vec<u8>)> {
    let with_collation = |head: &[u8]| [head, &COLLATION[..]].concat();
    let mut xml = vec![0xF1, 1];
    put_b_varchar(&mut xml, "db");
    put_b_varchar(&mut xml, "dbo");
    put_us_varchar(&mut xml, "schemas");
    let mut udt = vec![0xF0, 0x7C, 0x03];
    for part in ["db", "sys", "hierarchyid"] {
        put_b_varchar(&mut udt, part);
    }
    put_us_varchar(&mut udt, "Microsoft.SqlServer.Types.SqlHierarchyId");
    let mut text = with_collation(&[0x23, 0xFF, 0xFF, 0xFF, 0x7F]);
    text.push(2);
    put_us_varchar(&mut text, "dbo");
    put_us_varchar(&mut text, "t");
    let mut image = vec![0x22, 0xFF, 0xFF, 0xFF, 0x7F, 1];
    put_us_varchar(&mut image, "t");
    let mut ntext = with_collation(&[0x63, 0xFF, 0xFF, 0xFF, 0x3F]);
    ntext.push(0);
    let mut nvarchar_value = vec![6, 0];
    put_utf16(&mut nvarchar_value, "héé");
    let xml_value = plp_known(&[b"<\0a\0/\0>\0"]);
    vec![
        (vec![0x38], vec![1, 2, 3, 4]),
        (vec![0x26, 8], bytelen(&[7; 8])),
        (vec![0x32], vec![1]),
        (vec![0x6A, 17, 38, 10], bytelen(&[1; 17])),
        (vec![0x2B, 7], bytelen(&[2; 10])),
        (with_collation(&[0xE7, 100, 0]), nvarchar_value),
        (
            with_collation(&[0xA7, 0xFF, 0xFF]),
            plp_known(&[b"abc", b"de"]),
        ),
        (vec![0xA5, 0xFF, 0xFF], plp_unknown(&[&[9; 4], &[8]])),
        (xml, xml_value),
        (udt, plp_known(&[&[0x58, 0x40, 0x01]])),
        (text, text_value(b"text")),
        (image, text_value(&[0xFF, 0xD8, 0xFF])),
        (ntext, text_value(b"n\0t\0")),
        (
            vec![0x62, 0x50, 0x1F, 0, 0],
            [&6u32.to_le_bytes()[..], &[0x38, 0, 42, 0, 0, 0]].concat(),
        ),
        (vec![0x24, 16], bytelen(&[0xAB; 16])),
        (vec![0x3C], vec![5; 8]),
        (vec![0x2A, 3], bytelen(&[3; 7])),
        (vec![0x28], bytelen(&[0x0A, 0x46, 0x0B])),
        (vec![0x29, 0], bytelen(&[1, 2, 3])),
        (vec![0x3E], vec![6; 8]),
        (vec![0x1F], vec![]),
        (vec![0x7F], vec![7; 8]),
        (vec![0xAD, 4, 0], [&[4, 0][..], &[1, 2, 3, 4]].concat()),
        (
            with_collation(&[0xEF, 4, 0]),
            [&[4, 0][..], b"a\0b\0"].concat(),
        ),
        (vec![0x6C, 5, 9, 2], bytelen(&[1, 0x39, 0x30, 0, 0])),
        (vec![0x6F, 8], bytelen(&[0; 8])),
        (vec![0x27, 10], bytelen(b"abc")),
    ]
}

/// The same columns' in-band NULL values (fixed-length columns keep a value).
fn every_column_null() -> Vec<Vec<u8>> {
    let plp_null = vec![0xFF; 8];
    vec![
        vec![1, 2, 3, 4],
        vec![0],
        vec![0],
        vec![0],
        vec![0],
        vec![0xFF, 0xFF],
        plp_null.clone(),
        plp_null,
        plp_unknown(&[]),
        plp_known(&[]),
        vec![0],
        [&[16][..], &[0; 24], &[0xFF; 4]].concat(),
        vec![0],
        vec![0, 0, 0, 0],
        vec![0],
        vec![5; 8],
        vec![0],
        vec![0],
        vec![0],
        vec![6; 8],
        vec![],
        vec![7; 8],
        vec![0xFF, 0xFF],
        vec![0xFF, 0xFF],
        vec![0],
        vec![0],
        vec![0],
    ]
}

fn bytelen(data: &[u8]) -> Vec<u8> {
    [&[data.len() as u8][..], data].concat()
}

/// PLP_BODY with its total length and the given chunks.
fn plp_known(chunks: &[&[u8]]) -> Vec<u8> {
    let total: usize = chunks.iter().map(|c| c.len()).sum();
    plp((total as u64).to_le_bytes(), chunks)
}

/// PLP_BODY with UNKNOWN_PLP_LEN.
fn plp_unknown(chunks: &[&[u8]]) -> Vec<u8> {
    plp([0xFE, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF], chunks)
}

fn plp(len: [u8; 8], chunks: &[&[u8]]) -> Vec<u8> {
    let mut out = len.to_vec();
    for c in chunks {
        out.extend_from_slice(&(c.len() as u32).to_le_bytes());
        out.extend_from_slice(c);
    }
    out.extend_from_slice(&[0, 0, 0, 0]);
    out
}

/// TEXTPTR (16 bytes), TIMESTAMP, length and data.
fn text_value(data: &[u8]) -> Vec<u8> {
    let mut out = vec![16];
    out.extend_from_slice(&[0x11; 16]);
    out.extend_from_slice(&[0x22; 8]);
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out.extend_from_slice(data);
    out
}

/// Columns that are NULL in the NBCROW of [`every_framing_response`].
const NBC_NULLS: [usize; 9] = [1, 5, 6, 9, 10, 13, 19, 20, 26];

fn nbcrow(columns: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    let mut bitmap = vec![0u8; columns.len().div_ceil(8)];
    for c in NBC_NULLS {
        bitmap[c / 8] |= 1 << (c % 8);
    }
    let mut out = vec![0xD2];
    out.extend_from_slice(&bitmap);
    for (i, (_, value)) in columns.iter().enumerate() {
        if !NBC_NULLS.contains(&i) {
            out.extend_from_slice(value);
        }
    }
    out
}

/// A response with one column of every type class, ROW and NBCROW rows with
/// values and NULLs, NoMetaData, RETURNVALUEs, and every skipped token.
pub(crate) fn every_framing_response() -> Response {
    let columns = every_column();
    let mut r = Response::new();
    let mut meta = vec![0x81];
    meta.extend_from_slice(&(columns.len() as u16).to_le_bytes());
    for (i, (type_info, _)) in columns.iter().enumerate() {
        meta.extend_from_slice(&[0, 0, 0, 0, 0x01, 0x00]);
        meta.extend_from_slice(type_info);
        put_b_varchar(&mut meta, &format!("c{i}"));
    }
    r.raw(&meta).event(TokenEvent::ColMetadata {
        columns: columns.len(),
    });
    // ORDER by column 1, TABNAME and COLINFO (browse mode), stepped over.
    r.raw(&[0xA9, 2, 0, 1, 0]);
    r.raw(&[0xA4, 5, 0, 1, 1, 0, b't', 0]);
    r.raw(&[0xA5, 3, 0, 1, 1, 0]);
    let row: Vec<u8> = columns.iter().flat_map(|(_, v)| v.clone()).collect();
    r.raw(&[0xD1]).raw(&row);
    r.raw(&nbcrow(&columns));
    r.raw(&[0xD1]).raw(&every_column_null().concat());
    r.done(DoneKind::Done, DoneStatus::COUNT.with(DoneStatus::MORE), 3);

    r.env_change(EnvChange::BeginTransaction { descriptor: 0x1122 });
    let info = ServerMessage {
        number: 50000,
        state: 1,
        class: 10,
        message: "step".into(),
        server: "srv".into(),
        procedure: "p".into(),
        line: 3,
    };
    info.encode_info(&mut r.bytes);
    r.event(TokenEvent::Info(info));
    // NoMetaData: the rows reuse the 27 columns.
    r.raw(&[0x81, 0xFF, 0xFF]).event(TokenEvent::ColMetadata {
        columns: columns.len(),
    });
    r.raw(&[0xD1]).raw(&row);
    r.done(
        DoneKind::DoneInProc,
        DoneStatus::COUNT.with(DoneStatus::MORE),
        1,
    );

    // RETURNVALUE: nvarchar(max) output (PLP), int (fixed), and NULL intn.
    let mut rv = vec![0xAC, 1, 0];
    put_b_varchar(&mut rv, "@out");
    rv.extend_from_slice(&[1, 0, 0, 0, 0, 0x01, 0x00, 0xE7, 0xFF, 0xFF]);
    rv.extend_from_slice(&COLLATION);
    rv.extend_from_slice(&plp_known(&[b"o\0k\0"]));
    r.raw(&rv);
    r.raw(&[0xAC, 2, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0x38, 9, 0, 0, 0]);
    r.raw(&[0xAC, 3, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0x26, 4, 0]);
    r.raw(&[0x79, 0xFE, 0xFF, 0xFF, 0xFF])
        .event(TokenEvent::ReturnStatus(-2));
    r.done(DoneKind::DoneProc, DoneStatus::MORE, 0);

    // SESSIONSTATE, OFFSET, SSPI and FEDAUTHINFO, stepped over.
    r.raw(&[0xE4, 6, 0, 0, 0, 1, 0, 0, 0, 0x81, 0x00]);
    r.raw(&[0x78, 1, 0, 8, 0]);
    r.raw(&[0xED, 3, 0, 0xAA, 0xBB, 0xCC]);
    r.raw(&[0xEE, 0, 0, 0, 0]);

    let error = ServerMessage {
        number: 208,
        state: 1,
        class: 16,
        message: "Invalid object name 'nope'.".into(),
        server: "srv".into(),
        procedure: String::new(),
        line: 1,
    };
    error.encode_error(&mut r.bytes);
    r.event(TokenEvent::Error(error));
    r.done(
        DoneKind::Done,
        DoneStatus::ERROR
            .with(DoneStatus::MORE)
            .with(DoneStatus::INXACT),
        0,
    );

    let ack = FeatureExtAck {
        features: vec![(0x0A, vec![1]), (0x01, vec![0; 20])],
    };
    ack.encode(&mut r.bytes);
    r.event(TokenEvent::FeatureExtAck(ack));
    // Promote Transaction whose Length counts only the type byte.
    r.raw(&[0xE3, 1, 0, 15, 3, 0, 0, 0, 0xAA, 0xBB, 0xCC, 0]);
    r.event(TokenEvent::EnvChange(EnvChange::Other { ty: 15 }));
    r.env_change(EnvChange::CommitTransaction { descriptor: 0x1122 });
    r.env_change(EnvChange::Routing {
        port: 1433,
        server: "replica".into(),
    });
    r.done(DoneKind::Done, DoneStatus::FINAL, 0);
    r
}
