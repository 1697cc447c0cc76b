//! Up / lagging / down with hysteresis, as a pure function of observations
//! and the time they were made: no clock, no I/O, so tests pass `Instant`s.

use std::time::{Duration, Instant};

use super::health::BackendState;

/// How a backend is checked and when its state changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthPolicy {
    /// Time between two checks.
    pub interval: Duration,
    /// Bound on one check: connect and `SELECT 1`, and separately the lag query.
    pub timeout: Duration,
    /// Consecutive failed checks that take the backend down (0 counts as 1).
    pub failures_to_down: u32,
    /// How long a down or lagging backend must pass every check (and, with a
    /// lag limit, stay at or under `max_lag - lag_margin`) before it is up again.
    pub recovery: Duration,
    /// Lag over this takes a replica out of reads; `None` for the primary or
    /// a replica without a limit. With a limit, an unknown lag counts as over.
    pub max_lag: Option<Duration>,
    /// Hysteresis band under `max_lag`: a replica leaves at `> max_lag` but
    /// returns only at `<= max_lag - lag_margin`.
    pub lag_margin: Duration,
}

/// The outcome of one check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckResult {
    /// The backend answered; `lag` is `None` when not measured or unknown.
    Healthy { lag: Option<Duration> },
    /// No connection, an error, or no answer within the timeout.
    Failed { reason: String },
}

/// A state change, to be logged once and published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub from: BackendState,
    pub to: BackendState,
    pub reason: String,
}

/// Where a healthy observation's lag stands against the policy.
enum LagVerdict {
    /// At or under `max_lag - lag_margin`, or no limit: counts toward recovery.
    Within,
    /// Within the limit but inside the margin: keeps an up backend up and
    /// a lagging one lagging.
    Margin(String),
    /// Over the limit or unknown: takes an up backend out.
    Over(String),
}

/// The per-backend state machine. The monitor task feeds it one
/// observation per check; it answers with the transition, if any.
#[derive(Debug, Clone)]
pub struct StateMachine {
    policy: HealthPolicy,
    state: BackendState,
    consecutive_failures: u32,
    /// Start of the current unbroken run of observations that count toward
    /// recovery (healthy and within the lag limit minus the margin).
    recovering_since: Option<Instant>,
}

impl StateMachine {
    /// Starts up, like [`super::BackendHealth::new`].
    pub fn new(policy: HealthPolicy) -> Self {
        StateMachine {
            policy,
            state: BackendState::Up,
            consecutive_failures: 0,
            recovering_since: None,
        }
    }

    pub fn state(&self) -> BackendState {
        self.state
    }

    pub fn policy(&self) -> &HealthPolicy {
        &self.policy
    }

    /// Records the check made at `now` and returns the state change it causes.
    pub fn observe(&mut self, now: Instant, check: CheckResult) -> Option<Transition> {
        match check {
            CheckResult::Failed { reason } => self.observe_failure(reason),
            CheckResult::Healthy { lag } => self.observe_healthy(now, lag),
        }
    }

    fn observe_failure(&mut self, reason: String) -> Option<Transition> {
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        self.recovering_since = None;
        let threshold = self.policy.failures_to_down.max(1);
        if self.state == BackendState::Down || self.consecutive_failures < threshold {
            return None;
        }
        let count = self.consecutive_failures;
        let checks = if count == 1 { "check" } else { "checks" };
        self.enter(
            BackendState::Down,
            format!("{count} consecutive failed {checks}, last: {reason}"),
        )
    }

