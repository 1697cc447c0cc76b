//! One logged-in backend connection.

use std::sync::Arc;

use tokio::io::{ReadHalf, WriteHalf};

use crate::transport::{BoxStream, PacketReader};

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
