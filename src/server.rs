//! The running proxy: shared state and the accept loop.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::net::TcpListener;

use crate::backend::Cluster;
use crate::catalog::ProcedureCatalog;
use crate::classify::Classifier;
use crate::config::{Config, LagSourceKind, ListenTlsMode, RoutingMode};
use crate::frontend::{
    handle_client, Admission, ClientRegistry, ListenerTls, UserDirectory, VerificationGate,
};
use crate::monitor::{self, CheckTarget, HealthPolicy, LagSource, MonitorHandle};
use crate::router::Router;
use crate::shutdown::{Phase, Shutdown};
use crate::tls::TlsSetupError;

/// The longest a read of one database's procedure catalog may take.
const CATALOG_READ_TIMEOUT: Duration = Duration::from_secs(30);

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
    /// What the configuration file makes: swapped whole by a reload.
    live: ArcSwap<Generation>,
    /// The session context of the current generation: each session loads
    /// it before each request, so a reload reaches sessions already
    /// logged in at their next request.
    contexts: Arc<ArcSwap<crate::frontend::SessionContext>>,
    /// Bounds on clients, handshakes and failed logins (`[listen]`),
    /// resized in place by a reload.
    pub admission: Admission,
    /// Logged-in clients, for the admin API.
    pub clients: Arc<ClientRegistry>,
    /// Running, draining or closing (SIGTERM/SIGINT).
    pub shutdown: Arc<Shutdown>,
    pub started: std::time::Instant,
    /// Next SPID to show a client; SQL Server's user sessions start at 51.
    spids: AtomicU16,
    /// The health checks of the current cluster, restarted by a reload.
    monitor: Mutex<Option<MonitorHandle>>,
    /// One reload at a time (SIGHUP and `POST /reload` may race).
    reloading: tokio::sync::Mutex<()>,
}

/// Everything one reading of proxy.toml makes. A client logs in against
/// one generation; its session follows the newest from request to request.
pub struct Generation {
    pub config: Arc<Config>,
    pub users: Arc<UserDirectory>,
    pub listener_tls: ListenerTls,
    /// The backends, with their pools and health (written by the monitor,
    /// read on every request). Backends a reload leaves unchanged are the
    /// same values in both generations.
    pub cluster: Arc<Cluster>,
    pub router: Arc<Router>,
    pub session_context: Arc<crate::frontend::SessionContext>,
}

impl Generation {
    /// The generation `config` makes, keeping what it can of `previous`
    /// (its backends and their pools; its users' verified credentials when
    /// the users did not change).
    fn new(
        config: Config,
        previous: Option<&Generation>,
        shutdown: &Arc<Shutdown>,
    ) -> Result<Generation, StartError> {
        let listener_tls = listener_tls_for(&config)?;
        let cluster = Arc::new(Cluster::reloaded(
            previous.map(|p| p.cluster.as_ref()),
            &config,
        )?);
        let router = Arc::new(router_for(&config)?);
        let catalog = catalog_for(&config, &cluster, previous);
        let session_context = Arc::new(crate::frontend::SessionContext {
            catalog,
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
            cache: cache_for(&config, previous)?,
        });
        let users = match previous {
            Some(p) if same_users(&p.config, &config) => p.users.clone(),
            _ => Arc::new(UserDirectory::new(
                &config.users,
                VerificationGate::per_core(config.listen.max_queued_verifications),
            )),
        };
        Ok(Generation {
            users,
            listener_tls,
            cluster,
            router,
            session_context,
            config: Arc::new(config),
        })
    }
}

/// The procedure catalog, when detection is on: the previous generation's
/// (with the verdicts it has read) when the primary and the detection
/// settings did not change, else a new one.
fn catalog_for(
    config: &Config,
    cluster: &Cluster,
    previous: Option<&Generation>,
) -> Option<Arc<ProcedureCatalog>> {
    let routing = &config.routing;
    if !routing.detect_read_only_procedures {
        return None;
    }
    let kept = previous.and_then(|p| {
        let old = &p.config.routing;
        let same = Arc::ptr_eq(p.cluster.primary(), cluster.primary())
            && old.write_procedures == routing.write_procedures
            && old.procedure_refresh_ms == routing.procedure_refresh_ms;
        same.then(|| p.session_context.catalog.clone()).flatten()
    });
    kept.or_else(|| {
        Some(ProcedureCatalog::start(
            cluster.primary().clone(),
            routing,
            CATALOG_READ_TIMEOUT,
            &config.primary.database,
        ))
    })
}

