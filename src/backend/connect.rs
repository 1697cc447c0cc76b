//! Connecting and logging in to a backend [MS-TDS 3.2.5]: TCP, PRELOGIN,
//! TLS (none, inside PRELOGIN packets, or TDS 8.0 strict), LOGIN7, and the
//! Azure SQL routing redirect (ENVCHANGE type 20).

use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::conn::{BackendConn, ServerInfo};
use crate::config::{Backend, BackendTls};
use crate::tds::login7::Login7;
use crate::tds::packet::{PacketType, DEFAULT_PACKET_SIZE};
use crate::tds::prelogin::{encryption, PreLogin, PreLoginVersion};
use crate::tds::token::env_change::EnvChange;
use crate::tds::token::walker::{TokenEvent, TokenWalker};
use crate::tls::{client_config, server_name, PreloginFramed, TlsSetupError};
use crate::transport::{split, write_message, NetStream, PacketReader, ReadError};

/// Azure SQL gateways redirect once; more hops than this means a loop.
const MAX_REDIRECTS: usize = 3;
/// A login reply is a handful of tokens; anything this big is not one.
const MAX_LOGIN_REPLY: usize = 1024 * 1024;

/// Everything needed to open connections to one backend.
#[derive(Clone)]
pub struct BackendTarget {
    pub name: Arc<str>,
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: String,
    pub default_database: String,
    pub tls: BackendTls,
    pub tls_config: Option<Arc<rustls::ClientConfig>>,
    pub application_name: String,
    pub packet_size: u32,
    pub connect_timeout: Duration,
    pub read_only_intent: bool,
    /// Answer Transaction Manager requests with T-SQL (`transaction_requests = "emulate"`).
    pub emulate_transaction_requests: bool,
    /// TCP keepalive idle time (`limits.tcp_keepalive_ms`; `None`: off).
    pub keepalive: Option<Duration>,
    /// The host name sent in LOGIN7 (`None`: this machine's).
    pub client_host: Option<String>,
}

/// A client's own backend login (`[[users]] backend_user`), used instead of
/// the backend's shared one; with the client's application and host name
/// when its connections are its own (session mode).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BackendLogin {
    pub user: String,
    pub password: String,
    pub application: Option<String>,
    pub host: Option<String>,
}

impl BackendLogin {
    /// Tells pools apart: the login, application and host (never the password).
    pub fn pool_key(&self) -> String {
        let part = |s: &Option<String>| s.as_deref().unwrap_or("").to_string();
        format!(
            "{}\u{0}{}\u{0}{}",
            self.user,
            part(&self.application),
            part(&self.host)
        )
    }
}

impl std::fmt::Debug for BackendTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}:{})", self.name, self.host, self.port)
    }
}

/// Why a backend connection could not be made. The `Display` text is for
/// Sluice's log: it has the address, Sluice's login and the OS error. What a
/// client may see is [`BackendError::client_message`]: the backend's
/// configured name and a generic cause.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BackendError {
    #[error("cannot connect to backend {backend} at {address}: {cause}")]
    Connect {
        backend: Arc<str>,
        address: String,
        cause: Arc<io::Error>,
    },
    #[error("backend {backend} at {address} did not complete the login within {timeout_ms} ms")]
    Timeout {
        backend: Arc<str>,
        address: String,
        timeout_ms: u128,
    },
    #[error("TLS with backend {backend} failed: {detail}")]
    Tls { backend: Arc<str>, detail: String },
    #[error("backend {backend} refused the login of {login}: {message} (error {number})")]
    LoginRefused {
        backend: Arc<str>,
        /// Sluice's own login name on the backend.
        login: String,
        number: u32,
        class: u8,
        state: u8,
        message: String,
    },
    #[error("protocol error from backend {backend}: {detail}")]
    Protocol { backend: Arc<str>, detail: String },
    /// Every connection of the pool was in use for the whole wait: the
    /// backend is busy, not down.
    #[error("all {max_size} connections of backend {backend} to database {database} stayed in use for {waited_ms} ms")]
    PoolExhausted {
        backend: Arc<str>,
        database: String,
        max_size: u32,
        waited_ms: u128,
    },
}

/// SQL Server's login-failure messages, which name the login: 18456 login
/// failed, 18470 disabled, 18486 locked out, 18487 password expired, 18488
/// password must change.
const LOGIN_FAILURES: [u32; 5] = [18456, 18470, 18486, 18487, 18488];

