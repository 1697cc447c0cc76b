//! The in-process tier: entries bounded in bytes (`cache.memory_bytes`),
//! and the local table generations.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use quick_cache::sync::Cache;
use quick_cache::{DefaultHashBuilder, Lifecycle, Weighter};

use super::entry::{Entry, Generation};
use super::key::Key;

/// Most distinct generation names kept; past it, a write to a new table
/// bumps `*`, the generation every entry records (correct, coarser).
const MAX_GENERATION_NAMES: usize = 100_000;

/// The generation every entry records: writes Sluice cannot name the
/// tables of bump it.
pub const ALL_TABLES: &str = "*";

#[derive(Clone)]
struct ByBytes;

impl Weighter<Key, Arc<Entry>> for ByBytes {
    fn weight(&self, _key: &Key, entry: &Arc<Entry>) -> u64 {
        entry.weight()
    }
}

#[derive(Clone, Default)]
struct CountEvictions;

impl Lifecycle<Key, Arc<Entry>> for CountEvictions {
    type RequestState = ();

    fn on_evict(&self, _state: &mut (), _key: Key, _entry: Arc<Entry>) {
        metrics::counter!(crate::metrics::CACHE_EVICTIONS).increment(1);
    }
}

pub struct MemoryTier {
    entries: Cache<Key, Arc<Entry>, ByBytes, DefaultHashBuilder, CountEvictions>,
}

impl MemoryTier {
    pub fn new(bytes: u64) -> MemoryTier {
        // A guess at the entry count; quick_cache sizes its tables from it.
        let estimated = usize::try_from(bytes / 4096).unwrap_or(usize::MAX).max(16);
        MemoryTier {
            entries: Cache::with(
                estimated,
                bytes,
                ByBytes,
                DefaultHashBuilder::default(),
                CountEvictions,
            ),
        }
    }

    pub fn get(&self, key: &Key) -> Option<Arc<Entry>> {
        self.entries.get(key)
    }

    pub fn insert(&self, key: Key, entry: Arc<Entry>) {
        self.entries.insert(key, entry);
        self.report();
    }

    pub fn remove(&self, key: &Key) {
        self.entries.remove(key);
        self.report();
    }

    fn report(&self) {
        metrics::gauge!(crate::metrics::CACHE_MEMORY_BYTES).set(self.entries.weight() as f64);
        metrics::gauge!(crate::metrics::CACHE_MEMORY_ENTRIES).set(self.entries.len() as f64);
    }

    pub fn entry_count(&self) -> usize {
        self.entries.len()
    }

    pub fn bytes(&self) -> u64 {
        self.entries.weight()
    }
}

/// This instance's table generations: the whole truth without Redis, a
/// mirror of Redis's (raised by its replies and its messages) with it.
#[derive(Default)]
pub struct Generations {
    values: Mutex<HashMap<String, u64>>,
}

impl Generations {
    /// The current value of each name (0 for one never written).
    pub fn snapshot(&self, names: &[String]) -> Vec<Generation> {
        let values = self.lock();
        names
            .iter()
            .map(|n| (n.clone(), values.get(n).copied().unwrap_or(0)))
            .collect()
    }

    /// Whether every generation recorded is still current.
    pub fn current(&self, recorded: &[Generation]) -> bool {
        let values = self.lock();
        recorded
            .iter()
            .all(|(n, g)| values.get(n).copied().unwrap_or(0) == *g)
    }

    /// Moves each name on by one.
    pub fn bump(&self, names: &[String]) {
        let mut values = self.lock();
        for name in names {
            let full = values.len() >= MAX_GENERATION_NAMES && !values.contains_key(name);
            let name = if full { ALL_TABLES } else { name.as_str() };
            *values.entry(name.to_string()).or_insert(0) += 1;
        }
    }

    /// Takes on a value seen in Redis, if it is newer.
    pub fn raise(&self, name: &str, value: u64) {
        let mut values = self.lock();
        if let Some(current) = values.get_mut(name) {
            *current = (*current).max(value);
        } else if values.len() < MAX_GENERATION_NAMES {
            values.insert(name.to_string(), value);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, u64>> {
        // The map is valid after any panic mid-update (each update is one
        // insert or one increment).
        self.values.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_recorded_before_a_bump_is_no_longer_current() {
        let g = Generations::default();
        let names = vec!["db.orders".to_string(), ALL_TABLES.to_string()];
        let before = g.snapshot(&names);
        assert!(g.current(&before));
        g.bump(&["db.customers".to_string()]);
        assert!(g.current(&before), "another table's write");
        g.bump(&["db.orders".to_string()]);
        assert!(!g.current(&before));
        let after = g.snapshot(&names);
        g.bump(&[ALL_TABLES.to_string()]);
        assert!(!g.current(&after));
    }

    #[test]
    fn raise_never_moves_a_generation_back() {
        let g = Generations::default();
        g.raise("db.t", 5);
        g.raise("db.t", 3);
        assert_eq!(
            g.snapshot(&["db.t".to_string()]),
            vec![("db.t".to_string(), 5)]
        );
    }

    #[test]
    fn the_memory_tier_stays_within_its_bytes() {
        let tier = MemoryTier::new(64 * 1024);
        for i in 0..200u32 {
            let mut key = [0u8; 16];
            key[..4].copy_from_slice(&i.to_le_bytes());
            let entry = Entry::new(
                bytes::Bytes::from(vec![0u8; 1024]),
                Vec::new(),
                std::time::Duration::from_secs(60),
            );
            tier.insert(Key(key), Arc::new(entry));
        }
        assert!(tier.bytes() <= 64 * 1024, "{} bytes held", tier.bytes());
        assert!(tier.entry_count() > 10);
    }
}
