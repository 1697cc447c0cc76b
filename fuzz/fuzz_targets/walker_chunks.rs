//! Token stream walker [MS-TDS 2.2.7], split equivalence: a response arrives
//! in packets cut anywhere (inside a token, a length prefix, a PLP chunk), so
//! walking it in pieces must tell exactly what walking it whole tells: the
//! same events, the same error or success, and the same token boundary at
//! the end (one exception, explained below, when the input stops mid-unit). The unit tests check this for every one- and two-point split of
//! known responses; this target does it for 3 to 8 pieces of any bytes.
//! The rows' digest (shadow mode's count and checksum) must not depend on
//! the cuts either.
//!
//! Input layout: `[n u8][cut u16 LE; 2 + n % 6][stream...]`: 3 to 8 pieces,
//! the cut points taken modulo the stream length and sorted (so pieces may
//! be empty, as a packet with an empty payload is).
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice::tds::token::walker::{TokenEvent, TokenWalker};
use sluice::tds::token::RowsDigest;
use sluice::tds::DecodeError;

fuzz_target!(|data: &[u8]| {
    let Some((&n, rest)) = data.split_first() else {
        return;
    };
    let cuts_len = 2 + n as usize % 6;
    let Some((cut_bytes, stream)) = rest.split_at_checked(cuts_len * 2) else {
        return;
    };
    let mut cuts: Vec<usize> = cut_bytes
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]) as usize % (stream.len() + 1))
        .collect();
    cuts.sort_unstable();

    // The default 1 MiB cap on buffered units is far above any fuzz input,
    // so splitting can never be what makes a unit too big.
    let whole = walk(&[stream]);

    let mut pieces = Vec::with_capacity(cuts.len() + 1);
    let mut from = 0;
    for &cut in cuts.iter().chain(std::iter::once(&stream.len())) {
        pieces.push(&stream[from..cut]);
        from = cut;
    }
    let split = walk(&pieces);

    if whole.result.is_ok() && split.result.is_ok() {
        assert_eq!(whole.events, split.events, "events differ; cuts {cuts:?}");
        assert_eq!(whole.rows, split.rows, "rows digest differs; cuts {cuts:?}");
    } else {
        // Once the stream proves malformed, where the walk stops (and so
        // how many events it reported first) may depend on the cuts; what
        // was reported must still agree as far as both went.
        assert!(
            prefix_of_the_other(&whole.events, &split.events),
            "events disagree; cuts {cuts:?}: {:?} / {:?}",
            whole.events,
            split.events
        );
    }
    match (&whole.result, &split.result) {
        (Ok(()), Ok(())) => {}
        // Which check trips first may depend on where the cuts fall (an
        // impossible length in a partly buffered unit, or a bad token byte
        // read in place): both sides refusing the stream, after the same
        // events, is what matters.
        (Err(_), Err(_)) => {}
        // Walked whole, a unit's inner lengths can be read before its end
        // has arrived, and an impossible one (an ENVCHANGE value longer than
        // its token) fails at once; walked in pieces, the same unit may
        // still be waiting for its end when the input stops. So one side
        // may fail while the other waits mid-unit, never while it stands
        // at a token boundary as if all were well.
        (Ok(()), Err(e)) => assert!(!whole.at_boundary, "only split fails: {e:?}; cuts {cuts:?}"),
        (Err(e), Ok(())) => assert!(!split.at_boundary, "only whole fails: {e:?}; cuts {cuts:?}"),
    }
    if whole.result.is_ok() && split.result.is_ok() {
        assert_eq!(
            whole.at_boundary, split.at_boundary,
            "token boundary differs; cuts {cuts:?}"
        );
    }
});

fn prefix_of_the_other(a: &[TokenEvent], b: &[TokenEvent]) -> bool {
    let n = a.len().min(b.len());
    a[..n] == b[..n]
}

struct Walk {
    events: Vec<TokenEvent>,
    result: Result<(), DecodeError>,
    at_boundary: bool,
    rows: Option<RowsDigest>,
}

/// Feeds every piece, as the relay does packet by packet. After an error the
/// walker must keep failing with that same error (it is sticky until reset)
/// and report no further events.
fn walk(pieces: &[&[u8]]) -> Walk {
    let mut walker = TokenWalker::new();
    walker.digest_rows();
    let mut events = Vec::new();
    let mut result = Ok(());
    for piece in pieces {
        let before = events.len();
        let fed = walker.feed(piece, &mut events);
        match &result {
            Ok(()) => result = fed,
            Err(first) => {
                assert_eq!(fed.as_ref(), Err(first), "failure not sticky");
                assert_eq!(events.len(), before, "events after a failure");
            }
        }
    }
    Walk {
        events,
        result,
        at_boundary: walker.at_token_boundary(),
        rows: walker.rows_digest(),
    }
}