impl BackendError {
    /// The configured name of the backend ("primary", "replica-1").
    pub fn backend(&self) -> &str {
        match self {
            BackendError::Connect { backend, .. }
            | BackendError::Timeout { backend, .. }
            | BackendError::Tls { backend, .. }
            | BackendError::LoginRefused { backend, .. }
            | BackendError::Protocol { backend, .. }
            | BackendError::PoolExhausted { backend, .. } => backend,
        }
    }

    /// The error as a client may see it: the backend's configured name and
    /// a generic cause; never its host, port, Sluice's login or an OS error.
    pub fn client_message(&self) -> String {
        match self {
            BackendError::Connect { backend, cause, .. } => {
                format!("cannot connect to backend {backend} ({})", cause.kind())
            }
            BackendError::Timeout {
                backend,
                timeout_ms,
                ..
            } => format!("backend {backend} did not complete the login within {timeout_ms} ms"),
            BackendError::Tls { backend, .. } => format!("TLS with backend {backend} failed"),
            BackendError::LoginRefused {
                backend, number, ..
            } => format!(
                "backend {backend} refused the login: {} (error {number})",
                self.refusal_for_client().unwrap_or_default()
            ),
            BackendError::Protocol { backend, detail } => {
                format!("protocol error from backend {backend}: {detail}")
            }
            BackendError::PoolExhausted { .. } => self.to_string(),
        }
    }

    /// For a backend that refused Sluice's login, its own message, which
    /// the client gets with the backend's error number (e.g. "Cannot open
    /// database 'nope'"); but a message that names Sluice's backend login
    /// becomes a generic one naming the backend.
    pub fn refusal_for_client(&self) -> Option<String> {
        let BackendError::LoginRefused {
            backend,
            login,
            number,
            message,
            ..
        } = self
        else {
            return None;
        };
        let names_login =
            !login.is_empty() && message.to_lowercase().contains(&login.to_lowercase());
        Some(if names_login || LOGIN_FAILURES.contains(number) {
            format!("Login failed: backend {backend} refused Sluice's own login.")
        } else {
            message.clone()
        })
    }
}

impl BackendTarget {
    pub fn from_config(cfg: &Backend, pool: &crate::config::Pool) -> Result<Self, TlsSetupError> {
        let (host, port) = cfg.host_port();
        let tls_config = match cfg.tls {
            BackendTls::Off => None,
            mode => Some(client_config(
                cfg.trust_server_certificate,
                cfg.ca_file.as_deref(),
                mode == BackendTls::Strict,
            )?),
        };
        Ok(BackendTarget {
            name: Arc::from(cfg.display_name()),
            host,
            port,
            user: cfg.user.clone(),
            // Validated at load time; an unset variable became a config error.
            password: cfg.password().unwrap_or_default(),
            default_database: cfg.database.clone(),
            tls: cfg.tls,
            tls_config,
            application_name: cfg.application_name.clone(),
            packet_size: pool.packet_size,
            connect_timeout: pool.connect_timeout(),
            read_only_intent: cfg.application_intent == crate::config::ApplicationIntent::ReadOnly,
            emulate_transaction_requests: cfg.transaction_requests
                == crate::config::TransactionRequests::Emulate,
            keepalive: None,
            client_host: None,
        })
    }

    /// The same backend, logging in as `login`.
    pub fn with_login(&self, login: &BackendLogin) -> BackendTarget {
        let mut target = self.clone();
        target.user.clone_from(&login.user);
        target.password.clone_from(&login.password);
        if let Some(application) = &login.application {
            target.application_name.clone_from(application);
        }
        target.client_host.clone_from(&login.host);
        target
    }

