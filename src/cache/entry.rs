//! A cached response and its wire form in Redis.
//!
//! The value is the complete response as the backend sent it (the TDS
//! token stream, without packet headers), replayed to each client in its
//! own packets with its own SPID. With it go the generations of the
//! tables it read, as they were before the query ran: the entry is a miss
//! once any has moved.
//!
//! In Redis the entry is a self-checking record: anything truncated,
//! corrupt, of another version or expired decodes to nothing (a miss).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use blake2::{Blake2s256, Digest};
use bytes::Bytes;

const MAGIC: &[u8; 4] = b"SLC1";
const CHECKSUM_LEN: usize = 16;
/// More generations than any real statement reads: a record claiming more
/// is corrupt.
const MAX_GENERATIONS: usize = 1024;

/// A generation name (`database.table`, `*`, the epoch) and its value.
pub type Generation = (String, u64);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub response: Bytes,
    /// The generations of what it read, taken before the query ran.
    pub generations: Vec<Generation>,
    /// Milliseconds since the Unix epoch after which it is a miss.
    pub expires_at_ms: u64,
}

impl Entry {
    pub fn new(response: Bytes, generations: Vec<Generation>, ttl: Duration) -> Entry {
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
        Entry {
            response,
            generations,
            expires_at_ms: now_ms().saturating_add(ttl_ms),
        }
    }

    pub fn expired(&self) -> bool {
        now_ms() >= self.expires_at_ms
    }

    /// Milliseconds it has left (at least 1, for Redis's PX).
    pub fn remaining_ms(&self) -> u64 {
        self.expires_at_ms.saturating_sub(now_ms()).max(1)
    }

    /// Bytes it holds in memory, for the memory tier's byte bound.
    pub fn weight(&self) -> u64 {
        let names: usize = self.generations.iter().map(|(n, _)| n.len() + 32).sum();
        (self.response.len() + names + 96) as u64
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.response.len() + 64);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&self.expires_at_ms.to_le_bytes());
        out.extend_from_slice(&(self.generations.len() as u32).to_le_bytes());
        for (name, value) in &self.generations {
            out.extend_from_slice(&(name.len() as u32).to_le_bytes());
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(&value.to_le_bytes());
        }
        out.extend_from_slice(&(self.response.len() as u32).to_le_bytes());
        out.extend_from_slice(&self.response);
        let checksum = Blake2s256::digest(&out);
        out.extend_from_slice(&checksum[..CHECKSUM_LEN]);
        out
    }

    /// The entry a record holds; `None` for anything but a whole, intact
    /// record of this version.
    pub fn decode(record: &[u8]) -> Option<Entry> {
        let body_len = record.len().checked_sub(CHECKSUM_LEN)?;
        let (body, checksum) = record.split_at(body_len);
        if Blake2s256::digest(body)[..CHECKSUM_LEN] != *checksum {
            return None;
        }
        let mut r = Reader(body);
        if r.take(4)? != MAGIC {
            return None;
        }
        let expires_at_ms = r.u64()?;
        let count = r.u32()? as usize;
        if count > MAX_GENERATIONS {
            return None;
        }
        let mut generations = Vec::with_capacity(count);
        for _ in 0..count {
            let len = r.u32()? as usize;
            let name = std::str::from_utf8(r.take(len)?).ok()?.to_string();
            generations.push((name, r.u64()?));
        }
        let len = r.u32()? as usize;
        let response = Bytes::copy_from_slice(r.take(len)?);
        if !r.0.is_empty() {
            return None;
        }
        Some(Entry {
            response,
            generations,
            expires_at_ms,
        })
    }
}

/// Reads fixed-width fields off the front of a slice, `None` past its end.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.0.len() {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> Entry {
        Entry::new(
            Bytes::from_static(b"\x81\x01\x00tokens\xfd"),
            vec![("db.orders".into(), 7), ("*".into(), 2)],
            Duration::from_secs(60),
        )
    }

    #[test]
    fn an_entry_survives_its_wire_form() {
        let e = entry();
        assert_eq!(Entry::decode(&e.encode()), Some(e));
    }

    #[test]
    fn every_truncation_and_every_flipped_byte_is_a_miss() {
        let record = entry().encode();
        for len in 0..record.len() {
            assert_eq!(Entry::decode(&record[..len]), None, "truncated to {len}");
        }
        for i in 0..record.len() {
            let mut bad = record.clone();
            bad[i] ^= 0x40;
            assert_eq!(Entry::decode(&bad), None, "byte {i} flipped");
        }
    }

    #[test]
    fn an_entry_expires_after_its_ttl() {
        let mut e = entry();
        assert!(!e.expired());
        e.expires_at_ms = now_ms() - 1;
        assert!(e.expired());
    }
}
