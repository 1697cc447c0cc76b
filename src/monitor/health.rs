//! The state of one backend as the data path sees it: lock-free, read on
//! every request, written by the backend's monitor task.

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::time::Duration;

use tokio::sync::Notify;

/// Whether a backend takes traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BackendState {
    /// Answers its checks and, for a replica, is within its lag limit.
    Up,
    /// Answers its checks but its lag is over the limit, unknown, or not yet
    /// back under the limit minus the margin for the recovery time.
    Lagging,
    /// Failed the configured number of consecutive checks.
    Down,
}

impl BackendState {
    pub fn as_str(self) -> &'static str {
        match self {
            BackendState::Up => "up",
            BackendState::Lagging => "lagging",
            BackendState::Down => "down",
        }
    }

    fn to_u8(self) -> u8 {
        match self {
            BackendState::Up => 0,
            BackendState::Lagging => 1,
            BackendState::Down => 2,
        }
    }

    fn from_u8(value: u8) -> BackendState {
        match value {
            0 => BackendState::Up,
            1 => BackendState::Lagging,
            _ => BackendState::Down,
        }
    }
}

impl std::fmt::Display for BackendState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `lag_ms` value meaning "not measured".
const LAG_UNKNOWN: u64 = u64::MAX;

/// Lock-free shared view of one backend that the router reads on every
/// request. The backend's monitor task is its only regular writer; the data
/// path reports failures with [`BackendHealth::mark_failed_request`].
pub struct BackendHealth {
    state: AtomicU8,
    lag_ms: AtomicU64,
    /// Data-path failures since the monitor last looked.
    failed_requests: AtomicU32,
    /// Checks completed (passed or failed) since the monitor started.
    checks: AtomicU64,
    /// Wakes the monitor for an immediate check after a data-path failure.
    wake: Notify,
}

impl BackendHealth {
    /// Up, lag unknown: a backend takes traffic until a check says otherwise.
    pub fn new() -> Self {
        BackendHealth {
            state: AtomicU8::new(BackendState::Up.to_u8()),
            lag_ms: AtomicU64::new(LAG_UNKNOWN),
            failed_requests: AtomicU32::new(0),
            checks: AtomicU64::new(0),
            wake: Notify::new(),
        }
    }

    pub fn state(&self) -> BackendState {
        BackendState::from_u8(self.state.load(Ordering::Acquire))
    }

    /// The last measured replication lag, at millisecond resolution; `None`
    /// when unknown (no lag source, the last check failed, or the source
    /// returned nothing).
    pub fn lag(&self) -> Option<Duration> {
        match self.lag_ms.load(Ordering::Acquire) {
            LAG_UNKNOWN => None,
            ms => Some(Duration::from_millis(ms)),
        }
    }

    /// Whether the backend takes reads: only when it is up.
    pub fn is_available(&self) -> bool {
        self.state() == BackendState::Up
    }

    /// The data path lost a connection to this backend or could not open
    /// one (not a SQL error in a reply). The monitor counts it as one failed
    /// check (several reports between two checks count once) and checks
    /// again at once instead of waiting for the next interval.
    pub fn mark_failed_request(&self) {
        self.failed_requests.fetch_add(1, Ordering::AcqRel);
        self.wake.notify_one();
    }

    /// Set by the monitor on every transition; tests may set it directly.
    pub fn set_state(&self, state: BackendState) {
        self.state.store(state.to_u8(), Ordering::Release);
    }

    /// Set by the monitor on every observation; tests may set it directly.
    pub fn set_lag(&self, lag: Option<Duration>) {
        let ms = match lag {
            // u64::MAX ms is 584 million years; clamp below the sentinel.
            Some(lag) => {
                u64::try_from(lag.as_millis()).map_or(LAG_UNKNOWN - 1, |ms| ms.min(LAG_UNKNOWN - 1))
            }
            None => LAG_UNKNOWN,
        };
        self.lag_ms.store(ms, Ordering::Release);
    }

    /// How many checks the monitor has completed, passed or failed: lets a
    /// reader tell "checked and up" from "not checked yet".
    pub fn checks_completed(&self) -> u64 {
        self.checks.load(Ordering::Acquire)
    }

    /// Counts one completed check; called by the monitor after it has
    /// applied the check's result.
    pub(crate) fn note_check(&self) {
        self.checks.fetch_add(1, Ordering::AcqRel);
    }

    /// Whether the data path reported failures since the last call.
    pub(crate) fn take_failed_requests(&self) -> bool {
        self.failed_requests.swap(0, Ordering::AcqRel) > 0
    }

    /// Resolves after the next [`BackendHealth::mark_failed_request`] (or at
    /// once if one happened since the last wait).
    pub(crate) async fn failed_request_reported(&self) {
        self.wake.notified().await
    }
}

impl Default for BackendHealth {
    fn default() -> Self {
        BackendHealth::new()
    }
}

impl std::fmt::Debug for BackendHealth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackendHealth")
            .field("state", &self.state())
            .field("lag", &self.lag())
            .field("checks", &self.checks_completed())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_up_with_unknown_lag() {
        let health = BackendHealth::new();
        assert_eq!(health.state(), BackendState::Up);
        assert!(health.is_available());
        assert_eq!(health.lag(), None);
        assert_eq!(health.checks_completed(), 0);
        health.note_check();
        assert_eq!(health.checks_completed(), 1);
    }

    #[test]
    fn state_and_lag_round_trip() {
        let health = BackendHealth::new();
        for state in [BackendState::Lagging, BackendState::Down, BackendState::Up] {
            health.set_state(state);
            assert_eq!(health.state(), state);
            assert_eq!(health.is_available(), state == BackendState::Up);
        }
        health.set_lag(Some(Duration::from_micros(12_345)));
        assert_eq!(health.lag(), Some(Duration::from_millis(12)));
        health.set_lag(Some(Duration::MAX));
        assert_eq!(health.lag(), Some(Duration::from_millis(u64::MAX - 1)));
        health.set_lag(None);
        assert_eq!(health.lag(), None);
    }

    #[test]
    fn failed_requests_are_taken_once() {
        let health = BackendHealth::new();
        assert!(!health.take_failed_requests());
        health.mark_failed_request();
        health.mark_failed_request();
        assert!(health.take_failed_requests());
        assert!(!health.take_failed_requests());
    }
}
