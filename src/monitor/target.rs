//! Where the monitor connects, and how: tiberius on connections of its own,
//! never the data path's pools, so a check measures the backend and not a
//! busy pool.

use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tiberius::{AuthMethod, Client, EncryptionLevel};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_util::compat::{Compat, TokioAsyncWriteCompatExt};

use crate::config::BackendTls;
use crate::transport::BoxStream;

/// Azure SQL gateways redirect once; more hops than this means a loop.
const MAX_REDIRECTS: usize = 3;

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
    /// CA certificate (PEM) to verify the server with. Under `required`,
    /// tiberius adds it to the system roots and wants a `.pem`, `.crt` or
    /// `.der` file name.
    pub ca_file: Option<PathBuf>,
    /// LOGIN7 read-only intent (Azure SQL read scale-out, AG read-only routing).
    pub read_only_intent: bool,
    pub application_name: String,
}

impl CheckTarget {
    /// The settings of a configured backend, read-write intent; set
    /// `read_only_intent` from its `application_intent`.
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
    #[error("cannot connect to {address}: {source}")]
    Connect { address: String, source: io::Error },
    #[error("TLS with {address} failed: {detail}")]
    Tls { address: String, detail: String },
    #[error("login to {address} failed: {source}")]
    Login {
        address: String,
        source: tiberius::error::Error,
    },
    #[error("more than {MAX_REDIRECTS} redirects, last to {address}")]
    Redirects { address: String },
    #[error("{0}")]
    Query(#[from] tiberius::error::Error),
    #[error("no answer within {0} ms")]
    Timeout(u128),
    #[error("the check panicked (a bug in the driver or in Sluice)")]
    Panicked,
}

pub(crate) type CheckClient = Client<Compat<BoxStream>>;

/// Opens and logs in a check connection, following Azure SQL redirects.
pub(crate) async fn connect(target: &CheckTarget) -> Result<CheckClient, CheckError> {
    let (mut host, mut port) = (target.host.clone(), target.port);
    for _ in 0..=MAX_REDIRECTS {
        match connect_once(target, &host, port).await {
            Err(CheckError::Login {
                source: tiberius::error::Error::Routing { host: h, port: p },
                ..
            }) => (host, port) = (h, p),
            result => return result,
        }
    }
    Err(CheckError::Redirects {
        address: format!("{host}:{port}"),
    })
}

async fn connect_once(
    target: &CheckTarget,
    host: &str,
    port: u16,
) -> Result<CheckClient, CheckError> {
    let address = format!("{host}:{port}");
    let tcp = TcpStream::connect((host, port))
        .await
        .map_err(|source| CheckError::Connect {
            address: address.clone(),
            source,
        })?;
    tcp.set_nodelay(true)
        .map_err(|source| CheckError::Connect {
            address: address.clone(),
            source,
        })?;

    let mut config = tiberius::Config::new();
    config.host(host);
    config.port(port);
    config.database(&target.database);
    config.application_name(&target.application_name);
    config.authentication(AuthMethod::sql_server(&target.user, &target.password));
    config.readonly(target.read_only_intent);

    let stream: BoxStream = match target.tls {
        BackendTls::Off => {
            config.encryption(EncryptionLevel::NotSupported);
            Box::new(tcp)
        }
        BackendTls::Required => {
            // `Required`, never `On`: tiberius panics when the server
            // answers `On` with "not supported"; `Required` fails cleanly.
            config.encryption(EncryptionLevel::Required);
            if target.trust_server_certificate {
                config.trust_cert();
            } else if let Some(ca) = &target.ca_file {
                config.trust_cert_ca(ca.display());
            }
            Box::new(tcp)
        }
        BackendTls::Strict => {
            // tiberius 0.12 has no TDS 8.0: do the TLS here, then let it
            // speak TDS inside, announcing "encryption not supported" like
            // Microsoft.Data.SqlClient does in strict mode.
            config.encryption(EncryptionLevel::NotSupported);
            let tls_error = |detail: String| CheckError::Tls {
                address: address.clone(),
                detail,
            };
            let client_config = crate::tls::client_config(
                target.trust_server_certificate,
                target.ca_file.as_deref(),
                true,
            )
            .map_err(|e| tls_error(e.to_string()))?;
            let name = crate::tls::server_name(host).map_err(|e| tls_error(e.to_string()))?;
            let tls = TlsConnector::from(client_config)
                .connect(name, tcp)
                .await
                .map_err(|e| tls_error(e.to_string()))?;
            Box::new(StrictPrelogin::new(tls))
        }
    };
    Client::connect(config, stream.compat_write())
        .await
        .map_err(|source| CheckError::Login { address, source })
}

/// PRELOGIN option token for ENCRYPTION and the "not supported" value
/// [MS-TDS 2.2.6.5].
const PRELOGIN_ENCRYPTION: u8 = 0x01;
const ENCRYPT_NOT_SUP: u8 = 0x02;
const PRELOGIN_TERMINATOR: u8 = 0xFF;
/// Packet type of the server's PRELOGIN answer.
const TABULAR_RESULT: u8 = 0x04;
/// Larger than any PRELOGIN answer; past this, stop looking for one.
const MAX_PRELOGIN_REPLY: usize = 4096;

/// Under TDS 8.0 the server's PRELOGIN answer may still say "encryption on";
/// tiberius would then start a second TLS handshake inside the first.
/// Drivers ignore that byte in strict mode; this wrapper rewrites it to
/// "not supported" in the first packet the server sends and then steps aside.
pub(crate) struct StrictPrelogin<S> {
    inner: S,
    state: ShimState,
}

enum ShimState {
    /// Buffering the server's first packet.
    Collecting(Vec<u8>),
    /// Handing out the (patched) first packet.
    Draining(Vec<u8>, usize),
    /// Done: bytes pass through.
    Passthrough,
}

impl<S> StrictPrelogin<S> {
    pub(crate) fn new(inner: S) -> Self {
        StrictPrelogin {
            inner,
            state: ShimState::Collecting(Vec::new()),
        }
    }
}

/// The length of the first packet in `data` once it is all there.
fn first_packet_len(data: &[u8]) -> Option<usize> {
    let len = usize::from(u16::from_be_bytes([*data.get(2)?, *data.get(3)?]));
    (data.len() >= len).then_some(len)
}

/// Rewrites the ENCRYPTION option of a PRELOGIN answer packet to "not
/// supported"; leaves anything else, or anything malformed, alone.
fn patch_prelogin_reply(packet: &mut [u8]) {
    if packet.first() != Some(&TABULAR_RESULT) || packet.len() < 8 {
        return;
    }
    let payload = &mut packet[8..];
    let mut at = 0;
    while let Some(&token) = payload.get(at) {
        if token == PRELOGIN_TERMINATOR {
            return;
        }
        let Some(option) = payload.get(at + 1..at + 5) else {
            return;
        };
        let offset = usize::from(u16::from_be_bytes([option[0], option[1]]));
        let length = u16::from_be_bytes([option[2], option[3]]);
        if token == PRELOGIN_ENCRYPTION && length >= 1 {
            if let Some(value) = payload.get_mut(offset) {
                *value = ENCRYPT_NOT_SUP;
            }
            return;
        }
        at += 5;
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for StrictPrelogin<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            match &mut this.state {
                ShimState::Passthrough => return Pin::new(&mut this.inner).poll_read(cx, buf),
                ShimState::Draining(data, at) => {
                    let n = (data.len() - *at).min(buf.remaining());
                    buf.put_slice(&data[*at..*at + n]);
                    *at += n;
                    if *at == data.len() {
                        this.state = ShimState::Passthrough;
                    }
                    return Poll::Ready(Ok(()));
                }
                ShimState::Collecting(data) => {
                    let mut chunk = [0u8; 1024];
                    let mut chunk_buf = ReadBuf::new(&mut chunk);
                    ready!(Pin::new(&mut this.inner).poll_read(cx, &mut chunk_buf))?;
                    let eof = chunk_buf.filled().is_empty();
                    data.extend_from_slice(chunk_buf.filled());
                    if let Some(len) = first_packet_len(data) {
                        patch_prelogin_reply(&mut data[..len]);
                    } else if !eof && data.len() < MAX_PRELOGIN_REPLY {
                        continue;
                    }
                    let data = std::mem::take(data);
                    if data.is_empty() {
                        this.state = ShimState::Passthrough;
                        return Poll::Ready(Ok(()));
                    }
                    this.state = ShimState::Draining(data, 0);
                }
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for StrictPrelogin<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::XorShift;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A PRELOGIN answer: VERSION, ENCRYPTION = `encryption`, terminator.
    fn prelogin_reply(encryption: u8) -> Vec<u8> {
        let payload = [
            0x00, 0x00, 0x0B, 0x00, 0x06, // VERSION at 11, 6 bytes
            0x01, 0x00, 0x11, 0x00, 0x01, // ENCRYPTION at 17, 1 byte
            0xFF, // terminator
            0x10, 0x00, 0x07, 0xD0, 0x00, 0x00, // version
            encryption,
        ];
        let len = (8 + payload.len()) as u16;
        let mut packet = vec![TABULAR_RESULT, 0x01];
        packet.extend_from_slice(&len.to_be_bytes());
        packet.extend_from_slice(&[0, 0, 1, 0]);
        packet.extend_from_slice(&payload);
        packet
    }

    #[test]
    fn patches_the_encryption_option_only() {
        for encryption in [0x00, 0x01, 0x02, 0x03] {
            let mut packet = prelogin_reply(encryption);
            let expected = prelogin_reply(ENCRYPT_NOT_SUP);
            patch_prelogin_reply(&mut packet);
            assert_eq!(packet, expected);
        }
        // Not a PRELOGIN answer: untouched.
        let mut other = prelogin_reply(0x01);
        other[0] = 0x12;
        let before = other.clone();
        patch_prelogin_reply(&mut other);
        assert_eq!(other, before);
    }

    #[test]
    fn patch_never_panics_on_garbage() {
        let mut rng = XorShift::new(0x5EED_F7D5);
        for mut packet in rng.mutations(&prelogin_reply(0x01), 20_000) {
            patch_prelogin_reply(&mut packet);
        }
        for _ in 0..5_000 {
            let mut packet = rng.bytes(64);
            patch_prelogin_reply(&mut packet);
            let _ = first_packet_len(&packet);
        }
    }

    #[tokio::test]
    async fn the_shim_patches_the_first_packet_then_steps_aside() {
        let (mut server, client) = tokio::io::duplex(16);
        let mut shim = StrictPrelogin::new(client);
        let reply = prelogin_reply(0x01);
        let writer = tokio::spawn(async move {
            // Byte by byte: the shim must reassemble the packet.
            for byte in prelogin_reply(0x01) {
                server.write_all(&[byte]).await.expect("write");
            }
            server.write_all(b"after").await.expect("write");
            let mut echo = [0u8; 4];
            server.read_exact(&mut echo).await.expect("read");
            echo
        });
        let mut got = vec![0u8; reply.len() + 5];
        shim.read_exact(&mut got).await.expect("read");
        assert_eq!(&got[..reply.len()], &prelogin_reply(ENCRYPT_NOT_SUP)[..]);
        assert_eq!(&got[reply.len()..], b"after");
        shim.write_all(b"ping").await.expect("write");
        assert_eq!(&writer.await.expect("join"), b"ping");
    }

    #[tokio::test]
    async fn the_shim_passes_a_short_stream_through() {
        let (mut server, client) = tokio::io::duplex(64);
        server.write_all(&[0x04, 0x01]).await.expect("write");
        drop(server);
        let mut got = Vec::new();
        StrictPrelogin::new(client)
            .read_to_end(&mut got)
            .await
            .expect("read");
        assert_eq!(got, [0x04, 0x01]);
    }

    #[test]
    fn debug_hides_the_password() {
        let target = CheckTarget {
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
        };
        let text = format!("{target:?}");
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("read-only intent"), "{text}");
    }
}
