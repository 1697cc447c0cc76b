//! Admission control for client logins: how many clients may be connected,
//! how many handshakes may be in flight, how many argon2 verifications may
//! run and wait, and which addresses are locked out after failed logins.
//! Each bound is a semaphore whose permit is an RAII guard, so a client
//! task that ends in any way (error, timeout, panic) gives its place back.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::throttle::{LoginThrottle, ThrottlePolicy};
use crate::config::Listen;

/// The listener's bounds, shared by every client task.
pub struct Admission {
    clients: Limit,
    handshakes: Limit,
    /// Connections waiting for a handshake permit.
    waiting: Arc<AtomicUsize>,
    pub throttle: LoginThrottle,
}

/// A connected client's place under `listen.max_clients`, held from accept
/// to the end of its session.
pub struct ClientSlot {
    _place: Place,
}

/// A handshake's place under `listen.max_pending_logins`, held from
/// PRELOGIN to the login reply.
pub struct HandshakeTurn {
    _place: Place,
}

impl Admission {
    pub fn new(listen: &Listen) -> Self {
        Admission {
            clients: Limit::new(listen.max_clients),
            handshakes: Limit::new(listen.max_pending_logins),
            waiting: Arc::new(AtomicUsize::new(0)),
            throttle: LoginThrottle::new(ThrottlePolicy::from_config(listen)),
        }
    }

    /// A reload's new `[listen]` limits. Clients over a smaller
    /// `max_clients` stay connected; no new one is let in until enough
    /// have left.
    pub fn set_limits(&self, listen: &Listen) {
        self.clients.resize(listen.max_clients);
        self.handshakes.resize(listen.max_pending_logins);
        self.throttle
            .set_policy(ThrottlePolicy::from_config(listen));
    }

    pub fn max_clients(&self) -> usize {
        self.clients.size()
    }

    /// A place for a newly accepted connection, or `None` when
    /// `max_clients` are connected. Never waits: the accept loop calls it.
    pub fn client_slot(&self) -> Option<ClientSlot> {
        let place = self.clients.try_take()?;
        Some(ClientSlot { _place: place })
    }

    /// Waits for a handshake permit; the caller bounds the wait (the login
    /// timeout), so a full server delays logins instead of refusing them.
    pub async fn handshake_turn(&self) -> HandshakeTurn {
        let _waiting = Waiting::enter(&self.waiting);
        HandshakeTurn {
            _place: self.handshakes.take().await,
        }
    }

    /// Connected clients (each holding a [`ClientSlot`]).
    pub fn connected(&self) -> usize {
        self.clients.taken()
    }

    /// Handshakes in flight (each holding a [`HandshakeTurn`]).
    pub fn handshakes(&self) -> usize {
        self.handshakes.taken()
    }

    /// Connections waiting for a handshake turn.
    pub fn waiting_for_handshake(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }
}

/// A semaphore whose size a reload can change. Growing adds permits;
/// shrinking forgets the free ones and takes back the rest as holders
/// return them (a background task waits for them), so places already
/// taken are never revoked. Places are counted apart from the semaphore,
/// whose free permits say nothing while a shrink is owed.
struct Limit {
    semaphore: Arc<Semaphore>,
    size: AtomicUsize,
    taken: Arc<AtomicUsize>,
}

/// One place taken under a [`Limit`].
struct Place {
    _permit: OwnedSemaphorePermit,
    taken: Arc<AtomicUsize>,
}

