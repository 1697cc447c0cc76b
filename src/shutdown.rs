//! Graceful drain: the phases a stopping proxy goes through, watched by the
//! accept loop, `/readyz` and every session.

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
}
