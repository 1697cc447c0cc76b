//! Pools of logged-in backend connections, one per backend, database and
//! backend login (the shared one, or a client's own).
//!
//! A pool lends a connection to one request (transaction mode) or one
//! client (session mode) and takes it back when the [`PooledBackend`] guard
//! drops. It is Sluice's own rather than a generic pool for what a TDS
//! proxy needs: checkout prefers an idle connection whose session settings
//! already match the client's; waiting for a busy pool is told apart from a
//! backend that cannot be reached (the first is error 10928, which drivers
//! retry; the second is an outage); waiters are served first come, first
//! served, a returned connection going straight to the longest waiter; and
//! the login values of each database are remembered, so a client's login is
//! answered without holding a connection.

use std::borrow::Cow;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, Instant};

use metrics::{Counter, Gauge, Histogram};
use tokio::sync::oneshot;

use super::conn::{BackendConn, ServerInfo};
use super::connect::{connect, BackendError, BackendLogin, BackendTarget};
use crate::metrics::ClientState;

/// Distinct (database, backend login) pools per backend. A client can name
/// any database, so the count is capped to keep memory bounded.
const MAX_POOLS: usize = 256;
/// Idle connections looked at for matching settings before taking the
/// most recently used one.
const SETTINGS_SCAN: usize = 16;

/// The pools of one backend, keyed by database name (case-insensitive, as
/// SQL Server's default collations compare names).
pub struct BackendPools {
    target: Arc<BackendTarget>,
    /// For pools made from now on; a reload changes it (see [`Self::set_limits`]).
    limits: Mutex<PoolLimits>,
    pools: Mutex<HashMap<String, Arc<DatabasePool>>>,
}

impl BackendPools {
    pub fn new(target: BackendTarget, settings: &crate::config::Pool) -> Self {
        BackendPools {
            target: Arc::new(target),
            limits: Mutex::new(PoolLimits::of(settings)),
            pools: Mutex::new(HashMap::new()),
        }
    }

    /// A reload's new `[pool]` sizes and times, for every database pool at
    /// once. A pool that grows hands its new places to its waiters; one
    /// that shrinks closes idle connections over the limit and lets busy
    /// ones come back first.
    pub fn set_limits(&self, settings: &crate::config::Pool) {
        let limits = PoolLimits::of(settings);
        *self.limits.lock().unwrap_or_else(PoisonError::into_inner) = limits;
        let pools: Vec<_> = self.registry().values().cloned().collect();
        for pool in pools {
            pool.set_limits(limits);
        }
    }

    pub fn target(&self) -> &BackendTarget {
        &self.target
    }

    /// Checks out a connection logged in to `database` (empty: the
    /// backend's configured default).
    pub async fn get(&self, database: &str) -> Result<PooledBackend, BackendError> {
        self.get_preferring(database, None, 0).await
    }

    /// Like [`get`](Self::get), as `login` (`None`: the backend's shared
    /// login), preferring an idle connection whose settings have this
    /// fingerprint.
    pub async fn get_preferring(
        &self,
        database: &str,
        login: Option<&BackendLogin>,
        fingerprint: u64,
    ) -> Result<PooledBackend, BackendError> {
        self.pool_for(database, login)?.checkout(fingerprint).await
    }

    /// The pool of `database` and `login`, to keep: a session looks up the
    /// pools of its login database once, not on every checkout.
    pub fn pool(
        &self,
        database: &str,
        login: Option<&BackendLogin>,
    ) -> Result<DatabasePoolHandle, BackendError> {
        self.pool_for(database, login).map(DatabasePoolHandle)
    }

    /// The login values of `database` on this backend: remembered from the
    /// pool's last successful login, else learned by checking a connection
    /// out (which also proves the database exists and Sluice may use it).
    pub async fn login_info(
        &self,
        database: &str,
        login: Option<&BackendLogin>,
    ) -> Result<Arc<ServerInfo>, BackendError> {
        if let Some(info) = self.known_login_info(database, login)? {
            return Ok(info);
        }
        let pool = self.pool_for(database, login)?;
        let conn = pool.checkout(0).await?;
        Ok(conn.info().clone())
    }

