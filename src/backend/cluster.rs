//! The backends a proxy serves, as one value (after pgdog's `Cluster`): the
//! primary and each replica with everything that belongs to it — its name,
//! pools, health and, for a replica, weight and requests in flight. Nothing
//! is matched by position across parallel vectors.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::conn::ServerInfo;
use super::connect::{BackendError, BackendLogin, BackendTarget};
use super::pool::{BackendPools, DatabasePoolHandle, PooledBackend};
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
    /// What its connections are made from; a reload keeps the backend
    /// while this stays the same.
    connection: Connection,
}

impl Primary {
    fn new(backend: &crate::config::Backend, config: &Config) -> Result<Primary, TlsSetupError> {
        let pools = pools_of(backend, config)?;
        Ok(Primary {
            requests: RequestMetrics::new(pools.target().name.clone(), "primary"),
            pools,
            health: Arc::new(BackendHealth::new()),
            connection: Connection::of(backend, config),
        })
    }

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
        self.check_up()?;
        self.pools.get_preferring(database, None, 0).await
    }

    /// Like [`get`](Self::get), from a pool looked up before (see
    /// [`BackendPools::pool`]), preferring a connection whose settings have
    /// this fingerprint.
    pub async fn checkout(
        &self,
        pool: &DatabasePoolHandle,
        fingerprint: u64,
    ) -> Result<PooledBackend, BackendError> {
        self.check_up()?;
        pool.checkout(fingerprint).await
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
    /// Changed in place by a reload.
    weight: AtomicU32,
    in_flight: AtomicU32,
    requests: RequestMetrics,
    connection: Connection,
}

impl Replica {
    fn new(backend: &crate::config::Backend, config: &Config) -> Result<Replica, TlsSetupError> {
        let pools = pools_of(backend, config)?;
        Ok(Replica {
            requests: RequestMetrics::new(pools.target().name.clone(), "replica"),
            pools,
            health: Arc::new(BackendHealth::new()),
            weight: AtomicU32::new(backend.weight),
            in_flight: AtomicU32::new(0),
            connection: Connection::of(backend, config),
        })
    }

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
            weight: self.weight.load(Ordering::Relaxed),
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
    primary: Arc<Primary>,
    replicas: Vec<Arc<Replica>>,
}

impl Cluster {
    pub fn new(config: &Config) -> Result<Cluster, TlsSetupError> {
        Cluster::reloaded(None, config)
    }

    /// The cluster `config` describes, keeping from `previous` every
    /// backend whose connections `config` leaves as they were (same
    /// address, login, TLS, ...): its pools, borrowed connections and
    /// health carry over, with the new weight and pool limits applied in
    /// place. A backend that changed or went is made anew; the old one
    /// drains as its borrowed connections come back.
    pub fn reloaded(previous: Option<&Cluster>, config: &Config) -> Result<Cluster, TlsSetupError> {
        let primary = match previous {
            Some(old) if old.primary.connection == Connection::of(&config.primary, config) => {
                old.primary.pools.set_limits(&config.pool);
                old.primary.clone()
            }
            _ => Arc::new(Primary::new(&config.primary, config)?),
        };
        let mut replicas = Vec::with_capacity(config.replicas.len());
        for backend in &config.replicas {
            let connection = Connection::of(backend, config);
            let kept = previous
                .into_iter()
                .flat_map(|old| old.replicas.iter())
                .find(|old| old.connection == connection);
            let replica = match kept {
                Some(old) => {
                    old.pools.set_limits(&config.pool);
                    old.weight.store(backend.weight, Ordering::Relaxed);
                    old.clone()
                }
                None => Arc::new(Replica::new(backend, config)?),
            };
            replicas.push(replica);
        }
        Ok(Cluster { primary, replicas })
    }

    pub fn primary(&self) -> &Arc<Primary> {
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

fn pools_of(
    backend: &crate::config::Backend,
    config: &Config,
) -> Result<BackendPools, TlsSetupError> {
    let mut target = BackendTarget::from_config(backend, &config.pool)?;
    target.keepalive = config.limits.tcp_keepalive();
    Ok(BackendPools::new(target, &config.pool))
}

/// Everything a backend's connections are made from: its entry with the
/// keys a reload applies in place (weight, lag settings) left out, and the
/// `[pool]` and `[limits]` keys that go into each connection's login.
#[derive(Debug, Clone, PartialEq)]
struct Connection {
    backend: crate::config::Backend,
    connect_timeout_ms: u64,
    packet_size: u32,
    tcp_keepalive: Option<Duration>,
}

impl Connection {
    fn of(backend: &crate::config::Backend, config: &Config) -> Connection {
        Connection {
            backend: crate::config::Backend {
                weight: 0,
                max_lag_ms: 0,
                lag_source: Default::default(),
                lag_query: None,
                ..backend.clone()
            },
            connect_timeout_ms: config.pool.connect_timeout_ms,
            packet_size: config.pool.packet_size,
            tcp_keepalive: config.limits.tcp_keepalive(),
        }
    }
}
