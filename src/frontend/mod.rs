//! The client side: accept, negotiate encryption, authenticate, then run
//! the client's session.
mod admission;
mod auth;
mod handshake;
mod phc;
mod registry;
mod reply;
mod session;
mod throttle;
mod transaction_emulation;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

pub use admission::{Admission, ClientSlot, VerificationGate};
pub use auth::{UserDirectory, Verdict};
pub use handshake::{Encryption, ListenerTls};
pub use phc::hash_password;
pub use registry::{
    ClientRecord, ClientRegistry, ClientSnapshot, ClientState, NewClient, Registration,
};
pub use reply::ClientError;
pub use session::{ClientIdentity, Session, SessionContext, SessionError};

use crate::backend::{BackendError, BackendLogin, ServerInfo};
use crate::config::PoolMode;
use crate::metrics::LoginResult;
use crate::server::{Generation, Proxy};
use crate::tds::login7::Login7;
use crate::tds::packet::{PacketType, DEFAULT_PACKET_SIZE, MAX_PACKET_SIZE, MIN_PACKET_SIZE};
use crate::transport::{
    set_keepalive, split, write_message, ClientConn, IdleLimit, PacketReader, WriteSide,
};
use handshake::{negotiate, HandshakeError};
use reply::{error_response, login_reply, LoginReplyParams};

