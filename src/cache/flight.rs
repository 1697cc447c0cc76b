//! Single-flight: concurrent misses on one key run the query once; the
//! others wait for it, then look again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use super::key::Key;

type Running = Arc<Mutex<HashMap<Key, watch::Receiver<()>>>>;

#[derive(Default)]
pub struct Flights {
    running: Running,
}

/// A miss's part in its key's flight.
pub enum Flight {
    /// Runs the query; the others wake when this guard drops (stored or not).
    Leader(FlightGuard),
    /// Another request runs it: wait with [`Flight::landed`].
    Follower(watch::Receiver<()>),
}

pub struct FlightGuard {
    running: Running,
    key: Key,
    // Dropped with the guard: every follower's `changed` returns.
    _landed: watch::Sender<()>,
}

impl Flights {
    pub fn join(&self, key: Key) -> Flight {
        let mut running = lock(&self.running);
        if let Some(landing) = running.get(&key) {
            return Flight::Follower(landing.clone());
        }
        let (landed, landing) = watch::channel(());
        running.insert(key, landing);
        Flight::Leader(FlightGuard {
            running: self.running.clone(),
            key,
            _landed: landed,
        })
    }
}

impl Flight {
    /// Waits until the leader is done, however it ended.
    pub async fn landed(mut landing: watch::Receiver<()>) {
        // Only an error (the sender gone) ends the wait: nothing is sent.
        while landing.changed().await.is_ok() {}
    }
}

impl Drop for FlightGuard {
    fn drop(&mut self) {
        lock(&self.running).remove(&self.key);
    }
}

fn lock(running: &Running) -> std::sync::MutexGuard<'_, HashMap<Key, watch::Receiver<()>>> {
    running.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn followers_wake_when_the_leader_drops_and_the_key_is_free_again() {
        let flights = Flights::default();
        let key = Key([1; 16]);
        let Flight::Leader(guard) = flights.join(key) else {
            panic!("the first miss leads");
        };
        let Flight::Follower(landing) = flights.join(key) else {
            panic!("the second miss follows");
        };
        let waiting = tokio::spawn(Flight::landed(landing));
        drop(guard);
        waiting.await.expect("woke");
        assert!(matches!(flights.join(key), Flight::Leader(_)));
    }
}
