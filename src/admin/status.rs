//! The JSON of `/status` and `/clients`.

use std::time::{Instant, SystemTime};

use serde_json::{json, Value};

use crate::backend::PoolUsage;
use crate::frontend::ClientSnapshot;
use crate::monitor::BackendHealth;
use crate::server::Proxy;

/// Backends, clients, configuration, uptime, version, draining.
pub fn status(proxy: &Proxy) -> Value {
    let cluster = proxy.cluster();
    let primary = cluster.primary();
    let mut backends = vec![backend(
        primary.name(),
        "primary",
        primary.health(),
        primary.pools().usage(),
    )];
    for replica in cluster.replicas() {
        backends.push(backend(
            replica.name(),
            "replica",
            replica.health(),
            replica.pools().usage(),
        ));
    }
    let clients = proxy.clients.snapshot();
    let active = clients.iter().filter(|c| c.state.busy).count();
    let in_transaction = clients.iter().filter(|c| c.state.in_transaction).count();
    let config = proxy.config();
    let origin = &config.origin;
    json!({
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_seconds": proxy.started.elapsed().as_secs(),
        "draining": proxy.shutdown.is_draining(),
        "config": {
            "path": origin.path.display().to_string(),
            "hash": origin.hash,
            "loaded_at_unix": unix_seconds(origin.loaded_at),
        },
        "clients": {
            "logged_in": clients.len(),
            "active": active,
            "idle": clients.len() - active,
            "in_transaction": in_transaction,
            "connections": proxy.admission.connected(),
            "max_clients": proxy.admission.max_clients(),
        },
        "backends": backends,
    })
}

fn backend(name: &str, role: &str, health: &BackendHealth, pool: PoolUsage) -> Value {
    json!({
        "name": name,
        "role": role,
        "state": health.state().as_str(),
        "lag_ms": health.lag().map(|lag| lag.as_millis() as u64),
        "pool": {
            "open": pool.open,
            "idle": pool.idle,
            "in_use": (pool.open as usize).saturating_sub(pool.idle),
            "waiting": pool.waiting,
        },
    })
}

/// Every logged-in client, by SPID.
pub fn clients(proxy: &Proxy) -> Value {
    let now = Instant::now();
    let clients: Vec<Value> = proxy
        .clients
        .snapshot()
        .iter()
        .map(|c| client(c, now))
        .collect();
    json!({ "clients": clients })
}

fn client(c: &ClientSnapshot, now: Instant) -> Value {
    let idle_ms = if c.state.busy {
        0
    } else {
        now.saturating_duration_since(c.state.last_request_end)
            .as_millis() as u64
    };
    json!({
        "spid": c.spid,
        "user": c.user,
        "application": c.application,
        "address": c.peer.to_string(),
        "database": c.state.database,
        "connected_at_unix": unix_seconds(c.connected_at),
        "busy": c.state.busy,
        "idle_ms": idle_ms,
        "in_transaction": c.state.in_transaction,
        "pin": c.state.pin,
        "connections_held": c.state.connections_held,
    })
}

fn unix_seconds(at: SystemTime) -> u64 {
    at.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}
