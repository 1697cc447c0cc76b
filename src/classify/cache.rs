//! A bounded, thread-safe map from statement text to a shared value.
//!
//! Sharded `Mutex`es over a CLOCK ring: a hit is one keyed hash of the text,
//! one shard lock, one `u64` map lookup, a text comparison and a clone of
//! the value (an `Arc`). A miss that inserts evicts at most one entry, the
//! first one the clock hand finds not used since its last pass, so entries
//! seen only once go first. Everything is O(1) amortized.
//!
//! The map is keyed by a 64-bit keyed hash of the text (foldhash's quality
//! variant, seeded at random per process, so clients cannot aim
//! collisions; SipHash took ~280 instructions of a point request, foldhash
//! ~40); the slot keeps the text, and a lookup whose text differs is a
//! miss, so a collision costs a miss, never a wrong answer.

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::sync::{Mutex, PoisonError};

use foldhash::quality::RandomState;

const MAX_SHARDS: usize = 16;

pub(super) struct Cache<V> {
    shards: Box<[Mutex<Shard<V>>]>,
    hasher: RandomState,
}

struct Shard<V> {
    /// Text hash → index in `slots`.
    map: HashMap<u64, usize, BuildHasherDefault<PassThrough>>,
    slots: Vec<Slot<V>>,
    hand: usize,
    capacity: usize,
}

struct Slot<V> {
    hash: u64,
    key: Box<str>,
    value: V,
    /// Set on a hit, cleared as the clock hand passes.
    referenced: bool,
}

impl<V: Clone> Cache<V> {
    /// A cache of at most `capacity` entries (0 disables it).
    pub fn new(capacity: usize) -> Self {
        let n = capacity.clamp(1, MAX_SHARDS);
        let shards = (0..n)
            .map(|i| {
                let capacity = capacity / n + usize::from(i < capacity % n);
                Mutex::new(Shard {
                    map: HashMap::with_capacity_and_hasher(capacity, Default::default()),
                    slots: Vec::with_capacity(capacity),
                    hand: 0,
                    capacity,
                })
            })
            .collect();
        Cache {
            shards,
            hasher: RandomState::default(),
        }
    }

    fn shard(&self, hash: u64) -> &Mutex<Shard<V>> {
        // The map buckets on the low bits; pick the shard from others.
        &self.shards[(hash >> 40) as usize % self.shards.len()]
    }

    pub fn get(&self, key: &str) -> Option<V> {
        let hash = self.hasher.hash_one(key);
        let mut shard = self
            .shard(hash)
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let &idx = shard.map.get(&hash)?;
        let slot = shard.slots.get_mut(idx)?;
        if &*slot.key != key {
            return None;
        }
        slot.referenced = true;
        Some(slot.value.clone())
    }

    pub fn insert(&self, key: &str, value: V) {
        let hash = self.hasher.hash_one(key);
        let mut guard = self
            .shard(hash)
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let shard = &mut *guard;
        if shard.capacity == 0 {
            return;
        }
        let slot = Slot {
            hash,
            key: key.into(),
            value,
            referenced: false,
        };
        if let Some(&idx) = shard.map.get(&hash) {
            // The same text raced in, or a hash collision: replace.
            shard.slots[idx] = slot;
            return;
        }
        if shard.slots.len() < shard.capacity {
            shard.map.insert(hash, shard.slots.len());
            shard.slots.push(slot);
            return;
        }
        while shard.slots[shard.hand].referenced {
            shard.slots[shard.hand].referenced = false;
            shard.hand = (shard.hand + 1) % shard.capacity;
        }
        let victim = shard.hand;
        shard.map.remove(&shard.slots[victim].hash);
        shard.slots[victim] = slot;
        shard.map.insert(hash, victim);
        shard.hand = (victim + 1) % shard.capacity;
    }

    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(PoisonError::into_inner).slots.len())
            .sum()
    }
}

/// The map's keys are already hash outputs: use them as they are.
#[derive(Default)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn hit_returns_the_same_value() {
        let c = Cache::new(4);
        let v = Arc::new(1);
        c.insert("SELECT 1", Arc::clone(&v));
        let hit = c.get("SELECT 1").expect("cached");
        assert!(Arc::ptr_eq(&hit, &v));
        assert!(c.get("SELECT 2").is_none());
        assert!(c.get("select 1").is_none(), "keyed by exact text");
    }

    #[test]
    fn stays_within_capacity() {
        for capacity in [1, 3, 16, 17, 100] {
            let c = Cache::new(capacity);
            for i in 0..1000 {
                c.insert(&format!("SELECT {i}"), i);
            }
            assert_eq!(c.len(), capacity);
        }
    }

    #[test]
    fn zero_capacity_caches_nothing() {
        let c = Cache::new(0);
        c.insert("SELECT 1", 1);
        assert!(c.get("SELECT 1").is_none());
        assert_eq!(c.len(), 0);
    }

    #[test]
    fn referenced_entries_survive_a_scan() {
        // Four entries per shard: keep one statement hot while many one-off
        // statements pass through its shard and the others.
        let c = Cache::new(4 * MAX_SHARDS);
        c.insert("hot", 0);
        for i in 0..10_000 {
            assert_eq!(c.get("hot"), Some(0), "evicted after {i} inserts");
            c.insert(&format!("cold {i}"), i);
        }
    }

    #[test]
    fn concurrent_use_is_consistent() {
        let c = Arc::new(Cache::new(64));
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let c = Arc::clone(&c);
                std::thread::spawn(move || {
                    for i in 0..2000 {
                        let key = format!("SELECT {}", (i * 7 + t) % 100);
                        match c.get(&key) {
                            Some(v) => assert_eq!(v, key.len()),
                            None => c.insert(&key, key.len()),
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("no panic");
        }
        assert!(c.len() <= 64);
    }
}
