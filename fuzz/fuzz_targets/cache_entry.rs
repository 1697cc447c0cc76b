//! A result-cache entry read back from Redis (src/cache/entry.rs): any
//! bytes decode to an entry or to nothing, never a panic, and an entry that
//! decodes encodes back to the same bytes (nothing in a record is ignored).
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice::cache::entry::Entry;

fuzz_target!(|data: &[u8]| {
    if let Some(entry) = Entry::decode(data) {
        assert_eq!(entry.encode(), data);
    }
});
