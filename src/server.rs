//! The running proxy: shared state and the accept loop.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::backend::Cluster;
use crate::classify::Classifier;
use crate::config::{Config, LagSourceKind, ListenTlsMode};
use crate::frontend::{handle_client, Admission, ListenerTls, UserDirectory, VerificationGate};
use crate::monitor::{self, CheckTarget, HealthPolicy, LagSource, MonitorHandle};
use crate::router::Router;
use crate::tls::TlsSetupError;

/// Version Sluice reports in its PRELOGIN reply (SQL Server 2022, 16.0).
const PRELOGIN_VERSION: u32 = 0x1000_0000;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("TLS setup: {0}")]
    Tls(#[from] TlsSetupError),
    #[error("cannot listen on {address}: {source}")]
    Bind {
        address: String,
        source: std::io::Error,
    },
}

/// State shared by every client session.
pub struct Proxy {
    pub config: Arc<Config>,
    pub users: UserDirectory,
    /// Bounds on clients, handshakes and failed logins (`[listen]`).
    pub admission: Admission,
    pub listener_tls: ListenerTls,
    /// The backends, with their pools and health (written by the monitor,
    /// read on every request).
    pub cluster: Arc<Cluster>,
    pub router: Arc<Router>,
    session_context: Arc<crate::frontend::SessionContext>,
    /// Next SPID to show a client; SQL Server's user sessions start at 51.
    spids: AtomicU16,
}

impl Proxy {
    pub fn new(config: Config) -> Result<Arc<Proxy>, StartError> {
        crate::metrics::describe();
        let tls_config = match config.listen.tls.mode {
            ListenTlsMode::Off => None,
            _ => {
                let (cert, key) = (
                    config.listen.tls.cert.clone(),
                    config.listen.tls.key.clone(),
                );
                Some(crate::tls::server_configs(
                    cert.as_deref().unwrap_or(std::path::Path::new("")),
                    key.as_deref().unwrap_or(std::path::Path::new("")),
                )?)
            }
        };
        let cluster = Arc::new(Cluster::new(&config)?);
        let router = Arc::new(router_for(&config)?);
        let session_context = Arc::new(crate::frontend::SessionContext {
            cluster: cluster.clone(),
            router: router.clone(),
            limits: config.limits.clone(),
            server_name: config.listen.server_name.clone(),
            emulate_transaction_requests: cluster
                .primary()
                .pools()
                .target()
                .emulate_transaction_requests,
            pool_mode: config.pool.mode,
        });
        Ok(Arc::new(Proxy {
            router,
            cluster,
            session_context,
            spids: AtomicU16::new(FIRST_SPID),
            users: UserDirectory::new(
                &config.users,
                VerificationGate::per_core(config.listen.max_queued_verifications),
            ),
            admission: Admission::new(&config.listen),
            listener_tls: ListenerTls::new(
                config.listen.tls.mode,
                tls_config,
                config.limits.max_login_bytes,
                PRELOGIN_VERSION,
                config.listen.server_name.clone(),
            ),
            config: Arc::new(config),
        }))
    }

    /// What each client session gets of the proxy.
    pub fn session_context(&self) -> Arc<crate::frontend::SessionContext> {
        self.session_context.clone()
    }

    /// Binds the configured listen address.
    pub async fn bind(&self) -> Result<TcpListener, StartError> {
        let address = self.config.listen.address.clone();
        TcpListener::bind(&address)
            .await
            .map_err(|source| StartError::Bind { address, source })
    }

    /// Accepts clients until the task is dropped; the health monitor runs
    /// as long as this does.
    pub async fn serve(self: Arc<Self>, listener: TcpListener) {
        let _monitor = self.start_monitor();
        loop {
            match listener.accept().await {
                Ok((tcp, peer)) => {
                    // Counted here, in accept order; a connection over
                    // `max_clients` is refused by its own task, so the
                    // accept loop never waits.
                    let slot = self.admission.client_slot();
                    tokio::spawn(handle_client(self.clone(), tcp, peer, slot));
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off, keep serving.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            }
        }
    }
}

/// The router `config` describes: classifier, rules, read-your-writes.
pub fn router_for(config: &Config) -> Result<Router, StartError> {
    let classifier = Classifier::new(
        config.routing.classifier_cache_entries,
        &config.routing.read_only_procedures,
    );
    Ok(Router::new(
        classifier,
        crate::router::rules::compile(&config.routing)?,
        config.routing.read_your_writes(),
    ))
}

/// SQL Server numbers user sessions from 51; lower SPIDs are its own.
const FIRST_SPID: u16 = 51;

impl Proxy {
    /// A SPID for a new client, stable for its session whichever backend
    /// connections serve it.
    pub fn next_spid(&self) -> u16 {
        let spid = self.spids.fetch_add(1, Ordering::Relaxed);
        if spid < FIRST_SPID {
            // Wrapped around u16: start again.
            self.spids.store(FIRST_SPID + 1, Ordering::Relaxed);
            return FIRST_SPID;
        }
        spid
    }

    /// One monitor task per backend (see `monitor`).
    fn start_monitor(&self) -> MonitorHandle {
        let h = &self.config.health;
        let policy = |max_lag: Option<Duration>| HealthPolicy {
            interval: h.interval(),
            timeout: h.timeout(),
            failures_to_down: h.failures_before_down,
            recovery: Duration::from_millis(h.recovery_ms),
            max_lag,
            lag_margin: Duration::from_millis(h.lag_margin_ms),
        };
        let primary = (
            CheckTarget::from_backend(&self.config.primary),
            self.cluster.primary().health().clone(),
            policy(None),
        );
        // The cluster's replicas were made from `config.replicas`, in order.
        let replicas = self
            .config
            .replicas
            .iter()
            .zip(self.cluster.replicas())
            .map(|(cfg, replica)| {
                let health = replica.health();
                let source = lag_source(cfg, &h.heartbeat_table);
                // Without a lag source the lag is unknown, which must not
                // count as "over the limit".
                let max_lag =
                    (source != LagSource::None).then(|| Duration::from_millis(cfg.max_lag_ms));
                (
                    CheckTarget::from_backend(cfg),
                    health.clone(),
                    policy(max_lag),
                    source,
                )
            })
            .collect();
        monitor::spawn(primary, replicas)
    }
}

fn lag_source(cfg: &crate::config::Backend, heartbeat_table: &str) -> LagSource {
    match cfg.lag_source {
        LagSourceKind::None => LagSource::None,
        LagSourceKind::AzureReadScaleOut => LagSource::AzureReadScaleOut,
        LagSourceKind::AlwaysOn => LagSource::AlwaysOn,
        LagSourceKind::AzureGeo => LagSource::AzureGeo,
        LagSourceKind::Heartbeat => LagSource::Heartbeat {
            table: heartbeat_table.to_string(),
        },
        LagSourceKind::Query => LagSource::Query(cfg.lag_query.clone().unwrap_or_default()),
    }
}

/// Starts a proxy on an already-bound listener in the background and
/// returns its address; used by tests, benchmarks and the demo.
pub async fn spawn(
    config: Config,
    listener: TcpListener,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), StartError> {
    let proxy = Proxy::new(config)?;
    let addr = listener.local_addr().map_err(|source| StartError::Bind {
        address: "listener".into(),
        source,
    })?;
    Ok((addr, tokio::spawn(proxy.serve(listener))))
}
