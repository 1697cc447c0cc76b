use super::*;
use crate::tds::token::test_responses::{
    every_framing_response, spec_login_events, spec_login_packet, spec_select_events,
    spec_select_packet, Response,
};
use crate::tds::token::DoneStatus;

const HEADER_LEN: usize = 8;

/// [`every_framing_response`] with the events of its three RETURNVALUEs
/// (nvarchar(max) "@out", INT4 9, NULL INTN), which come before its
/// RETURNSTATUS, unless the fixture already lists them.
fn every_framing() -> Response {
    let mut response = every_framing_response();
    let events = &mut response.events;
    if !events
        .iter()
        .any(|e| matches!(e, TokenEvent::ReturnValue { .. }))
    {
        let at = events
            .iter()
            .position(|e| *e == TokenEvent::ReturnStatus(-2))
            .expect("the fixture has a RETURNSTATUS");
        let return_values =
            [(1, "@out", None), (2, "", Some(9)), (3, "", None)].map(|(ordinal, name, value)| {
                TokenEvent::ReturnValue {
                    ordinal,
                    name: name.into(),
                    value,
                }
            });
        events.splice(at..at, return_values);
    }
    response
}

/// Feeds `bytes` in chunks of `size` and requires a token boundary at the end.
fn walk_in_chunks(bytes: &[u8], size: usize) -> Vec<TokenEvent> {
    let mut walker = TokenWalker::new();
    let mut events = Vec::new();
    for chunk in bytes.chunks(size) {
        walker.feed(chunk, &mut events).unwrap();
    }
    assert!(walker.at_token_boundary(), "chunk size {size}");
    events
}

fn walk_split(bytes: &[u8], cuts: &[usize]) -> Vec<TokenEvent> {
    let mut walker = TokenWalker::new();
    let mut events = Vec::new();
    let mut from = 0;
    for &cut in cuts.iter().chain([bytes.len()].iter()) {
        walker.feed(&bytes[from..cut], &mut events).unwrap();
        from = cut;
    }
    assert!(walker.at_token_boundary(), "cuts {cuts:?}");
    events
}

fn walk_err(bytes: &[u8]) -> DecodeError {
    let mut events = Vec::new();
    TokenWalker::new().feed(bytes, &mut events).unwrap_err()
}

#[test]
fn spec_login_response() {
    let packet = spec_login_packet();
    assert_eq!(packet.len(), 0x0161);
    assert_eq!(
        walk_in_chunks(&packet[HEADER_LEN..], usize::MAX),
        spec_login_events()
    );
}

#[test]
fn spec_select_response() {
    let packet = spec_select_packet();
    assert_eq!(packet.len(), 0x33);
    assert_eq!(
        walk_in_chunks(&packet[HEADER_LEN..], usize::MAX),
        spec_select_events()
    );
}

#[test]
fn every_framing_in_one_feed() {
    let response = every_framing();
    assert_eq!(walk_in_chunks(&response.bytes, usize::MAX), response.events);
}

#[test]
fn every_chunk_size_gives_the_same_events() {
    let login = spec_login_packet();
    let select = spec_select_packet();
    let every = every_framing();
    let cases = [
        (&login[HEADER_LEN..], spec_login_events()),
        (&select[HEADER_LEN..], spec_select_events()),
        (&every.bytes[..], every.events.clone()),
    ];
    for (bytes, want) in cases {
        for size in [1, 2, 3, 7, 13, 64, 512] {
            assert_eq!(walk_in_chunks(bytes, size), want, "chunk size {size}");
        }
    }
}

#[test]
fn every_split_point_gives_the_same_events() {
    let every = every_framing();
    let login = spec_login_packet();
    for (bytes, want) in [
        (&every.bytes[..], &every.events),
        (&login[HEADER_LEN..], &spec_login_events()),
    ] {
        for cut in 0..=bytes.len() {
            assert_eq!(&walk_split(bytes, &[cut]), want, "cut at {cut}");
        }
    }
}

#[test]
fn every_pair_of_split_points_of_a_short_response() {
    let packet = spec_select_packet();
    let bytes = &packet[HEADER_LEN..];
    for a in 0..=bytes.len() {
        for b in a..=bytes.len() {
            assert_eq!(
                walk_split(bytes, &[a, b]),
                spec_select_events(),
                "cuts {a} {b}"
            );
        }
    }
}

