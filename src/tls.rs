//! TLS for both sides of the proxy, with rustls.
//!
//! TDS 7.x runs the TLS handshake inside PRELOGIN packets [MS-TDS 3.2.5.2 and
//! 3.3.5.2]: each handshake record travels as the payload of a TDS packet of
//! type 0x12. Once the handshake is done, TLS records flow bare on the
//! socket. [`PreloginFramed`] does the framing during the handshake and then
//! steps aside. TDS 8.0 (strict) needs none of this: TLS comes first, on the
//! bare socket, with ALPN `tds/8.0`.

use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::tds::packet::{
    PacketHeader, PacketType, Status, DEFAULT_PACKET_SIZE, HEADER_LEN, MAX_PACKET_SIZE,
};

/// ALPN protocol id of TDS 8.0 [MS-TDS 3.3.5.1].
pub const ALPN_TDS_8: &[u8] = b"tds/8.0";

#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: io::Error },
    #[error("{path}: {problem}")]
    Pem { path: String, problem: String },
    #[error("TLS configuration rejected: {0}")]
    Rustls(#[from] rustls::Error),
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read_pem(path: &Path) -> Result<Vec<u8>, TlsSetupError> {
    std::fs::read(path).map_err(|source| TlsSetupError::Read {
        path: path.display().to_string(),
        source,
    })
}

fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsSetupError> {
    let pem = read_pem(path)?;
    let certs: Result<Vec<_>, _> = rustls_pemfile::certs(&mut pem.as_slice()).collect();
    let certs = certs.map_err(|e| TlsSetupError::Pem {
        path: path.display().to_string(),
        problem: e.to_string(),
    })?;
    if certs.is_empty() {
        return Err(TlsSetupError::Pem {
            path: path.display().to_string(),
            problem: "no CERTIFICATE block found".into(),
        });
    }
    Ok(certs)
}

fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsSetupError> {
    let pem = read_pem(path)?;
    rustls_pemfile::private_key(&mut pem.as_slice())
        .map_err(|e| TlsSetupError::Pem {
            path: path.display().to_string(),
            problem: e.to_string(),
        })?
        .ok_or_else(|| TlsSetupError::Pem {
            path: path.display().to_string(),
            problem: "no PRIVATE KEY block found".into(),
        })
}

/// The listener's two TLS configurations, over one certificate.
pub struct ListenerTlsConfigs {
    /// TLS inside PRELOGIN packets (TDS 7.x): TLS 1.2 only and no ALPN, as
    /// SQL Server does. With 1.3 negotiated, ODBC Driver 18 sends its final
    /// handshake message outside the PRELOGIN framing and FreeTDS stalls;
    /// ODBC also offers ALPN `tds/8.0` here, which must not be taken up.
    pub prelogin: Arc<rustls::ServerConfig>,
    /// TDS 8.0 strict: TLS 1.2 or 1.3 from the first byte, ALPN `tds/8.0`.
    pub strict: Arc<rustls::ServerConfig>,
}

pub fn server_configs(cert: &Path, key: &Path) -> Result<ListenerTlsConfigs, TlsSetupError> {
    let (certs, key) = (load_certs(cert)?, load_key(key)?);
    let mut prelogin = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS12])?
        .with_no_client_auth()
        .with_single_cert(certs.clone(), key.clone_key())?;
    // TLS 1.3 session tickets would follow the handshake outside the
    // PRELOGIN framing; clients do not resume sessions anyway.
    prelogin.send_tls13_tickets = 0;
    let mut strict = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    strict.alpn_protocols = vec![ALPN_TDS_8.to_vec()];
    Ok(ListenerTlsConfigs {
        prelogin: Arc::new(prelogin),
        strict: Arc::new(strict),
    })
}

/// TLS settings for connections to a backend.
pub fn client_config(
    trust_server_certificate: bool,
    ca_file: Option<&Path>,
    strict: bool,
) -> Result<Arc<rustls::ClientConfig>, TlsSetupError> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?;
    let mut config = if trust_server_certificate {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider())))
            .with_no_client_auth()
    } else {
        let mut roots = rustls::RootCertStore::empty();
        if let Some(path) = ca_file {
            for cert in load_certs(path)? {
                roots.add(cert)?;
            }
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    if strict {
        config.alpn_protocols = vec![ALPN_TDS_8.to_vec()];
    }
    Ok(Arc::new(config))
}

/// The server name to present and verify: an IP address or a DNS name.
pub fn server_name(host: &str) -> Result<ServerName<'static>, io::Error> {
    ServerName::try_from(host.to_string()).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("invalid TLS server name {host:?}"),
        )
    })
}

