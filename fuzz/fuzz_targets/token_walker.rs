//! Token stream walker [MS-TDS 2.2.7]: the first two bytes choose where the
//! rest is split; feeding it in two chunks must never panic, as a response
//! arrives in packets cut anywhere.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice::tds::token::walker::TokenWalker;

fuzz_target!(|data: &[u8]| {
    let Some((split, stream)) = data.split_first_chunk::<2>() else {
        return;
    };
    let at = u16::from_le_bytes(*split) as usize % (stream.len() + 1);
    let (first, second) = stream.split_at(at);
    let mut walker = TokenWalker::new();
    let mut events = Vec::new();
    if walker.feed(first, &mut events).is_ok() {
        let _ = walker.feed(second, &mut events);
    }
});
