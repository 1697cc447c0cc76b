//! RESP2 replies from a Redis server (src/redis/resp.rs): parsing never
//! panics, never claims more bytes than it was given or than the limit, and
//! is incremental: a prefix of a complete reply is "not yet", never an error
//! or a different reply.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice::redis::{parse_value, Limits, MAX_DEPTH};

const LIMITS: Limits = Limits {
    max_bytes: 4096,
    max_depth: MAX_DEPTH,
};

fuzz_target!(|data: &[u8]| {
    let Ok(Some((value, used))) = parse_value(data, &LIMITS) else {
        return;
    };
    assert!(used > 0 && used <= data.len() && used <= LIMITS.max_bytes);
    for cut in [used / 2, used - 1] {
        assert!(matches!(parse_value(&data[..cut], &LIMITS), Ok(None)));
    }
    assert_eq!(parse_value(&data[..used], &LIMITS).ok(), Some(Some((value, used))));
});
