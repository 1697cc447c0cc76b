//! The Redis tier: entries every Sluice instance shares, the table
//! generations that are the truth for all of them, and the channel that
//! tells the others a generation moved.
//!
//! Keys, under `cache.redis_prefix` (`sluice:` by default):
//! - `e:<key hex>`: an entry ([`Entry::encode`]), with Redis's own expiry;
//! - `g:<database.table>` and `g:*`: generations, moved on with INCR;
//! - `epoch`: a random number set once. A Redis that restarted empty
//!   starts its generations from 0 again, so an entry recorded at `g = 3`
//!   before could match a new `g = 3`: every entry records the epoch too,
//!   and a new Redis gets a new one.
//! - channel `invalidate`: `name=value` lines after each write.
//!
//! Every lookup reads the generations it depends on from Redis (one
//! round trip, with the entry's GET when memory has no current copy): a
//! peer's write is seen the moment it is in Redis, which is before that
//! write's response reached its client. The channel keeps this
//! instance's mirror current, so a memory entry a peer's write made stale
//! is refetched in that same round trip; a lost message costs a second
//! round trip, never a stale read.
//!
//! Redis down or slower than `cache.redis_timeout_ms`: the cache is
//! bypassed (queries run on their backends) until a background probe gets
//! an answer. Writes seen meanwhile are remembered and their generations
//! moved on before the cache is used again.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;

use super::entry::{Entry, Generation};
use super::key::Key;
use super::memory::{Generations, ALL_TABLES};
use crate::config::{redacted_redis_url, Cache as CacheConfig, ConfigError};
use crate::redis::{Command, Redis, RedisOptions, Value};

/// The generation name of the epoch, among the tables' in an entry.
const EPOCH: &str = "epoch";
/// Most writes remembered while Redis is away; past it, the epoch moves
/// when it is back (every entry everywhere becomes a miss).
const MAX_PENDING: usize = 1024;
/// How often a Redis that failed is asked again.
const PROBE_INTERVAL: Duration = Duration::from_millis(250);
/// Largest reply to one pipeline besides the entry itself.
const REPLY_MARGIN: usize = 64 * 1024;

pub struct SharedTier {
    state: Arc<State>,
    tasks: Vec<tokio::task::AbortHandle>,
}

struct State {
    redis: Redis,
    prefix: String,
    mirror: Arc<Generations>,
    up: AtomicBool,
    /// Generations to move on once Redis answers again; `None` when too
    /// many were missed (the epoch moves instead).
    pending: Mutex<Option<Vec<String>>>,
}

impl SharedTier {
    pub fn new(config: &CacheConfig, mirror: Arc<Generations>) -> Result<SharedTier, ConfigError> {
        let url = config.redis_url.clone().unwrap_or_default();
        let refused = |problem: String| ConfigError::Invalid {
            key: "cache.redis_url".into(),
            value: redacted_redis_url(&url),
            problem,
            fix: "check the URL, redis_password_env and redis_ca_file".into(),
        };
        let options = RedisOptions {
            url: url.clone(),
            password: config.redis_password().map_err(refused)?,
            timeout: config.redis_timeout(),
            ca_file: config.redis_ca_file.clone(),
            max_connections: 16,
            max_reply_bytes: config.max_entry_bytes + REPLY_MARGIN,
        };
        let redis = Redis::new(options).map_err(|e| refused(e.to_string()))?;
        let state = Arc::new(State {
            redis,
            prefix: config.redis_prefix.clone(),
            mirror,
            up: AtomicBool::new(true),
            pending: Mutex::new(Some(Vec::new())),
        });
        metrics::gauge!(crate::metrics::CACHE_REDIS_UP).set(1.0);
        let mut tasks = Vec::new();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            tasks.push(runtime.spawn(listen(state.clone())).abort_handle());
        }
        Ok(SharedTier { state, tasks })
    }

    /// The current generations of `names` (and the epoch), and, when
    /// `fetch_entry`, the entry Redis holds for `key` (a corrupt or
    /// truncated one is none). `Err` names why the cache is bypassed.
    pub async fn generations_and_entry(
        &self,
        key: &Key,
        names: &[String],
        fetch_entry: bool,
    ) -> Result<(Vec<Generation>, Option<Entry>), &'static str> {
        let s = &self.state;
        if !s.up.load(Ordering::Acquire) {
            return Err("redis_unavailable");
        }
        let mut commands = vec![s.mget(names)];
        if fetch_entry {
            commands.push(Command::new("GET").arg(s.entry_key(key)));
        }
        let replies = s.run(&commands).await?;
        let mut replies = replies.into_iter();
        let mut generations = match replies.next() {
            Some(Value::Array(values)) => parse_generations(names, &values)?,
            _ => return Err(s.failed("unexpected MGET reply")),
        };
        let epoch = match generations.pop() {
            Some((_, 0)) => s.start_epoch().await?,
            Some((_, epoch)) => epoch,
            None => return Err(s.failed("no epoch")),
        };
        generations.push((EPOCH.to_string(), epoch));
        for (name, value) in &generations {
            s.mirror.raise(name, *value);
        }
        let entry = match replies.next() {
            Some(Value::Bulk(record)) => decode_or_count(&record),
            _ => None,
        };
        Ok((generations, entry))
    }

    pub async fn store(&self, key: &Key, entry: &Entry) -> Result<(), &'static str> {
        let s = &self.state;
        if !s.up.load(Ordering::Acquire) {
            return Err("redis_unavailable");
        }
        let set = Command::new("SET")
            .arg(s.entry_key(key))
            .arg(entry.encode())
            .arg("PX")
            .arg(entry.remaining_ms().to_string());
        match s.run(&[set]).await?.first() {
            Some(Value::Simple(ok)) if ok == "OK" => Ok(()),
            // Out of memory under `noeviction`, say: this entry is not
            // shared, nothing else is wrong.
            _ => Err("redis_refused"),
        }
    }

    /// Moves `names` on in Redis, raises the mirror to the new values and
    /// tells the peers. With Redis away, the mirror moves and the names
    /// wait for its return.
    pub async fn bump(&self, names: &[String]) {
        let s = &self.state;
        s.mirror.bump(names);
        if !s.up.load(Ordering::Acquire) || s.incr(names).await.is_err() {
            s.remember(names);
        }
    }
}