impl Drop for Place {
    fn drop(&mut self) {
        self.taken.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Limit {
    fn new(size: usize) -> Limit {
        Limit {
            semaphore: Arc::new(Semaphore::new(size)),
            size: AtomicUsize::new(size),
            taken: Arc::new(AtomicUsize::new(0)),
        }
    }

    fn size(&self) -> usize {
        self.size.load(Ordering::Relaxed)
    }

    fn taken(&self) -> usize {
        self.taken.load(Ordering::Relaxed)
    }

    fn place(&self, permit: OwnedSemaphorePermit) -> Place {
        self.taken.fetch_add(1, Ordering::Relaxed);
        Place {
            _permit: permit,
            taken: self.taken.clone(),
        }
    }

    fn try_take(&self) -> Option<Place> {
        let permit = self.semaphore.clone().try_acquire_owned().ok()?;
        Some(self.place(permit))
    }

    async fn take(&self) -> Place {
        let permit = self
            .semaphore
            .clone()
            .acquire_owned()
            .await
            .expect("an admission semaphore is never closed");
        self.place(permit)
    }

    fn resize(&self, size: usize) {
        let old = self.size.swap(size, Ordering::Relaxed);
        if size >= old {
            self.semaphore.add_permits(size - old);
            return;
        }
        let owed = (old - size) - self.semaphore.forget_permits(old - size);
        let Ok(owed) = u32::try_from(owed) else {
            return;
        };
        if owed > 0 {
            let semaphore = self.semaphore.clone();
            tokio::spawn(async move {
                if let Ok(permits) = semaphore.acquire_many_owned(owed).await {
                    permits.forget();
                }
            });
        }
    }
}

/// Counts a waiter for as long as it lives (a timed-out wait included).
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn enter(count: &'a AtomicUsize) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        Waiting(count)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Bounds argon2 verifications: `concurrent` run at once (one per core:
/// each takes 19 MiB and a core for tens of milliseconds), `queued` more
/// may wait; past that a login fails at once with "server busy" instead of
/// queuing without bound.
pub struct VerificationGate {
    concurrent: usize,
    /// Running plus waiting.
    admitted: Arc<Semaphore>,
    running: Arc<Semaphore>,
}

/// The queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Busy;

/// Leave to run one verification; dropping it frees the place. It moves
/// into the blocking task, so a client that gives up mid-hash keeps its
/// core counted until the hash ends.
pub struct VerificationPass {
    _admitted: OwnedSemaphorePermit,
    _running: OwnedSemaphorePermit,
}

impl VerificationGate {
    pub fn new(concurrent: usize, queued: usize) -> Self {
        let concurrent = concurrent.max(1);
        VerificationGate {
            concurrent,
            admitted: Arc::new(Semaphore::new(concurrent + queued)),
            running: Arc::new(Semaphore::new(concurrent)),
        }
    }

    /// Verifications that may run at once.
    pub fn concurrent(&self) -> usize {
        self.concurrent
    }

    /// One verification per core, `queued` waiting.
    pub fn per_core(queued: usize) -> Self {
        VerificationGate::new(crate::config::cores(), queued)
    }

    /// A place in the queue at once or [`Busy`], then a core when one frees.
    pub async fn enter(&self) -> Result<VerificationPass, Busy> {
        let admitted = self
            .admitted
            .clone()
            .try_acquire_owned()
            .map_err(|_| Busy)?;
        let running = self
            .running
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| Busy)?;
        Ok(VerificationPass {
            _admitted: admitted,
            _running: running,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listen(max_clients: usize, max_pending_logins: usize) -> Listen {
        let text = format!(
            "address = \"127.0.0.1:0\"\nmax_clients = {max_clients}\nmax_pending_logins = {max_pending_logins}\n"
        );
        toml::from_str(&text).unwrap()
    }

    #[test]
    fn client_slots_are_bounded_and_come_back_when_dropped() {
        let admission = Admission::new(&listen(2, 1));
        let a = admission.client_slot().unwrap();
        let _b = admission.client_slot().unwrap();
        assert!(admission.client_slot().is_none());
        assert_eq!(admission.connected(), 2);
        drop(a);
        assert_eq!(admission.connected(), 1);
        assert!(admission.client_slot().is_some());
    }

    #[tokio::test]
    async fn a_handshake_waits_for_a_turn_and_is_counted_while_it_waits() {
        let admission = Arc::new(Admission::new(&listen(10, 1)));
        let first = admission.handshake_turn().await;
        assert_eq!(admission.handshakes(), 1);
        let waiter = {
            let admission = admission.clone();
            tokio::spawn(async move {
                let _turn = admission.handshake_turn().await;
            })
        };
        while admission.waiting_for_handshake() == 0 {
            tokio::task::yield_now().await;
        }
        assert!(!waiter.is_finished());
        drop(first);
        waiter.await.unwrap();
        assert_eq!(admission.waiting_for_handshake(), 0);
        assert_eq!(admission.handshakes(), 0);
    }

    #[tokio::test]
    async fn the_verification_queue_fails_fast_when_full() {
        let gate = Arc::new(VerificationGate::new(1, 1));
        let running = gate.enter().await.unwrap();
        let queued = {
            let gate = gate.clone();
            tokio::spawn(async move { gate.enter().await.map(drop) })
        };
        // The queued one holds the last place: the next is refused at once.
        loop {
            match gate.admitted.available_permits() {
                0 => break,
                _ => tokio::task::yield_now().await,
            }
        }
        assert!(matches!(gate.enter().await, Err(Busy)));
        drop(running);
        assert_eq!(queued.await.unwrap(), Ok(()));
        assert!(gate.enter().await.is_ok());
    }
}
