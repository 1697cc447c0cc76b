//! RPCRequest [MS-TDS 2.2.6.6]: decoding the head never panics, with or
//! without ALL_HEADERS in front.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice::tds::request::RpcHead;

fuzz_target!(|data: &[u8]| {
    let _ = RpcHead::decode(data);
    let _ = RpcHead::decode_body(data);
});
