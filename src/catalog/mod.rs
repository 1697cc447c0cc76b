//! The primary's procedure catalog: which stored procedures are read-only,
//! per database, read from their definitions
//! (`routing.detect_read_only_procedures`).
//!
//! A background task reads the catalog of every database clients use, at
//! start (the primary's default database) and every
//! `routing.procedure_refresh_ms`. Until a database's catalog has been
//! read, and whenever a read fails, none of its procedures is read-only:
//! calls go to the primary. A `CREATE/ALTER/DROP PROCEDURE` passing through
//! Sluice drops the database's verdicts at once and asks for a new read.

mod analysis;
mod fetch;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError, RwLock, Weak};
use std::time::Duration;

use tokio::sync::Notify;

pub use analysis::{CatalogProcedure, DatabaseProcedures, NotReadOnly, Verdict};
pub use fetch::read_procedures;

use crate::backend::Primary;
use crate::monitor::AbortOnDrop;

/// Databases whose catalogs are kept (a client can name any database).
const MAX_DATABASES: usize = 64;

/// The verdicts of every database clients use, kept fresh.
pub struct ProcedureCatalog {
    primary: Arc<Primary>,
    write_procedures: Vec<String>,
    refresh_every: Duration,
    timeout: Duration,
    verdicts: RwLock<HashMap<String, Arc<DatabaseProcedures>>>,
    wanted: Mutex<HashSet<String>>,
    /// Databases whose last read failed and was logged (logged once).
    failing: Mutex<HashSet<String>>,
    wake: Arc<Notify>,
    task: Mutex<Option<AbortOnDrop<()>>>,
}

impl ProcedureCatalog {
    /// Starts reading the catalog of `default_database` at once, then of
    /// every database [`lookup`](Self::lookup) is asked about.
    pub fn start(
        primary: Arc<Primary>,
        routing: &crate::config::Routing,
        timeout: Duration,
        default_database: &str,
    ) -> Arc<ProcedureCatalog> {
        let catalog = Arc::new(ProcedureCatalog {
            primary,
            write_procedures: routing.write_procedures.clone(),
            refresh_every: routing.procedure_refresh(),
            timeout,
            verdicts: RwLock::new(HashMap::new()),
            wanted: Mutex::new(HashSet::from([default_database.to_lowercase()])),
            failing: Mutex::new(HashSet::new()),
            wake: Arc::new(Notify::new()),
            task: Mutex::new(None),
        });
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let task = runtime.spawn(refresh_loop(Arc::downgrade(&catalog)));
            *lock(&catalog.task) = Some(AbortOnDrop(task));
        }
        catalog
    }

    /// The verdicts of `database`, if its catalog has been read. Asking
    /// about a database not read yet has it read.
    pub fn lookup(&self, database: &str) -> Option<Arc<DatabaseProcedures>> {
        // Called per request: no allocation when the name is lower case.
        let key = if database.chars().any(char::is_uppercase) {
            std::borrow::Cow::Owned(database.to_lowercase())
        } else {
            std::borrow::Cow::Borrowed(database)
        };
        if let Some(found) = read(&self.verdicts).get(key.as_ref()) {
            return Some(found.clone());
        }
        let mut wanted = lock(&self.wanted);
        if wanted.len() < MAX_DATABASES && wanted.insert(key.into_owned()) {
            self.wake.notify_one();
        }
        None
    }

    /// A procedure of `database` was created, altered or dropped: forget
    /// its verdicts now and read them again.
    pub fn invalidate(&self, database: &str) {
        self.verdicts
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&database.to_lowercase());
        self.wake.notify_one();
    }

    /// Reads the catalog of every wanted database once.
    async fn refresh_all(&self) {
        let wanted: Vec<String> = lock(&self.wanted).iter().cloned().collect();
        for database in wanted {
            self.refresh(&database).await;
        }
    }

    async fn refresh(&self, database: &str) {
        let read = tokio::time::timeout(self.timeout, self.read(database)).await;
        let read = read.unwrap_or_else(|_| Err(format!("timed out after {:?}", self.timeout)));
        let mut verdicts = self
            .verdicts
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        match read {
            Ok(procedures) => {
                if lock(&self.failing).remove(database) {
                    tracing::info!(database, "procedure catalog readable again");
                }
                log_hidden_definitions(database, &procedures);
                let analyzed =
                    DatabaseProcedures::analyze(database, &procedures, &self.write_procedures);
                tracing::debug!(
                    database,
                    procedures = analyzed.len(),
                    read_only = analyzed.read_only_count(),
                    "procedure catalog read"
                );
                verdicts.insert(database.to_string(), Arc::new(analyzed));
            }
            Err(e) => {
                // Keep nothing that cannot be proved: calls go to the primary.
                verdicts.remove(database);
                if lock(&self.failing).insert(database.to_string()) {
                    tracing::warn!(database, error = %e, "cannot read the procedure catalog; calls of its procedures go to the primary");
                }
            }
        }
    }

    async fn read(&self, database: &str) -> Result<Vec<CatalogProcedure>, String> {
        let mut conn = self
            .primary
            .get(database)
            .await
            .map_err(|e| e.to_string())?;
        read_procedures(&mut conn).await
    }
}

/// Without `VIEW DEFINITION` every definition reads as NULL: say so, as
/// the feature then finds nothing read-only.
fn log_hidden_definitions(database: &str, procedures: &[CatalogProcedure]) {
    if !procedures.is_empty() && procedures.iter().all(|p| p.definition.is_none()) {
        tracing::warn!(
            database,
            procedures = procedures.len(),
            "no procedure definition is visible: grant Sluice's login VIEW DEFINITION (see CONFIG.md) or no procedure is detected read-only"
        );
    }
}

/// Reads every wanted catalog, then again after `procedure_refresh_ms` or
/// when woken. Holds the catalog only while reading, so dropping it (a
/// reload) ends the task.
async fn refresh_loop(catalog: Weak<ProcedureCatalog>) {
    loop {
        let Some(strong) = catalog.upgrade() else {
            return;
        };
        strong.refresh_all().await;
        let (every, wake) = (strong.refresh_every, strong.wake.clone());
        drop(strong);
        tokio::select! {
            _ = crate::timer::sleep(every) => {}
            _ = wake.notified() => {}
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn read<T>(m: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    m.read().unwrap_or_else(PoisonError::into_inner)
}

/// Reads and analyses the catalog of `database` once, for the command line
/// (`sluice procedures`, `sluice explain`), with the configured primary
/// and `routing.write_procedures`.
pub async fn read_once(
    config: &crate::config::Config,
    database: &str,
) -> Result<DatabaseProcedures, String> {
    let cluster = crate::backend::Cluster::new(config).map_err(|e| e.to_string())?;
    let mut conn = cluster
        .primary()
        .get(database)
        .await
        .map_err(|e| e.to_string())?;
    let procedures = read_procedures(&mut conn).await?;
    log_hidden_definitions(database, &procedures);
    Ok(DatabaseProcedures::analyze(
        database,
        &procedures,
        &config.routing.write_procedures,
    ))
}
