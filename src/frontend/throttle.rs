//! Failed logins per client address: an address with too many failures in
//! a window is refused for a while without a password check, so a flood of
//! wrong passwords from one place cannot keep the argon2 slots busy that
//! everyone else's logins need.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

/// Addresses remembered at once. When full, expired entries go first,
/// then the one whose window started longest ago: the map never grows with
/// the number of addresses an attacker controls.
pub const MAX_TRACKED_ADDRESSES: usize = 16_384;

/// When an address is locked out.
#[derive(Debug, Clone, Copy)]
pub struct ThrottlePolicy {
    /// Failures within `window` that lock the address out; 0 turns it off.
    pub max_failures: u32,
    pub window: Duration,
    /// How long a locked-out address is refused.
    pub lockout: Duration,
}

impl ThrottlePolicy {
    pub fn from_config(listen: &crate::config::Listen) -> Self {
        ThrottlePolicy {
            max_failures: listen.max_failed_logins,
            window: Duration::from_millis(listen.failed_login_window_ms),
            lockout: Duration::from_millis(listen.failed_login_lockout_ms),
        }
    }
}

/// The address is locked out until this long from now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockedOut(pub Duration);

/// Recent failures of one address.
#[derive(Debug, Clone, Copy)]
struct Failures {
    window_start: Instant,
    count: u32,
    locked_until: Option<Instant>,
}

impl Failures {
    fn is_locked(&self, now: Instant) -> bool {
        self.locked_until.is_some_and(|until| now < until)
    }

    /// Neither locked nor counting anything that still matters.
    fn is_expired(&self, now: Instant, window: Duration) -> bool {
        !self.is_locked(now) && now.saturating_duration_since(self.window_start) >= window
    }
}

pub struct LoginThrottle {
    /// Changed by a reload.
    policy: RwLock<ThrottlePolicy>,
    capacity: usize,
    addresses: Mutex<HashMap<IpAddr, Failures>>,
}

impl LoginThrottle {
    pub fn new(policy: ThrottlePolicy) -> Self {
        LoginThrottle::with_capacity(policy, MAX_TRACKED_ADDRESSES)
    }

    fn with_capacity(policy: ThrottlePolicy, capacity: usize) -> Self {
        LoginThrottle {
            policy: RwLock::new(policy),
            capacity: capacity.max(1),
            addresses: Mutex::new(HashMap::new()),
        }
    }

    /// A reload's new lockout settings; addresses already locked out stay
    /// so until their lockout ends.
    pub fn set_policy(&self, policy: ThrottlePolicy) {
        *self.policy.write().unwrap_or_else(PoisonError::into_inner) = policy;
    }