#[test]
fn boundary_only_between_tokens() {
    let packet = spec_select_packet();
    let bytes = &packet[HEADER_LEN..];
    // Token starts: COLMETADATA 0, ROW 24, DONE 30, end 43.
    let boundaries = [0, 24, 30, 43];
    for cut in 0..=bytes.len() {
        let mut walker = TokenWalker::new();
        walker.feed(&bytes[..cut], &mut Vec::new()).unwrap();
        assert_eq!(
            walker.at_token_boundary(),
            boundaries.contains(&cut),
            "cut at {cut}"
        );
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

fn done_final() -> Vec<u8> {
    let mut out = Vec::new();
    Done {
        kind: DoneKind::Done,
        status: DoneStatus::COUNT,
        cur_cmd: 0xC1,
        row_count: 1,
    }
    .encode(&mut out);
    out
}

fn walk_rows(meta: &[u8], rows: &[u8]) -> Result<Vec<TokenEvent>, DecodeError> {
    let bytes = [meta, rows, &done_final()].concat();
    let mut walker = TokenWalker::new();
    let mut events = Vec::new();
    for chunk in bytes.chunks(5) {
        walker.feed(chunk, &mut events)?;
    }
    assert!(walker.at_token_boundary());
    Ok(events)
}

fn ok_rows(meta: &[u8], rows: &[u8]) {
    let events = walk_rows(meta, rows).unwrap();
    assert!(
        matches!(events.last(), Some(TokenEvent::Done(d)) if d.row_count == 1),
        "{events:?}"
    );
}

#[test]
fn nbcrow_null_bitmap_spans_bytes() {
    // Ten nullable ints; columns 0, 8 and 9 are NULL: the bitmap is 2 bytes.
    let ints: Vec<&[u8]> = vec![&[0x26, 4]; 10];
    let meta = colmetadata(&ints);
    let mut row = vec![0xD2, 0b0000_0001, 0b0000_0011];
    for _ in 1..8 {
        row.extend_from_slice(&[4, 1, 0, 0, 0]);
    }
    ok_rows(&meta, &row);
    // As a ROW the same values are three short: DONE is read as values.
    let mut bytes = [&meta[..], &[0xD1]].concat();
    for _ in 1..8 {
        bytes.extend_from_slice(&[4, 1, 0, 0, 0]);
    }
    bytes.extend_from_slice(&done_final());
    let mut walker = TokenWalker::new();
    let mut events = Vec::new();
    walker.feed(&bytes, &mut events).unwrap();
    assert!(!walker.at_token_boundary());
    assert_eq!(events.len(), 1);
}

#[test]
fn nbcrow_of_fixed_columns() {
    let meta = colmetadata(&[&[0x38], &[0x7F], &[0x30]]);
    // Column 1 (bigint) NULL: 4 + 1 bytes of data.
    ok_rows(&meta, &[0xD2, 0b010, 1, 2, 3, 4, 5]);
}

#[test]
fn plp_chunks_null_and_unknown_length() {
    let meta = colmetadata(&[&[0xA5, 0xFF, 0xFF]]);
    let mut rows = vec![0xD1];
    rows.extend_from_slice(&[0xFF; 8]); // PLP_NULL
    rows.push(0xD1);
    rows.extend_from_slice(&[0xFE, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]);
    rows.extend_from_slice(&[2, 0, 0, 0, 0xD1, 0xFD, 1, 0, 0, 0, 0xAA, 0, 0, 0, 0]);
    rows.push(0xD1);
    rows.extend_from_slice(&[3, 0, 0, 0, 0, 0, 0, 0]);
    rows.extend_from_slice(&[1, 0, 0, 0, 7, 2, 0, 0, 0, 8, 9, 0, 0, 0, 0]);
    rows.push(0xD1);
    rows.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]); // empty
    ok_rows(&meta, &rows);
}

#[test]
fn plp_chunks_must_match_a_known_length() {
    let meta = colmetadata(&[&[0xE7, 0xFF, 0xFF, 9, 4, 0xD0, 0, 0x34]]);
    let mut short = vec![0xD1, 4, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 1, 2];
    short.extend_from_slice(&[0, 0, 0, 0]);
    assert!(matches!(
        walk_rows(&meta, &short),
        Err(DecodeError::Invalid { .. })
    ));
    let long = [0xD1, 1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 1, 2, 0, 0, 0, 0];
    assert!(matches!(
        walk_rows(&meta, &long),
        Err(DecodeError::Invalid { .. })
    ));
}

#[test]
fn sql_variant_values() {
    let meta = colmetadata(&[&[0x62, 0x50, 0x1F, 0, 0], &[0x38]]);
    let mut rows = vec![0xD1, 0, 0, 0, 0, 1, 2, 3, 4]; // NULL variant
                                                       // nvarchar variant: base type, 7 property bytes (collation, max length), data.
    let mut v = vec![0xE7, 7, 9, 4, 0xD0, 0, 0x34, 0x40, 0x1F, b'h', 0, b'i', 0];
    rows.push(0xD1);
    rows.extend_from_slice(&(v.len() as u32).to_le_bytes());
    rows.append(&mut v);
    rows.extend_from_slice(&[1, 2, 3, 4]);
    ok_rows(&meta, &rows);
}

