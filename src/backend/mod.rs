//! Connections to SQL Server backends: connect and log in with Sluice's own
//! credentials, keep them in one bb8 pool per backend and database, and
//! speak the request/response protocol on them.
mod cluster;
mod conn;
mod connect;
mod pool;
mod relay;

pub use cluster::{Cluster, InFlight, Primary, Replica};
pub use conn::{BackendConn, ConnId, ExchangeError, ServerInfo};
pub use connect::{connect, BackendError, BackendTarget};
pub use pool::{BackendPools, PooledBackend};
pub use relay::{RelayEnd, RelayOptions, Relayed, ResponseSummary};
