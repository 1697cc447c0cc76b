//! The admin API's HTTP request head: parsing never panics, and what parses
//! is a GET-able shape: an uppercase method and a path without its query.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice::admin::http::parse_head;

fuzz_target!(|data: &[u8]| {
    let Ok(request) = parse_head(data) else {
        return;
    };
    assert!(!request.method.is_empty());
    assert!(request.method.bytes().all(|b| b.is_ascii_uppercase()));
    assert!(request.path.starts_with('/'));
    assert!(!request.path.contains(['?', '#']));
});
