//! Connections to SQL Server backends: connect and log in with Sluice's own
//! credentials, keep them in a pool per backend and database, and
//! speak the request/response protocol on them.
mod cluster;
mod conn;
mod connect;
mod pool;
mod relay;
mod settings;

pub use cluster::{Cluster, InFlight, Primary, Replica};
pub use conn::{BackendConn, ConnId, ExchangeError, ServerInfo};
pub use connect::{connect, BackendError, BackendLogin, BackendTarget};
pub use pool::{BackendPools, DatabasePoolHandle, PoolUsage, PooledBackend};
pub use relay::{Consumed, RelayEnd, RelayOptions, Relayed, ResponseSummary};
pub use settings::{plan as plan_settings, Settings, SettingsPlan, TooManySettings, MAX_SETTINGS};
pub use settings::{DATABASE as DATABASE_SETTING, ISOLATION as ISOLATION_SETTING};