    fn policy(&self) -> ThrottlePolicy {
        *self.policy.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether a login from `address` may be checked at all.
    pub fn check(&self, address: IpAddr) -> Result<(), LockedOut> {
        self.check_at(address, Instant::now())
    }

    /// Counts a failed password check from `address`.
    pub fn record_failure(&self, address: IpAddr) {
        self.record_failure_at(address, Instant::now())
    }

    fn check_at(&self, address: IpAddr, now: Instant) -> Result<(), LockedOut> {
        if self.policy().max_failures == 0 {
            return Ok(());
        }
        let addresses = self.lock();
        match addresses
            .get(&throttle_key(address))
            .and_then(|f| f.locked_until)
        {
            Some(until) if now < until => Err(LockedOut(until - now)),
            _ => Ok(()),
        }
    }

    fn record_failure_at(&self, address: IpAddr, now: Instant) {
        let policy = self.policy();
        if policy.max_failures == 0 {
            return;
        }
        let key = throttle_key(address);
        let mut addresses = self.lock();
        if !addresses.contains_key(&key) && addresses.len() >= self.capacity {
            self.make_room(&mut addresses, now);
        }
        let fresh = Failures {
            window_start: now,
            count: 0,
            locked_until: None,
        };
        let failures = addresses.entry(key).or_insert(fresh);
        let lockout_over = failures.locked_until.is_some_and(|until| now >= until);
        if lockout_over || failures.is_expired(now, policy.window) {
            // A lockout that ended, or a window that closed: count afresh.
            *failures = fresh;
        }
        failures.count = failures.count.saturating_add(1);
        if failures.count >= policy.max_failures && !failures.is_locked(now) {
            failures.locked_until = Some(now + policy.lockout);
            tracing::warn!(
                %address,
                failures = failures.count,
                lockout_ms = policy.lockout.as_millis() as u64,
                "too many failed logins; the address is locked out"
            );
        }
    }

    /// Drops expired entries, and if that frees nothing, the oldest entry
    /// that is not locked out (the oldest lockout only when all are): a
    /// flood from many addresses must not wash a lockout away.
    fn make_room(&self, addresses: &mut HashMap<IpAddr, Failures>, now: Instant) {
        let window = self.policy().window;
        addresses.retain(|_, f| !f.is_expired(now, window));
        if addresses.len() < self.capacity {
            return;
        }
        let oldest = addresses
            .iter()
            .min_by_key(|(_, f)| (f.is_locked(now), f.window_start))
            .map(|(key, _)| *key);
        if let Some(key) = oldest {
            addresses.remove(&key);
        }
    }

    /// Addresses currently remembered (for tests).
    pub fn tracked(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Failures>> {
        // Every step leaves the map consistent: a poisoned lock is usable.
        self.addresses
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The key an address is counted under: an IPv4 address (an IPv4-mapped
/// IPv6 one included) as it is, an IPv6 address by its /64 prefix, since one
/// host usually holds a whole /64 and could otherwise rotate through it.
fn throttle_key(address: IpAddr) -> IpAddr {
    match address.to_canonical() {
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(prefix.into())
        }
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(max_failures: u32) -> ThrottlePolicy {
        ThrottlePolicy {
            max_failures,
            window: Duration::from_secs(60),
            lockout: Duration::from_secs(30),
        }
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn locks_out_after_the_limit_and_only_that_address() {
        let throttle = LoginThrottle::new(policy(3));
        let t0 = Instant::now();
        let (bad, good) = (ip("10.0.0.1"), ip("10.0.0.2"));
        for i in 0..2 {
            throttle.record_failure_at(bad, t0 + Duration::from_secs(i));
            assert_eq!(throttle.check_at(bad, t0 + Duration::from_secs(i)), Ok(()));
        }
        throttle.record_failure_at(bad, t0 + Duration::from_secs(2));
        assert_eq!(
            throttle.check_at(bad, t0 + Duration::from_secs(2)),
            Err(LockedOut(Duration::from_secs(30)))
        );
        assert_eq!(throttle.check_at(good, t0 + Duration::from_secs(2)), Ok(()));
        // The lockout ends on time, and counting starts again from zero.
        let after = t0 + Duration::from_secs(32);
        assert_eq!(throttle.check_at(bad, after), Ok(()));
        throttle.record_failure_at(bad, after);
        assert_eq!(throttle.check_at(bad, after), Ok(()));
    }

    #[test]
    fn failures_spread_wider_than_the_window_do_not_add_up() {
        let throttle = LoginThrottle::new(policy(2));
        let t0 = Instant::now();
        let a = ip("10.0.0.1");
        throttle.record_failure_at(a, t0);
        throttle.record_failure_at(a, t0 + Duration::from_secs(61));
        assert_eq!(throttle.check_at(a, t0 + Duration::from_secs(61)), Ok(()));
        throttle.record_failure_at(a, t0 + Duration::from_secs(62));
        assert!(throttle.check_at(a, t0 + Duration::from_secs(62)).is_err());
    }

    #[test]
    fn zero_turns_it_off() {
        let throttle = LoginThrottle::new(policy(0));
        let a = ip("10.0.0.1");
        for _ in 0..100 {
            throttle.record_failure(a);
        }
        assert_eq!(throttle.check(a), Ok(()));
        assert_eq!(throttle.tracked(), 0);
    }

    #[test]
    fn the_map_is_bounded() {
        let throttle = LoginThrottle::with_capacity(policy(2), 3);
        let t0 = Instant::now();
        for i in 0..100u8 {
            throttle.record_failure_at(ip(&format!("10.0.1.{i}")), t0);
            assert!(throttle.tracked() <= 3);
        }
    }

    #[test]
    fn eviction_takes_expired_entries_then_unlocked_ones_before_a_lockout() {
        let throttle = LoginThrottle::with_capacity(policy(2), 2);
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let locked = ip("10.0.0.1");
        throttle.record_failure_at(locked, at(0));
        throttle.record_failure_at(locked, at(0));
        throttle.record_failure_at(ip("10.0.0.2"), at(1));
        // Full, nothing expired: the unlocked entry goes, though newer.
        throttle.record_failure_at(ip("10.0.0.3"), at(2));
        assert!(throttle.check_at(locked, at(2)).is_err());
        // At 61 s the lockout (30 s) and its window (60 s) are over: that
        // entry goes, and 10.0.0.3 keeps its count.
        throttle.record_failure_at(ip("10.0.0.4"), at(61));
        assert_eq!(throttle.tracked(), 2);
        throttle.record_failure_at(ip("10.0.0.3"), at(61));
        assert!(throttle.check_at(ip("10.0.0.3"), at(61)).is_err());
    }

    #[test]
    fn ipv6_hosts_count_by_their_64_prefix_and_mapped_ipv4_as_ipv4() {
        let throttle = LoginThrottle::new(policy(2));
        throttle.record_failure(ip("2001:db8:1:2::1"));
        throttle.record_failure(ip("2001:db8:1:2:ffff::9"));
        assert!(throttle.check(ip("2001:db8:1:2::77")).is_err());
        assert_eq!(throttle.check(ip("2001:db8:1:3::1")), Ok(()));
        throttle.record_failure(ip("::ffff:192.0.2.7"));
        throttle.record_failure(ip("192.0.2.7"));
        assert!(throttle.check(ip("192.0.2.7")).is_err());
    }
}