    /// The login values of `database` if a login to it succeeded before.
    pub fn known_login_info(
        &self,
        database: &str,
        login: Option<&BackendLogin>,
    ) -> Result<Option<Arc<ServerInfo>>, BackendError> {
        Ok(self.pool_for(database, login)?.known_info())
    }

    /// Connections of every database pool: (open, idle, waiting clients).
    pub fn usage(&self) -> PoolUsage {
        let pools: Vec<_> = self.registry().values().cloned().collect();
        pools.iter().fold(PoolUsage::default(), |sum, pool| {
            let state = pool.lock();
            PoolUsage {
                open: sum.open + state.open,
                idle: sum.idle + state.idle.len(),
                waiting: sum.waiting + state.waiters.len(),
            }
        })
    }

    /// The pool for `database` and `login`, made on first use. The
    /// registry lock is held only for map operations. The map is consistent
    /// after any panic, so a poisoned lock is taken over.
    fn pool_for(
        &self,
        database: &str,
        login: Option<&BackendLogin>,
    ) -> Result<Arc<DatabasePool>, BackendError> {
        let database = if database.is_empty() {
            self.target.default_database.as_str()
        } else {
            database
        };
        let key = pool_key(database, login);
        let mut pools = self.registry();
        if let Some(pool) = pools.get(key.as_ref()) {
            return Ok(pool.clone());
        }
        if pools.len() >= MAX_POOLS {
            return Err(BackendError::Protocol {
                backend: self.target.name.clone(),
                detail: format!(
                    "more than {MAX_POOLS} distinct (database, backend login) pools requested"
                ),
            });
        }
        let target = match login {
            Some(login) => Arc::new(self.target.with_login(login)),
            None => self.target.clone(),
        };
        let limits = *self.limits.lock().unwrap_or_else(PoisonError::into_inner);
        let pool = DatabasePool::start(target, database, limits);
        pools.insert(key.into_owned(), pool.clone());
        Ok(pool)
    }

    fn registry(&self) -> MutexGuard<'_, HashMap<String, Arc<DatabasePool>>> {
        self.pools.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One database's pool on one backend (see [`BackendPools::pool`]). A pool
/// stays in its registry for the life of its `BackendPools`, so a kept
/// handle always names the pool that checkouts by name would use.
#[derive(Clone)]
pub struct DatabasePoolHandle(Arc<DatabasePool>);

impl DatabasePoolHandle {
    /// A connection, preferring one whose settings have this fingerprint
    /// (see [`BackendPools::get_preferring`]).
    pub async fn checkout(&self, fingerprint: u64) -> Result<PooledBackend, BackendError> {
        self.0.checkout(fingerprint).await
    }
}

/// A pool's registry key: the database name, case-folded as SQL Server
/// compares it, then the backend login. Borrowed, with no allocation, in
/// the common case of a lower-case ASCII name and the configured login.
fn pool_key<'a>(database: &'a str, login: Option<&BackendLogin>) -> Cow<'a, str> {
    let lower_case = database.is_ascii() && !database.bytes().any(|b| b.is_ascii_uppercase());
    let mut key = if lower_case {
        Cow::Borrowed(database)
    } else {
        Cow::Owned(database.to_lowercase())
    };
    if let Some(login) = login {
        let key = key.to_mut();
        key.push('\u{0}');
        key.push_str(&login.pool_key());
    }
    key
}

/// How a backend's connections are used, summed over its databases.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolUsage {
    /// Connections open or being opened.
    pub open: u32,
    pub idle: usize,
    /// Requests waiting for a connection.
    pub waiting: usize,
}

/// What a waiter is given: a connection, or the right to open one.
enum Handoff {
    Conn(Box<PooledBackend>),
    Slot(Slot),
}

struct Idle {
    conn: Box<BackendConn>,
    since: Instant,
}

/// A pool's sizes and times (`[pool]`), changed in place by a reload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PoolLimits {
    max_size: u32,
    min_idle: u32,
    checkout_timeout: Duration,
    idle_timeout: Duration,
    max_lifetime: Option<Duration>,
    prepared_per_connection: usize,
}