/// The result cache `config` asks for: the previous generation's when
/// `[cache]` did not change, so a reload keeps its entries and generations.
fn cache_for(
    config: &Config,
    previous: Option<&Generation>,
) -> Result<Option<Arc<crate::cache::ResultCache>>, StartError> {
    let Some(wanted) = &config.cache else {
        return Ok(None);
    };
    if let Some(p) = previous.filter(|p| p.config.cache.as_ref() == Some(wanted)) {
        return Ok(p.session_context.cache.clone());
    }
    Ok(Some(Arc::new(crate::cache::ResultCache::new(wanted)?)))
}

/// Users and their verification queue unchanged: the directory, with the
/// credentials it has verified, carries over.
fn same_users(old: &Config, new: &Config) -> bool {
    old.users == new.users
        && old.listen.max_queued_verifications == new.listen.max_queued_verifications
}

fn listener_tls_for(config: &Config) -> Result<ListenerTls, StartError> {
    let tls_config = match config.listen.tls.mode {
        ListenTlsMode::Off => None,
        _ => {
            let path = |p: &Option<std::path::PathBuf>| p.clone().unwrap_or_default();
            Some(crate::tls::server_configs(
                &path(&config.listen.tls.cert),
                &path(&config.listen.tls.key),
            )?)
        }
    };
    Ok(ListenerTls::new(
        config.listen.tls.mode,
        tls_config,
        config.limits.max_login_bytes,
        PRELOGIN_VERSION,
        config.listen.server_name.clone(),
    ))
}

impl Proxy {
    pub fn new(config: Config) -> Result<Arc<Proxy>, StartError> {
        // Metric handles made while the proxy is built (request durations,
        // the classifier's counters) belong to the recorder installed at
        // that moment: with an admin API to serve /metrics, install it
        // first. Without one there is no recorder, and every handle is a
        // no-op (nothing would drain a histogram).
        if config.admin.is_some() {
            crate::metrics::prometheus_handle();
        }
        crate::metrics::describe();
        let shutdown = Arc::new(Shutdown::default());
        let admission = Admission::new(&config.listen);
        let live = Generation::new(config, None, &shutdown)?;
        Ok(Arc::new(Proxy {
            contexts: Arc::new(ArcSwap::new(live.session_context.clone())),
            live: ArcSwap::from_pointee(live),
            admission,
            clients: Arc::new(ClientRegistry::default()),
            shutdown,
            started: std::time::Instant::now(),
            spids: AtomicU16::new(FIRST_SPID),
            monitor: Mutex::new(None),
            reloading: tokio::sync::Mutex::new(()),
        }))
    }

    /// The current generation: configuration, users, TLS, backends, router.
    pub fn current(&self) -> Arc<Generation> {
        self.live.load_full()
    }

    /// The configuration now in force.
    pub fn config(&self) -> Arc<Config> {
        self.live.load().config.clone()
    }

    /// The backends now in force.
    pub fn cluster(&self) -> Arc<Cluster> {
        self.live.load().cluster.clone()
    }

    /// Where sessions find the newest session context.
    pub fn session_contexts(&self) -> Arc<ArcSwap<crate::frontend::SessionContext>> {
        self.contexts.clone()
    }

    /// Re-reads the configuration file and, if it is valid, puts it in
    /// force without dropping a client (SIGHUP, `POST /reload`). A file
    /// that does not load changes nothing; the error is the one `sluice
    /// check` prints.
    pub async fn reload(&self) -> Result<Reloaded, StartError> {
        let _one_at_a_time = self.reloading.lock().await;
        let reloaded = self.swap_in_file();
        match &reloaded {
            Ok(done) => {
                tracing::info!(hash = %done.hash, replicas = ?done.replicas, "configuration reloaded");
                for key in &done.needs_restart {
                    tracing::warn!(key, "changed in the file; takes effect after a restart");
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "reload refused; the configuration in force is unchanged")
            }
        }
        crate::metrics::record_reload(reloaded.is_ok());
        reloaded
    }

    fn swap_in_file(&self) -> Result<Reloaded, StartError> {
        let previous = self.current();
        let config = Config::load(&previous.config.origin.path)?;
        let needs_restart = needs_restart(&previous.config, &config);
        let next = Generation::new(config, Some(&previous), &self.shutdown)?;
        let reloaded = Reloaded {
            hash: next.config.origin.hash.clone(),
            needs_restart,
            replicas: next
                .cluster
                .replicas()
                .iter()
                .map(|r| r.name().to_string())
                .collect(),
        };
        self.admission.set_limits(&next.config.listen);
        self.contexts.store(next.session_context.clone());
        self.live.store(Arc::new(next));
        // Restarted only once the new cluster is in force: a removed
        // replica's checks stop with the old handle.
        if self.lock_monitor().is_some() {
            self.restart_monitor();
        }
        Ok(reloaded)
    }

