//! Sluice: a read/write-splitting TDS proxy for SQL Server and Azure SQL.
//!
//! The folder layout follows the data path: [`frontend`] accepts clients,
//! [`backend`] holds pooled server connections, [`tds`] is the sans-IO wire
//! codec both sides share, [`transport`] and [`tls`] move packets.
pub mod admin;
pub mod backend;
pub mod cache;
pub mod catalog;
pub mod classify;
pub mod config;
pub mod frontend;
pub mod metrics;
pub mod monitor;
pub mod redis;
pub mod rlimit;
pub mod router;
pub mod server;
pub mod shadow;
pub mod shutdown;
pub mod tds;
#[cfg(test)]
mod testing;
pub mod timer;
pub mod tls;
pub mod transport;