impl PoolLimits {
    fn of(settings: &crate::config::Pool) -> PoolLimits {
        PoolLimits {
            max_size: settings.max_size,
            min_idle: settings.min_idle,
            checkout_timeout: settings.checkout_timeout(),
            idle_timeout: settings.idle_timeout(),
            max_lifetime: settings.max_lifetime(),
            prepared_per_connection: settings.prepared_statements_per_connection,
        }
    }

    fn is_stale(&self, idle: &Idle, now: Instant) -> bool {
        now.duration_since(idle.since) >= self.idle_timeout || self.is_expired(&idle.conn, now)
    }

    fn is_expired(&self, conn: &BackendConn, now: Instant) -> bool {
        self.max_lifetime
            .is_some_and(|max| now.duration_since(conn.created()) >= max)
    }
}

struct PoolState {
    limits: PoolLimits,
    /// Most recently returned last.
    idle: Vec<Idle>,
    /// Connections open or being opened; at most `max_size`.
    open: u32,
    waiters: VecDeque<oneshot::Sender<Handoff>>,
    gauges: PoolGauges,
}

/// This pool's share of its backend's `sluice_pool_connections` gauges
/// (a backend has a pool per database and login): what it last added,
/// brought up to date whenever the state's lock is let go, and taken back
/// when the pool goes.
struct PoolGauges {
    open: Gauge,
    idle: Gauge,
    published_open: u32,
    published_idle: usize,
}

impl PoolGauges {
    fn new(backend: &Arc<str>) -> PoolGauges {
        let gauge = |state: &'static str| metrics::gauge!(crate::metrics::POOL_CONNECTIONS, "backend" => backend.clone(), "state" => state);
        PoolGauges {
            open: gauge("open"),
            idle: gauge("idle"),
            published_open: 0,
            published_idle: 0,
        }
    }

    fn publish(&mut self, open: u32, idle: usize) {
        if open != self.published_open {
            self.open
                .increment(f64::from(open) - f64::from(self.published_open));
            self.published_open = open;
        }
        if idle != self.published_idle {
            self.idle
                .increment(idle as f64 - self.published_idle as f64);
            self.published_idle = idle;
        }
    }
}

impl Drop for PoolGauges {
    fn drop(&mut self) {
        self.publish(0, 0);
    }
}

/// The locked state of a pool; letting it go publishes the connection
/// gauges, so no change of `open` or `idle` can miss them.
struct LockedState<'a>(MutexGuard<'a, PoolState>);

impl std::ops::Deref for LockedState<'_> {
    type Target = PoolState;
    fn deref(&self) -> &PoolState {
        &self.0
    }
}

impl std::ops::DerefMut for LockedState<'_> {
    fn deref_mut(&mut self) -> &mut PoolState {
        &mut self.0
    }
}

impl Drop for LockedState<'_> {
    fn drop(&mut self) {
        let state = &mut *self.0;
        state.gauges.publish(state.open, state.idle.len());
    }
}

/// What a pool records per checkout, registered once.
struct CheckoutMetrics {
    wait: Histogram,
    timeouts: Counter,
}

/// The connections of one backend to one database.
struct DatabasePool {
    target: Arc<BackendTarget>,
    database: String,
    state: Mutex<PoolState>,
    checkout_metrics: CheckoutMetrics,
    /// The login values of the last successful login; cleared when a login
    /// is refused (the database may have gone).
    info: Mutex<Option<Arc<ServerInfo>>>,
}

