//! SQLBatch [MS-TDS 2.2.6.7]: decoding the text never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice::tds::request::sql_batch_text;

fuzz_target!(|data: &[u8]| {
    let _ = sql_batch_text(data);
});
