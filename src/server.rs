//! The running proxy: shared state and the accept loop.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;

use crate::backend::{BackendPools, BackendTarget};
use crate::classify::Classifier;
use crate::config::{Config, ListenTlsMode};
use crate::frontend::{handle_client, ListenerTls, UserDirectory};
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
    pub listener_tls: ListenerTls,
    pub primary: Arc<BackendPools>,
    pub replicas: Vec<Arc<BackendPools>>,
    pub router: Router,
}

impl Proxy {
    pub fn new(config: Config) -> Result<Arc<Proxy>, StartError> {
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
        let primary = Arc::new(BackendPools::new(
            BackendTarget::from_config(&config.primary, &config.pool)?,
            config.pool.clone(),
        ));
        let mut replicas = Vec::new();
        for replica in &config.replicas {
            replicas.push(Arc::new(BackendPools::new(
                BackendTarget::from_config(replica, &config.pool)?,
                config.pool.clone(),
            )));
        }
        let router = router_for(&config)?;
        Ok(Arc::new(Proxy {
            router,
            users: UserDirectory::new(&config.users),
            listener_tls: ListenerTls::new(
                config.listen.tls.mode,
                tls_config,
                config.limits.max_login_bytes,
                PRELOGIN_VERSION,
            ),
            primary,
            replicas,
            config: Arc::new(config),
        }))
    }

    /// Binds the configured listen address.
    pub async fn bind(&self) -> Result<TcpListener, StartError> {
        let address = self.config.listen.address.clone();
        TcpListener::bind(&address)
            .await
            .map_err(|source| StartError::Bind { address, source })
    }

    /// Accepts clients until the task is dropped.
    pub async fn serve(self: Arc<Self>, listener: TcpListener) {
        loop {
            match listener.accept().await {
                Ok((tcp, peer)) => {
                    tokio::spawn(handle_client(self.clone(), tcp, peer));
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
        config.compiled_rules()?,
        config.routing.read_your_writes(),
    ))
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
