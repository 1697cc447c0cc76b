//! Packet header [MS-TDS 2.2.3.1]: a header that decodes encodes back to the
//! same eight bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice::tds::packet::{PacketHeader, HEADER_LEN, MAX_PACKET_SIZE};

fuzz_target!(|data: &[u8]| {
    if let Ok(header) = PacketHeader::decode(data, MAX_PACKET_SIZE) {
        assert_eq!(&header.encode()[..], &data[..HEADER_LEN]);
        assert!(header.payload_len() <= MAX_PACKET_SIZE - HEADER_LEN);
    }
});
