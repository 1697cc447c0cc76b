//! Graceful drain: the phases a stopping proxy goes through, watched by the
//! accept loop, `/readyz` and every session.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll, Wake, Waker};

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
            gate: None,
        }
    }
}

/// Waits for one phase for as long as its owner lives. The subscription
/// and its waiter are made at the first wait and kept, so waiting again (a
/// session does, on every request) is a poll, not a new subscription, a
/// waiter registered and one removed. And a poll is a waker comparison
/// and an atomic swap: the wait itself (tokio's watch takes locks on every
/// poll) is polled again only when its waker fired or the task's waker
/// changed. Cancel-safe: a wait that is dropped leaves the watch as it
/// was.
pub struct PhaseWatch {
    waiting: Pin<Box<dyn Future<Output = Phase> + Send>>,
    /// The phase the completed wait returned (the future is not polled
    /// again after it completed).
    reached: Option<Phase>,
    /// The waker the wait was last polled with.
    gate: Option<Arc<Gate>>,
}

/// Stands between the wait and the task's waker and records that the wait
/// was woken, so that a poll with no wake-up since the last can skip it.
struct Gate {
    woken: AtomicBool,
    task: Waker,
}

impl Wake for Gate {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        // Before the task is woken, so that its next poll sees it.
        self.woken.store(true, Ordering::Release);
        self.task.wake_by_ref();
    }
}

impl PhaseWatch {
    /// The phase reached, once it is the watched one or later.
    pub async fn reached(&mut self) -> Phase {
        std::future::poll_fn(|cx| self.poll_reached(cx)).await
    }

    fn poll_reached(&mut self, cx: &mut Context<'_>) -> Poll<Phase> {
        if let Some(phase) = self.reached {
            return Poll::Ready(phase);
        }
        let gate = match &self.gate {
            Some(gate) if gate.task.will_wake(cx.waker()) => {
                // Cleared before the wait is polled, so that a wake-up
                // during the poll is not lost.
                if !gate.woken.swap(false, Ordering::AcqRel) {
                    return Poll::Pending;
                }
                Arc::clone(gate)
            }
            _ => {
                let gate = Arc::new(Gate {
                    woken: AtomicBool::new(false),
                    task: cx.waker().clone(),
                });
                self.gate = Some(Arc::clone(&gate));
                gate
            }
        };
        let waker = Waker::from(gate);
        let phase = ready!(self.waiting.as_mut().poll(&mut Context::from_waker(&waker)));
        self.reached = Some(phase);
        Poll::Ready(phase)
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

    /// A wait that counts its polls, answers once `done`, and keeps the
    /// waker it was last polled with.
    #[derive(Default)]
    struct Probe {
        polls: std::sync::atomic::AtomicUsize,
        done: AtomicBool,
        waker: std::sync::Mutex<Option<Waker>>,
    }

    struct Task;

    impl Wake for Task {
        fn wake(self: Arc<Self>) {}
    }

    #[test]
    fn a_watch_polls_its_wait_only_after_a_wake_up_or_a_new_waker() {
        let probe = Arc::new(Probe::default());
        let inner = Arc::clone(&probe);
        let mut watch = PhaseWatch {
            waiting: Box::pin(std::future::poll_fn(move |cx| {
                inner.polls.fetch_add(1, Ordering::SeqCst);
                *inner.waker.lock().unwrap() = Some(cx.waker().clone());
                if inner.done.load(Ordering::SeqCst) {
                    Poll::Ready(Phase::Closing)
                } else {
                    Poll::Pending
                }
            })),
            reached: None,
            gate: None,
        };
        let polls = || probe.polls.load(Ordering::SeqCst);
        let task = Waker::from(Arc::new(Task));
        let mut cx = Context::from_waker(&task);
        for _ in 0..3 {
            assert!(watch.poll_reached(&mut cx).is_pending());
        }
        assert_eq!(polls(), 1, "polled again without a wake-up");

        let wake = || probe.waker.lock().unwrap().take().unwrap().wake();
        wake();
        assert!(watch.poll_reached(&mut cx).is_pending());
        assert_eq!(polls(), 2, "a wake-up polls the wait");

        let other = Waker::from(Arc::new(Task));
        assert!(watch
            .poll_reached(&mut Context::from_waker(&other))
            .is_pending());
        assert_eq!(polls(), 3, "another waker polls the wait");

        probe.done.store(true, Ordering::SeqCst);
        wake();
        let mut cx = Context::from_waker(&other);
        assert_eq!(watch.poll_reached(&mut cx), Poll::Ready(Phase::Closing));
        assert_eq!(watch.poll_reached(&mut cx), Poll::Ready(Phase::Closing));
        assert_eq!(polls(), 4, "a finished wait is not polled again");
    }
}
