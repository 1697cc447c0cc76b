//! A small Redis client for the result cache's shared tier: RESP2
//! pipelines over a pool of connections, and one channel subscription.
//!
//! Every failure is an error, never a panic or a hang: each call runs under
//! the configured timeout, a connection that failed in any way is dropped
//! rather than reused, and replies are bounded in size. The cache treats an
//! error as a miss.

mod conn;
mod resp;
mod url;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;

use conn::{Conn, Settings};
pub use resp::{parse_value, Command, Limits, Value, MAX_DEPTH};

/// Where Debian and its derivatives keep the system's trusted CAs.
pub const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

#[derive(Debug, thiserror::Error)]
pub enum RedisError {
    #[error("invalid Redis URL: {0}")]
    Url(String),
    #[error("invalid Redis options: {0}")]
    Options(String),
    #[error("Redis TLS: {0}")]
    Tls(String),
    #[error("Redis I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("Redis did not answer within the timeout")]
    Timeout,
    #[error("Redis protocol error: {0}")]
    Protocol(String),
    #[error("Redis refused the password: {0}")]
    Auth(String),
    /// An error reply to a command that must succeed (SELECT, SUBSCRIBE).
    #[error("Redis refused {0}")]
    Refused(String),
}

#[derive(Clone)]
pub struct RedisOptions {
    /// redis://[[user]:password@]host[:port][/db] or rediss:// (TLS, as Azure
    /// Cache for Redis requires). Default port 6379.
    pub url: String,
    /// Password from the environment (the config layer reads the env var);
    /// wins over one in the URL.
    pub password: Option<String>,
    /// Bounds connect + TLS + AUTH/SELECT, and each pipeline round trip.
    pub timeout: Duration,
    /// PEM CA bundle for rediss://; None = the system bundle
    /// ([`SYSTEM_CA_BUNDLE`]), an error if absent.
    pub ca_file: Option<PathBuf>,
    /// Idle connections kept open for commands (a subscription uses its own).
    pub max_connections: usize,
    /// Largest reply accepted, in bytes on the wire (one bulk string, or all
    /// the replies of a pipeline); bigger is RedisError::Protocol and the
    /// connection is dropped. Memory per connection is bounded by this.
    pub max_reply_bytes: usize,
}

impl RedisOptions {
    /// `url` with a 1 s timeout, the system CAs, 8 connections and 16 MiB replies.
    pub fn new(url: impl Into<String>) -> RedisOptions {
        RedisOptions {
            url: url.into(),
            password: None,
            timeout: Duration::from_secs(1),
            ca_file: None,
            max_connections: 8,
            max_reply_bytes: 16 * 1024 * 1024,
        }
    }
}

/// Never shows a password: the URL's is left out, the options' is only
/// said to be there.
impl std::fmt::Debug for RedisOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let url = url::parse(&self.url)
            .map(|endpoint| format!("{endpoint:?}"))
            .unwrap_or_else(|_| "<invalid URL>".into());
        f.debug_struct("RedisOptions")
            .field("url", &url)
            .field("password", &self.password.as_ref().map(|_| "<set>"))
            .field("timeout", &self.timeout)
            .field("ca_file", &self.ca_file)
            .field("max_connections", &self.max_connections)
            .field("max_reply_bytes", &self.max_reply_bytes)
            .finish()
    }
}

/// A handle to one Redis server; clones share its connections.
#[derive(Clone)]
pub struct Redis {
    inner: Arc<Inner>,
}

struct Inner {
    settings: Settings,
    timeout: Duration,
    max_idle: usize,
    idle: Mutex<Vec<Conn>>,
}

/// For `sluice check`: validates a URL without building anything.
pub fn validate_url(url: &str) -> Result<(), RedisError> {
    url::parse(url).map(|_| ())
}

