//! The backends a proxy serves, as one value (after pgdog's `Cluster`): the
//! primary and each replica with everything that belongs to it — its name,
//! pools, health and, for a replica, weight and requests in flight. Nothing
//! is matched by position across parallel vectors.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::conn::ServerInfo;
use super::connect::{BackendError, BackendLogin, BackendTarget};
use super::pool::{BackendPools, PooledBackend};
use crate::config::Config;
use crate::metrics::RequestMetrics;
use crate::monitor::{BackendHealth, BackendState};
use crate::router::ReplicaView;
use crate::tls::TlsSetupError;

/// The primary: pools and health.
pub struct Primary {
    pools: BackendPools,
    health: Arc<BackendHealth>,
    requests: RequestMetrics,
}

impl Primary {
    pub fn requests(&self) -> &RequestMetrics {
        &self.requests
    }

    pub fn name(&self) -> &Arc<str> {
        &self.pools.target().name
    }

    pub fn pools(&self) -> &BackendPools {
        &self.pools
    }

    pub fn health(&self) -> &Arc<BackendHealth> {
        &self.health
    }

    /// A connection, or at once an error when health checks say the
    /// primary is down (writes fail fast instead of waiting out a connect).
    pub async fn get(&self, database: &str) -> Result<PooledBackend, BackendError> {
        self.get_preferring(database, None, 0).await
    }

    /// Like [`get`](Self::get), preferring a connection whose settings have
    /// this fingerprint.
    pub async fn get_preferring(
        &self,
        database: &str,
        login: Option<&BackendLogin>,
        fingerprint: u64,
    ) -> Result<PooledBackend, BackendError> {
        self.check_up()?;
        self.pools
            .get_preferring(database, login, fingerprint)
            .await
    }

    /// The login values of `database`, known or learned (see
    /// [`BackendPools::login_info`]). Not refused while health checks say
    /// the primary is down: values already known need no connection, and
    /// a login attempt tells a refused login apart from an outage.
    pub async fn login_info(
        &self,
        database: &str,
        login: Option<&BackendLogin>,
    ) -> Result<Arc<ServerInfo>, BackendError> {
        self.pools.login_info(database, login).await
    }

    /// Whether health checks say the primary is down.
    pub fn is_down(&self) -> bool {
        self.health.state() == BackendState::Down
    }

    fn check_up(&self) -> Result<(), BackendError> {
        if self.is_down() {
            return Err(BackendError::Protocol {
                backend: self.name().clone(),
                detail: "the primary is down (its health checks fail)".into(),
            });
        }
        Ok(())
    }
}

/// One read replica.
pub struct Replica {
    pools: BackendPools,
    health: Arc<BackendHealth>,
    weight: u32,
    in_flight: AtomicU32,
    requests: RequestMetrics,
}

impl Replica {
    pub fn requests(&self) -> &RequestMetrics {
        &self.requests
    }

    pub fn name(&self) -> &Arc<str> {
        &self.pools.target().name
    }

    pub fn pools(&self) -> &BackendPools {
        &self.pools
    }

    pub fn health(&self) -> &Arc<BackendHealth> {
        &self.health
    }

    /// Whether routing may send reads here now.
    pub fn is_available(&self) -> bool {
        self.health.is_available()
    }

    pub fn lag(&self) -> Option<Duration> {
        self.health.lag()
    }

    /// A connection-level failure on the data path counts as a failed check.
    pub fn report_failure(&self) {
        self.health.mark_failed_request();
    }

    /// Counts a request as in flight here until the guard is dropped,
    /// whichever way the request ends.
    pub fn in_flight(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }

    fn view(&self) -> ReplicaView {
        ReplicaView {
            available: self.is_available(),
            weight: self.weight,
            outstanding: self.in_flight.load(Ordering::Relaxed),
            lag: self.lag(),
        }
    }
}

/// A request running on a replica (replica choice by load).
pub struct InFlight(Arc<Replica>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The primary and the replicas.
pub struct Cluster {
    primary: Primary,
    replicas: Vec<Arc<Replica>>,
}

impl Cluster {
    pub fn new(config: &Config) -> Result<Cluster, TlsSetupError> {
        let pools = |backend| -> Result<BackendPools, TlsSetupError> {
            let mut target = BackendTarget::from_config(backend, &config.pool)?;
            target.keepalive = config.limits.tcp_keepalive();
            Ok(BackendPools::new(target, config.pool.clone()))
        };
        let pools_of_primary = pools(&config.primary)?;
        let primary = Primary {
            requests: RequestMetrics::new(pools_of_primary.target().name.clone(), "primary"),
            pools: pools_of_primary,
            health: Arc::new(BackendHealth::new()),
        };
        let mut replicas = Vec::with_capacity(config.replicas.len());
        for replica in &config.replicas {
            let pools = pools(replica)?;
            replicas.push(Arc::new(Replica {
                requests: RequestMetrics::new(pools.target().name.clone(), "replica"),
                pools,
                health: Arc::new(BackendHealth::new()),
                weight: replica.weight,
                in_flight: AtomicU32::new(0),
            }));
        }
        Ok(Cluster { primary, replicas })
    }

    pub fn primary(&self) -> &Primary {
        &self.primary
    }

    pub fn replicas(&self) -> &[Arc<Replica>] {
        &self.replicas
    }

    /// The replica a routing decision names.
    pub fn replica(&self, index: usize) -> Option<&Arc<Replica>> {
        self.replicas.get(index)
    }

    /// What the router needs of each replica, in cluster order.
    pub fn replica_views(&self) -> Vec<ReplicaView> {
        self.replicas.iter().map(|r| r.view()).collect()
    }
}