impl Drop for SharedTier {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl State {
    fn entry_key(&self, key: &Key) -> String {
        format!("{}e:{}", self.prefix, key.hex())
    }

    fn generation_key(&self, name: &str) -> String {
        format!("{}g:{name}", self.prefix)
    }

    fn epoch_key(&self) -> String {
        format!("{}{EPOCH}", self.prefix)
    }

    fn channel(&self) -> String {
        format!("{}invalidate", self.prefix)
    }

    /// MGET of `names`' generations, then the epoch.
    fn mget(&self, names: &[String]) -> Command {
        let command = names
            .iter()
            .fold(Command::new("MGET"), |c, n| c.arg(self.generation_key(n)));
        command.arg(self.epoch_key())
    }

    async fn run(&self, commands: &[Command]) -> Result<Vec<Value>, &'static str> {
        match self.redis.run(commands).await {
            Ok(replies) => Ok(replies),
            Err(e) => Err(self.failed(&e.to_string())),
        }
    }

    /// Marks Redis down and starts probing it; returns the bypass reason.
    fn failed(&self, error: &str) -> &'static str {
        if self.up.swap(false, Ordering::AcqRel) {
            tracing::warn!(redis = %self.redis.describe(), error, "result cache: Redis failed; bypassing the cache until it answers");
            metrics::gauge!(crate::metrics::CACHE_REDIS_UP).set(0.0);
        }
        "redis_unavailable"
    }

    /// A new Redis (or one that lost its data) has no epoch: set one, or
    /// take the one a peer set first.
    async fn start_epoch(&self) -> Result<u64, &'static str> {
        let set = Command::new("SET")
            .arg(self.epoch_key())
            .arg(random_epoch().to_string())
            .arg("NX");
        let get = Command::new("GET").arg(self.epoch_key());
        let replies = self.run(&[set, get]).await?;
        match replies.get(1).and_then(parse_u64) {
            Some(epoch) if epoch > 0 => Ok(epoch),
            _ => Err(self.failed("unreadable epoch")),
        }
    }

    async fn incr(&self, names: &[String]) -> Result<(), &'static str> {
        let commands: Vec<Command> = names
            .iter()
            .map(|n| Command::new("INCR").arg(self.generation_key(n)))
            .collect();
        let replies = self.run(&commands).await?;
        let mut message = String::new();
        for (name, reply) in names.iter().zip(&replies) {
            let Value::Int(value) = reply else {
                return Err(self.failed("unexpected INCR reply"));
            };
            let value = u64::try_from(*value).unwrap_or(0);
            self.mirror.raise(name, value);
            message.push_str(&format!("{name}={value}\n"));
        }
        // The peers read Redis on every lookup; the message only saves
        // them a round trip, so it is not waited for.
        let publish = Command::new("PUBLISH").arg(self.channel()).arg(message);
        let redis = self.redis.clone();
        tokio::spawn(async move { redis.run(&[publish]).await.ok() });
        Ok(())
    }

    fn remember(&self, names: &[String]) {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(list) = pending.as_mut() {
            for name in names {
                if !list.contains(name) {
                    list.push(name.clone());
                }
            }
            if list.len() > MAX_PENDING {
                *pending = None;
            }
        }
    }

    /// Once Redis answers again: moves on what was written meanwhile (or
    /// the epoch), then lets the cache be used.
    async fn recover(&self) -> bool {
        if self.redis.run(&[Command::new("PING")]).await.is_err() {
            return false;
        }
        let pending = self
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .replace(Vec::new());
        let caught_up = match pending {
            Some(names) if names.is_empty() => true,
            Some(names) => self.incr(&names).await.is_ok(),
            None => {
                let epoch = Command::new("SET")
                    .arg(self.epoch_key())
                    .arg(random_epoch().to_string());
                self.run(&[epoch]).await.is_ok()
            }
        };
        if caught_up {
            self.up.store(true, Ordering::Release);
            metrics::gauge!(crate::metrics::CACHE_REDIS_UP).set(1.0);
            tracing::info!(redis = %self.redis.describe(), "result cache: Redis answers again");
        }
        caught_up
    }
}