impl Redis {
    /// Validates the URL and builds the TLS config; does no I/O
    /// (connections open lazily).
    pub fn new(options: RedisOptions) -> Result<Redis, RedisError> {
        let endpoint = url::parse(&options.url)?;
        if options.timeout.is_zero() {
            return Err(RedisError::Options("timeout must be above zero".into()));
        }
        if options.max_reply_bytes == 0 {
            return Err(RedisError::Options(
                "max_reply_bytes must be above zero".into(),
            ));
        }
        let tls = match endpoint.tls {
            true => Some(tls_settings(&endpoint.host, options.ca_file.as_deref())?),
            false => None,
        };
        let password = options.password.or_else(|| endpoint.password.clone());
        let settings = Settings {
            endpoint,
            password,
            tls,
            max_reply_bytes: options.max_reply_bytes,
        };
        Ok(Redis {
            inner: Arc::new(Inner {
                settings,
                timeout: options.timeout,
                max_idle: options.max_connections,
                idle: Mutex::new(Vec::new()),
            }),
        })
    }

    /// What the URL names, for logs: "host:port (tls)" without the password.
    pub fn describe(&self) -> String {
        self.inner.settings.endpoint.describe()
    }

    /// Sends all commands as one pipeline (one write, replies read in
    /// order), under the timeout as a whole, opening a connection included.
    /// An error reply is `Value::Error` in its command's slot. Any I/O
    /// error, timeout or protocol error drops the connection and is `Err`.
    pub async fn run(&self, commands: &[Command]) -> Result<Vec<Value>, RedisError> {
        if commands.is_empty() {
            return Ok(Vec::new());
        }
        // On timeout the future is dropped, and the connection with it.
        tokio::time::timeout(self.inner.timeout, self.run_untimed(commands))
            .await
            .map_err(|_| RedisError::Timeout)?
    }