#[test]
fn decimal_and_datetimeoffset_values() {
    let meta = colmetadata(&[&[0x6A, 17, 38, 4], &[0x2B, 7], &[0x2B, 0], &[0x6C, 5, 9, 0]]);
    let mut row = vec![0xD1];
    row.extend_from_slice(&[17, 1]);
    row.extend_from_slice(&[0x15, 0xCD, 0x5B, 0x07, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    row.extend_from_slice(&[10, 1, 2, 3, 4, 5, 6, 7, 8, 0x3C, 0x00]); // +01:00
    row.extend_from_slice(&[8, 1, 2, 3, 6, 7, 8, 0xC4, 0xFF]); // scale 0, -01:00
    row.extend_from_slice(&[0]); // NULL numeric
    ok_rows(&meta, &row);
}

#[test]
fn text_and_image_values() {
    let text = [
        0x23, 0xFF, 0xFF, 0xFF, 0x7F, 9, 4, 0xD0, 0, 0x34, 1, 1, 0, b't', 0,
    ];
    let image = [0x22, 0xFF, 0xFF, 0xFF, 0x7F, 0];
    let meta = colmetadata(&[&text, &image]);
    let mut row = vec![0xD1, 16];
    row.extend_from_slice(&[0x55; 24]);
    row.extend_from_slice(&[5, 0, 0, 0]);
    row.extend_from_slice(b"hello");
    row.push(0); // NULL image (no TEXTPTR)
    row.extend_from_slice(&[0xD1, 0, 16]);
    row.extend_from_slice(&[0x55; 24]);
    row.extend_from_slice(&[2, 0, 0, 0, 0xFF, 0xD8]);
    ok_rows(&meta, &row);
}

#[test]
fn return_values_split_everywhere() {
    let response = every_framing();
    let marker = [0xAC, 1, 0, 4, b'@'];
    let start = response.bytes.windows(5).position(|w| w == marker).unwrap();
    let bytes = &response.bytes[start..];
    let want = walk_in_chunks(bytes, usize::MAX);
    assert_eq!(
        want[..4],
        [
            TokenEvent::ReturnValue {
                ordinal: 1,
                name: "@out".into(),
                value: None
            },
            TokenEvent::ReturnValue {
                ordinal: 2,
                name: String::new(),
                value: Some(9)
            },
            TokenEvent::ReturnValue {
                ordinal: 3,
                name: String::new(),
                value: None
            },
            TokenEvent::ReturnStatus(-2),
        ]
    );
    for size in 1..8 {
        assert_eq!(walk_in_chunks(bytes, size), want, "chunk size {size}");
    }
}

/// The RETURNVALUE of an `@handle int OUTPUT` parameter: ordinal 0, status
/// 1 (output), user type 0, flags 1 (nullable), INTN(4), then the value.
fn handle_return_value(name: &str, handle: Option<i32>) -> Vec<u8> {
    let mut out = vec![0xAC, 0, 0];
    crate::tds::read::put_b_varchar(&mut out, name);
    out.extend_from_slice(&[1, 0, 0, 0, 0, 1, 0, 0x26, 4]);
    match handle {
        Some(h) => {
            out.push(4);
            out.extend_from_slice(&h.to_le_bytes());
        }
        None => out.push(0),
    }
    out
}

/// An sp_prepexec reply for `SELECT 42 AS a`: the handle, one int column,
/// one row, DONEINPROC, RETURNSTATUS 0, DONEPROC. `handle_first` puts the
/// RETURNVALUE before the result set, else after RETURNSTATUS, where SQL
/// Server sends output parameters once the procedure has run; a proxy must
/// accept either.
fn sp_prepexec_reply(handle_first: bool, name: &str, handle: i32) -> (Vec<u8>, Vec<TokenEvent>) {
    let return_value = handle_return_value(name, Some(handle));
    let return_value_event = TokenEvent::ReturnValue {
        ordinal: 0,
        name: name.into(),
        value: Some(i64::from(handle)),
    };
    let done_in_proc = Done {
        kind: DoneKind::DoneInProc,
        status: DoneStatus::COUNT.with(DoneStatus::MORE),
        cur_cmd: 0xC1,
        row_count: 1,
    };
    let done_proc = Done {
        kind: DoneKind::DoneProc,
        status: DoneStatus::FINAL,
        cur_cmd: 0xE0,
        row_count: 0,
    };
    let mut bytes = Vec::new();
    let mut events = Vec::new();
    if handle_first {
        bytes.extend_from_slice(&return_value);
        events.push(return_value_event.clone());
    }
    bytes.extend_from_slice(&colmetadata(&[&[0x26, 4]]));
    bytes.extend_from_slice(&[0xD1, 4, 42, 0, 0, 0]);
    done_in_proc.encode(&mut bytes);
    bytes.extend_from_slice(&[0x79, 0, 0, 0, 0]);
    events.extend([
        TokenEvent::ColMetadata { columns: 1 },
        TokenEvent::Done(done_in_proc),
        TokenEvent::ReturnStatus(0),
    ]);
    if !handle_first {
        bytes.extend_from_slice(&return_value);
        events.push(return_value_event);
    }
    done_proc.encode(&mut bytes);
    events.push(TokenEvent::Done(done_proc));
    (bytes, events)
}

#[test]
fn sp_prepexec_handle_survives_every_pair_of_split_points() {
    for (handle_first, name, handle) in [(true, "", 1), (false, "@handle", -7)] {
        let (bytes, want) = sp_prepexec_reply(handle_first, name, handle);
        assert_eq!(walk_in_chunks(&bytes, usize::MAX), want);
        for a in 0..=bytes.len() {
            for b in a..=bytes.len() {
                assert_eq!(walk_split(&bytes, &[a, b]), want, "cuts {a} {b}");
            }
        }
    }
}

#[test]
fn handle_value_spans_point_at_the_value_bytes_whatever_the_cuts() {
    for (handle_first, name, handle) in [(true, "", 1), (false, "@handle", -7)] {
        let (bytes, _) = sp_prepexec_reply(handle_first, name, handle);
        for cut in 0..=bytes.len() {
            let mut walker = TokenWalker::new();
            let mut events = Vec::new();
            walker.feed(&bytes[..cut], &mut events).unwrap();
            walker.feed(&bytes[cut..], &mut events).unwrap();
            let spans = walker.take_value_spans();
            assert_eq!(spans.len(), 1, "cut {cut}");
            let span = spans[0];
            assert_eq!((span.ordinal, span.width), (0, 4), "cut {cut}");
            let at = span.at as usize;
            assert_eq!(bytes[at..at + 4], handle.to_le_bytes(), "cut {cut}");
        }
    }
}

#[test]
fn return_value_integers_and_skipped_values() {
    let mut bytes = handle_return_value("", None);
    // Ordinal 1 "@n" bigint (INT8) -2, ordinal 2 "@t" tinyint (INT1) 200.
    bytes.extend_from_slice(&[0xAC, 1, 0, 2, b'@', 0, b'n', 0, 1, 0, 0, 0, 0, 1, 0, 0x7F]);
    bytes.extend_from_slice(&(-2i64).to_le_bytes());
    bytes.extend_from_slice(&[
        0xAC, 2, 0, 2, b'@', 0, b't', 0, 1, 0, 0, 0, 0, 1, 0, 0x30, 200,
    ]);
    // Ordinal 3, float (FLT8): stepped over, no value.
    bytes.extend_from_slice(&[0xAC, 3, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0x3E]);
    bytes.extend_from_slice(&1.5f64.to_le_bytes());
    bytes.extend_from_slice(&done_final());
    let want = [
        (0, "", None),
        (1, "@n", Some(-2)),
        (2, "@t", Some(200)),
        (3, "", None),
    ]
    .map(|(ordinal, name, value)| TokenEvent::ReturnValue {
        ordinal,
        name: name.into(),
        value,
    });
    for size in [1, 2, 5, usize::MAX] {
        let events = walk_in_chunks(&bytes, size);
        assert_eq!(events[..4], want, "chunk size {size}");
        assert!(matches!(events[4], TokenEvent::Done(_)));
    }
    // An INTN value of 3 bytes is not an integer.
    let mut bad = handle_return_value("", Some(1));
    let len_at = bad.len() - 5;
    bad[len_at] = 3;
    assert!(matches!(walk_err(&bad), DecodeError::Invalid { .. }));
}

#[test]
fn no_metadata_keeps_the_previous_columns() {
    let meta = colmetadata(&[&[0x38], &[0x26, 2]]);
    let bytes = [
        &meta[..],
        &[0x81, 0xFF, 0xFF, 0xD1, 1, 2, 3, 4, 2, 5, 6],
        &done_final(),
    ]
    .concat();
    let events = walk_in_chunks(&bytes, 3);
    assert_eq!(events[0], TokenEvent::ColMetadata { columns: 2 });
    assert_eq!(events[1], TokenEvent::ColMetadata { columns: 2 });
    assert!(matches!(events[2], TokenEvent::Done(_)));
}

#[test]
fn a_100_mb_value_is_skipped_not_buffered() {
    const SIZE: u64 = 100 * 1024 * 1024;
    let mut walker = TokenWalker::new();
    let mut events = Vec::new();
    let mut head = colmetadata(&[&[0xA5, 0xFF, 0xFF]]);
    head.push(0xD1);
    head.extend_from_slice(&SIZE.to_le_bytes());
    head.extend_from_slice(&(SIZE as u32).to_le_bytes());
    walker.feed(&head, &mut events).unwrap();
    let packet = vec![0u8; 32 * 1024];
    for _ in 0..SIZE / packet.len() as u64 {
        walker.feed(&packet, &mut events).unwrap();
        assert!(walker.pending.capacity() <= 64);
    }
    walker.feed(&[0, 0, 0, 0], &mut events).unwrap();
    walker.feed(&done_final(), &mut events).unwrap();
    assert!(walker.at_token_boundary());
    assert_eq!(events.len(), 2);
}

#[test]
fn buffered_units_are_capped() {
    // A COLMETADATA of 30 nvarchar columns (~400 bytes) split across feeds.
    let nvarchar: &[u8] = &[0xE7, 20, 0, 9, 4, 0xD0, 0, 0x34];
    let meta = colmetadata(&vec![nvarchar; 30]);
    let mut walker = TokenWalker::with_max_buffered(256);
    let mut events = Vec::new();
    let result = meta
        .chunks(100)
        .try_for_each(|c| walker.feed(c, &mut events));
    assert!(matches!(result, Err(DecodeError::Invalid { .. })));
    // In one feed nothing needs buffering.
    let mut walker = TokenWalker::with_max_buffered(256);
    walker.feed(&meta, &mut events).unwrap();
    // A FEATUREEXTACK entry announcing 4 GiB fails at once, before the data.
    let mut walker = TokenWalker::new();
    let huge = [0xAE, 0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0x00];
    assert!(matches!(
        walker.feed(&huge, &mut events),
        Err(DecodeError::Invalid { .. })
    ));
}

#[test]
fn large_skipped_tokens_are_not_buffered() {
    let mut walker = TokenWalker::with_max_buffered(16);
    let mut events = Vec::new();
    let mut bytes = vec![0xE4];
    bytes.extend_from_slice(&100_000u32.to_le_bytes());
    bytes.extend(std::iter::repeat_n(7u8, 100_000));
    bytes.extend_from_slice(&done_final());
    for chunk in bytes.chunks(1000) {
        walker.feed(chunk, &mut events).unwrap();
    }
    assert!(walker.at_token_boundary());
    assert_eq!(events.len(), 1);
}

#[test]
fn rejected_tokens() {
    assert!(matches!(walk_err(&[0x00]), DecodeError::Invalid { .. }));
    assert!(matches!(
        walk_err(&[0xA3, 0, 0]),
        DecodeError::Invalid { .. }
    ));
    assert!(matches!(
        walk_err(&[0x88, 0, 0]),
        DecodeError::Invalid { .. }
    ));
    assert!(matches!(
        walk_err(&[0xD3, 0, 0]),
        DecodeError::Invalid { .. }
    ));
    // A row before any COLMETADATA.
    assert!(matches!(
        walk_err(&[0xD1, 0xFD]),
        DecodeError::Invalid { .. }
    ));
    // An ERROR whose length is shorter than its contents.
    assert!(matches!(
        walk_err(&[0xAA, 2, 0, 1, 2, 0xFD]),
        DecodeError::Invalid { .. }
    ));
}

#[test]
fn failure_is_sticky_until_reset() {
    let mut walker = TokenWalker::new();
    let mut events = Vec::new();
    let err = walker.feed(&[0x00], &mut events).unwrap_err();
    assert!(!walker.at_token_boundary());
    assert_eq!(walker.feed(&done_final(), &mut events).unwrap_err(), err);
    walker.reset();
    assert!(walker.at_token_boundary());
    walker.feed(&done_final(), &mut events).unwrap();
    assert_eq!(events.len(), 1);
}

#[test]
fn reset_drops_a_partial_token() {
    let mut walker = TokenWalker::new();
    let mut events = Vec::new();
    walker.feed(&[0xFD, 0x10, 0x00], &mut events).unwrap();
    assert!(!walker.at_token_boundary());
    walker.reset();
    walker.feed(&done_final(), &mut events).unwrap();
    assert!(walker.at_token_boundary());
    assert_eq!(events.len(), 1);
}

#[test]
fn a_promote_transaction_length_waits_for_its_type_byte() {
    // Found by the walker_chunks fuzz target: ENVCHANGE with Length 0
    // followed by type 15, whose size comes from its value. Cut right after
    // the Length, the walker ended the token there and misread the rest.
    let mut bytes = vec![0xE3, 0, 0, 15];
    bytes.extend_from_slice(&8u32.to_le_bytes());
    bytes.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8, 0]);
    let whole = walk_in_chunks(&bytes, usize::MAX);
    for cut in 0..=bytes.len() {
        assert_eq!(walk_split(&bytes, &[cut]), whole, "cut {cut}");
    }
}

