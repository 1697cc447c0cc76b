//! The client side of connection setup [MS-TDS 3.3.5]: PRELOGIN, the
//! encryption the listener's mode allows, then the client's LOGIN7.

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;

use crate::config::ListenTlsMode;
use crate::tds::login7::Login7;
use crate::tds::packet::{PacketType, DEFAULT_PACKET_SIZE};
use crate::tds::prelogin::{encryption, PreLogin, PreLoginVersion};
use crate::tls::PreloginFramed;
use crate::transport::{write_message, NetStream, PacketReader, ReadError};

/// First byte of a TLS handshake record: a TDS 8.0 (strict) client.
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    #[error("reading from the client: {0}")]
    Read(#[from] ReadError),
    #[error("writing to the client: {0}")]
    Write(#[from] std::io::Error),
    #[error("bad PRELOGIN: {0}")]
    PreLogin(crate::tds::DecodeError),
    #[error("bad LOGIN7: {0}")]
    Login7(crate::tds::DecodeError),
    #[error("TLS handshake with the client failed: {0}")]
    Tls(std::io::Error),
    #[error("the client requires encryption but [listen.tls] mode is off")]
    EncryptionRefused,
    #[error("the client does not support encryption but [listen.tls] mode is required")]
    EncryptionRequired,
    #[error("the client sent {0} bytes after its LOGIN7 before the login reply")]
    UnexpectedBytes(usize),
}

/// What the listener needs to negotiate encryption.
pub struct ListenerTls {
    pub mode: ListenTlsMode,
    /// For TLS inside PRELOGIN packets (TDS 7.x).
    pub acceptor: Option<TlsAcceptor>,
    /// For TDS 8.0 strict connections.
    pub strict_acceptor: Option<TlsAcceptor>,
    pub max_login_bytes: usize,
    /// Version reported in the PRELOGIN reply, learned from the backend.
    pub version: u32,
    /// Server name in the errors written during the handshake.
    pub server_name: String,
}

/// How the client and Sluice agreed to encrypt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encryption {
    None,
    /// TLS for the LOGIN7 packet only (both sides said OFF).
    LoginOnly,
    Full,
    /// TDS 8.0: TLS from the first byte.
    Strict,
}

/// A client that has sent a well-formed LOGIN7; not yet authenticated.
pub struct Handshake {
    pub stream: NetStream,
    pub login: Login7,
    pub encryption: Encryption,
}

/// Runs PRELOGIN, TLS and reads LOGIN7.
pub async fn negotiate(tcp: TcpStream, tls: &ListenerTls) -> Result<Handshake, HandshakeError> {
    let mut first = [0u8; 1];
    tcp.peek(&mut first).await?;
    if first[0] == TLS_HANDSHAKE_RECORD {
        return negotiate_strict(tcp, tls).await;
    }
    let mut tcp = tcp;
    let client = read_prelogin(&mut tcp, tls).await?;
    let decision = choose_encryption(tls, client.encryption.unwrap_or(encryption::OFF));
    // A refusal is still answered, so the client can report why it stops.
    let reply = match &decision {
        Ok(outcome) => reply_encryption(tls, outcome),
        Err(HandshakeError::EncryptionRequired) => encryption::REQ,
        Err(_) => encryption::NOT_SUP,
    };
    write_prelogin_reply(&mut tcp, tls, reply).await?;
    let encryption = decision?;
    match encryption {
        Encryption::None => {
            let login = read_login7(&mut tcp, tls).await;
            let login = refuse_bad_login7(&mut tcp, tls, login).await?;
            Ok(handshake(NetStream::Tcp(tcp), login, encryption))
        }
        Encryption::Full | Encryption::Strict => {
            let mut stream = accept_framed_tls(tcp, tls).await?;
            let login = read_login7(&mut stream, tls).await;
            let login = refuse_bad_login7(&mut stream, tls, login).await?;
            Ok(handshake(NetStream::boxed(stream), login, encryption))
        }
        Encryption::LoginOnly => {
            let mut stream = accept_framed_tls(tcp, tls).await?;
            let login = read_login7(&mut stream, tls).await;
            // Login-only encryption: the rest of the session, the login
            // reply included, is plaintext.
            let (framed, _) = stream.into_inner();
            let mut tcp = framed.into_inner();
            let login = refuse_bad_login7(&mut tcp, tls, login).await?;
            Ok(handshake(NetStream::Tcp(tcp), login, encryption))
        }
    }
}

/// A LOGIN7 that arrived but cannot be used (malformed, too large) is
/// answered with a TDS error before the connection closes, so the driver
/// reports why.
async fn refuse_bad_login7<W: AsyncWrite + Unpin>(
    stream: &mut W,
    tls: &ListenerTls,
    login: Result<Login7, HandshakeError>,
) -> Result<Login7, HandshakeError> {
    let error = match login {
        Ok(login) => return Ok(login),
        Err(e) => e,
    };
    if matches!(
        error,
        HandshakeError::Login7(_) | HandshakeError::Read(ReadError::Malformed(_))
    ) {
        let refusal = super::reply::ClientError::protocol(&error);
        let payload = super::reply::error_response(&refusal, &tls.server_name);
        write_message(
            stream,
            PacketType::TABULAR_RESULT,
            0,
            &payload,
            DEFAULT_PACKET_SIZE,
        )
        .await
        .ok();
    }
    Err(error)
}

fn handshake(stream: NetStream, login: Login7, encryption: Encryption) -> Handshake {
    Handshake {
        stream,
        login,
        encryption,
    }
}