impl DatabasePool {
    fn start(target: Arc<BackendTarget>, database: &str, limits: PoolLimits) -> Arc<DatabasePool> {
        let pool = Arc::new(DatabasePool {
            target: target.clone(),
            database: database.to_string(),
            state: Mutex::new(PoolState {
                limits,
                idle: Vec::new(),
                open: 0,
                waiters: VecDeque::new(),
                gauges: PoolGauges::new(&target.name),
            }),
            checkout_metrics: CheckoutMetrics {
                wait: metrics::histogram!(crate::metrics::POOL_CHECKOUT_WAIT, "backend" => target.name.clone()),
                timeouts: metrics::counter!(crate::metrics::POOL_CHECKOUT_TIMEOUTS, "backend" => target.name.clone()),
            },
            info: Mutex::new(None),
        });
        // Outside a runtime (unit tests of other parts) there is no upkeep.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(upkeep(Arc::downgrade(&pool)));
        }
        pool
    }

    fn lock(&self) -> LockedState<'_> {
        LockedState(self.state.lock().unwrap_or_else(PoisonError::into_inner))
    }

    fn limits(&self) -> PoolLimits {
        self.lock().limits
    }

    /// New limits from a reload: idle connections over a smaller
    /// `max_size` close now; places a larger one adds go to waiters.
    fn set_limits(self: &Arc<Self>, limits: PoolLimits) {
        let added = {
            let mut state = self.lock();
            let added = limits.max_size.saturating_sub(state.limits.max_size);
            state.limits = limits;
            while state.open > limits.max_size && !state.idle.is_empty() {
                state.idle.remove(0);
                state.open -= 1;
            }
            added
        };
        for _ in 0..added {
            if !self.offer_new_slot() {
                break;
            }
        }
    }

    /// Gives the longest waiter the right to open a connection, if one
    /// waits and there is room; whether one took it.
    fn offer_new_slot(self: &Arc<Self>) -> bool {
        loop {
            let waiter = {
                let mut state = self.lock();
                if state.open >= state.limits.max_size {
                    return false;
                }
                let Some(waiter) = state.waiters.pop_front() else {
                    return false;
                };
                state.open += 1;
                waiter
            };
            match waiter.send(Handoff::Slot(Slot(Some(self.clone())))) {
                Ok(()) => return true,
                // Gave up meanwhile: take the place back, try the next.
                Err(Handoff::Slot(mut slot)) => {
                    slot.0 = None;
                    self.lock().open -= 1;
                }
                Err(Handoff::Conn(_)) => return false,
            }
        }
    }

    fn known_info(&self) -> Option<Arc<ServerInfo>> {
        self.info.lock().ok().and_then(|info| info.clone())
    }

    async fn checkout(self: &Arc<Self>, fingerprint: u64) -> Result<PooledBackend, BackendError> {
        let started = Instant::now();
        let metrics = &self.checkout_metrics;
        let queued = match self.take_idle_or_queue(started, fingerprint) {
            Ok(conn) => {
                // Taken at once: no second clock reading for a wait of 0.
                metrics.wait.record(0.0);
                return Ok(self.lend(conn));
            }
            Err(queued) => queued,
        };
        let checkout = self.wait_or_open(started, queued).await;
        match &checkout {
            Ok(_) => metrics.wait.record(started.elapsed().as_secs_f64()),
            Err(BackendError::PoolExhausted { .. }) => metrics.timeouts.increment(1),
            Err(_) => {}
        }
        checkout
    }

    /// An idle connection; else a new place in the pool (`None`) or a
    /// place in the queue, with the checkout timeout.
    fn take_idle_or_queue(
        &self,
        now: Instant,
        fingerprint: u64,
    ) -> Result<Box<BackendConn>, (Option<oneshot::Receiver<Handoff>>, Duration)> {
        let mut state = self.lock();
        if let Some(conn) = self.take_idle(&mut state, fingerprint, now) {
            return Ok(conn);
        }
        let waiting = if state.open < state.limits.max_size {
            state.open += 1;
            None
        } else {
            let (tx, rx) = oneshot::channel();
            state.waiters.push_back(tx);
            Some(rx)
        };
        Err((waiting, state.limits.checkout_timeout))
    }

    async fn wait_or_open(
        self: &Arc<Self>,
        started: Instant,
        (waiting, checkout_timeout): (Option<oneshot::Receiver<Handoff>>, Duration),
    ) -> Result<PooledBackend, BackendError> {
        let handoff = match waiting {
            None => Handoff::Slot(Slot(Some(self.clone()))),
            Some(rx) => {
                let _waiting = ClientState::Waiting.enter();
                match tokio::time::timeout(checkout_timeout, rx).await {
                    Ok(Ok(handoff)) => handoff,
                    // The pool never drops a waiter unanswered; a timeout
                    // drops the receiver, and anything sent to it comes back.
                    Ok(Err(_)) | Err(_) => return Err(self.exhausted(started)),
                }
            }
        };
        match handoff {
            Handoff::Conn(conn) => Ok(*conn),
            Handoff::Slot(slot) => self.open_connection(slot).await,
        }
    }

    fn exhausted(&self, started: Instant) -> BackendError {
        BackendError::PoolExhausted {
            backend: self.target.name.clone(),
            database: self.database.clone(),
            max_size: self.limits().max_size,
            waited_ms: started.elapsed().as_millis(),
        }
    }

    /// An idle connection, preferring one with these settings. Only the
    /// one picked is checked for staleness (a stale one is closed and
    /// another picked): the upkeep task closes the others, so a checkout
    /// does not walk the whole idle list.
    fn take_idle(
        &self,
        state: &mut PoolState,
        fingerprint: u64,
        now: Instant,
    ) -> Option<Box<BackendConn>> {
        loop {
            let scan_from = state.idle.len().saturating_sub(SETTINGS_SCAN);
            let matching = state.idle[scan_from..]
                .iter()
                .rposition(|idle| idle.conn.settings().fingerprint() == fingerprint)
                .map(|i| i + scan_from);
            let index = matching.or_else(|| state.idle.len().checked_sub(1))?;
            let idle = state.idle.remove(index);
            if !state.limits.is_stale(&idle, now) {
                return Some(idle.conn);
            }
            state.open -= 1;
        }
    }

    /// Closes the idle connections past `idle_timeout_ms` or their lifetime.
    fn close_stale(&self, state: &mut PoolState, now: Instant) {
        let before = state.idle.len();
        let limits = state.limits;
        state.idle.retain(|idle| !limits.is_stale(idle, now));
        state.open -= (before - state.idle.len()) as u32;
    }

    async fn open_connection(
        self: &Arc<Self>,
        mut slot: Slot,
    ) -> Result<PooledBackend, BackendError> {
        match connect(&self.target, &self.database).await {
            Ok(mut conn) => {
                slot.0 = None;
                conn.set_prepared_capacity(self.limits().prepared_per_connection);
                if let Ok(mut info) = self.info.lock() {
                    *info = Some(conn.info().clone());
                }
                Ok(self.lend(Box::new(conn)))
            }
            Err(e) => {
                if matches!(e, BackendError::LoginRefused { .. }) {
                    if let Ok(mut info) = self.info.lock() {
                        *info = None;
                    }
                }
                tracing::warn!(error = %e, "backend connection failed");
                // Dropping the slot passes it to the next waiter.
                drop(slot);
                Err(e)
            }
        }
    }

    fn lend(self: &Arc<Self>, conn: Box<BackendConn>) -> PooledBackend {
        PooledBackend {
            conn: Some(conn),
            pool: self.clone(),
            reset: true,
        }
    }

    /// A connection comes back: to the longest waiter, else to the idle
    /// list. A broken or expired one is closed and its slot passed on.
    fn give_back(self: &Arc<Self>, conn: Box<BackendConn>) {
        let limits = self.limits();
        let now = Instant::now();
        if conn.is_broken() || limits.is_expired(&conn, now) {
            drop(conn);
            self.free_slot();
            return;
        }
        let mut conn = Some(conn);
        while let Some(back) = conn.take() {
            let mut idle = Some(back);
            let waiter = self.next_waiter(|state| {
                let Some(conn) = idle.take() else { return };
                // Over a `max_size` a reload made smaller: close it.
                if state.open > state.limits.max_size {
                    state.open -= 1;
                } else {
                    state.idle.push(Idle { conn, since: now });
                }
            });
            let (Some(waiter), Some(back)) = (waiter, idle) else {
                return;
            };
            // A waiter that gave up sends the connection back: try the next.
            if let Err(Handoff::Conn(mut returned)) =
                waiter.send(Handoff::Conn(Box::new(self.lend(back))))
            {
                conn = returned.conn.take();
            }
        }
    }

    /// A connection closed (or was never made): a waiter may open one.
    fn free_slot(self: &Arc<Self>) {
        while let Some(waiter) = self.next_waiter(|state| state.open -= 1) {
            match waiter.send(Handoff::Slot(Slot(Some(self.clone())))) {
                // The waiter gave up; the slot came back unused.
                Err(Handoff::Slot(mut slot)) => slot.0 = None,
                _ => return,
            }
        }
    }

    /// The longest waiter; when none waits, `otherwise` runs on the state
    /// under the same lock (so no waiter can slip in between).
    fn next_waiter(
        &self,
        otherwise: impl FnOnce(&mut PoolState),
    ) -> Option<oneshot::Sender<Handoff>> {
        let mut state = self.lock();
        let waiter = state.waiters.pop_front();
        if waiter.is_none() {
            otherwise(&mut state);
        }
        waiter
    }

    /// Closes idle connections past their time and opens connections up to
    /// `min_idle`.
    async fn tidy(self: &Arc<Self>) {
        self.close_stale(&mut self.lock(), Instant::now());
        loop {
            let slot = {
                let mut state = self.lock();
                let wanted = (state.idle.len() as u32) < state.limits.min_idle;
                if !wanted || state.open >= state.limits.max_size || !state.waiters.is_empty() {
                    return;
                }
                state.open += 1;
                Slot(Some(self.clone()))
            };
            match self.open_connection(slot).await {
                Ok(conn) => drop(conn),
                Err(_) => return,
            }
        }
    }
}