/// The rows digest of `bytes` fed in chunks of `size`.
fn digest_in_chunks(bytes: &[u8], size: usize) -> RowsDigest {
    let mut walker = TokenWalker::new();
    walker.digest_rows();
    let mut events = Vec::new();
    for chunk in bytes.chunks(size) {
        walker.feed(chunk, &mut events).unwrap();
    }
    assert!(walker.at_token_boundary(), "chunk size {size}");
    walker.rows_digest().expect("digesting")
}

/// int, nullable int, nvarchar(100), int, varchar(max): the same two rows
/// as ROW and as NBCROW, in either order.
fn digest_fixture(nbcrow: bool, swapped: bool) -> Vec<u8> {
    let nvarchar = [0xE7, 200, 0, 9, 4, 0xD0, 0, 0x34];
    let varchar_max = [0xA7, 0xFF, 0xFF, 9, 4, 0xD0, 0, 0x34];
    let meta = colmetadata(&[&[0x38], &[0x26, 4], &nvarchar, &[0x38], &varchar_max]);
    // Row 1: 1, NULL, N'hi', 2, 'abc' (as two PLP chunks in the ROW form).
    let first = if nbcrow {
        let mut row = vec![
            0xD2,
            0b0000_0010,
            1,
            0,
            0,
            0,
            4,
            0,
            b'h',
            0,
            b'i',
            0,
            2,
            0,
            0,
            0,
        ];
        row.extend_from_slice(&[
            3, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, b'a', b'b', b'c', 0, 0, 0, 0,
        ]);
        row
    } else {
        let mut row = vec![0xD1, 1, 0, 0, 0, 0, 4, 0, b'h', 0, b'i', 0, 2, 0, 0, 0];
        row.extend_from_slice(&[3, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, b'a']);
        row.extend_from_slice(&[2, 0, 0, 0, b'b', b'c', 0, 0, 0, 0]);
        row
    };
    // Row 2: 3, 4, NULL, 5, NULL.
    let second = if nbcrow {
        vec![0xD2, 0b0001_0100, 3, 0, 0, 0, 4, 4, 0, 0, 0, 5, 0, 0, 0]
    } else {
        let mut row = vec![0xD1, 3, 0, 0, 0, 4, 4, 0, 0, 0, 0xFF, 0xFF, 5, 0, 0, 0];
        row.extend_from_slice(&[0xFF; 8]);
        row
    };
    let rows = if swapped {
        [second, first].concat()
    } else {
        [first, second].concat()
    };
    [meta, rows, done_final()].concat()
}

