//! ALL_HEADERS [MS-TDS 2.2.5.3]: the prefix of SQLBatch, RPCRequest and
//! TransactionManagerRequest from TDS 7.2 on (only in the first packet of the
//! message): the transaction descriptor, query notifications, trace activity.

use crate::tds::error::DecodeError;
use crate::tds::read::Reader;

/// HeaderType values of ALL_HEADERS [MS-TDS 2.2.5.3].
pub mod header_type {
    pub const QUERY_NOTIFICATIONS: u16 = 0x0001;
    pub const TRANSACTION_DESCRIPTOR: u16 = 0x0002;
    pub const TRACE_ACTIVITY: u16 = 0x0003;
}

/// What ALL_HEADERS said about the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AllHeaders {
    /// Transaction Descriptor header [2.2.5.3.2]: 0 outside a transaction,
    /// otherwise the descriptor from the server's BEGIN TRANSACTION ENVCHANGE.
    pub transaction_descriptor: Option<u64>,
    pub outstanding_request_count: Option<u32>,
    /// A Trace Activity header [2.2.5.3.3] was present (TDS 7.4).
    pub trace_activity: bool,
    /// A Query Notifications header [2.2.5.3.1] was present.
    pub query_notification: bool,
}

impl AllHeaders {
    fn apply(&mut self, ty: u16, data: &[u8]) -> Result<(), DecodeError> {
        match ty {
            header_type::TRANSACTION_DESCRIPTOR => {
                let mut r = exact(data, 12, "Transaction Descriptor")?;
                self.transaction_descriptor = Some(r.u64_le()?);
                self.outstanding_request_count = Some(r.u32_le()?);
            }
            header_type::TRACE_ACTIVITY => {
                exact(data, 20, "Trace Activity")?;
                self.trace_activity = true;
            }
            header_type::QUERY_NOTIFICATIONS => self.query_notification = true,
            // Unknown types are skipped: HeaderLength says where the next starts.
            _ => {}
        }
        Ok(())
    }
}

fn exact<'a>(data: &'a [u8], len: usize, header: &str) -> Result<Reader<'a>, DecodeError> {
    if data.len() != len {
        return Err(DecodeError::invalid(
            "ALL_HEADERS",
            format!(
                "{header} header data is {} bytes, expected {len}",
                data.len()
            ),
        ));
    }
    Ok(Reader::new(data, "ALL_HEADERS"))
}

/// Splits ALL_HEADERS off a request payload. TotalLength and every
/// HeaderLength count themselves; the headers must exactly fill TotalLength
/// and each type may appear once.
pub fn split_all_headers(payload: &[u8]) -> Result<(AllHeaders, &[u8]), DecodeError> {
    let total = Reader::new(payload, "ALL_HEADERS").u32_le()? as usize;
    if total < 4 || total > payload.len() {
        return Err(DecodeError::invalid(
            "ALL_HEADERS",
            format!(
                "TotalLength {total} is outside the {}-byte request",
                payload.len()
            ),
        ));
    }
    let mut r = Reader::new(&payload[4..total], "ALL_HEADERS");
    let mut headers = AllHeaders::default();
    let mut seen = SeenTypes::default();
    while r.remaining() > 0 {
        let len = r.u32_le()? as usize;
        let ty = r.u16_le()?;
        let data = r.take(len.checked_sub(6).ok_or_else(|| {
            DecodeError::invalid("ALL_HEADERS", format!("HeaderLength {len} is below 6"))
        })?)?;
        if !seen.insert(ty) {
            return Err(DecodeError::invalid(
                "ALL_HEADERS",
                format!("header type {ty} appears twice"),
            ));
        }
        headers.apply(ty, data)?;
    }
    Ok((headers, &payload[total..]))
}

/// The header types met so far: a bit per type below 64 (every type
/// defined so far), a list for the others, so that the usual request
/// allocates nothing to check that no type repeats.
#[derive(Default)]
struct SeenTypes {
    low: u64,
    high: Vec<u16>,
}

impl SeenTypes {
    /// Records `ty`; false if it was met before.
    fn insert(&mut self, ty: u16) -> bool {
        if let Some(bit) = 1u64.checked_shl(u32::from(ty)) {
            let new = self.low & bit == 0;
            self.low |= bit;
            return new;
        }
        if self.high.contains(&ty) {
            return false;
        }
        self.high.push(ty);
        true
    }
}

