//! Graceful drain: the phases a stopping proxy goes through, watched by the
//! accept loop, `/readyz` and every session.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::watch;

/// Where a stopping proxy is. Ordered: each phase includes the ones before.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    Running,
    /// No new clients; sessions idle outside a transaction close, the others
    /// finish their requests and transactions.
    Draining,
    /// `listen.shutdown_timeout_ms` has passed: the remaining sessions are
    /// told and closed.
    Closing,
}

/// The proxy's shutdown phase, set by the signal handler and waited on by
/// everyone else.
#[derive(Debug)]
pub struct Shutdown {
    phase: watch::Sender<Phase>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Shutdown {
            phase: watch::Sender::new(Phase::Running),
        }
    }
}

impl Shutdown {
    pub fn phase(&self) -> Phase {
        *self.phase.borrow()
    }

    pub fn is_draining(&self) -> bool {
        self.phase() >= Phase::Draining
    }

    /// Moves to `phase` unless a later one was reached already.
    pub fn advance(&self, phase: Phase) {
        self.phase.send_if_modified(|current| {
            let later = phase > *current;
            if later {
                *current = phase;
            }
            later
        });
    }

    /// Resolves once `phase` (or a later one) is reached; at once if it was.
    pub async fn reached(&self, phase: Phase) -> Phase {
        let mut watcher = self.phase.subscribe();
        let reached = watcher
            .wait_for(|current| *current >= phase)
            .await
            .map(|current| *current);
        match reached {
            Ok(current) => current,
            // The sender lives as long as `self`: not reached.
            Err(_) => std::future::pending().await,
        }
    }

    /// A [`PhaseWatch`] of `phase` on `shutdown`.
    pub fn watch(shutdown: &Arc<Shutdown>, phase: Phase) -> PhaseWatch {
        let shutdown = shutdown.clone();
        PhaseWatch {
            waiting: Box::pin(async move { shutdown.reached(phase).await }),
            reached: None,
        }
    }
}

/// Waits for one phase for as long as its owner lives. The subscription
/// and its waiter are made at the first wait and kept, so waiting again (a
/// session does, on every request) is a poll, not a new subscription, a
/// waiter registered and one removed. Cancel-safe: a wait that is dropped
/// leaves the watch as it was.
pub struct PhaseWatch {
    waiting: Pin<Box<dyn Future<Output = Phase> + Send>>,
    /// The phase the completed wait returned (the future is not polled
    /// again after it completed).
    reached: Option<Phase>,
}

impl PhaseWatch {
    /// The phase reached, once it is the watched one or later.
    pub async fn reached(&mut self) -> Phase {
        if let Some(phase) = self.reached {
            return phase;
        }
        let phase = self.waiting.as_mut().await;
        self.reached = Some(phase);
        phase
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn phases_only_move_forward() {
        let shutdown = Shutdown::default();
        assert!(!shutdown.is_draining());
        shutdown.advance(Phase::Closing);
        shutdown.advance(Phase::Draining);
        assert_eq!(shutdown.phase(), Phase::Closing);
        assert_eq!(shutdown.reached(Phase::Draining).await, Phase::Closing);
    }

    #[tokio::test]
    async fn a_watch_survives_cancelled_waits_and_answers_after_completing() {
        let shutdown = Arc::new(Shutdown::default());
        let mut closing = Shutdown::watch(&shutdown, Phase::Closing);
        for _ in 0..3 {
            let waited =
                tokio::time::timeout(std::time::Duration::from_millis(5), closing.reached());
            assert!(waited.await.is_err(), "not closing yet");
        }
        shutdown.advance(Phase::Draining);
        let waited = tokio::time::timeout(std::time::Duration::from_millis(5), closing.reached());
        assert!(waited.await.is_err(), "draining is not closing");
        let waiter = tokio::spawn(async move {
            let first = closing.reached().await;
            (first, closing.reached().await)
        });
        shutdown.advance(Phase::Closing);
        assert_eq!(waiter.await.unwrap(), (Phase::Closing, Phase::Closing));
    }
}