#[test]
fn row_and_nbcrow_of_the_same_values_digest_alike() {
    let row = digest_in_chunks(&digest_fixture(false, false), usize::MAX);
    assert_eq!(row.rows, 2);
    assert_eq!(
        digest_in_chunks(&digest_fixture(true, false), usize::MAX),
        row
    );
}

#[test]
fn the_rows_digest_ignores_row_order_and_packet_cuts() {
    let whole = digest_in_chunks(&digest_fixture(false, false), usize::MAX);
    for nbcrow in [false, true] {
        let bytes = digest_fixture(nbcrow, true);
        for size in 1..=bytes.len() {
            assert_eq!(digest_in_chunks(&bytes, size), whole, "chunk size {size}");
        }
    }
}

#[test]
fn every_framing_digests_the_same_in_any_chunks() {
    let response = every_framing();
    let whole = digest_in_chunks(&response.bytes, usize::MAX);
    assert_eq!(whole.rows, 4);
    for size in [1, 2, 3, 7, 64, 512] {
        assert_eq!(
            digest_in_chunks(&response.bytes, size),
            whole,
            "chunk size {size}"
        );
    }
}

#[test]
fn a_changed_value_changes_the_digest() {
    let mut bytes = digest_fixture(false, false);
    let before = digest_in_chunks(&bytes, usize::MAX);
    let at = bytes
        .iter()
        .position(|&b| b == b'h')
        .expect("the nvarchar value");
    bytes[at] = b'H';
    let after = digest_in_chunks(&bytes, usize::MAX);
    assert_eq!(after.rows, before.rows);
    assert_ne!(after.checksum, before.checksum);
}