async fn negotiate_strict(tcp: TcpStream, tls: &ListenerTls) -> Result<Handshake, HandshakeError> {
    let acceptor = tls
        .strict_acceptor
        .as_ref()
        .ok_or(HandshakeError::EncryptionRefused)?;
    let mut stream = acceptor.accept(tcp).await.map_err(HandshakeError::Tls)?;
    read_prelogin(&mut stream, tls).await?;
    // TDS 8.0: the connection is already encrypted; the byte is informative.
    write_prelogin_reply(&mut stream, tls, encryption::REQ).await?;
    let login = read_login7(&mut stream, tls).await;
    let login = refuse_bad_login7(&mut stream, tls, login).await?;
    Ok(handshake(
        NetStream::boxed(stream),
        login,
        Encryption::Strict,
    ))
}

async fn accept_framed_tls(
    tcp: TcpStream,
    tls: &ListenerTls,
) -> Result<tokio_rustls::server::TlsStream<PreloginFramed<TcpStream>>, HandshakeError> {
    let acceptor = tls
        .acceptor
        .as_ref()
        .ok_or(HandshakeError::EncryptionRefused)?;
    let mut stream = acceptor
        .accept(PreloginFramed::new(tcp))
        .await
        .map_err(HandshakeError::Tls)?;
    stream.get_mut().0.handshake_complete();
    Ok(stream)
}

/// The server's answer in the encryption negotiation table [MS-TDS 2.2.6.5].
fn choose_encryption(tls: &ListenerTls, client: u8) -> Result<Encryption, HandshakeError> {
    // The high bit asks for a client certificate; Sluice does not use one.
    let client = client & !encryption::CLIENT_CERT;
    match (tls.mode, client) {
        (ListenTlsMode::Off, encryption::ON | encryption::REQ) => {
            Err(HandshakeError::EncryptionRefused)
        }
        (ListenTlsMode::Off, _) => Ok(Encryption::None),
        (ListenTlsMode::Optional, encryption::NOT_SUP) => Ok(Encryption::None),
        (ListenTlsMode::Optional, encryption::OFF) => Ok(Encryption::LoginOnly),
        (ListenTlsMode::Optional, _) => Ok(Encryption::Full),
        (ListenTlsMode::Required, encryption::NOT_SUP) => Err(HandshakeError::EncryptionRequired),
        (ListenTlsMode::Required, _) => Ok(Encryption::Full),
    }
}

/// The encryption byte of our PRELOGIN reply for each outcome.
fn reply_encryption(tls: &ListenerTls, outcome: &Encryption) -> u8 {
    match (tls.mode, outcome) {
        (_, Encryption::None) => encryption::NOT_SUP,
        (_, Encryption::LoginOnly) => encryption::OFF,
        (ListenTlsMode::Required, _) => encryption::REQ,
        _ => encryption::ON,
    }
}

async fn read_prelogin<S: AsyncRead + Unpin>(
    stream: &mut S,
    tls: &ListenerTls,
) -> Result<PreLogin, HandshakeError> {
    let mut reader = PacketReader::new(stream);
    reader.set_max_packet(DEFAULT_PACKET_SIZE);
    let (_, payload) = reader
        .read_message(&[PacketType::PRELOGIN], tls.max_login_bytes)
        .await?;
    if reader.buffered() > 0 {
        return Err(HandshakeError::UnexpectedBytes(reader.buffered()));
    }
    PreLogin::decode(&payload).map_err(HandshakeError::PreLogin)
}

async fn write_prelogin_reply<S: AsyncWrite + Unpin>(
    stream: &mut S,
    tls: &ListenerTls,
    encryption_reply: u8,
) -> Result<(), HandshakeError> {
    let reply = PreLogin {
        version: Some(PreLoginVersion {
            version: tls.version,
            sub_build: 0,
        }),
        encryption: Some(encryption_reply),
        instance: Some(vec![0]),
        thread_id: Some(0),
        // MARS is refused: one request at a time per connection.
        mars: Some(0),
        ..PreLogin::default()
    };
    let mut payload = Vec::new();
    reply.encode(&mut payload);
    // SQL Server answers PRELOGIN with a tabular-result packet (type 0x04).
    write_message(
        stream,
        PacketType::TABULAR_RESULT,
        0,
        &payload,
        DEFAULT_PACKET_SIZE,
    )
    .await?;
    stream.flush().await?;
    Ok(())
}

async fn read_login7<S: AsyncRead + Unpin>(
    stream: &mut S,
    tls: &ListenerTls,
) -> Result<Login7, HandshakeError> {
    let mut reader = PacketReader::new(stream);
    let (_, payload) = reader
        .read_message(&[PacketType::LOGIN7], tls.max_login_bytes)
        .await?;
    if reader.buffered() > 0 {
        return Err(HandshakeError::UnexpectedBytes(reader.buffered()));
    }
    Login7::decode(&payload).map_err(HandshakeError::Login7)
}

impl ListenerTls {
    pub fn new(
        mode: ListenTlsMode,
        configs: Option<crate::tls::ListenerTlsConfigs>,
        max_login_bytes: usize,
        version: u32,
        server_name: String,
    ) -> Self {
        let (acceptor, strict_acceptor) = match configs {
            Some(c) => (
                Some(TlsAcceptor::from(c.prelogin)),
                Some(TlsAcceptor::from(c.strict)),
            ),
            None => (None, None),
        };
        ListenerTls {
            mode,
            acceptor,
            strict_acceptor,
            max_login_bytes,
            version,
            server_name,
        }
    }
}
