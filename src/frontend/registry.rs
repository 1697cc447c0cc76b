//! The logged-in clients, for the admin API's `/clients` and `/status`.
//! A session registers at login and updates its record at request
//! boundaries only; dropping the registration removes it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Instant, SystemTime};

/// Every logged-in client.
#[derive(Default)]
pub struct ClientRegistry {
    clients: Mutex<HashMap<u64, Arc<ClientRecord>>>,
    next_id: AtomicU64,
}

/// Who a client is: fixed at login.
pub struct ClientRecord {
    pub spid: u16,
    pub user: String,
    pub application: String,
    pub peer: SocketAddr,
    pub connected_at: SystemTime,
    state: Mutex<ClientState>,
}

/// What a client is doing, as of its last request boundary.
#[derive(Debug, Clone)]
pub struct ClientState {
    pub database: String,
    /// A request is running.
    pub busy: bool,
    /// When the last request ended (login, before the first).
    pub last_request_end: Instant,
    pub in_transaction: bool,
    /// The oldest active pin's label (`PinReason::label`).
    pub pin: Option<&'static str>,
    /// Backend connections the session holds between requests.
    pub connections_held: u8,
}

/// One client as `/clients` shows it.
#[derive(Debug, Clone)]
pub struct ClientSnapshot {
    pub spid: u16,
    pub user: String,
    pub application: String,
    pub peer: SocketAddr,
    pub connected_at: SystemTime,
    pub state: ClientState,
}

/// A session's place in the registry; removed when dropped.
pub struct Registration {
    registry: Arc<ClientRegistry>,
    id: u64,
    record: Arc<ClientRecord>,
}

/// Who logged in, for [`ClientRegistry::register`].
pub struct NewClient {
    pub spid: u16,
    pub user: String,
    pub application: String,
    pub peer: SocketAddr,
    pub database: String,
}

impl ClientRegistry {
    pub fn register(self: &Arc<Self>, client: NewClient) -> Registration {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let record = Arc::new(ClientRecord {
            spid: client.spid,
            user: client.user,
            application: client.application,
            peer: client.peer,
            connected_at: SystemTime::now(),
            state: Mutex::new(ClientState {
                database: client.database,
                busy: false,
                last_request_end: Instant::now(),
                in_transaction: false,
                pin: None,
                connections_held: 0,
            }),
        });
        self.map().insert(id, record.clone());
        Registration {
            registry: self.clone(),
            id,
            record,
        }
    }

    /// Logged-in clients.
    pub fn len(&self) -> usize {
        self.map().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every client, by SPID.
    pub fn snapshot(&self) -> Vec<ClientSnapshot> {
        let records: Vec<_> = self.map().values().cloned().collect();
        let mut clients: Vec<_> = records
            .iter()
            .map(|r| ClientSnapshot {
                spid: r.spid,
                user: r.user.clone(),
                application: r.application.clone(),
                peer: r.peer,
                connected_at: r.connected_at,
                state: lock(&r.state).clone(),
            })
            .collect();
        clients.sort_by_key(|c| c.spid);
        clients
    }

    /// The map is consistent after any panic: a poisoned lock is taken over.
    fn map(&self) -> MutexGuard<'_, HashMap<u64, Arc<ClientRecord>>> {
        lock(&self.clients)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Registration {
    /// Changes what the admin API shows of this client.
    pub fn update(&self, change: impl FnOnce(&mut ClientState)) {
        change(&mut lock(&self.record.state));
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.registry.map().remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(spid: u16) -> NewClient {
        NewClient {
            spid,
            user: "app".into(),
            application: "test".into(),
            peer: "127.0.0.1:5000".parse().unwrap(),
            database: "master".into(),
        }
    }

    #[test]
    fn a_registration_lives_as_long_as_its_session() {
        let registry = Arc::new(ClientRegistry::default());
        let first = registry.register(client(52));
        let second = registry.register(client(51));
        second.update(|s| s.in_transaction = true);
        let clients = registry.snapshot();
        assert_eq!(clients.iter().map(|c| c.spid).collect::<Vec<_>>(), [51, 52]);
        assert!(clients[0].state.in_transaction && !clients[1].state.in_transaction);
        drop(first);
        assert_eq!(registry.len(), 1);
        drop(second);
        assert!(registry.is_empty());
    }
}
