//! PRELOGIN [MS-TDS 2.2.6.5]: decode never panics, and what decodes survives
//! an encode/decode round trip.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice::tds::prelogin::PreLogin;

fuzz_target!(|data: &[u8]| {
    let Ok(prelogin) = PreLogin::decode(data) else {
        return;
    };
    let mut encoded = Vec::new();
    prelogin.encode(&mut encoded);
    let again = PreLogin::decode(&encoded).expect("an encoded PRELOGIN decodes");
    // Options ending past a USHORT offset are dropped by encode.
    if encoded.len() <= u16::MAX as usize {
        assert_eq!(again, prelogin);
    }
});
