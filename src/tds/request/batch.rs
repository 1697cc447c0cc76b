//! SQLBatch [MS-TDS 2.2.6.7]: ALL_HEADERS, then the batch text.

use super::all_headers::split_all_headers;
use crate::tds::error::DecodeError;
use crate::tds::read::utf16_to_string;

/// The text of a SQLBatch [MS-TDS 2.2.6.7]: ALL_HEADERS, then UTF-16LE
/// (UNICODESTREAM) to the end of the message.
pub fn sql_batch_text(payload: &[u8]) -> Result<String, DecodeError> {
    let (_, text) = split_all_headers(payload)?;
    utf16_to_string(text, "SQLBatch")
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::tds::login7::tests::hex;
    use crate::tds::packet::{PacketHeader, PacketType, MAX_PACKET_SIZE};

    /// MS-TDS 4.6 SQL Batch Client Request, packet header included.
    pub(in crate::tds::request) fn spec_4_6() -> Vec<u8> {
        hex("01 01 00 5C 00 00 01 00 16 00 00 00 12 00 00 00
             02 00 00 00 00 00 00 00 00 01 00 00 00 00 0A 00
             73 00 65 00 6C 00 65 00 63 00 74 00 20 00 27 00
             66 00 6F 00 6F 00 27 00 20 00 61 00 73 00 20 00
             27 00 62 00 61 00 72 00 27 00 0A 00 20 00 20 00
             20 00 20 00 20 00 20 00 20 00 20 00")
    }

    #[test]
    fn decodes_spec_4_6_sql_batch() {
        let packet = spec_4_6();
        let header = PacketHeader::decode(&packet[..8], MAX_PACKET_SIZE).unwrap();
        assert_eq!(header.ty, PacketType::SQL_BATCH);
        let (headers, _) = split_all_headers(&packet[8..]).unwrap();
        assert_eq!(headers.transaction_descriptor, Some(0x0100_0000_0000_0000));
        assert_eq!(headers.outstanding_request_count, Some(0));
        assert!(!headers.trace_activity && !headers.query_notification);
        assert_eq!(
            sql_batch_text(&packet[8..]).unwrap(),
            "\nselect 'foo' as 'bar'\n        "
        );
    }
}