    fn observe_healthy(&mut self, now: Instant, lag: Option<Duration>) -> Option<Transition> {
        self.consecutive_failures = 0;
        match (self.state, self.lag_verdict(lag)) {
            (BackendState::Up, LagVerdict::Over(why)) => self.enter(BackendState::Lagging, why),
            (BackendState::Up, _) => None,
            (BackendState::Down, LagVerdict::Over(why) | LagVerdict::Margin(why)) => self.enter(
                BackendState::Lagging,
                format!("answers checks again, but {why}"),
            ),
            (BackendState::Lagging, LagVerdict::Over(_) | LagVerdict::Margin(_)) => {
                self.recovering_since = None;
                None
            }
            (BackendState::Lagging | BackendState::Down, LagVerdict::Within) => {
                let since = *self.recovering_since.get_or_insert(now);
                let held = now.saturating_duration_since(since);
                if held < self.policy.recovery {
                    return None;
                }
                let lag_text = match (self.policy.max_lag, lag) {
                    (Some(_), Some(lag)) => format!(", lag {} ms", lag.as_millis()),
                    _ => String::new(),
                };
                self.enter(
                    BackendState::Up,
                    format!("healthy for {} ms{lag_text}", held.as_millis()),
                )
            }
        }
    }

    fn lag_verdict(&self, lag: Option<Duration>) -> LagVerdict {
        let Some(max) = self.policy.max_lag else {
            return LagVerdict::Within;
        };
        let Some(lag) = lag else {
            return LagVerdict::Over(format!("lag unknown (max_lag {} ms)", max.as_millis()));
        };
        let resume_at = max.saturating_sub(self.policy.lag_margin);
        if lag > max {
            LagVerdict::Over(format!(
                "lag {} ms exceeds max_lag {} ms",
                lag.as_millis(),
                max.as_millis()
            ))
        } else if lag > resume_at {
            LagVerdict::Margin(format!(
                "lag {} ms is not yet at or under {} ms (max_lag {} ms minus margin {} ms)",
                lag.as_millis(),
                resume_at.as_millis(),
                max.as_millis(),
                self.policy.lag_margin.as_millis()
            ))
        } else {
            LagVerdict::Within
        }
    }

