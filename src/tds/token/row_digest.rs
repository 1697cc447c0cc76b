//! The rows of a response as a count and an order-insensitive checksum,
//! computed by the [walker](super::walker) as it steps over them (shadow
//! mode compares a replica's answer with the primary's this way, without
//! holding either).
//!
//! Each row is hashed over its values, not over its token bytes: ROW and
//! NBCROW [MS-TDS 2.2.7.20, 2.2.7.15] encode the same row differently (a
//! NULL is a length prefix in one and a bitmap bit in the other), and a
//! server picks either per row. So the walker reports values, and a row's
//! hash covers, column by column, either "NULL" or the value's data bytes
//! and length; framing that carries no value (length prefixes, TEXTPTRs and
//! their timestamps, PLP chunk boundaries) is left out, so two servers that
//! chunk or point differently still agree. Adjacent fixed-length values
//! (INT, DATETIME, ...) reach the digest as one run, which is the same run
//! in either encoding: such columns are never NULL, and the walker ends a
//! run at every column that can be.
//!
//! Row hashes are added (mod 2^64), so the order of rows does not matter
//! and, unlike XOR, a row that appears twice does not cancel out.

/// The count and checksum of the rows a response carried.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RowsDigest {
    pub rows: u64,
    pub checksum: u64,
}

/// What the walker feeds while it steps over rows; see the module docs.
#[derive(Debug, Default)]
pub struct RowDigest {
    total: RowsDigest,
    /// Hash state of the row being read, if one is.
    row: Option<u64>,
    /// Data bytes of the value being read.
    value_len: u64,
    /// The value being read is NULL.
    value_null: bool,
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;
/// Tags that close a value in the hashed stream: read from its end, the
/// stream parses back one way only (a value's length precedes its tag).
const TAG_NULL: u8 = 0;
const TAG_VALUE: u8 = 1;

impl RowDigest {
    /// Rows completed so far.
    pub fn digest(&self) -> RowsDigest {
        self.total
    }

    pub(super) fn start_row(&mut self) {
        self.row = Some(FNV_OFFSET);
        self.value_len = 0;
        self.value_null = false;
    }

    /// Data bytes of the current value (may come in several pieces).
    pub(super) fn data(&mut self, bytes: &[u8]) {
        if let Some(state) = self.row.as_mut() {
            *state = fnv(*state, bytes);
            self.value_len += bytes.len() as u64;
        }
    }

    /// The current value is NULL; [`end_value`](Self::end_value) follows.
    pub(super) fn mark_null(&mut self) {
        self.value_null = true;
    }

    /// A NULL the row has no bytes for (an NBCROW bitmap bit).
    pub(super) fn null_value(&mut self) {
        self.mark_null();
        self.end_value();
    }

    pub(super) fn end_value(&mut self) {
        if let Some(state) = self.row.as_mut() {
            *state = if self.value_null {
                fnv(*state, &[TAG_NULL])
            } else {
                let state = fnv(*state, &self.value_len.to_le_bytes());
                fnv(state, &[TAG_VALUE])
            };
        }
        self.value_len = 0;
        self.value_null = false;
    }

    pub(super) fn end_row(&mut self) {
        if let Some(state) = self.row.take() {
            self.total.rows += 1;
            self.total.checksum = self.total.checksum.wrapping_add(mix(state));
        }
    }

    /// The stream stopped inside a row: it does not count.
    pub(super) fn abandon_row(&mut self) {
        self.row = None;
        self.value_len = 0;
        self.value_null = false;
    }
}

/// FNV-1a: byte-serial, so a value split across packets hashes the same as
/// a whole one.
fn fnv(mut state: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        state ^= u64::from(b);
        state = state.wrapping_mul(FNV_PRIME);
    }
    state
}

/// MurmurHash3's finalizer: FNV's low bits mix poorly, and the checksum is
/// a sum, whose low bits only ever see the rows' low bits.
fn mix(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A row given as values, `None` for NULL.
    fn row(digest: &mut RowDigest, values: &[Option<&[u8]>]) {
        digest.start_row();
        for value in values {
            match value {
                Some(bytes) => {
                    digest.data(bytes);
                    digest.end_value();
                }
                None => digest.null_value(),
            }
        }
        digest.end_row();
    }

    fn digest_of(rows: &[&[Option<&[u8]>]]) -> RowsDigest {
        let mut digest = RowDigest::default();
        for values in rows {
            row(&mut digest, values);
        }
        digest.digest()
    }

    #[test]
    fn the_order_of_rows_does_not_matter() {
        let a: &[Option<&[u8]>] = &[Some(b"1"), Some(b"alice")];
        let b: &[Option<&[u8]>] = &[Some(b"2"), None];
        let c: &[Option<&[u8]>] = &[Some(b"3"), Some(b"")];
        assert_eq!(digest_of(&[a, b, c]), digest_of(&[c, a, b]));
        assert_eq!(digest_of(&[a, b, c]).rows, 3);
    }

    #[test]
    fn different_rows_differ() {
        let a: &[Option<&[u8]>] = &[Some(b"1"), Some(b"alice")];
        let b: &[Option<&[u8]>] = &[Some(b"1"), Some(b"bob")];
        assert_ne!(digest_of(&[a]), digest_of(&[b]));
    }

    #[test]
    fn a_repeated_row_does_not_cancel_out() {
        let a: &[Option<&[u8]>] = &[Some(b"x")];
        let b: &[Option<&[u8]>] = &[Some(b"y")];
        let c: &[Option<&[u8]>] = &[Some(b"z")];
        assert_ne!(
            digest_of(&[a, a, b]).checksum,
            digest_of(&[b, c, c]).checksum
        );
    }

    #[test]
    fn values_are_told_apart_from_their_neighbours_and_from_null() {
        let split: &[Option<&[u8]>] = &[Some(b"ab"), Some(b"c")];
        let moved: &[Option<&[u8]>] = &[Some(b"a"), Some(b"bc")];
        let empty: &[Option<&[u8]>] = &[Some(b"")];
        let null: &[Option<&[u8]>] = &[None];
        assert_ne!(digest_of(&[split]), digest_of(&[moved]));
        assert_ne!(digest_of(&[empty]), digest_of(&[null]));
    }

    #[test]
    fn a_value_in_pieces_hashes_as_a_whole_one() {
        let mut pieces = RowDigest::default();
        pieces.start_row();
        pieces.data(b"hel");
        pieces.data(b"lo");
        pieces.end_value();
        pieces.end_row();
        assert_eq!(pieces.digest(), digest_of(&[&[Some(b"hello")]]));
    }

    #[test]
    fn an_abandoned_row_does_not_count() {
        let mut digest = RowDigest::default();
        digest.start_row();
        digest.data(b"partial");
        digest.abandon_row();
        assert_eq!(digest.digest(), RowsDigest::default());
    }
}