/// `trust_server_certificate = true`: the operator chose encryption without
/// authentication of the backend (the same as the drivers' TrustServerCertificate).
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Wraps a stream so that, while `handshake` is on, TLS records written are
/// sent as PRELOGIN packets and PRELOGIN packet headers are stripped from
/// what is read. After the handshake it passes bytes through untouched.
pub struct PreloginFramed<S> {
    inner: S,
    handshake: bool,
    /// Reads are no longer framed: the peer finished its side of the
    /// handshake and sent a bare TLS record. Bytes of it already read sit in
    /// `read_header[..read_header_len]`, served before anything else.
    read_bare: bool,
    /// Header bytes of the incoming packet read so far.
    read_header: [u8; HEADER_LEN],
    read_header_len: usize,
    /// Payload bytes left in the incoming packet.
    read_remaining: usize,
    /// Outgoing handshake bytes, framed on flush.
    write_buf: Vec<u8>,
    /// Framed bytes not yet written to `inner`.
    pending: Vec<u8>,
    pending_pos: usize,
}

impl<S> PreloginFramed<S> {
    pub fn new(inner: S) -> Self {
        PreloginFramed {
            inner,
            handshake: true,
            read_bare: false,
            read_header: [0; HEADER_LEN],
            read_header_len: 0,
            read_remaining: 0,
            write_buf: Vec::new(),
            pending: Vec::new(),
            pending_pos: 0,
        }
    }

    /// Ends the framing: from now on TLS records go bare on the socket.
    pub fn handshake_complete(&mut self) {
        self.handshake = false;
        self.read_bare = true;
    }

    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: AsyncRead + Unpin> PreloginFramed<S> {
    /// Reads the next packet header; returns false on a clean EOF before it.
    /// A bare TLS record instead of a header (the peer's handshake is over,
    /// and it already sent application data) switches reads to bare.
    fn poll_read_header(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<bool>> {
        while self.read_header_len < HEADER_LEN {
            let mut buf = ReadBuf::new(&mut self.read_header[self.read_header_len..]);
            ready!(Pin::new(&mut self.inner).poll_read(cx, &mut buf))?;
            let n = buf.filled().len();
            if n == 0 {
                if self.read_header_len == 0 {
                    return Poll::Ready(Ok(false));
                }
                return Poll::Ready(Err(io::ErrorKind::UnexpectedEof.into()));
            }
            self.read_header_len += n;
            if is_tls_record_type(self.read_header[0]) {
                self.read_bare = true;
                return Poll::Ready(Ok(true));
            }
        }
        let header = PacketHeader::decode(&self.read_header, MAX_PACKET_SIZE)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        self.read_header_len = 0;
        self.read_remaining = header.payload_len();
        Poll::Ready(Ok(true))
    }
}

/// TLS record content types (change_cipher_spec, alert, handshake,
/// application_data); no TDS packet type uses these values.
fn is_tls_record_type(byte: u8) -> bool {
    (0x14..=0x17).contains(&byte)
}

impl<S: AsyncRead + Unpin> PreloginFramed<S> {
    /// Bare mode: first the bytes taken for a header, then the socket.
    fn poll_read_bare(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.read_header_len == 0 {
            return Pin::new(&mut self.inner).poll_read(cx, buf);
        }
        let n = self.read_header_len.min(buf.remaining());
        buf.put_slice(&self.read_header[..n]);
        self.read_header.copy_within(n..self.read_header_len, 0);
        self.read_header_len -= n;
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for PreloginFramed<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.read_bare {
            return this.poll_read_bare(cx, buf);
        }
        while this.read_remaining == 0 {
            if !ready!(this.poll_read_header(cx))? {
                return Poll::Ready(Ok(()));
            }
            if this.read_bare {
                return this.poll_read_bare(cx, buf);
            }
        }
        // Handshake traffic only, so a small copy keeps this free of unsafe.
        let mut chunk = [0u8; 4096];
        let want = this.read_remaining.min(buf.remaining()).min(chunk.len());
        let mut limited = ReadBuf::new(&mut chunk[..want]);
        ready!(Pin::new(&mut this.inner).poll_read(cx, &mut limited))?;
        let n = limited.filled().len();
        if n == 0 {
            return Poll::Ready(Err(io::ErrorKind::UnexpectedEof.into()));
        }
        buf.put_slice(&chunk[..n]);
        this.read_remaining -= n;
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> PreloginFramed<S> {
    fn poll_write_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.pending_pos < self.pending.len() {
            let n = ready!(
                Pin::new(&mut self.inner).poll_write(cx, &self.pending[self.pending_pos..])
            )?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.pending_pos += n;
        }
        self.pending.clear();
        self.pending_pos = 0;
        Poll::Ready(Ok(()))
    }

    /// Frames the buffered handshake bytes as PRELOGIN packets.
    fn frame_write_buf(&mut self) {
        if self.write_buf.is_empty() {
            return;
        }
        crate::tds::packet::encode_message(
            &mut self.pending,
            PacketType::PRELOGIN,
            Status::NORMAL,
            0,
            &self.write_buf,
            DEFAULT_PACKET_SIZE,
        );
        self.write_buf.clear();
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for PreloginFramed<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if !this.handshake {
            ready!(this.poll_write_pending(cx))?;
            return Pin::new(&mut this.inner).poll_write(cx, data);
        }
        this.write_buf.extend_from_slice(data);
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        this.frame_write_buf();
        ready!(this.poll_write_pending(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.as_mut().poll_flush(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
