//! Messages Sluice itself writes to a client: the login reply and errors.
//! Every client-visible error goes through here, as an ERROR token with a
//! real message number and severity, then DONE with the error bit.

use crate::backend::{BackendError, ServerInfo};
use crate::tds::login7::Login7;
use crate::tds::token::done::{Done, DoneKind, DoneStatus};
use crate::tds::token::env_change::EnvChange;
use crate::tds::token::feature_ext_ack::FeatureExtAck;
use crate::tds::token::login_ack::LoginAck;
use crate::tds::token::message::ServerMessage;

/// Login failed for user '%s' [SQL Server error 18456].
pub const LOGIN_FAILED: u32 = 18456;
/// "Database is not currently available": drivers treat it as transient and retry.
pub const BACKEND_UNAVAILABLE: u32 = 40613;
/// "The request limit for the database is %d and has been reached": Azure
/// SQL's resource-limit error, which SqlClient and EF Core retry.
pub const REQUEST_LIMIT_REACHED: u32 = 10928;
/// Could not find prepared statement with handle %d.
pub const UNKNOWN_PREPARED_HANDLE: u32 = 8179;
/// Generic connection-level failure reported by the proxy.
pub const PROXY_ERROR: u32 = 50000;
/// Could not connect because the maximum number of '%d' user connections
/// has already been reached [SQL Server error 17809].
pub const TOO_MANY_CLIENTS: u32 = 17809;
/// "The service is currently busy": Azure SQL's answer under load, which
/// drivers' retry policies treat as transient, like 40613.
pub const SERVER_BUSY: u32 = 40501;
/// Changed database context to '%s'.
const DATABASE_CHANGED: u32 = 5701;
/// Changed language setting to %s.
const LANGUAGE_CHANGED: u32 = 5703;

/// A message from Sluice to one client, ready to become an ERROR token.
#[derive(Debug, Clone)]
pub struct ClientError {
    pub number: u32,
    pub class: u8,
    pub state: u8,
    pub message: String,
}

impl ClientError {
    pub fn login_failed(user: &str) -> Self {
        ClientError {
            number: LOGIN_FAILED,
            class: 14,
            state: 1,
            message: format!("Login failed for user '{user}'."),
        }
    }

    /// Past `listen.max_clients`: SQL Server's own message for a full
    /// server; severity 20, the connection closes.
    pub fn too_many_clients(max_clients: usize) -> Self {
        ClientError {
            number: TOO_MANY_CLIENTS,
            class: 20,
            state: 1,
            message: format!(
                "Could not connect because the maximum number of '{max_clients}' user \
                 connections has already been reached. The system administrator can raise \
                 listen.max_clients in Sluice's proxy.toml. The connection has been closed."
            ),
        }
    }

    /// Password checks are all taken and their queue is full: the login
    /// fails at once rather than waiting in an unbounded queue.
    pub fn server_busy() -> Self {
        ClientError {
            number: SERVER_BUSY,
            class: 20,
            state: 1,
            message: "The service is currently busy: Sluice has too many logins being \
                      verified. Retry the login shortly."
                .into(),
        }
    }

    /// A logged-in client that sent no request for `listen.idle_client_timeout_ms`.
    pub fn idle_timeout(limit: std::time::Duration) -> Self {
        ClientError {
            number: PROXY_ERROR,
            class: 20,
            state: 3,
            message: format!(
                "Sluice closed the connection: client_idle_timeout, no request for {} ms \
                 (listen.idle_client_timeout_ms)",
                limit.as_millis()
            ),
        }
    }

    /// A session still open when `listen.shutdown_timeout_ms` ran out.
    pub fn shutting_down(limit: std::time::Duration) -> Self {
        ClientError {
            number: PROXY_ERROR,
            class: 20,
            state: 4,
            message: format!(
                "Sluice is shutting down: the session did not end within {} ms \
                 (listen.shutdown_timeout_ms)",
                limit.as_millis()
            ),
        }
    }

    /// A backend Sluice could not use: 40613, naming the backend by its
    /// configured name only. The full detail (address, login, OS error) is
    /// logged here, where the client's error is made.
    pub fn backend_unavailable(error: &BackendError) -> Self {
        if let BackendError::PoolExhausted { max_size, .. } = error {
            tracing::warn!(backend = error.backend(), %error, "pool exhausted; the client gets error 10928");
            return ClientError::request_limit(*max_size, error);
        }
        tracing::warn!(backend = error.backend(), %error, "backend unavailable; the client gets error 40613");
        ClientError::backend_failed(error.client_message())
    }

    /// 10928 for a pool whose connections all stayed busy: a retryable
    /// "too busy", never taken for an outage. Severity 16 keeps the
    /// client's connection: the retry may run on it.
    pub fn request_limit(max_size: u32, detail: impl std::fmt::Display) -> Self {
        ClientError {
            number: REQUEST_LIMIT_REACHED,
            class: 16,
            state: 1,
            message: format!(
                "Resource ID : 1. The request limit for the database is {max_size} and has been reached. (Sluice: {detail}; retry, or raise pool.max_size / pool.checkout_timeout_ms)"
            ),
        }
    }

    /// 40613 for a backend connection that failed during a request;
    /// `detail` names the backend by its configured name, never its address.
    pub fn backend_failed(detail: impl std::fmt::Display) -> Self {
        ClientError {
            number: BACKEND_UNAVAILABLE,
            class: 16,
            state: 1,
            message: format!("Sluice could not reach the backend: {detail}"),
        }
    }