/// The peers' invalidations, and the probe of a Redis that failed. Runs
/// until the tier is dropped.
async fn listen(state: Arc<State>) {
    let channel = state.channel();
    loop {
        if !state.up.load(Ordering::Acquire) && !state.recover().await {
            crate::timer::sleep(PROBE_INTERVAL).await;
            continue;
        }
        let mut subscription = match state.redis.subscribe(channel.as_bytes()).await {
            Ok(s) => s,
            Err(e) => {
                state.failed(&e.to_string());
                // Not at once: a Redis that answers PING but refuses
                // SUBSCRIBE (an ACL) must not make this a busy loop.
                crate::timer::sleep(PROBE_INTERVAL).await;
                continue;
            }
        };
        // One timer per interval, not one per message: a steady stream of
        // messages neither re-arms it nor holds the check off.
        let check = crate::timer::sleep(PROBE_INTERVAL);
        tokio::pin!(check);
        loop {
            tokio::select! {
                message = subscription.next_message() => match message {
                    Ok(message) => apply_message(&state.mirror, &message),
                    Err(e) => {
                        state.failed(&e.to_string());
                        break;
                    }
                },
                // A command that failed marks the tier down: resubscribe
                // once it answers again.
                _ = &mut check => {
                    if !state.up.load(Ordering::Acquire) {
                        break;
                    }
                    check.set(crate::timer::sleep(PROBE_INTERVAL));
                }
            }
        }
    }
}

/// Raises the mirror to a peer's `name=value` lines; anything else in a
/// message is ignored (the mirror only ever saves a round trip).
fn apply_message(mirror: &Generations, message: &Bytes) {
    let Ok(text) = std::str::from_utf8(message) else {
        return;
    };
    for line in text.lines() {
        let Some((name, value)) = line.rsplit_once('=') else {
            continue;
        };
        if let Ok(value) = value.parse::<u64>() {
            let scope = if name == ALL_TABLES { "all" } else { "table" };
            metrics::counter!(crate::metrics::CACHE_INVALIDATIONS, "scope" => scope, "origin" => "peer")
                .increment(1);
            mirror.raise(name, value);
        }
    }
}

/// MGET's values for `names` and the epoch (last); a missing key is 0.
fn parse_generations(names: &[String], values: &[Value]) -> Result<Vec<Generation>, &'static str> {
    if values.len() != names.len() + 1 {
        return Err("redis_unavailable");
    }
    let mut generations = Vec::with_capacity(values.len());
    for (name, value) in names.iter().chain([&EPOCH.to_string()]).zip(values) {
        let value = match value {
            Value::Nil => 0,
            v => parse_u64(v).ok_or("redis_unavailable")?,
        };
        generations.push((name.clone(), value));
    }
    Ok(generations)
}

fn parse_u64(value: &Value) -> Option<u64> {
    std::str::from_utf8(value.as_bytes()?).ok()?.parse().ok()
}

fn decode_or_count(record: &[u8]) -> Option<Entry> {
    let entry = Entry::decode(record);
    if entry.is_none() {
        super::count_bypass("corrupt_entry");
    }
    entry
}

/// A number no other Redis lifetime is likely to have picked.
fn random_epoch() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    hasher.finish() | 1
}
