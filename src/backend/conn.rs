//! One logged-in backend connection.

use std::sync::Arc;

use tokio::io::{AsyncWriteExt, ReadHalf, WriteHalf};

use crate::tds::packet::{PacketType, Status};
use crate::transport::{BoxStream, PacketReader};

/// Largest reply to a batch Sluice runs itself (settings replay, health
/// checks, lag queries): a few tokens, never a client's result.
const MAX_OWN_REPLY: usize = 1024 * 1024;

/// What a backend told Sluice when it logged in. The client's login reply
/// mirrors these values, since Sluice answers the client's login itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerInfo {
    pub tds_version: u32,
    pub prog_name: String,
    pub prog_version: [u8; 4],
    /// The 5-byte SQL collation of the login database.
    pub collation: Vec<u8>,
    pub database: String,
    pub language: String,
}

/// A raw TDS connection to a backend, after LOGIN7. Requests and responses
/// pass through it as packets.
pub struct BackendConn {
    pub reader: PacketReader<ReadHalf<BoxStream>>,
    pub writer: WriteHalf<BoxStream>,
    /// Packet size the backend agreed to in its login reply.
    pub packet_size: usize,
    pub info: Arc<ServerInfo>,
    /// Served a client before: the next request carries RESETCONNECTION.
    pub needs_reset: bool,
    /// In an unknown protocol state (an I/O error, a failed drain): the pool
    /// drops it instead of handing it out again.
    pub broken: bool,
    pub backend: Arc<str>,
}

impl BackendConn {
    pub fn mark_broken(&mut self) {
        self.broken = true;
    }

    /// Sends one SQL batch of Sluice's own [MS-TDS 2.2.6.7] (ALL_HEADERS
    /// with transaction descriptor 0 and one outstanding request:
    /// auto-commit) and returns the whole reply, at most 1 MiB. A pending
    /// reset goes with it, as RESETCONNECTION on the first packet.
    pub async fn run_batch(&mut self, sql: &str) -> Result<Vec<u8>, std::io::Error> {
        let mut payload = Vec::with_capacity(22 + sql.len() * 2);
        crate::tds::request::encode_all_headers(&mut payload, 0, 1);
        crate::tds::read::put_utf16(&mut payload, sql);
        let first_status = if self.needs_reset {
            Status::RESET_CONNECTION
        } else {
            Status::NORMAL
        };
        let mut out = Vec::new();
        crate::tds::packet::encode_message(
            &mut out,
            PacketType::SQL_BATCH,
            first_status,
            0,
            &payload,
            self.packet_size,
        );
        self.writer.write_all(&out).await?;
        self.writer.flush().await?;
        self.needs_reset = false;
        let (_, reply) = self
            .reader
            .read_message(&[PacketType::TABULAR_RESULT], MAX_OWN_REPLY)
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        Ok(reply)
    }
}

impl std::fmt::Debug for BackendConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackendConn")
            .field("backend", &self.backend)
            .field("packet_size", &self.packet_size)
            .field("needs_reset", &self.needs_reset)
            .field("broken", &self.broken)
            .finish()
    }
}