/// Why a client never got past login.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error(transparent)]
    Handshake(#[from] HandshakeError),
    #[error("login timed out")]
    Timeout,
    #[error("{reason}")]
    Refused { result: LoginResult, reason: String },
    #[error("writing the login reply: {0}")]
    Write(#[from] std::io::Error),
}

impl LoginError {
    /// What the login counts as in `sluice_logins_total`.
    fn result(&self) -> LoginResult {
        match self {
            LoginError::Handshake(_) => LoginResult::Handshake,
            LoginError::Timeout => LoginResult::Timeout,
            LoginError::Refused { result, .. } => *result,
            LoginError::Write(_) => LoginResult::ClientGone,
        }
    }
}

/// Serves one accepted TCP connection to its end. `slot` is its place
/// under `listen.max_clients`, held until the session ends; a connection
/// accepted without one is refused with error 17809.
pub async fn handle_client(
    proxy: Arc<Proxy>,
    tcp: TcpStream,
    peer: SocketAddr,
    slot: Option<ClientSlot>,
) {
    tcp.set_nodelay(true).ok();
    // The client logs in under the configuration in force now; its
    // session follows later reloads from request to request.
    let live = proxy.current();
    set_keepalive(&tcp, live.config.limits.tcp_keepalive());
    // Waiting for a handshake turn counts against the login timeout: while
    // handshakes are full a connection is delayed, not refused.
    let deadline = tokio::time::Instant::now() + live.config.listen.login_timeout();
    let turn = tokio::time::timeout_at(deadline, proxy.admission.handshake_turn()).await;
    let Ok(turn) = turn else {
        tracing::info!(%peer, "login timed out waiting for a handshake turn (listen.max_pending_logins)");
        LoginResult::Timeout.record();
        return;
    };
    let login = establish(&proxy, &live, tcp, peer, slot.is_some());
    let session = match tokio::time::timeout_at(deadline, login).await {
        Ok(Ok(session)) => session,
        Ok(Err(e)) => {
            tracing::info!(%peer, error = %e, "login failed");
            e.result().record();
            return;
        }
        Err(_) => {
            tracing::info!(%peer, "login timed out");
            LoginResult::Timeout.record();
            return;
        }
    };
    LoginResult::Ok.record();
    drop(turn);
    if let Err(e) = session.run().await {
        tracing::info!(%peer, error = %e, "session ended");
    }
    drop(slot);
}

/// PRELOGIN, TLS, LOGIN7, authentication and the login reply. A client
/// over `listen.max_clients` (`has_slot` false) is refused after its
/// LOGIN7, not at PRELOGIN: drivers read the PRELOGIN reply as PRELOGIN
/// options (tiberius decodes an ERROR token there as unknown options and
/// fails with an I/O error), while an ERROR token answering LOGIN7 is
/// reported with its number and text, as SQL Server's own 17809 is.
async fn establish(
    proxy: &Arc<Proxy>,
    live: &Generation,
    tcp: TcpStream,
    peer: SocketAddr,
    has_slot: bool,
) -> Result<Session, LoginError> {
    let handshake = negotiate(tcp, &live.listener_tls).await?;
    let login = handshake.login;
    let handshake_encryption = handshake.encryption;
    let (read, mut writer) = split(handshake.stream);
    let admitted = if has_slot {
        check_login(proxy, live, peer, &login).await
    } else {
        let error = ClientError::too_many_clients(proxy.admission.max_clients());
        Err((LoginResult::MaxClients, error))
    };
    if let Err((result, refusal)) = admitted {
        let reason = refusal.message.clone();
        send_login_error(live, &mut writer, &refusal).await;
        return Err(LoginError::Refused { result, reason });
    }
    let database = if login.database.is_empty() {
        live.config.primary.database.clone()
    } else {
        login.database.clone()
    };
    let backend_login = backend_login_of(live, &login);
    let info = match login_info(live, &database, backend_login.as_deref()).await {
        Ok(info) => info,
        Err(e) => {
            let error = backend_login_error(&e);
            send_login_error(live, &mut writer, &error).await;
            let result = LoginResult::BackendUnavailable;
            return Err(LoginError::Refused {
                result,
                reason: e.to_string(),
            });
        }
    };
    let packet_size = client_packet_size(&login);
    let spid = proxy.next_spid();
    let params = LoginReplyParams {
        info: &info,
        database: if info.database.is_empty() {
            &database
        } else {
            &info.database
        },
        language: login_language(&login, &info).unwrap_or(&info.language),
        packet_size,
        server: &live.config.listen.server_name,
    };
    let reply = login_reply(&params, &login);
    write_message(
        &mut writer,
        PacketType::TABULAR_RESULT,
        spid,
        &reply,
        packet_size,
    )
    .await?;
    let mut reader = PacketReader::new(read);
    reader.set_max_packet(packet_size.max(DEFAULT_PACKET_SIZE));
    tracing::debug!(user = %login.username, %database, spid, encryption = ?handshake_encryption, "client logged in");
    let idle_limit = live
        .config
        .listen
        .idle_client_timeout()
        .map(|after| IdleLimit {
            after,
            farewell: error_response(
                &ClientError::idle_timeout(after),
                &live.config.listen.server_name,
            ),
        });
    let client = ClientConn::new(
        reader,
        writer,
        spid,
        packet_size,
        live.config.limits.client_write_timeout(),
    )
    .with_idle_limit(idle_limit);
    let identity = ClientIdentity {
        user: login.username.clone(),
        application: login.app_name.clone(),
        backend_login,
    };
    let registration = proxy.clients.register(NewClient {
        spid,
        user: login.username.clone(),
        application: login.app_name.clone(),
        peer,
        database: database.clone(),
    });
    let session = Session::new(proxy.session_contexts(), client, identity, database)
        .with_registration(registration);
    Ok(match login_language(&login, &info) {
        Some(language) => session.with_login_language(language),
        None => session,
    })
}

/// The language the client's LOGIN7 asked for, when it is not the one
/// Sluice's own backend login got.
fn login_language<'a>(login: &'a Login7, info: &ServerInfo) -> Option<&'a str> {
    let language = login.language.trim();
    (!language.is_empty() && !language.eq_ignore_ascii_case(&info.language)).then_some(language)
}

/// The values of the login reply, for a database proven to exist: those
/// the primary's pool remembers from its last login to it, else learned
/// with a connection that goes straight back. While the primary is down (or
/// cannot be reached) a replica's serve, so that clients whose work is
/// reads keep working; a primary that health checks call down is still
/// tried last, so a refused login reports the backend's own error. No
/// connection is held for the client: its requests check one out. A busy
/// pool is not taken for an unreachable primary.
async fn login_info(
    live: &Generation,
    database: &str,
    as_login: Option<&BackendLogin>,
) -> Result<Arc<ServerInfo>, BackendError> {
    let primary = live.cluster.primary();
    if let Some(info) = primary.pools().known_login_info(database, as_login)? {
        return Ok(info);
    }
    if primary.is_down() {
        if let Some(info) = replica_login_info(live, database, as_login).await {
            tracing::warn!("primary down at login; login values come from a replica");
            return Ok(info);
        }
    }
    let primary_error = match primary.login_info(database, as_login).await {
        Ok(info) => return Ok(info),
        Err(e @ (BackendError::LoginRefused { .. } | BackendError::PoolExhausted { .. })) => {
            return Err(e)
        }
        Err(e) => e,
    };
    match replica_login_info(live, database, as_login).await {
        Some(info) => {
            tracing::warn!(error = %primary_error, "primary unavailable at login; login values come from a replica");
            Ok(info)
        }
        None => Err(primary_error),
    }
}