/// Keeps a pool tidy while it exists.
async fn upkeep(pool: Weak<DatabasePool>) {
    loop {
        // Read each time: a reload may have changed `idle_timeout_ms`.
        let period = match pool.upgrade() {
            Some(pool) => (pool.limits().idle_timeout / 4)
                .clamp(Duration::from_millis(50), Duration::from_secs(10)),
            None => return,
        };
        crate::timer::sleep(period).await;
        let Some(pool) = pool.upgrade() else { return };
        pool.tidy().await;
    }
}

/// The right to open one connection; dropped unused, it passes to the next
/// waiter (or frees the place).
struct Slot(Option<Arc<DatabasePool>>);

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(pool) = self.0.take() {
            pool.free_slot();
        }
    }
}

/// A backend connection checked out of its pool (after pgdog's pool guard).
/// Dropping it returns it only in a known-clean state. A connection dropped
/// mid-request (a client that vanished, a panicking task) or inside a
/// transaction (whose locks would outlive the client) is discarded instead;
/// closing it makes the server roll the transaction back at once. Unless
/// the session vouched for it with [`keep_session_state`](Self::keep_session_state),
/// it carries RESETCONNECTION on its next request, so the next client
/// starts from a clean session.
pub struct PooledBackend {
    /// Boxed, so that lending and returning it (to and from the idle list,
    /// the session, a waiter) moves a pointer, not the connection's state.
    conn: Option<Box<BackendConn>>,
    pool: Arc<DatabasePool>,
    reset: bool,
}

