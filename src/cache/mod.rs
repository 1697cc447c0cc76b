//! The result cache: reads an operator or a client opted in, answered from
//! memory or from a Redis shared by every Sluice instance, and dropped the
//! moment a write through any instance touches their tables.
//!
//! - [`policy`]: what may be cached (opt-in, then a never-cache list).
//! - [`key`]: what a result depends on, hashed.
//! - [`entry`]: the stored response, and its self-checking form in Redis.
//! - [`memory`]: the byte-bounded in-process tier and the local generations.
//! - [`shared`]: the Redis tier, its generations and their pub/sub.
//! - [`flight`]: concurrent misses on one key run the query once.
//!
//! Invalidation is by generation: each table (`database.object`) has a
//! counter that every write to it moves on, before the write's response
//! reaches its client. An entry records the counters of the tables it read
//! as they were *before* its query ran, and is a miss once any has moved:
//! a read that raced a write is stored already stale and never served.

pub mod entry;
mod flight;
pub mod key;
mod memory;
pub mod policy;
mod shared;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::config::{Cache as CacheConfig, ConfigError};
use entry::{Entry, Generation};
use flight::{Flight, FlightGuard, Flights};
pub use key::{Asked, Context, Key};
use memory::{Generations, MemoryTier, ALL_TABLES};
pub use policy::{Plan, Policy, Skip, Statement, Verdict};
use shared::SharedTier;

/// Where a hit came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    Memory,
    Redis,
}

impl Tier {
    fn label(self) -> &'static str {
        match self {
            Tier::Memory => "memory",
            Tier::Redis => "redis",
        }
    }
}

/// The answer to a lookup.
pub enum Lookup {
    Hit(Bytes, Tier),
    /// Run the query; hand its response to [`ResultCache::store`].
    Miss(Ticket),
    /// The cache cannot answer safely now (Redis down or slow): run the
    /// query, store nothing.
    Bypass(&'static str),
}

/// A miss's right to store what its query returns.
pub struct Ticket {
    key: Key,
    /// Taken before the query runs (see the module doc).
    generations: Vec<Generation>,
    ttl: Duration,
    _flight: Option<FlightGuard>,
}

pub struct ResultCache {
    policy: Policy,
    memory: Option<MemoryTier>,
    shared: Option<SharedTier>,
    generations: Arc<Generations>,
    flights: Flights,
    max_entry_bytes: usize,
}

impl ResultCache {
    /// Builds the cache; the Redis tier connects lazily and listens for
    /// peers' invalidations in a task (call from within a runtime).
    pub fn new(config: &CacheConfig) -> Result<ResultCache, ConfigError> {
        let generations = Arc::new(Generations::default());
        let shared = match &config.redis_url {
            Some(_) => Some(SharedTier::new(config, generations.clone())?),
            None => None,
        };
        Ok(ResultCache {
            policy: Policy::new(config)?,
            memory: (config.memory_bytes > 0).then(|| MemoryTier::new(config.memory_bytes)),
            shared,
            generations,
            flights: Flights::default(),
            max_entry_bytes: config.max_entry_bytes,
        })
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    pub fn max_entry_bytes(&self) -> usize {
        self.max_entry_bytes
    }

    /// Looks `key` up; on a miss, joins its flight: the first miss runs the
    /// query, later ones wait for it and look again.
    pub async fn lookup(&self, key: Key, plan: &Plan) -> Lookup {
        let names = generation_names(plan);
        for _ in 0..2 {
            let generations = match self.find(key, &names).await {
                Ok(Found::Hit(response, tier)) => {
                    count_lookup("hit", tier.label());
                    return Lookup::Hit(response, tier);
                }
                Ok(Found::Miss(generations)) => generations,
                Err(reason) => {
                    count_bypass(reason);
                    return Lookup::Bypass(reason);
                }
            };
            match self.flights.join(key) {
                Flight::Leader(guard) => {
                    count_lookup("miss", "none");
                    return Lookup::Miss(self.ticket(key, generations, plan, Some(guard)));
                }
                Flight::Follower(landing) => Flight::landed(landing).await,
            }
        }
        // The flight ahead stored nothing (too large, an error): run alone.
        count_lookup("miss", "none");
        match self.find(key, &names).await {
            Ok(Found::Miss(generations)) => Lookup::Miss(self.ticket(key, generations, plan, None)),
            Ok(Found::Hit(response, tier)) => Lookup::Hit(response, tier),
            Err(reason) => Lookup::Bypass(reason),
        }
    }

    fn ticket(
        &self,
        key: Key,
        generations: Vec<Generation>,
        plan: &Plan,
        flight: Option<FlightGuard>,
    ) -> Ticket {
        Ticket {
            key,
            generations,
            ttl: plan.ttl,
            _flight: flight,
        }
    }

    /// A current entry for `key`, or the generations to record with the
    /// response about to be fetched.
    async fn find(&self, key: Key, names: &[String]) -> Result<Found, &'static str> {
        let Some(shared) = &self.shared else {
            if let Some(hit) = self.memory_hit(&key, |e| self.generations.current(e)) {
                return Ok(Found::Hit(hit, Tier::Memory));
            }
            return Ok(Found::Miss(self.generations.snapshot(names)));
        };
        // With Redis, its generations are the truth: a peer's write may not
        // have reached this instance's mirror yet.
        let in_memory = self.memory.as_ref().and_then(|m| m.get(&key));
        // The mirror says when the memory copy is stale already: then the
        // same round trip fetches Redis's.
        let fetch_entry = in_memory
            .as_ref()
            .is_none_or(|e| e.expired() || !self.generations.current(&e.generations));
        let (current, stored) = shared
            .generations_and_entry(&key, names, fetch_entry)
            .await?;
        let is_current = |e: &Entry| e.generations == current && !e.expired();
        if let Some(entry) = in_memory {
            if is_current(&entry) {
                return Ok(Found::Hit(entry.response.clone(), Tier::Memory));
            }
            self.forget(&key);
        }
        if let Some(entry) = stored.filter(|e| is_current(e)) {
            let response = entry.response.clone();
            if let Some(memory) = &self.memory {
                memory.insert(key, Arc::new(entry));
            }
            return Ok(Found::Hit(response, Tier::Redis));
        }
        Ok(Found::Miss(current))
    }

