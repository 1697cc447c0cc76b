//! One bb8 pool of raw backend connections per backend and database.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::watch;

use super::conn::{BackendConn, ServerInfo};
use super::connect::{connect, BackendError, BackendTarget};

/// Distinct databases per backend; each gets its own pool. A client can name
/// any database, so the count is capped to keep memory bounded.
const MAX_DATABASES: usize = 256;

struct BackendManager {
    target: Arc<BackendTarget>,
    database: String,
    learned: Arc<Mutex<Option<Arc<ServerInfo>>>>,
}

impl bb8::ManageConnection for BackendManager {
    type Connection = BackendConn;
    type Error = BackendError;

    async fn connect(&self) -> Result<BackendConn, BackendError> {
        let conn = connect(&self.target, &self.database).await?;
        if let Ok(mut learned) = self.learned.lock() {
            *learned = Some(conn.info.clone());
        }
        Ok(conn)
    }

    async fn is_valid(&self, conn: &mut BackendConn) -> Result<(), BackendError> {
        if conn.broken {
            return Err(BackendError::Protocol {
                backend: self.target.name.clone(),
                detail: "connection marked broken".into(),
            });
        }
        Ok(())
    }

    fn has_broken(&self, conn: &mut BackendConn) -> bool {
        conn.broken
    }
}

/// A backend connection checked out of its pool. Dropping it returns it;
/// the connection then carries RESETCONNECTION on its next request so the
/// next client starts from a clean session.
pub struct PooledBackend(bb8::PooledConnection<'static, BackendManager>);

impl std::ops::Deref for PooledBackend {
    type Target = BackendConn;
    fn deref(&self) -> &BackendConn {
        &self.0
    }
}

impl std::ops::DerefMut for PooledBackend {
    fn deref_mut(&mut self) -> &mut BackendConn {
        &mut self.0
    }
}

impl Drop for PooledBackend {
    fn drop(&mut self) {
        self.0.needs_reset = true;
    }
}

/// bb8 makes connections in the background and only logs their errors; a
/// waiting `get` would see nothing but its own timeout. This sink publishes
/// each connect error so a waiting client learns the real cause at once.
#[derive(Clone)]
struct ConnectErrors(watch::Sender<Option<BackendError>>);

impl bb8::ErrorSink<BackendError> for ConnectErrors {
    fn sink(&self, error: BackendError) {
        tracing::warn!(%error, "backend connection failed");
        self.0.send_replace(Some(error));
    }

    fn boxed_clone(&self) -> Box<dyn bb8::ErrorSink<BackendError>> {
        Box::new(self.clone())
    }
}

impl std::fmt::Debug for ConnectErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ConnectErrors")
    }
}

/// The pools of one backend, keyed by database name (case-insensitive, as
/// SQL Server's default collations compare names).
pub struct BackendPools {
    target: Arc<BackendTarget>,
    settings: crate::config::Pool,
    pools: Mutex<HashMap<String, bb8::Pool<BackendManager>>>,
    learned: Arc<Mutex<Option<Arc<ServerInfo>>>>,
    errors: ConnectErrors,
    /// Requests running on this backend now (replica choice by load).
    pub in_flight: AtomicU32,
    /// Prepared-statement handles can be read from this backend's replies
    /// (cleared when a reply to sp_prepare carried none Sluice could read).
    pub follows_handles: AtomicBool,
}

impl BackendPools {
    pub fn new(target: BackendTarget, settings: crate::config::Pool) -> Self {
        BackendPools {
            target: Arc::new(target),
            settings,
            pools: Mutex::new(HashMap::new()),
            learned: Arc::new(Mutex::new(None)),
            errors: ConnectErrors(watch::channel(None).0),
            in_flight: AtomicU32::new(0),
            follows_handles: AtomicBool::new(true),
        }
    }

    pub fn target(&self) -> &BackendTarget {
        &self.target
    }

    /// What the backend said about itself at its last login, if any.
    pub fn server_info(&self) -> Option<Arc<ServerInfo>> {
        self.learned.lock().ok().and_then(|l| l.clone())
    }

    /// Checks out a connection logged in to `database` (empty: the
    /// backend's configured default).
    pub async fn get(&self, database: &str) -> Result<PooledBackend, BackendError> {
        let pool = self.pool_for(database)?;
        let mut errors = self.errors.0.subscribe();
        errors.borrow_and_update();
        let result = tokio::select! {
            result = pool.get_owned() => result,
            Ok(()) = errors.changed() => {
                let error = errors.borrow().clone();
                return Err(error.unwrap_or_else(|| self.timeout_error()));
            }
        };
        match result {
            Ok(conn) => Ok(PooledBackend(conn)),
            Err(bb8::RunError::User(e)) => Err(e),
            Err(bb8::RunError::TimedOut) => Err(self.timeout_error()),
        }
    }

    fn timeout_error(&self) -> BackendError {
        BackendError::Timeout {
            backend: self.target.name.clone(),
            address: self.target.address(),
            timeout_ms: self.settings.connect_timeout().as_millis(),
        }
    }

    fn pool_for(&self, database: &str) -> Result<bb8::Pool<BackendManager>, BackendError> {
        let database = if database.is_empty() {
            self.target.default_database.as_str()
        } else {
            database
        };
        let key = database.to_lowercase();
        if let Some(pool) = self.registry().get(&key) {
            return Ok(pool.clone());
        }
        // Built outside the registry lock: bb8's builder asserts on its settings.
        let pool = bb8::Pool::builder()
            .max_size(self.settings.max_size)
            .connection_timeout(self.settings.connect_timeout())
            .idle_timeout(Some(std::time::Duration::from_millis(
                self.settings.idle_timeout_ms,
            )))
            .test_on_check_out(false)
            .retry_connection(false)
            .error_sink(Box::new(self.errors.clone()))
            .build_unchecked(BackendManager {
                target: self.target.clone(),
                database: database.to_string(),
                learned: self.learned.clone(),
            });
        let mut pools = self.registry();
        if pools.len() >= MAX_DATABASES && !pools.contains_key(&key) {
            return Err(BackendError::Protocol {
                backend: self.target.name.clone(),
                detail: format!("more than {MAX_DATABASES} distinct databases requested"),
            });
        }
        // Another task may have added this database meanwhile: keep its pool.
        Ok(pools.entry(key).or_insert(pool).clone())
    }

    /// The map is consistent after every statement, so a lock poisoned by a
    /// panic elsewhere is recovered rather than failing every later login.
    fn registry(&self) -> MutexGuard<'_, HashMap<String, bb8::Pool<BackendManager>>> {
        self.pools.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