/// Rows of every plainly prefixed framing, NULL and not, as ROW and NBCROW,
/// then a result with a PLP column (which the state machine walks).
fn rows_of_every_plain_framing() -> Vec<u8> {
    // bigint (fixed), intn(4) (bytelen), varbinary(31) (ushortlen),
    // sql_variant (longlen).
    let mut bytes = colmetadata(&[
        &[0x7F],
        &[0x26, 4],
        &[0xA5, 0x1F, 0],
        &[0x62, 0x50, 0x1F, 0, 0],
    ]);
    for i in 0u8..20 {
        bytes.extend_from_slice(&[0xD1, i, 0, 0, 0, 0, 0, 0, 0]);
        bytes.extend_from_slice(&[4, i, 0, 0, 0]);
        bytes.extend_from_slice(&[3, 0, b'a', b'b', i]);
        bytes.extend_from_slice(&[0, 0, 0, 0]); // NULL variant
                                                // NBCROW: the intn and the variant NULL.
        bytes.extend_from_slice(&[0xD2, 0b1010, i, 1, 2, 3, 4, 5, 6, 7]);
        bytes.extend_from_slice(&[0xFF, 0xFF]); // a NULL varbinary all the same
                                                // ROW of NULLs by length, and a variant with data.
        bytes.extend_from_slice(&[0xD1, 1, 2, 3, 4, 5, 6, 7, i, 0, 0xFF, 0xFF]);
        let variant = [0x38, 0, 9, 0, 0, i];
        bytes.extend_from_slice(&(variant.len() as u32).to_le_bytes());
        bytes.extend_from_slice(&variant);
    }
    bytes.extend_from_slice(&done_final());
    bytes.extend_from_slice(&colmetadata(&[&[0xA5, 0xFF, 0xFF], &[0x26, 4]]));
    bytes.push(0xD1);
    bytes.extend_from_slice(&3u64.to_le_bytes());
    bytes.extend_from_slice(&[3, 0, 0, 0, b'x', b'y', b'z', 0, 0, 0, 0]);
    bytes.extend_from_slice(&[4, 7, 0, 0, 0]);
    bytes.extend_from_slice(&done_final());
    bytes
}

