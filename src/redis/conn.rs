//! One connection to Redis: opening it (TCP, TLS, AUTH and SELECT) and
//! moving commands and replies over it.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::resp::{parse_value, Command, Limits, Value, MAX_DEPTH};
use super::url::Endpoint;
use super::RedisError;
use crate::transport::{set_keepalive, NetStream};

/// Each read asks for at least this much room; replies are usually small.
const READ_CHUNK: usize = 16 * 1024;
/// An idle connection keeps at most this much read buffer, so that one big
/// reply does not pin `max_reply_bytes` of memory in the pool.
const IDLE_BUFFER: usize = 64 * 1024;
/// A subscription may sit silent for hours: keepalive notices a server
/// that vanished without closing the connection.
const KEEPALIVE: Duration = Duration::from_secs(60);

/// What every new connection needs, worked out once from the options.
pub(super) struct Settings {
    pub endpoint: Endpoint,
    /// The options' password, else the URL's.
    pub password: Option<String>,
    pub tls: Option<(Arc<rustls::ClientConfig>, ServerName<'static>)>,
    pub max_reply_bytes: usize,
}

pub(super) struct Conn {
    stream: NetStream,
    /// Bytes read but not yet parsed; at most about `max_reply_bytes`.
    buf: BytesMut,
    max_reply_bytes: usize,
}

impl Conn {
    /// Connects and logs in; the caller bounds the time it takes.
    pub async fn open(settings: &Settings) -> Result<Conn, RedisError> {
        let endpoint = &settings.endpoint;
        let tcp = TcpStream::connect((endpoint.host.as_str(), endpoint.port)).await?;
        tcp.set_nodelay(true)?;
        set_keepalive(&tcp, Some(KEEPALIVE));
        let stream = match &settings.tls {
            None => NetStream::Tcp(tcp),
            Some((config, name)) => NetStream::boxed(
                TlsConnector::from(config.clone())
                    .connect(name.clone(), tcp)
                    .await
                    .map_err(|e| RedisError::Tls(format!("handshake failed: {e}")))?,
            ),
        };
        let mut conn = Conn {
            stream,
            buf: BytesMut::new(),
            max_reply_bytes: settings.max_reply_bytes,
        };
        conn.log_in(settings).await?;
        Ok(conn)
    }

    /// AUTH and SELECT, in one round trip.
    async fn log_in(&mut self, settings: &Settings) -> Result<(), RedisError> {
        let mut commands = Vec::new();
        if let Some(password) = &settings.password {
            let auth = match &settings.endpoint.user {
                Some(user) => Command::new("AUTH").arg(user),
                None => Command::new("AUTH"),
            };
            commands.push(auth.arg(password));
        }
        let db = settings.endpoint.db;
        if db != 0 {
            commands.push(Command::new("SELECT").arg(db.to_string()));
        }
        if commands.is_empty() {
            return Ok(());
        }
        let replies = self.pipeline(&commands).await?;
        for (command, reply) in commands.iter().zip(replies) {
            if let Value::Error(message) = reply {
                return Err(match command.name().as_str() {
                    "AUTH" => RedisError::Auth(message),
                    _ => RedisError::Refused(format!("SELECT {db}: {message}")),
                });
            }
        }
        Ok(())
    }

    /// Writes all commands at once, then reads one reply per command. The
    /// replies together may take `max_reply_bytes`.
    pub async fn pipeline(&mut self, commands: &[Command]) -> Result<Vec<Value>, RedisError> {
        self.send(commands).await?;
        let mut budget = self.max_reply_bytes;
        let mut replies = Vec::with_capacity(commands.len());
        for _ in commands {
            replies.push(self.read_value(&mut budget).await?);
        }
        // Outside a subscription Redis only ever answers; anything more
        // means this connection is out of step with its commands.
        if !self.buf.is_empty() {
            return Err(RedisError::Protocol(
                "more replies than commands were sent".into(),
            ));
        }
        if self.buf.capacity() > IDLE_BUFFER {
            self.buf = BytesMut::new();
        }
        Ok(replies)
    }

    pub async fn send(&mut self, commands: &[Command]) -> Result<(), RedisError> {
        let mut out = Vec::new();
        for command in commands {
            command.encode(&mut out);
        }
        self.stream.write_all(&out).await?;
        self.stream.flush().await?;
        Ok(())
    }

    /// Reads one reply of at most `budget` bytes and takes its size off
    /// the budget. Cancel-safe: unparsed bytes stay in `buf`.
    pub async fn read_value(&mut self, budget: &mut usize) -> Result<Value, RedisError> {
        loop {
            let limits = Limits {
                max_bytes: *budget,
                max_depth: MAX_DEPTH,
            };
            if let Some((value, used)) = parse_value(&self.buf, &limits)? {
                self.buf.advance(used);
                *budget = budget.saturating_sub(used);
                return Ok(value);
            }
            self.buf.reserve(READ_CHUNK);
            if self.stream.read_buf(&mut self.buf).await? == 0 {
                return Err(RedisError::Io(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "Redis closed the connection",
                )));
            }
        }
    }

    /// The reply limit of one message on a subscription.
    pub fn max_reply_bytes(&self) -> usize {
        self.max_reply_bytes
    }
}