    pub fn address(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    fn protocol_error(&self, detail: impl std::fmt::Display) -> BackendError {
        BackendError::Protocol {
            backend: self.name.clone(),
            detail: detail.to_string(),
        }
    }

    fn tls_error(&self, detail: impl std::fmt::Display) -> BackendError {
        BackendError::Tls {
            backend: self.name.clone(),
            detail: detail.to_string(),
        }
    }
}

/// Opens a connection and logs in to `database` within the connect timeout.
pub async fn connect(target: &BackendTarget, database: &str) -> Result<BackendConn, BackendError> {
    let timeout = target.connect_timeout;
    match tokio::time::timeout(timeout, follow_redirects(target, database)).await {
        Ok(result) => result,
        Err(_) => Err(BackendError::Timeout {
            backend: target.name.clone(),
            address: target.address(),
            timeout_ms: timeout.as_millis(),
        }),
    }
}

async fn follow_redirects(
    target: &BackendTarget,
    database: &str,
) -> Result<BackendConn, BackendError> {
    let (mut host, mut port) = (target.host.clone(), target.port);
    for _ in 0..=MAX_REDIRECTS {
        match login_once(target, &host, port, database).await? {
            Login::Ready(conn) => return Ok(*conn),
            Login::Redirect { server, port: to } => {
                tracing::info!(backend = %target.name, %server, port = to, "backend redirected the login");
                host = server;
                port = to;
            }
        }
    }
    Err(target.protocol_error(format!("more than {MAX_REDIRECTS} routing redirects")))
}

enum Login {
    Ready(Box<BackendConn>),
    Redirect { server: String, port: u16 },
}

async fn login_once(
    target: &BackendTarget,
    host: &str,
    port: u16,
    database: &str,
) -> Result<Login, BackendError> {
    let tcp = TcpStream::connect((host, port))
        .await
        .map_err(|e| BackendError::Connect {
            backend: target.name.clone(),
            address: format!("{host}:{port}"),
            cause: Arc::new(e),
        })?;
    tcp.set_nodelay(true).ok();
    crate::transport::set_keepalive(&tcp, target.keepalive);
    let stream = negotiate_encryption(target, host, tcp).await?;
    let (read, mut writer) = split(stream);
    let mut reader = PacketReader::new(read);
    let login = backend_login7(target, host, database);
    let mut payload = Vec::new();
    login.encode(&mut payload);
    write_message(
        &mut writer,
        PacketType::LOGIN7,
        0,
        &payload,
        DEFAULT_PACKET_SIZE,
    )
    .await
    .map_err(|e| target.protocol_error(format!("sending LOGIN7: {e}")))?;
    let (_, reply) = reader
        .read_message(&[PacketType::TABULAR_RESULT], MAX_LOGIN_REPLY)
        .await
        .map_err(|e| target.protocol_error(format!("reading the login reply: {e}")))?;
    let outcome = LoginReply::parse(target, &reply)?;
    if let Some((server, port)) = outcome.redirect {
        return Ok(Login::Redirect { server, port });
    }
    let packet_size = outcome.packet_size.unwrap_or(DEFAULT_PACKET_SIZE);
    reader.set_max_packet(packet_size);
    Ok(Login::Ready(Box::new(BackendConn::new(
        reader,
        writer,
        packet_size,
        outcome.info,
        target.name.clone(),
    ))))
}

fn backend_login7(target: &BackendTarget, host: &str, database: &str) -> Login7 {
    let mut login = Login7::new_client(&target.user, &target.password, database);
    login.packet_size = target.packet_size;
    login.hostname = target.client_host.clone().unwrap_or_else(local_host_name);
    login.app_name = target.application_name.clone();
    login.server_name = host.to_string();
    login.library_name = "sluice".to_string();
    login.set_read_only_intent(target.read_only_intent);
    login
}

fn local_host_name() -> String {
    std::env::var("HOSTNAME").unwrap_or_else(|_| "sluice".to_string())
}

/// PRELOGIN, then TLS as the backend's `tls` mode says.
async fn negotiate_encryption(
    target: &BackendTarget,
    host: &str,
    tcp: TcpStream,
) -> Result<NetStream, BackendError> {
    match target.tls {
        BackendTls::Strict => {
            let mut tls = tls_connector(target)?
                .connect(server_name(host).map_err(|e| target.tls_error(e))?, tcp)
                .await
                .map_err(|e| target.tls_error(e))?;
            // TDS 8.0: PRELOGIN travels inside TLS; its encryption answer no longer matters.
            exchange_prelogin(target, &mut tls, encryption::REQ).await?;
            Ok(NetStream::boxed(tls))
        }
        BackendTls::Required => {
            let mut tcp = tcp;
            let reply = exchange_prelogin(target, &mut tcp, encryption::ON).await?;
            if reply == encryption::NOT_SUP {
                return Err(
                    target.tls_error("the backend does not support encryption; set tls = \"off\"")
                );
            }
            let mut tls = tls_connector(target)?
                .connect(
                    server_name(host).map_err(|e| target.tls_error(e))?,
                    PreloginFramed::new(tcp),
                )
                .await
                .map_err(|e| target.tls_error(e))?;
            tls.get_mut().0.handshake_complete();
            Ok(NetStream::boxed(tls))
        }
        BackendTls::Off => {
            let mut tcp = tcp;
            let reply = exchange_prelogin(target, &mut tcp, encryption::NOT_SUP).await?;
            if reply == encryption::REQ {
                return Err(
                    target.tls_error("the backend requires encryption; set tls = \"required\"")
                );
            }
            Ok(NetStream::Tcp(tcp))
        }
    }
}

fn tls_connector(target: &BackendTarget) -> Result<TlsConnector, BackendError> {
    let config = target
        .tls_config
        .clone()
        .ok_or_else(|| target.tls_error("no TLS configuration for this backend"))?;
    Ok(TlsConnector::from(config))
}

/// Sends our PRELOGIN and returns the encryption byte of the reply. Real
/// SQL Server answers with packet type 0x04; some servers use 0x12.
async fn exchange_prelogin<S: AsyncRead + AsyncWrite + Unpin>(
    target: &BackendTarget,
    stream: &mut S,
    encryption: u8,
) -> Result<u8, BackendError> {
    let prelogin = PreLogin {
        version: Some(PreLoginVersion {
            version: 0x0001_0000,
            sub_build: 0,
        }),
        encryption: Some(encryption),
        thread_id: Some(std::process::id()),
        mars: Some(0),
        ..PreLogin::default()
    };
    let mut payload = Vec::new();
    prelogin.encode(&mut payload);
    write_message(
        stream,
        PacketType::PRELOGIN,
        0,
        &payload,
        DEFAULT_PACKET_SIZE,
    )
    .await
    .map_err(|e| target.protocol_error(format!("sending PRELOGIN: {e}")))?;
    stream.flush().await.ok();
    let mut reader = PacketReader::new(&mut *stream);
    let (_, reply) = reader
        .read_message(
            &[PacketType::TABULAR_RESULT, PacketType::PRELOGIN],
            DEFAULT_PACKET_SIZE,
        )
        .await
        .map_err(|e: ReadError| {
            target.protocol_error(format!("reading the PRELOGIN reply: {e}"))
        })?;
    let reply = PreLogin::decode(&reply).map_err(|e| target.protocol_error(e))?;
    Ok(reply.encryption.unwrap_or(encryption::NOT_SUP))
}

/// What the login reply said.
struct LoginReply {
    info: ServerInfo,
    packet_size: Option<usize>,
    redirect: Option<(String, u16)>,
}

impl LoginReply {
    fn parse(target: &BackendTarget, reply: &[u8]) -> Result<LoginReply, BackendError> {
        let mut events = Vec::new();
        let mut walker = TokenWalker::new();
        walker
            .feed(reply, &mut events)
            .map_err(|e| target.protocol_error(e))?;
        let mut out = LoginReply {
            info: ServerInfo {
                tds_version: 0x7400_0004,
                prog_name: String::new(),
                prog_version: [0; 4],
                collation: Vec::new(),
                database: String::new(),
                language: "us_english".to_string(),
            },
            packet_size: None,
            redirect: None,
        };
        let mut acked = false;
        for event in events {
            match event {
                TokenEvent::LoginAck(ack) => {
                    acked = true;
                    out.info.tds_version = ack.tds_version;
                    out.info.prog_name = ack.prog_name;
                    out.info.prog_version = ack.version;
                }
                TokenEvent::Error(e) => {
                    return Err(BackendError::LoginRefused {
                        backend: target.name.clone(),
                        login: target.user.clone(),
                        number: e.number,
                        class: e.class,
                        state: e.state,
                        message: e.message,
                    })
                }
                TokenEvent::EnvChange(change) => out.apply(change),
                _ => {}
            }
        }
        if !acked && out.redirect.is_none() {
            return Err(target.protocol_error("login reply without LOGINACK"));
        }
        Ok(out)
    }

