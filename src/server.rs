//! The running proxy: shared state and the accept loop.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::backend::Cluster;
use crate::classify::Classifier;
use crate::config::{Config, LagSourceKind, ListenTlsMode, RoutingMode};
use crate::frontend::{
    handle_client, Admission, ClientRegistry, ListenerTls, UserDirectory, VerificationGate,
};
use crate::monitor::{self, CheckTarget, HealthPolicy, LagSource, MonitorHandle};
use crate::router::Router;
use crate::shutdown::{Phase, Shutdown};
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
    /// Logged-in clients, for the admin API.
    pub clients: Arc<ClientRegistry>,
    /// Running, draining or closing (SIGTERM/SIGINT).
    pub shutdown: Arc<Shutdown>,
    pub started: std::time::Instant,
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
        let shutdown = Arc::new(Shutdown::default());
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
            shutdown: shutdown.clone(),
            shutdown_timeout: config.listen.shutdown_timeout(),
            shadow: (config.routing.mode == RoutingMode::Shadow)
                .then(|| crate::shadow::ShadowRunner::start(&config.routing)),
        });
        Ok(Arc::new(Proxy {
            router,
            cluster,
            session_context,
            clients: Arc::new(ClientRegistry::default()),
            shutdown,
            started: std::time::Instant::now(),
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

    /// Starts the admin API when `[admin]` is configured; returns the
    /// address it listens on.
    pub async fn start_admin(self: &Arc<Self>) -> Result<Option<SocketAddr>, StartError> {
        let Some(admin) = &self.config.admin else {
            return Ok(None);
        };
        let token = admin.token()?;
        let address = admin.address.clone();
        let bind_error = |source| StartError::Bind {
            address: address.clone(),
            source,
        };
        let listener = TcpListener::bind(&address).await.map_err(bind_error)?;
        let bound = listener.local_addr().map_err(bind_error)?;
        let api = Arc::new(crate::admin::AdminApi::new(self.clone(), token));
        tokio::spawn(api.serve(listener));
        Ok(Some(bound))
    }

    /// Accepts clients until a drain starts, then waits for the sessions to
    /// end (see [`Proxy::drain`]); the health monitor runs as long as this
    /// does.
    pub async fn serve(self: Arc<Self>, listener: TcpListener) -> Drained {
        let _monitor = self.start_monitor();
        self.accept_until_drain(listener).await;
        self.finish_drain().await
    }

    /// Starts a graceful drain: `/readyz` fails, the listener closes,
    /// sessions idle outside a transaction close at once.
    pub fn drain(&self) {
        self.shutdown.advance(Phase::Draining);
    }

    async fn accept_until_drain(self: &Arc<Self>, listener: TcpListener) {
        let shutdown = self.shutdown.clone();
        let draining = shutdown.reached(Phase::Draining);
        tokio::pin!(draining);
        loop {
            let accepted = tokio::select! {
                biased;
                _ = &mut draining => {
                    tracing::info!(clients = self.admission.connected(), "draining: no new clients");
                    return;
                }
                accepted = listener.accept() => accepted,
            };
            match accepted {
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

    /// Sessions get `listen.shutdown_timeout_ms` to end on their own; then
    /// those waiting between requests get an error and close, and the rest
    /// get a short grace before the caller exits under them.
    async fn finish_drain(&self) -> Drained {
        let limit = self.config.listen.shutdown_timeout();
        let clean = tokio::time::timeout(limit, self.sessions_ended())
            .await
            .is_ok();
        if !clean {
            tracing::warn!(
                clients = self.admission.connected(),
                "listen.shutdown_timeout_ms passed: closing the remaining sessions"
            );
            self.shutdown.advance(Phase::Closing);
            tokio::time::timeout(CLOSING_GRACE, self.sessions_ended())
                .await
                .ok();
        }
        Drained {
            clean,
            remaining: self.admission.connected(),
        }
    }

    async fn sessions_ended(&self) {
        while self.admission.connected() > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// How a drain ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Drained {
    /// Every session ended within `listen.shutdown_timeout_ms`.
    pub clean: bool,
    /// Connections still open when the drain gave up on them.
    pub remaining: usize,
}

/// After the drain's time is up, how long sessions get to send their error
/// and close.
const CLOSING_GRACE: Duration = Duration::from_secs(2);

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
    let serve = proxy.serve(listener);
    Ok((
        addr,
        tokio::spawn(async move {
            serve.await;
        }),
    ))
}
