//! One bb8 pool of raw backend connections per backend and database.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

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
            *learned = Some(conn.info().clone());
        }
        Ok(conn)
    }

    async fn is_valid(&self, conn: &mut BackendConn) -> Result<(), BackendError> {
        if conn.is_broken() {
            return Err(BackendError::Protocol {
                backend: self.target.name.clone(),
                detail: "connection marked broken".into(),
            });
        }
        Ok(())
    }

    fn has_broken(&self, conn: &mut BackendConn) -> bool {
        conn.is_broken()
    }
}

/// A backend connection checked out of its pool (after pgdog's pool guard).
/// Dropping it returns it only in a known-clean state: the connection then
/// carries RESETCONNECTION on its next request so the next client starts
/// from a clean session. A connection dropped mid-request (a client that
/// vanished, a panicking task) or inside a transaction (whose locks would
/// outlive the client) is discarded instead; closing it makes the server
/// roll the transaction back at once.
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
        let conn = &mut *self.0;
        if !conn.is_clean() && !conn.is_broken() {
            tracing::debug!(backend = %conn.name(), in_request = conn.in_request(), in_transaction = conn.in_transaction(), "discarding a connection that is not clean");
            conn.mark_broken();
        }
        conn.reset_on_next_request();
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

/// One database's pool and the connect errors of that pool alone: a
/// client waiting for database A must not get database B's refusal.
#[derive(Clone)]
struct DatabasePool {
    pool: bb8::Pool<BackendManager>,
    errors: ConnectErrors,
}

/// The pools of one backend, keyed by database name (case-insensitive, as
/// SQL Server's default collations compare names).
pub struct BackendPools {
    target: Arc<BackendTarget>,
    settings: crate::config::Pool,
    pools: Mutex<HashMap<String, DatabasePool>>,
    learned: Arc<Mutex<Option<Arc<ServerInfo>>>>,
}

impl BackendPools {
    pub fn new(target: BackendTarget, settings: crate::config::Pool) -> Self {
        BackendPools {
            target: Arc::new(target),
            settings,
            pools: Mutex::new(HashMap::new()),
            learned: Arc::new(Mutex::new(None)),
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
        let DatabasePool { pool, errors } = self.pool_for(database)?;
        let mut errors = errors.0.subscribe();
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

    /// The pool for `database`, made on first use. The registry lock is
    /// held only for map operations; the pool is built outside it. The map
    /// is consistent after any panic, so a poisoned lock is taken over.
    fn pool_for(&self, database: &str) -> Result<DatabasePool, BackendError> {
        let database = if database.is_empty() {
            self.target.default_database.as_str()
        } else {
            database
        };
        let key = database.to_lowercase();
        let existing = self.registry().get(&key).cloned();
        if let Some(pool) = existing {
            return Ok(pool);
        }
        let made = self.new_pool(database);
        let mut pools = self.registry();
        if let Some(pool) = pools.get(&key) {
            return Ok(pool.clone());
        }
        if pools.len() >= MAX_DATABASES {
            return Err(BackendError::Protocol {
                backend: self.target.name.clone(),
                detail: format!("more than {MAX_DATABASES} distinct databases requested"),
            });
        }
        pools.insert(key, made.clone());
        Ok(made)
    }

    fn registry(&self) -> std::sync::MutexGuard<'_, HashMap<String, DatabasePool>> {
        self.pools.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn new_pool(&self, database: &str) -> DatabasePool {
        let errors = ConnectErrors(watch::channel(None).0);
        let pool = bb8::Pool::builder()
            .max_size(self.settings.max_size)
            .connection_timeout(self.settings.connect_timeout())
            .idle_timeout(Some(std::time::Duration::from_millis(
                self.settings.idle_timeout_ms,
            )))
            .test_on_check_out(false)
            .retry_connection(false)
            .error_sink(Box::new(errors.clone()))
            .build_unchecked(BackendManager {
                target: self.target.clone(),
                database: database.to_string(),
                learned: self.learned.clone(),
            });
        DatabasePool { pool, errors }
    }
}
