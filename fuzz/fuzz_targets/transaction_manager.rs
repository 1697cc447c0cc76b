//! TransactionManagerRequest [MS-TDS 2.2.6.9]: decode never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice::tds::request::TransactionManagerRequest;

fuzz_target!(|data: &[u8]| {
    if let Ok(request) = TransactionManagerRequest::decode(data) {
        let _ = request.request_type();
    }
});
