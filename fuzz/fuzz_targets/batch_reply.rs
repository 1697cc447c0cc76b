//! A whole reply to a batch Sluice runs itself (health check, lag query)
//! read into its first row and errors [MS-TDS 2.2.7.20]: any bytes give a
//! value or an error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice::tds::token::BatchReply;

fuzz_target!(|data: &[u8]| {
    let _ = BatchReply::decode(data);
});