    /// Binds the configured listen address.
    pub async fn bind(&self) -> Result<TcpListener, StartError> {
        let address = self.config().listen.address.clone();
        TcpListener::bind(&address)
            .await
            .map_err(|source| StartError::Bind { address, source })
    }

    /// Starts the admin API when `[admin]` is configured; returns the
    /// address it listens on.
    pub async fn start_admin(self: &Arc<Self>) -> Result<Option<SocketAddr>, StartError> {
        let config = self.config();
        let Some(admin) = &config.admin else {
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
        self.restart_monitor();
        self.accept_until_drain(listener).await;
        let drained = self.finish_drain().await;
        self.lock_monitor().take();
        drained
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
        let limit = self.config().listen.shutdown_timeout();
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

/// What a reload put in force.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Reloaded {
    /// Hash of the file now in force (as `/status` shows it).
    pub hash: String,
    /// Keys the file changed that only a restart applies.
    pub needs_restart: Vec<&'static str>,
    /// The replicas now in force, by name.
    pub replicas: Vec<String>,
}

/// The keys whose change a reload cannot apply: the sockets already bound,
/// and the log set up at start.
fn needs_restart(old: &Config, new: &Config) -> Vec<&'static str> {
    let admin = |c: &Config| {
        c.admin
            .as_ref()
            .map(|a| (a.address.clone(), a.token_env.clone()))
    };
    let mut keys = Vec::new();
    if old.listen.address != new.listen.address {
        keys.push("listen.address");
    }
    if admin(old) != admin(new) {
        keys.push("admin");
    }
    if old.log != new.log {
        keys.push("log");
    }
    if old.listen.workers != new.listen.workers {
        keys.push("listen.workers");
    }
    keys
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

    /// (Re)starts the health checks for the current cluster: one task per
    /// backend (see `monitor`). Health already known carries over, as it
    /// lives with each backend.
    fn restart_monitor(&self) {
        let live = self.current();
        let monitor = monitor_for(&live.config, &live.cluster);
        *self.lock_monitor() = Some(monitor);
    }

    fn lock_monitor(&self) -> std::sync::MutexGuard<'_, Option<MonitorHandle>> {
        self.monitor.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn monitor_for(config: &Config, cluster: &Cluster) -> MonitorHandle {
    {
        let h = &config.health;
        let policy = |max_lag: Option<Duration>| HealthPolicy {
            interval: h.interval(),
            timeout: h.timeout(),
            failures_to_down: h.failures_before_down,
            recovery: Duration::from_millis(h.recovery_ms),
            max_lag,
            lag_margin: Duration::from_millis(h.lag_margin_ms),
        };
        let primary = (
            CheckTarget::from_backend(&config.primary),
            cluster.primary().health().clone(),
            policy(None),
        );
        // The cluster's replicas were made from `config.replicas`, in order.
        let replicas = config
            .replicas
            .iter()
            .zip(cluster.replicas())
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

#[cfg(test)]
mod tests {
    use super::*;

    fn config(listen_extra: &str, log_level: &str) -> Config {
        let text = format!(
            "[listen]\naddress = \"127.0.0.1:14330\"\n{listen_extra}\n\
             [log]\nlevel = \"{log_level}\"\n\
             [[users]]\nname = \"app\"\n\
             password_hash = \"$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$3nB0ajhdTWjCXUyH8nHnUoXjEpGFR1Ou3X3Pw2EXgrk\"\n\
             [primary]\naddress = \"127.0.0.1:14331\"\nuser = \"sa\"\npassword = \"pw\"\n"
        );
        Config::parse(&text, std::path::Path::new("t.toml")).expect("config")
    }

    #[test]
    fn a_reload_names_the_keys_only_a_restart_applies() {
        let old = config("", "info");
        assert!(needs_restart(&old, &config("max_clients = 7", "info")).is_empty());
        assert_eq!(
            needs_restart(&old, &config("workers = 3", "debug")),
            vec!["log", "listen.workers"]
        );
        let mut moved = config("", "info");
        moved.listen.address = "127.0.0.1:14339".into();
        assert_eq!(needs_restart(&old, &moved), vec!["listen.address"]);
    }
}
