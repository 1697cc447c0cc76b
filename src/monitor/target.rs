//! Where the monitor connects, and how: with the data path's own client
//! ([`crate::backend::connect`]: PRELOGIN, TLS with the same CA bundle or
//! trust setting, TDS 8.0 strict, Azure SQL routing redirects, read-only
//! intent, LOGIN7), on connections of its own, never the data path's pools,
//! so a check measures the backend and not a busy pool. Checks are SQL
//! batches whose small replies the codec reads ([`BatchReply`]).

use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::backend::{BackendConn, BackendError, BackendTarget};
use crate::config::BackendTls;
use crate::tds::error::DecodeError;
use crate::tds::token::BatchReply;

/// Checks exchange a few hundred bytes: the smallest usual packet size.
const CHECK_PACKET_SIZE: u32 = 4096;

/// Connection settings for one backend's checks.
#[derive(Clone)]
pub struct CheckTarget {
    /// For logs: "primary" or the replica's name.
    pub name: String,
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: String,
    pub database: String,
    /// `off`: no TLS; `required`: TLS inside PRELOGIN (TDS 7.x); `strict`:
    /// TLS first (TDS 8.0).
    pub tls: BackendTls,
    /// Accept any server certificate (`required` and `strict`).
    pub trust_server_certificate: bool,
    /// CA certificates (a PEM bundle) to verify the server with, as on the
    /// data path.
    pub ca_file: Option<PathBuf>,
    /// LOGIN7 read-only intent (Azure SQL read scale-out, AG read-only routing).
    pub read_only_intent: bool,
    pub application_name: String,
}

impl CheckTarget {
    /// The settings of a configured backend, with the read-only intent of
    /// its `application_intent`.
    pub fn from_backend(cfg: &crate::config::Backend) -> CheckTarget {
        let (host, port) = cfg.host_port();
        CheckTarget {
            name: cfg.display_name().to_string(),
            host,
            port,
            user: cfg.user.clone(),
            // Validated at load time; an unset variable became a config error.
            password: cfg.password().unwrap_or_default(),
            database: cfg.database.clone(),
            tls: cfg.tls,
            trust_server_certificate: cfg.trust_server_certificate,
            ca_file: cfg.ca_file.clone(),
            read_only_intent: cfg.application_intent == crate::config::ApplicationIntent::ReadOnly,
            application_name: format!("{} (health check)", cfg.application_name),
        }
    }

    /// The data path's connection settings for these checks; `timeout`
    /// bounds a login. The TLS configuration is built anew, so a reconnect
    /// reads the CA file again.
    fn backend_target(&self, timeout: Duration) -> Result<BackendTarget, CheckError> {
        let tls_config = match self.tls {
            BackendTls::Off => None,
            mode => Some(
                crate::tls::client_config(
                    self.trust_server_certificate,
                    self.ca_file.as_deref(),
                    mode == BackendTls::Strict,
                )
                .map_err(|e| CheckError::TlsSetup {
                    backend: self.name.clone(),
                    detail: e.to_string(),
                })?,
            ),
        };
        Ok(BackendTarget {
            name: Arc::from(self.name.as_str()),
            host: self.host.clone(),
            port: self.port,
            user: self.user.clone(),
            password: self.password.clone(),
            default_database: self.database.clone(),
            tls: self.tls,
            tls_config,
            application_name: self.application_name.clone(),
            packet_size: CHECK_PACKET_SIZE,
            connect_timeout: timeout,
            read_only_intent: self.read_only_intent,
            // Checks send SQL batches only.
            emulate_transaction_requests: false,
            keepalive: None,
            client_host: None,
        })
    }
}

impl std::fmt::Debug for CheckTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the password.
        write!(
            f,
            "{} ({}:{}, database {}, tls {:?}{})",
            self.name,
            self.host,
            self.port,
            self.database,
            self.tls,
            if self.read_only_intent {
                ", read-only intent"
            } else {
                ""
            }
        )
    }
}

/// Why a check could not connect or run.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// Connect, TLS, login or redirect failed; the text names the backend.
    #[error(transparent)]
    Connect(#[from] BackendError),
    #[error("TLS setup for backend {backend}: {detail}")]
    TlsSetup { backend: String, detail: String },
    #[error("the connection failed: {0}")]
    Io(#[from] io::Error),
    #[error("unreadable reply: {0}")]
    Reply(#[from] DecodeError),
    /// The server answered with an ERROR token; the connection stays usable.
    #[error("{0}")]
    Query(String),
    #[error("no answer within {0} ms")]
    Timeout(u128),
    #[error("the check panicked (a bug in Sluice)")]
    Panicked,
}

/// Opens and logs in a check connection as the data path would, following
/// Azure SQL redirects, within `timeout`.
pub(crate) async fn connect(
    target: &CheckTarget,
    timeout: Duration,
) -> Result<BackendConn, CheckError> {
    let backend = target.backend_target(timeout)?;
    Ok(crate::backend::connect(&backend, &target.database).await?)
}

/// Runs one batch and reads its reply; the first ERROR token in it becomes
/// [`CheckError::Query`].
pub(crate) async fn run(conn: &mut BackendConn, sql: &str) -> Result<BatchReply, CheckError> {
    let bytes = conn.run_batch(sql).await?;
    let reply = BatchReply::decode(&bytes)?;
    match reply.errors.first() {
        Some(e) => Err(CheckError::Query(format!(
            "error {} (severity {}): {}",
            e.number, e.class, e.message
        ))),
        None => Ok(reply),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> CheckTarget {
        CheckTarget {
            name: "replica-1".to_string(),
            host: "db.example".to_string(),
            port: 1433,
            user: "sluice".to_string(),
            password: "hunter2".to_string(),
            database: "app".to_string(),
            tls: BackendTls::Strict,
            trust_server_certificate: false,
            ca_file: None,
            read_only_intent: true,
            application_name: "Sluice".to_string(),
        }
    }

    #[test]
    fn debug_hides_the_password() {
        let text = format!("{:?}", target());
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("read-only intent"), "{text}");
    }

    #[test]
    fn checks_use_the_data_path_settings() {
        let backend = target()
            .backend_target(Duration::from_millis(1500))
            .expect("target");
        assert_eq!(&*backend.name, "replica-1");
        assert_eq!(backend.default_database, "app");
        assert_eq!(backend.tls, BackendTls::Strict);
        assert!(backend.read_only_intent);
        assert_eq!(backend.connect_timeout, Duration::from_millis(1500));
        let tls = backend.tls_config.expect("TLS for strict");
        assert_eq!(tls.alpn_protocols, [b"tds/8.0".to_vec()]);
        let off = CheckTarget {
            tls: BackendTls::Off,
            ..target()
        };
        assert!(off
            .backend_target(Duration::ZERO)
            .unwrap()
            .tls_config
            .is_none());
    }

    #[test]
    fn an_unreadable_ca_file_is_a_check_error() {
        let bad = CheckTarget {
            ca_file: Some(PathBuf::from("/nonexistent/ca-bundle.pem")),
            ..target()
        };
        let err = bad.backend_target(Duration::ZERO).unwrap_err().to_string();
        assert!(err.contains("replica-1"), "{err}");
    }
}