async fn replica_login_info(
    live: &Generation,
    database: &str,
    as_login: Option<&BackendLogin>,
) -> Option<Arc<ServerInfo>> {
    for replica in live.cluster.replicas() {
        if !replica.is_available() {
            continue;
        }
        if let Ok(info) = replica.pools().login_info(database, as_login).await {
            return Some(info);
        }
    }
    None
}

/// The verified user's own backend login, if `[[users]]` gives it one. In
/// session mode its connections are the client's alone, so they carry the
/// client's application and host name too (`APP_NAME()`, `HOST_NAME()`);
/// in transaction mode clients with the same login share them.
fn backend_login_of(live: &Generation, login: &Login7) -> Option<Arc<BackendLogin>> {
    let user = live
        .config
        .users
        .iter()
        .find(|u| u.name == login.username)?;
    let (backend_user, password) = user.backend_login()?;
    let own_connections = live.config.pool.mode == PoolMode::Session;
    Some(Arc::new(BackendLogin {
        user: backend_user,
        password,
        application: own_connections.then(|| login.app_name.clone()),
        host: own_connections.then(|| login.hostname.clone()),
    }))
}

/// Authentication: only SQL Server logins listed in `[[users]]`. An
/// address locked out after failed logins gets the same 18456 at once,
/// without a password check.
async fn check_login(
    proxy: &Proxy,
    live: &Generation,
    peer: SocketAddr,
    login: &Login7,
) -> Result<(), (LoginResult, ClientError)> {
    if !login.sspi.is_empty() || login.username.is_empty() {
        let error = ClientError {
            message: "Login failed: Sluice accepts SQL Server authentication only.".into(),
            ..ClientError::login_failed("")
        };
        return Err((LoginResult::Unsupported, error));
    }
    let throttle = &proxy.admission.throttle;
    if let Err(locked) = throttle.check(peer.ip()) {
        // Debug only: a flood would write a line per attempt; the lockout
        // itself is logged once, as a warning, where it starts.
        tracing::debug!(%peer, user = %login.username, remaining_ms = locked.0.as_millis() as u64, "login refused: the address is locked out after failed logins");
        let error = ClientError::login_failed(&login.username);
        return Err((LoginResult::LockedOut, error));
    }
    let still_admitted = || throttle.check(peer.ip()).is_ok();
    let verdict = live
        .users
        .verify(&login.username, &login.password, still_admitted)
        .await;
    match verdict {
        Verdict::Accepted => Ok(()),
        Verdict::Rejected => {
            throttle.record_failure(peer.ip());
            let error = ClientError::login_failed(&login.username);
            Err((LoginResult::BadPassword, error))
        }
        Verdict::Busy => Err((LoginResult::Busy, ClientError::server_busy())),
    }
}

/// A backend that refused our login (a missing database, say) is reported
/// with the backend's own error number and message (unless the message names
/// Sluice's backend login); an unreachable one as "not available". Either
/// way the detail goes to the log, not to the client.
fn backend_login_error(e: &BackendError) -> ClientError {
    let BackendError::LoginRefused {
        number,
        class,
        state,
        ..
    } = e
    else {
        return ClientError::backend_unavailable(e);
    };
    tracing::warn!(error = %e, "backend refused Sluice's login; the client gets its error");
    ClientError {
        number: *number,
        class: *class,
        state: *state,
        message: e.refusal_for_client().unwrap_or_default(),
    }
}

async fn send_login_error(live: &Generation, writer: &mut WriteSide, error: &ClientError) {
    let payload = error_response(error, &live.config.listen.server_name);
    let sent = write_message(
        writer,
        PacketType::TABULAR_RESULT,
        0,
        &payload,
        DEFAULT_PACKET_SIZE,
    )
    .await;
    if sent.is_ok() {
        writer.shutdown().await.ok();
    }
}

/// The packet size the client asked for, within what TDS allows; 0 means
/// "the server's default" [MS-TDS 2.2.6.4].
fn client_packet_size(login: &Login7) -> usize {
    match login.packet_size as usize {
        0 => DEFAULT_PACKET_SIZE,
        n => n.clamp(MIN_PACKET_SIZE, MAX_PACKET_SIZE),
    }
}