#[test]
fn whole_rows_in_one_feed_walk_as_rows_cut_anywhere() {
    let bytes = rows_of_every_plain_framing();
    let whole = walk_in_chunks(&bytes, bytes.len());
    assert_eq!(
        whole
            .iter()
            .filter(|e| matches!(e, TokenEvent::Done(_)))
            .count(),
        2,
        "{whole:?}"
    );
    for size in 1..64 {
        assert_eq!(walk_in_chunks(&bytes, size), whole, "chunk size {size}");
    }
    for cut in 0..=bytes.len() {
        assert_eq!(walk_split(&bytes, &[cut]), whole, "cut at {cut}");
    }
    // The digest walks value by value: it sees the same rows.
    let mut walker = TokenWalker::new();
    walker.digest_rows();
    let mut events = Vec::new();
    walker.feed(&bytes, &mut events).unwrap();
    assert_eq!(events, whole);
    assert_eq!(walker.rows_digest().map(|d| d.rows), Some(61));
}

#[test]
fn a_row_cut_short_is_left_to_the_state_machine() {
    let bytes = rows_of_every_plain_framing();
    let meta_len = colmetadata(&[
        &[0x7F],
        &[0x26, 4],
        &[0xA5, 0x1F, 0],
        &[0x62, 0x50, 0x1F, 0, 0],
    ])
    .len();
    // Inside the first row's varbinary data: not between tokens.
    let mut walker = TokenWalker::new();
    let mut events = Vec::new();
    walker
        .feed(&bytes[..meta_len + 1 + 8 + 5 + 3], &mut events)
        .unwrap();
    assert!(!walker.at_token_boundary());
    walker
        .feed(&bytes[meta_len + 1 + 8 + 5 + 3..], &mut events)
        .unwrap();
    assert!(walker.at_token_boundary());
    // A row past the end of a stream that ends there is an unfinished token.
    let mut walker = TokenWalker::new();
    walker
        .feed(&bytes[..meta_len + 10], &mut Vec::new())
        .unwrap();
    assert!(!walker.at_token_boundary());
}

#[test]
fn a_row_plan_merges_fixed_columns_and_gives_up_on_textptr_and_plp() {
    use ValueFraming as F;
    let columns = [
        F::Fixed(4),
        F::Fixed(8),
        F::UShortLen,
        F::Fixed(1),
        F::Variant,
        F::ByteLen,
        F::LongLen,
        F::Fixed(2),
    ];
    assert_eq!(
        RowStep::plan(&columns),
        [
            RowStep::Fixed(12),
            RowStep::UShortLen,
            RowStep::Fixed(1),
            RowStep::LongLen,
            RowStep::ByteLen,
            RowStep::LongLen,
            RowStep::Fixed(2),
        ]
    );
    assert!(RowStep::plan(&[F::Fixed(4), F::Plp]).is_empty());
    assert!(RowStep::plan(&[F::TextPtr, F::Fixed(4)]).is_empty());
}