    async fn run_untimed(&self, commands: &[Command]) -> Result<Vec<Value>, RedisError> {
        let mut conn = match self.take_idle() {
            Some(conn) => conn,
            None => Conn::open(&self.inner.settings).await?,
        };
        match conn.pipeline(commands).await {
            Ok(replies) => {
                self.put_idle(conn);
                Ok(replies)
            }
            Err(e) => {
                self.dropped(&e);
                Err(e)
            }
        }
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<Conn>> {
        self.inner
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn take_idle(&self) -> Option<Conn> {
        self.idle().pop()
    }

    fn put_idle(&self, conn: Conn) {
        let mut idle = self.idle();
        if idle.len() < self.inner.max_idle {
            idle.push(conn);
        }
    }

    /// A connection failed. After an I/O error the server most likely
    /// restarted or the network broke, which the idle connections share:
    /// they are closed too, so the next calls do not each find a dead one.
    fn dropped(&self, error: &RedisError) {
        tracing::debug!(redis = %self.describe(), %error, "Redis connection dropped");
        if matches!(error, RedisError::Io(_)) {
            self.idle().clear();
        }
    }

    /// Opens a dedicated connection and SUBSCRIBEs to `channel`, waiting
    /// for the confirmation, all under the timeout.
    pub async fn subscribe(&self, channel: &[u8]) -> Result<Subscription, RedisError> {
        tokio::time::timeout(self.inner.timeout, self.subscribe_untimed(channel))
            .await
            .map_err(|_| RedisError::Timeout)?
    }

    async fn subscribe_untimed(&self, channel: &[u8]) -> Result<Subscription, RedisError> {
        let mut conn = Conn::open(&self.inner.settings).await?;
        conn.send(&[Command::new("SUBSCRIBE").arg(channel)]).await?;
        let mut budget = conn.max_reply_bytes();
        match conn.read_value(&mut budget).await? {
            Value::Array(items) if push_kind(&items) == Some(b"subscribe") => {
                Ok(Subscription { conn })
            }
            Value::Error(message) => Err(RedisError::Refused(format!("SUBSCRIBE: {message}"))),
            other => Err(RedisError::Protocol(format!(
                "unexpected reply to SUBSCRIBE: {}",
                kind(&other)
            ))),
        }
    }
}

/// The first element of a pushed array: "message", "subscribe", "pong"…
fn push_kind(items: &[Value]) -> Option<&[u8]> {
    items.first().and_then(Value::as_bytes)
}

/// A reply's type, for error messages (its content may be a cached value).
fn kind(value: &Value) -> &'static str {
    match value {
        Value::Nil => "nil",
        Value::Int(_) => "an integer",
        Value::Simple(_) => "a simple string",
        Value::Error(_) => "an error",
        Value::Bulk(_) => "a bulk string",
        Value::Array(_) => "an array",
    }
}

/// A connection subscribed to one channel.
pub struct Subscription {
    conn: Conn,
}

impl Subscription {
    /// The next message's payload; waits as long as it takes. Err when the
    /// connection is lost (the caller subscribes again). Cancel-safe, so it
    /// can sit in a `select!` beside a shutdown signal.
    pub async fn next_message(&mut self) -> Result<Bytes, RedisError> {
        loop {
            let mut budget = self.conn.max_reply_bytes();
            let Value::Array(mut items) = self.conn.read_value(&mut budget).await? else {
                return Err(RedisError::Protocol(
                    "a subscription received something other than an array".into(),
                ));
            };
            if push_kind(&items) != Some(b"message") {
                // Confirmations of (un)subscribing, PING replies.
                continue;
            }
            return match items.pop() {
                Some(Value::Bulk(payload)) if items.len() == 2 => Ok(payload),
                _ => Err(RedisError::Protocol(
                    "a pub/sub message is not [message, channel, payload]".into(),
                )),
            };
        }
    }
}

/// The client configuration for rediss://, and the name the server's
/// certificate must carry (a DNS name or an IP address).
fn tls_settings(
    host: &str,
    ca_file: Option<&Path>,
) -> Result<
    (
        Arc<rustls::ClientConfig>,
        rustls::pki_types::ServerName<'static>,
    ),
    RedisError,
> {
    let bundle = ca_file.unwrap_or(Path::new(SYSTEM_CA_BUNDLE));
    let config = crate::tls::client_config(false, Some(bundle), false)
        .map_err(|e| RedisError::Tls(format!("CA bundle: {e}")))?;
    let name = crate::tls::server_name(host).map_err(|e| RedisError::Url(e.to_string()))?;
    Ok((config, name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(url: &str) -> RedisOptions {
        RedisOptions::new(url)
    }

    #[test]
    fn new_does_no_io_and_describes_without_password() {
        let redis = Redis::new(options("redis://:hunter2@192.0.2.1:7000/2")).expect("valid");
        assert_eq!(redis.describe(), "192.0.2.1:7000");
    }

    #[test]
    fn the_options_password_wins_over_the_url() {
        let mut o = options("redis://:from-url@h");
        o.password = Some("from-env".into());
        let redis = Redis::new(o).expect("valid");
        assert_eq!(redis.inner.settings.password.as_deref(), Some("from-env"));
        let redis = Redis::new(options("redis://:from-url@h")).expect("valid");
        assert_eq!(redis.inner.settings.password.as_deref(), Some("from-url"));
    }

    #[test]
    fn rediss_needs_a_readable_ca_bundle() {
        let mut o = options("rediss://h");
        o.ca_file = Some("/nonexistent/ca.pem".into());
        match Redis::new(o) {
            Err(RedisError::Tls(problem)) => assert!(problem.contains("/nonexistent/ca.pem")),
            other => panic!("expected a TLS error, got {:?}", other.err()),
        }
    }

    #[test]
    fn rediss_with_the_system_bundle() {
        if !Path::new(SYSTEM_CA_BUNDLE).exists() {
            return;
        }
        let redis = Redis::new(options("rediss://cache.example.net:6380")).expect("valid");
        assert_eq!(redis.describe(), "cache.example.net:6380 (tls)");
    }

    #[test]
    fn options_debug_hides_passwords() {
        let mut o = options("redis://:in-url@h/1");
        o.password = Some("from-env".into());
        let debug = format!("{o:?}");
        assert!(
            !debug.contains("in-url") && !debug.contains("from-env"),
            "{debug}"
        );
        assert!(debug.contains("h:6379 db 1"), "{debug}");
        let debug = format!("{:?}", options("redis://:in-url@h:x"));
        assert!(!debug.contains("in-url"), "{debug}");
    }

    #[test]
    fn bad_options() {
        let mut o = options("redis://h");
        o.timeout = Duration::ZERO;
        assert!(matches!(Redis::new(o), Err(RedisError::Options(_))));
        let mut o = options("redis://h");
        o.max_reply_bytes = 0;
        assert!(matches!(Redis::new(o), Err(RedisError::Options(_))));
        assert!(matches!(
            validate_url("redis://h:x"),
            Err(RedisError::Url(_))
        ));
        assert!(validate_url("rediss://:p@h:6380/1").is_ok());
    }
}
