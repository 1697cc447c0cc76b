//! LOGIN7 [MS-TDS 2.2.6.4]: decode never panics; a record that decodes
//! re-encodes to one that decodes, and encoding is stable after that.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice::tds::login7::{Login7, MAX_LEN};

fuzz_target!(|data: &[u8]| {
    let Ok(login) = Login7::decode(data) else {
        return;
    };
    let mut once = Vec::new();
    login.encode(&mut once);
    // Overlapping fields in the input are laid out apart, which can grow the
    // record past the 128K - 1 limit that decode enforces.
    if once.len() > MAX_LEN {
        return;
    }
    let again = Login7::decode(&once).expect("an encoded LOGIN7 decodes");
    let mut twice = Vec::new();
    again.encode(&mut twice);
    assert_eq!(once, twice);
});