/// Appends ALL_HEADERS with only the transaction descriptor header
/// [MS-TDS 2.2.5.3.2]: descriptor 0 and one outstanding request is
/// auto-commit, what a request outside any transaction carries.
pub fn encode_all_headers(
    out: &mut Vec<u8>,
    transaction_descriptor: u64,
    outstanding_requests: u32,
) {
    const DESCRIPTOR_HEADER_LEN: u32 = 4 + 2 + 8 + 4;
    out.extend_from_slice(&(4 + DESCRIPTOR_HEADER_LEN).to_le_bytes());
    out.extend_from_slice(&DESCRIPTOR_HEADER_LEN.to_le_bytes());
    out.extend_from_slice(&header_type::TRANSACTION_DESCRIPTOR.to_le_bytes());
    out.extend_from_slice(&transaction_descriptor.to_le_bytes());
    out.extend_from_slice(&outstanding_requests.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tds::request::sql_batch_text;
    use crate::tds::request::tests::all_headers;

    #[test]
    fn encoded_all_headers_decode_back() {
        let mut payload = Vec::new();
        encode_all_headers(&mut payload, 0x1122_3344_5566_7788, 1);
        payload.extend_from_slice(b"rest");
        let (headers, body) = split_all_headers(&payload).unwrap();
        assert_eq!(headers.transaction_descriptor, Some(0x1122_3344_5566_7788));
        assert_eq!(headers.outstanding_request_count, Some(1));
        assert_eq!(body, b"rest");
    }

    #[test]
    fn reads_every_all_headers_type() {
        let mut v = Vec::new();
        v.extend_from_slice(&(4u32 + 18 + 26 + 8).to_le_bytes());
        v.extend_from_slice(&18u32.to_le_bytes());
        v.extend_from_slice(&2u16.to_le_bytes());
        v.extend_from_slice(&7u64.to_le_bytes());
        v.extend_from_slice(&3u32.to_le_bytes());
        v.extend_from_slice(&26u32.to_le_bytes());
        v.extend_from_slice(&3u16.to_le_bytes());
        v.extend_from_slice(&[0xAA; 20]);
        v.extend_from_slice(&8u32.to_le_bytes());
        v.extend_from_slice(&1u16.to_le_bytes());
        v.extend_from_slice(&[0, 0]); // NotifyId of length 0, abbreviated
        v.extend_from_slice(b"rest");
        let (h, rest) = split_all_headers(&v).unwrap();
        assert_eq!(
            h,
            AllHeaders {
                transaction_descriptor: Some(7),
                outstanding_request_count: Some(3),
                trace_activity: true,
                query_notification: true,
            }
        );
        assert_eq!(rest, b"rest");
    }

    #[test]
    fn rejects_bad_all_headers() {
        let good = all_headers(5);
        let mut too_long = good.clone();
        too_long[0] = 23; // TotalLength past the payload
        let mut short_header = good.clone();
        short_header[4] = 5; // HeaderLength below 6
        let mut overrun = good.clone();
        overrun[4] = 19; // header runs past TotalLength
        let mut twice = good.clone();
        twice.extend_from_slice(&good[4..]);
        twice[0] = 40;
        let mut wrong_size = good.clone();
        wrong_size[4] = 17;
        wrong_size[0] = 21;
        wrong_size.truncate(21);
        for bad in [
            &[1u8, 0][..],
            &too_long,
            &short_header,
            &overrun,
            &twice,
            &wrong_size,
        ] {
            assert!(split_all_headers(bad).is_err(), "{bad:02X?}");
        }
        assert!(sql_batch_text(&[good.clone(), vec![0x41]].concat()).is_err()); // odd text
    }

    #[test]
    fn a_type_past_the_defined_ones_may_not_repeat_either() {
        let headers = |types: &[u16]| {
            let mut v = (4 + 6 * types.len() as u32).to_le_bytes().to_vec();
            for ty in types {
                v.extend_from_slice(&6u32.to_le_bytes());
                v.extend_from_slice(&ty.to_le_bytes());
            }
            v
        };
        for types in [&[63u16, 64, 0x0100, 0xFFFF][..], &[7], &[]] {
            assert!(split_all_headers(&headers(types)).is_ok(), "{types:?}");
        }
        for types in [
            &[63u16, 63][..],
            &[64, 64],
            &[0x0100, 5, 0x0100],
            &[0xFFFF, 0xFFFF],
        ] {
            assert!(split_all_headers(&headers(types)).is_err(), "{types:?}");
        }
    }
}
