//! Connections to SQL Server backends: connect and log in with Sluice's own
//! credentials, and keep them in one bb8 pool per backend and database.
mod conn;
mod connect;
mod pool;

pub use conn::{BackendConn, ServerInfo};
pub use connect::{connect, BackendError, BackendTarget};
pub use pool::{BackendPools, PooledBackend};
