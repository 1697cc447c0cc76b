//! Sleeps of the background tasks (pool upkeep, health checks, the admin
//! API's metrics upkeep, catalog refreshes, the cache's Redis probe), kept
//! off the runtime that serves sessions.
//!
//! Why: while any timer is pending, each time a tokio worker parks it runs
//! the time driver (a clock reading and a pass over the timer wheel) and
//! waits in `epoll_wait` with a timeout, which arms and cancels a kernel
//! timer; without one, it waits with no timeout and skips the wheel. A
//! proxy parks once or twice per request, and Sluice always had a few
//! long-lived sleeps pending, so every request paid for them. Here each
//! sleep runs on one small thread of its own (`sluice-timers`, a
//! single-threaded runtime with only a timer driver) and wakes the
//! sleeping task when it ends; the serving runtime then holds timers only
//! while something is timed right now (a login, a pool wait, a health
//! check's own timeout).
//!
//! A sleep whose task is dropped ends its timer at once.

use std::sync::OnceLock;
use std::time::Duration;

use tokio::runtime::{Builder, Handle};
use tokio::sync::oneshot;
use tokio::time::Instant;

/// The timer thread's runtime; `None` when it could not start, and then
/// sleeps use the caller's runtime.
fn timers() -> Option<&'static Handle> {
    static TIMERS: OnceLock<Option<Handle>> = OnceLock::new();
    TIMERS.get_or_init(start).as_ref()
}

fn start() -> Option<Handle> {
    let started = || -> std::io::Result<Handle> {
        let runtime = Builder::new_current_thread().enable_time().build()?;
        let handle = runtime.handle().clone();
        std::thread::Builder::new()
            .name("sluice-timers".into())
            .spawn(move || runtime.block_on(std::future::pending::<()>()))?;
        Ok(handle)
    };
    started()
        .inspect_err(|e| {
            tracing::warn!(error = %e, "cannot start the timer thread; sleeping on the serving runtime");
        })
        .ok()
}

/// Waits until `deadline`, timed on the timer thread.
pub async fn sleep_until(deadline: Instant) {
    let Some(timers) = timers() else {
        return tokio::time::sleep_until(deadline).await;
    };
    let (done, wait) = oneshot::channel::<()>();
    timers.spawn(fire(deadline, done));
    // The timer thread drops a timer unfired only when its sleeper went
    // first, so an error here cannot happen to a live sleeper.
    wait.await.ok();
}

/// The timer thread's half of a sleep: tells `done` at `deadline`, or ends
/// as soon as the sleeper is dropped.
async fn fire(deadline: Instant, mut done: oneshot::Sender<()>) {
    tokio::select! {
        _ = tokio::time::sleep_until(deadline) => drop(done.send(())),
        _ = done.closed() => {}
    }
}

/// Waits for `duration`, timed on the timer thread.
pub async fn sleep(duration: Duration) {
    sleep_until(Instant::now() + duration).await;
}

/// How late a tick may come before the next ones move (tokio's margin).
const LATE: Duration = Duration::from_millis(1);

/// Ticks every `period`, timed on the timer thread. The first tick is at
/// once; a tick more than 1 ms late (a busy task) delays the ones after it
/// rather than bunching them, as tokio's `MissedTickBehavior::Delay`.
pub struct Interval {
    next: Instant,
    period: Duration,
}

impl Interval {
    pub fn new(period: Duration) -> Interval {
        Interval {
            next: Instant::now(),
            period,
        }
    }

    pub async fn tick(&mut self) {
        sleep_until(self.next).await;
        let now = Instant::now();
        self.next = if now > self.next + LATE {
            now + self.period
        } else {
            self.next + self.period
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A runtime without a timer driver panics on a tokio sleep: this one
    /// only completes if the timer thread did the timing.
    #[test]
    fn a_sleep_is_timed_off_the_callers_runtime() {
        let untimed = Builder::new_current_thread().build().expect("runtime");
        let slept = untimed.block_on(async {
            let started = Instant::now();
            sleep(Duration::from_millis(30)).await;
            started.elapsed()
        });
        assert!(slept >= Duration::from_millis(30), "{slept:?}");
    }

    #[tokio::test]
    async fn a_timer_ends_when_its_sleeper_is_dropped() {
        let (done, wait) = oneshot::channel();
        let timer = tokio::spawn(fire(Instant::now() + Duration::from_secs(3600), done));
        drop(wait);
        tokio::time::timeout(Duration::from_secs(10), timer)
            .await
            .expect("the timer ended long before its hour")
            .expect("the timer ran");
    }

    #[tokio::test]
    async fn an_interval_ticks_at_once_then_every_period() {
        let mut interval = Interval::new(Duration::from_millis(20));
        let started = Instant::now();
        interval.tick().await;
        assert!(started.elapsed() < Duration::from_millis(20));
        interval.tick().await;
        interval.tick().await;
        assert!(started.elapsed() >= Duration::from_millis(40));
    }
}