    fn apply(&mut self, change: EnvChange) {
        match change {
            EnvChange::Database { new, .. } => self.info.database = new,
            EnvChange::Language { new, .. } => self.info.language = new,
            EnvChange::SqlCollation { new, .. } => self.info.collation = new,
            EnvChange::PacketSize { new, .. } => {
                self.packet_size = new.parse::<usize>().ok().map(|n| {
                    n.clamp(
                        crate::tds::packet::MIN_PACKET_SIZE,
                        crate::tds::packet::MAX_PACKET_SIZE,
                    )
                })
            }
            EnvChange::Routing { port, server } => self.redirect = Some((server, port)),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(intent: &str) -> BackendTarget {
        let text = format!(
            "[listen]\naddress = \"127.0.0.1:1\"\n[[users]]\nname = \"a\"\n\
             password_hash = \"$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$3nB0ajhdTWjCXUyH8nHnUoXjEpGFR1Ou3X3Pw2EXgrk\"\n\
             [primary]\naddress = \"db.example.com:1433\"\nuser = \"sa\"\npassword = \"x\"\n\
             [[replicas]]\nname = \"ro\"\naddress = \"db.example.com:1433\"\nuser = \"sa\"\npassword = \"x\"\n\
             application_intent = \"{intent}\"\n"
        );
        let config = crate::config::Config::parse(&text, std::path::Path::new("t")).unwrap();
        BackendTarget::from_config(&config.replicas[0], &config.pool).unwrap()
    }

    #[test]
    fn a_clients_own_login_reaches_the_login7() {
        let own = BackendLogin {
            user: "alice".into(),
            password: "secret".into(),
            application: Some("billing".into()),
            host: Some("app-7".into()),
        };
        let login = backend_login7(&target("read_write").with_login(&own), "db", "sales");
        assert_eq!(login.username, "alice");
        assert_eq!(login.app_name, "billing");
        assert_eq!(login.hostname, "app-7");
        let shared = backend_login7(&target("read_write"), "db", "sales");
        assert_eq!(shared.username, "sa");
        assert_ne!(shared.hostname, "app-7");
    }

    #[test]
    fn read_only_intent_reaches_the_login7() {
        let login = backend_login7(&target("read_only"), "db.example.com", "sales");
        assert!(login.read_only_intent());
        assert_eq!(login.server_name, "db.example.com");
        assert_eq!(login.database, "sales");
        let mut encoded = Vec::new();
        login.encode(&mut encoded);
        assert!(Login7::decode(&encoded).unwrap().read_only_intent());
        assert!(
            !backend_login7(&target("read_write"), "db.example.com", "sales").read_only_intent()
        );
    }

    #[test]
    fn client_messages_name_the_backend_but_not_its_address_or_login() {
        let backend: Arc<str> = Arc::from("replica-1");
        let address = "db7.internal.example:14331".to_string();
        let errors = [
            BackendError::Connect {
                backend: backend.clone(),
                address: address.clone(),
                cause: Arc::new(io::Error::from_raw_os_error(111)),
            },
            BackendError::Timeout {
                backend: backend.clone(),
                address: address.clone(),
                timeout_ms: 5000,
            },
            BackendError::Tls {
                backend: backend.clone(),
                detail: "invalid peer certificate for db7.internal.example".into(),
            },
            BackendError::LoginRefused {
                backend: backend.clone(),
                login: "sluice_svc".into(),
                number: 18456,
                class: 14,
                state: 1,
                message: "Login failed for user 'sluice_svc'.".into(),
            },
            BackendError::LoginRefused {
                backend: backend.clone(),
                login: "sluice_svc".into(),
                number: 916,
                class: 14,
                state: 1,
                message: "The server principal \"SLUICE_SVC\" is not able to access the database."
                    .into(),
            },
        ];
        for error in &errors {
            let shown = error.client_message();
            assert!(shown.contains("backend replica-1"), "{shown}");
            for secret in ["db7", "14331", "sluice_svc", "SLUICE_SVC", "os error"] {
                assert!(!shown.contains(secret), "{secret} in {shown:?}");
            }
            // The log keeps the detail.
            let logged = error.to_string();
            assert!(
                logged.contains("db7") || logged.contains("sluice_svc"),
                "{logged}"
            );
        }
        let missing_database = BackendError::LoginRefused {
            backend,
            login: "sluice_svc".into(),
            number: 4060,
            class: 11,
            state: 1,
            message: "Cannot open database \"nope\" requested by the login. The login failed."
                .into(),
        };
        assert_eq!(
            missing_database.refusal_for_client().as_deref(),
            Some("Cannot open database \"nope\" requested by the login. The login failed.")
        );
    }
}