    fn enter(&mut self, to: BackendState, reason: String) -> Option<Transition> {
        let from = self.state;
        self.state = to;
        self.recovering_since = None;
        Some(Transition { from, to, reason })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use BackendState::{Down, Lagging, Up};

    const INTERVAL: Duration = Duration::from_millis(100);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn policy(max_lag: Option<u64>) -> HealthPolicy {
        HealthPolicy {
            interval: INTERVAL,
            timeout: ms(1000),
            failures_to_down: 3,
            recovery: ms(1000),
            max_lag: max_lag.map(ms),
            lag_margin: ms(200),
        }
    }

    fn healthy(lag: Option<u64>) -> CheckResult {
        CheckResult::Healthy { lag: lag.map(ms) }
    }

    fn failed() -> CheckResult {
        CheckResult::Failed {
            reason: "connection refused".to_string(),
        }
    }

    /// Feeds `checks` one interval apart from `start`; returns the
    /// transitions with the time (ms after `start`) each happened.
    fn run(
        machine: &mut StateMachine,
        start: Instant,
        checks: impl IntoIterator<Item = CheckResult>,
    ) -> Vec<(u64, BackendState, BackendState)> {
        let mut out = Vec::new();
        for (i, check) in checks.into_iter().enumerate() {
            let at = INTERVAL * i as u32;
            if let Some(t) = machine.observe(start + at, check) {
                out.push((at.as_millis() as u64, t.from, t.to));
            }
        }
        out
    }

    #[test]
    fn down_after_the_configured_number_of_consecutive_failures() {
        let mut m = StateMachine::new(policy(None));
        let t0 = Instant::now();
        assert_eq!(m.observe(t0, failed()), None);
        assert_eq!(m.observe(t0 + ms(100), failed()), None);
        let t = m.observe(t0 + ms(200), failed()).expect("third failure");
        assert_eq!((t.from, t.to), (Up, Down));
        assert!(
            t.reason.contains("3 consecutive failed checks"),
            "{}",
            t.reason
        );
        assert!(t.reason.contains("connection refused"), "{}", t.reason);
        // Logged once: further failures change nothing.
        assert_eq!(m.observe(t0 + ms(300), failed()), None);
        assert_eq!(m.state(), Down);
    }

    #[test]
    fn a_success_resets_the_failure_count() {
        let mut m = StateMachine::new(policy(None));
        let checks = [failed(), failed(), healthy(None), failed(), failed()];
        assert!(run(&mut m, Instant::now(), checks).is_empty());
        assert_eq!(m.state(), Up);
    }

    #[test]
    fn zero_failures_to_down_counts_as_one() {
        let mut m = StateMachine::new(HealthPolicy {
            failures_to_down: 0,
            ..policy(None)
        });
        let t = m.observe(Instant::now(), failed()).expect("first failure");
        assert_eq!(t.to, Down);
    }

    #[test]
    fn down_returns_up_only_after_the_recovery_time() {
        let mut m = StateMachine::new(policy(None));
        let t0 = Instant::now();
        run(&mut m, t0, [failed(), failed(), failed()]);
        assert_eq!(m.state(), Down);
        // Healthy from 1000 ms; up at 2000 ms, not before.
        let start = t0 + ms(1000);
        let transitions = run(&mut m, start, (0..=10).map(|_| healthy(None)));
        assert_eq!(transitions, vec![(1000, Down, Up)]);
    }

    #[test]
    fn a_failure_during_recovery_restarts_the_hold_time() {
        let mut m = StateMachine::new(policy(None));
        let t0 = Instant::now();
        run(&mut m, t0, [failed(), failed(), failed()]);
        let mut checks: Vec<CheckResult> = (0..8).map(|_| healthy(None)).collect();
        checks.push(failed()); // at 800 ms: one failure, not enough for a new "down"
        checks.extend((0..12).map(|_| healthy(None))); // healthy again from 900 ms
        let transitions = run(&mut m, t0 + ms(1000), checks);
        assert_eq!(transitions, vec![(1900, Down, Up)]);
    }

    #[test]
    fn flapping_never_comes_back_up() {
        let mut m = StateMachine::new(policy(None));
        let t0 = Instant::now();
        run(&mut m, t0, [failed(), failed(), failed()]);
        let checks = (0..40).map(|i| if i % 5 == 4 { failed() } else { healthy(None) });
        assert!(run(&mut m, t0 + ms(1000), checks).is_empty());
        assert_eq!(m.state(), Down);
    }

    #[test]
    fn recovery_zero_returns_at_the_first_healthy_check() {
        let mut m = StateMachine::new(HealthPolicy {
            recovery: Duration::ZERO,
            ..policy(None)
        });
        let t0 = Instant::now();
        run(&mut m, t0, [failed(), failed(), failed()]);
        let t = m.observe(t0 + ms(300), healthy(None)).expect("back up");
        assert_eq!((t.from, t.to), (Down, Up));
    }

    #[test]
    fn lag_over_the_limit_leaves_up_at_once() {
        let mut m = StateMachine::new(policy(Some(1000)));
        let t0 = Instant::now();
        assert_eq!(
            m.observe(t0, healthy(Some(1000))),
            None,
            "at the limit is within"
        );
        let t = m.observe(t0 + ms(100), healthy(Some(1001))).expect("over");
        assert_eq!((t.from, t.to), (Up, Lagging));
        assert_eq!(t.reason, "lag 1001 ms exceeds max_lag 1000 ms");
    }

    #[test]
    fn lag_inside_the_margin_keeps_up_up() {
        let mut m = StateMachine::new(policy(Some(1000)));
        let checks = [healthy(Some(900)), healthy(Some(999)), healthy(Some(850))];
        assert!(run(&mut m, Instant::now(), checks).is_empty());
        assert_eq!(m.state(), Up);
    }

    #[test]
    fn lagging_returns_after_the_hold_time_under_limit_minus_margin() {
        let mut m = StateMachine::new(policy(Some(1000)));
        let t0 = Instant::now();
        m.observe(t0, healthy(Some(5000)));
        assert_eq!(m.state(), Lagging);
        // Under the limit but inside the 200 ms margin: no recovery yet.
        let mut checks: Vec<CheckResult> = (0..10).map(|_| healthy(Some(900))).collect();
        // Then at 800 ms (= 1000 - 200): the hold time starts at 1000 ms.
        checks.extend((0..11).map(|_| healthy(Some(800))));
        let transitions = run(&mut m, t0 + ms(100), checks);
        assert_eq!(transitions, vec![(2000, Lagging, Up)]);
    }

    #[test]
    fn lag_back_inside_the_margin_restarts_the_hold_time() {
        let mut m = StateMachine::new(policy(Some(1000)));
        let t0 = Instant::now();
        m.observe(t0, healthy(Some(1500)));
        let mut checks: Vec<CheckResult> = (0..9).map(|_| healthy(Some(100))).collect();
        checks.push(healthy(Some(950))); // at 900 ms: inside the margin
        checks.extend((0..11).map(|_| healthy(Some(100)))); // from 1000 ms
        let transitions = run(&mut m, t0 + ms(100), checks);
        assert_eq!(transitions, vec![(2000, Lagging, Up)]);
        let t = m
            .observe(t0 + ms(5000), healthy(Some(1200)))
            .expect("leaves again");
        assert_eq!((t.from, t.to), (Up, Lagging));
    }

    #[test]
    fn lagging_goes_down_on_failures_and_comes_back_lagging() {
        let mut m = StateMachine::new(policy(Some(1000)));
        let t0 = Instant::now();
        let transitions = run(
            &mut m,
            t0,
            [
                healthy(Some(3000)),
                failed(),
                failed(),
                failed(),
                healthy(Some(3000)),
            ],
        );
        assert_eq!(
            transitions,
            vec![(0, Up, Lagging), (300, Lagging, Down), (400, Down, Lagging)]
        );
        let t = m.observe(t0 + ms(500), failed());
        assert_eq!(t, None, "one failure after coming back is not yet down");
    }

    #[test]
    fn down_with_lag_within_limits_returns_up_directly() {
        let mut m = StateMachine::new(policy(Some(1000)));
        let t0 = Instant::now();
        run(&mut m, t0, [failed(), failed(), failed()]);
        let transitions = run(&mut m, t0 + ms(300), (0..=10).map(|_| healthy(Some(10))));
        assert_eq!(transitions, vec![(1000, Down, Up)]);
    }

    #[test]
    fn down_with_lag_inside_the_margin_becomes_lagging() {
        let mut m = StateMachine::new(policy(Some(1000)));
        let t0 = Instant::now();
        run(&mut m, t0, [failed(), failed(), failed()]);
        let t = m
            .observe(t0 + ms(300), healthy(Some(900)))
            .expect("answers again");
        assert_eq!((t.from, t.to), (Down, Lagging));
        assert!(
            t.reason.starts_with("answers checks again, but lag 900 ms"),
            "{}",
            t.reason
        );
    }

    #[test]
    fn unknown_lag_counts_as_over_a_limit() {
        let mut m = StateMachine::new(policy(Some(1000)));
        let t0 = Instant::now();
        let t = m.observe(t0, healthy(None)).expect("unknown lag");
        assert_eq!((t.from, t.to), (Up, Lagging));
        assert_eq!(t.reason, "lag unknown (max_lag 1000 ms)");
        // Unknown lag never counts toward recovery.
        assert!(run(&mut m, t0, (0..30).map(|_| healthy(None))).is_empty());
        assert_eq!(m.state(), Lagging);
    }

    #[test]
    fn unknown_lag_without_a_limit_is_fine() {
        let mut m = StateMachine::new(policy(None));
        assert!(run(&mut m, Instant::now(), (0..5).map(|_| healthy(None))).is_empty());
        assert_eq!(m.state(), Up);
    }

    #[test]
    fn margin_larger_than_the_limit_needs_zero_lag() {
        let mut m = StateMachine::new(HealthPolicy {
            lag_margin: ms(5000),
            recovery: Duration::ZERO,
            ..policy(Some(1000))
        });
        let t0 = Instant::now();
        m.observe(t0, healthy(Some(2000)));
        assert_eq!(m.observe(t0 + ms(100), healthy(Some(1))), None);
        let t = m.observe(t0 + ms(200), healthy(Some(0))).expect("zero lag");
        assert_eq!(t.to, Up);
    }
}