#[test]
fn a_row_plan_finds_the_end_of_values_and_stops_at_a_cut_prefix() {
    let steps = [RowStep::Fixed(2), RowStep::UShortLen, RowStep::LongLen];
    // Token byte, 2 fixed bytes, "ab", a NULL LONGLEN.
    let row = [0xD1, 7, 7, 2, 0, b'a', b'b', 0xFF, 0xFF, 0xFF, 0xFF];
    assert_eq!(RowStep::walk(&steps, &row, 1), Some(row.len()));
    // A NULL USHORTLEN has no bytes; the LONGLEN's 3 bytes are announced.
    let row = [0xD1, 7, 7, 0xFF, 0xFF, 3, 0, 0, 0, 1, 2, 3];
    assert_eq!(RowStep::walk(&steps, &row, 1), Some(row.len()));
    // Values that run past the input give an end past it (the rest is
    // skipped as it comes); a prefix cut short gives none.
    assert_eq!(RowStep::walk(&steps, &row[..10], 1), Some(row.len()));
    assert_eq!(RowStep::walk(&steps, &row[..7], 1), None);
    assert_eq!(RowStep::walk(&steps, &row[..4], 1), None);
}

/// Runs of fixed-length columns, one step in a row plan, between and after
/// prefixed values with NULLs: fed whole (the fast path) and byte by byte
/// (the state machine) they walk the same.
#[test]
fn runs_of_fixed_columns_walk_the_same_whole_and_byte_by_byte() {
    // int NOT NULL, bigint NOT NULL, intn, nvarchar(10), bit NOT NULL,
    // sql_variant, money NOT NULL.
    let meta = colmetadata(&[
        &[0x38],
        &[0x7F],
        &[0x26, 4],
        &[0xE7, 20, 0, 9, 4, 0xD0, 0, 0x34],
        &[0x32],
        &[0x62, 0x50, 0x1F, 0, 0],
        &[0x3C],
    ]);
    let mut rows = Vec::new();
    for i in 0u8..50 {
        rows.push(0xD1);
        rows.extend_from_slice(&[i, 0, 0, 0]);
        rows.extend_from_slice(&[i, 0, 0, 0, 0, 0, 0, 0]);
        if i % 3 == 0 {
            rows.push(0); // NULL intn
        } else {
            rows.extend_from_slice(&[4, i, 0, 0, 0]);
        }
        if i % 5 == 0 {
            rows.extend_from_slice(&[0xFF, 0xFF]); // NULL nvarchar
        } else {
            rows.extend_from_slice(&[4, 0, b'h', 0, b'i', 0]);
        }
        rows.push(i % 2);
        if i % 7 == 0 {
            rows.extend_from_slice(&[0, 0, 0, 0]); // NULL sql_variant
        } else {
            rows.extend_from_slice(&[6, 0, 0, 0, 0x38, 0, i, 0, 0, 0]);
        }
        rows.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
    }
    let bytes = [&meta[..], &rows, &done_final()].concat();
    let whole = walk_in_chunks(&bytes, bytes.len());
    assert_eq!(whole, walk_in_chunks(&bytes, 1));
    assert!(
        matches!(whole.last(), Some(TokenEvent::Done(_))),
        "{whole:?}"
    );
    assert_eq!(whole.len(), 2, "{whole:?}");
}

#[test]
fn a_row_cut_after_its_last_prefix_is_skipped_to_its_end() {
    // intn, varchar(1000): the cut falls inside the second row's varchar.
    let meta = colmetadata(&[&[0x26, 4], &[0xA7, 0xE8, 0x03, 9, 4, 0xD0, 0, 0x34]]);
    let mut row = vec![0xD1, 4, 1, 0, 0, 0];
    row.extend_from_slice(&600u16.to_le_bytes());
    row.extend_from_slice(&[b'x'; 600]);
    let bytes = [&meta[..], &row, &row, &done_final()].concat();
    let cut = meta.len() + row.len() + 100;
    let mut walker = TokenWalker::new();
    let mut events = Vec::new();
    walker.feed(&bytes[..cut], &mut events).unwrap();
    assert_eq!(
        walker.state,
        State::Skip((row.len() - 100) as u64, AfterSkip::Token)
    );
    assert!(!walker.at_token_boundary());
    walker.feed(&bytes[cut..], &mut events).unwrap();
    assert!(walker.at_token_boundary());
    assert_eq!(events, walk_in_chunks(&bytes, 1));
}