impl PooledBackend {
    /// The connection's state is exactly what it tracks (its settings and
    /// prepared statements): it goes back without a reset.
    pub fn keep_session_state(&mut self) {
        self.reset = false;
    }

    /// Closes the connection instead of returning it: its state cannot be
    /// reset (an application role, an impersonation).
    pub fn discard(&mut self) {
        if let Some(conn) = self.conn.as_mut() {
            conn.mark_broken();
        }
    }
}

impl std::ops::Deref for PooledBackend {
    type Target = BackendConn;
    fn deref(&self) -> &BackendConn {
        self.conn
            .as_ref()
            .expect("a lent connection is present until drop")
    }
}

impl std::ops::DerefMut for PooledBackend {
    fn deref_mut(&mut self) -> &mut BackendConn {
        self.conn
            .as_mut()
            .expect("a lent connection is present until drop")
    }
}

impl Drop for PooledBackend {
    fn drop(&mut self) {
        let Some(mut conn) = self.conn.take() else {
            return;
        };
        if !conn.is_clean() && !conn.is_broken() {
            tracing::debug!(backend = %conn.name(), in_request = conn.in_request(), in_transaction = conn.in_transaction(), "discarding a connection that is not clean");
            conn.mark_broken();
        }
        if self.reset {
            conn.reset_on_next_request();
        }
        self.pool.give_back(conn);
    }
}
