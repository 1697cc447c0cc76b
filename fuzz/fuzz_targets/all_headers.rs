//! ALL_HEADERS [MS-TDS 2.2.5.3]: decode never panics and returns a suffix of
//! the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice::tds::request::split_all_headers;

fuzz_target!(|data: &[u8]| {
    if let Ok((_, rest)) = split_all_headers(data) {
        assert!(data.ends_with(rest));
        assert!(data.len() - rest.len() >= 4);
    }
});