    /// The memory tier's entry for `key` when it is unexpired and `current`
    /// says its generations are; a stale one is dropped.
    fn memory_hit(&self, key: &Key, current: impl Fn(&[Generation]) -> bool) -> Option<Bytes> {
        let entry = self.memory.as_ref()?.get(key)?;
        if !entry.expired() && current(&entry.generations) {
            return Some(entry.response.clone());
        }
        self.forget(key);
        None
    }

    fn forget(&self, key: &Key) {
        if let Some(memory) = &self.memory {
            memory.remove(key);
        }
    }

    /// Stores a miss's response in every tier.
    pub async fn store(&self, ticket: Ticket, response: Bytes) {
        let entry = Arc::new(Entry::new(response, ticket.generations, ticket.ttl));
        if let Some(shared) = &self.shared {
            match shared.store(&ticket.key, &entry).await {
                Ok(()) => count_store("redis"),
                Err(reason) => count_bypass(reason),
            }
        }
        if let Some(memory) = &self.memory {
            memory.insert(ticket.key, entry);
            count_store("memory");
        }
    }

    /// A write changed `tables` (`database.object`, or [`ALL_TABLES`]):
    /// moves their generations on, here and in Redis, and tells the peers.
    pub async fn invalidate(&self, tables: &[String]) {
        if tables.is_empty() {
            return;
        }
        for table in tables {
            let scope = if table == ALL_TABLES { "all" } else { "table" };
            metrics::counter!(crate::metrics::CACHE_INVALIDATIONS, "scope" => scope, "origin" => "local")
                .increment(1);
        }
        match &self.shared {
            Some(shared) => shared.bump(tables).await,
            None => self.generations.bump(tables),
        }
    }

    /// Entries and bytes the memory tier holds.
    pub fn memory_usage(&self) -> (usize, u64) {
        self.memory
            .as_ref()
            .map_or((0, 0), |m| (m.entry_count(), m.bytes()))
    }
}

/// The name of the generation a write to tables it cannot name moves.
pub fn all_tables() -> String {
    ALL_TABLES.to_string()
}

enum Found {
    Hit(Bytes, Tier),
    Miss(Vec<Generation>),
}

/// What an entry for `plan` records: its tables' generations and the one
/// every entry records.
fn generation_names(plan: &Plan) -> Vec<String> {
    let mut names = plan.tables.clone();
    names.push(ALL_TABLES.to_string());
    names
}

fn count_lookup(result: &'static str, tier: &'static str) {
    metrics::counter!(crate::metrics::CACHE_LOOKUPS, "result" => result, "tier" => tier)
        .increment(1);
}

/// Counts an opted-in request the cache neither served nor stored.
pub fn count_bypass(reason: &'static str) {
    metrics::counter!(crate::metrics::CACHE_BYPASSES, "reason" => reason).increment(1);
}

fn count_store(tier: &'static str) {
    metrics::counter!(crate::metrics::CACHE_STORES, "tier" => tier).increment(1);
}

#[cfg(test)]
mod tests;