    /// A request Sluice cannot carry out; the connection stays usable.
    pub fn request(detail: impl std::fmt::Display) -> Self {
        ClientError {
            number: PROXY_ERROR,
            class: 16,
            state: 1,
            message: detail.to_string(),
        }
    }

    /// SQL Server's own answer to sp_execute / sp_unprepare of a handle it
    /// never issued [error 8179].
    pub fn unknown_prepared_handle(handle: Option<i32>) -> Self {
        let handle = handle.map_or_else(|| "NULL".to_string(), |h| h.to_string());
        ClientError {
            number: UNKNOWN_PREPARED_HANDLE,
            class: 16,
            state: 1,
            message: format!("Could not find prepared statement with handle {handle}."),
        }
    }

    /// The backend connection that held the session's transaction or
    /// pinned state was lost. Severity 20 ends the client's connection, as
    /// SQL Server's would end with the connection: the client must not go
    /// on as if its transaction were still there.
    pub fn state_lost(detail: impl std::fmt::Display) -> Self {
        ClientError {
            number: PROXY_ERROR,
            class: 20,
            state: 2,
            message: format!(
                "Sluice closed the connection: the backend connection holding this session's \
                 transaction or session state was lost ({detail}); the transaction was not committed"
            ),
        }
    }

    pub fn protocol(detail: impl std::fmt::Display) -> Self {
        ClientError {
            number: PROXY_ERROR,
            class: 20,
            state: 1,
            message: format!("Sluice closed the connection: {detail}"),
        }
    }

    pub fn to_token(&self, server: &str) -> ServerMessage {
        ServerMessage {
            number: self.number,
            state: self.state,
            class: self.class,
            message: self.message.clone(),
            server: server.to_string(),
            procedure: String::new(),
            line: 0,
        }
    }
}

/// ERROR then a final DONE with the error bit: a complete response message.
pub fn error_response(error: &ClientError, server: &str) -> Vec<u8> {
    let mut out = Vec::new();
    error.to_token(server).encode_error(&mut out);
    Done {
        kind: DoneKind::Done,
        status: DoneStatus::ERROR,
        cur_cmd: 0,
        row_count: 0,
    }
    .encode(&mut out);
    out
}

/// A final DONE acknowledging an attention that reached no backend.
pub fn attention_ack() -> Vec<u8> {
    let mut out = Vec::new();
    Done {
        kind: DoneKind::Done,
        status: DoneStatus::ATTN,
        cur_cmd: 0,
        row_count: 0,
    }
    .encode(&mut out);
    out
}

/// Values of the login reply Sluice sends to a client.
pub struct LoginReplyParams<'a> {
    pub info: &'a ServerInfo,
    pub database: &'a str,
    /// The session's language: the client's LOGIN7 choice, else the backend's.
    pub language: &'a str,
    pub packet_size: usize,
    pub server: &'a str,
}

/// The login reply as SQL Server writes it [MS-TDS 4.2]: database,
/// collation and language ENVCHANGEs, LOGINACK, packet size, then a
/// FEATUREEXTACK when the client asked for features (acknowledging none:
/// Sluice forwards no feature end to end) and a final DONE.
pub fn login_reply(p: &LoginReplyParams<'_>, login: &Login7) -> Vec<u8> {
    let mut out = Vec::new();
    EnvChange::Database {
        new: p.database.to_string(),
        old: "master".to_string(),
    }
    .encode(&mut out);
    info(
        DATABASE_CHANGED,
        &format!("Changed database context to '{}'.", p.database),
        p.server,
    )
    .encode_info(&mut out);
    if !p.info.collation.is_empty() {
        EnvChange::SqlCollation {
            new: p.info.collation.clone(),
            old: Vec::new(),
        }
        .encode(&mut out);
    }
    EnvChange::Language {
        new: p.language.to_string(),
        old: String::new(),
    }
    .encode(&mut out);
    info(
        LANGUAGE_CHANGED,
        &format!("Changed language setting to {}.", p.language),
        p.server,
    )
    .encode_info(&mut out);
    LoginAck {
        interface: 1,
        tds_version: negotiated_tds_version(login.tds_version, p.info.tds_version),
        prog_name: p.info.prog_name.clone(),
        version: p.info.prog_version,
    }
    .encode(&mut out);
    EnvChange::PacketSize {
        new: p.packet_size.to_string(),
        old: p.packet_size.to_string(),
    }
    .encode(&mut out);
    if login.wants_feature_ext() {
        FeatureExtAck {
            features: Vec::new(),
        }
        .encode(&mut out);
    }
    Done {
        kind: DoneKind::Done,
        status: DoneStatus::default(),
        cur_cmd: 0,
        row_count: 0,
    }
    .encode(&mut out);
    out
}

fn info(number: u32, message: &str, server: &str) -> ServerMessage {
    ServerMessage {
        number,
        state: 1,
        class: 0,
        message: message.to_string(),
        server: server.to_string(),
        procedure: String::new(),
        line: 0,
    }
}

/// The TDS version both the client and the backend speak. Versions are
/// compared in their wire order (7.4 = 0x74000004 > 7.3B = 0x730B0003).
/// TDS 8.0 clients (strict encryption) send 0x08000000 and are answered
/// with 7.4, as SQL Server does: 8.0 changes the transport, not the tokens.
fn negotiated_tds_version(client: u32, backend: u32) -> u32 {
    let client = if client >> 24 == 0x08 {
        TDS_7_4
    } else {
        client
    };
    client.min(backend).max(0x7100_0001)
}

const TDS_7_4: u32 = 0x7400_0004;
