//! Client authentication against `[[users]]`: SQL Server logins checked
//! against PHC password hashes (argon2), behind a verified-credential cache.
//!
//! argon2 is slow and large on purpose (19 MiB and tens of milliseconds per
//! check with the default parameters), so:
//! - checks run on the blocking pool behind a [`VerificationGate`]: one per
//!   core, a bounded queue, then "busy";
//! - after a successful check the user's entry keeps a keyed MAC of the
//!   password (BLAKE2s with a per-process random key, over the user name,
//!   the PHC string and the password). The next login of that user whose MAC
//!   matches, compared in constant time, is accepted without argon2. A
//!   mismatch still runs argon2, so a wrong password costs what it did and
//!   its timing says nothing about the cache;
//! - logins with the same name and password that arrive while one of them is
//!   being checked wait for that check instead of running their own (a
//!   thousand clients starting at once cost one hash, not a thousand).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use blake2::digest::{KeyInit, Mac};
use blake2::Blake2sMac256;
use subtle::ConstantTimeEq;
use tokio::sync::OnceCell;

use super::admission::{Busy, VerificationGate};
use super::phc::{fill_random, Argon2Memory};
use crate::config::User;

/// Verified against when the user name is unknown, so that a wrong name
/// costs the same time as a wrong password and names cannot be probed.
const DECOY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c2x1aWNlZGVjb3k$9yq5E1iBzW4vQ1j5l4t7T5d5B4p1JdJ1r8l2c6iZ0y0";

/// A keyed MAC of (user, PHC string, password).
type Tag = [u8; 32];

/// The outcome of a password check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Accepted,
    /// Unknown user or wrong password.
    Rejected,
    /// Every argon2 slot is taken and the queue is full.
    Busy,
}

/// One `[[users]]` entry and the MAC of the last password verified for it.
struct Account {
    phc: Arc<str>,
    verified: RwLock<Option<Tag>>,
}

impl Account {
    fn is_verified(&self, tag: &Tag) -> bool {
        let verified = self
            .verified
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        verified
            .as_ref()
            .is_some_and(|known| bool::from(known.ct_eq(tag)))
    }

    fn remember(&self, tag: Tag) {
        *self
            .verified
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(tag);
    }
}

/// Why argon2 did not run for a login.
enum NotRun {
    Busy,
    /// The login's address was locked out while it waited for a core.
    Withdrawn,
}

/// A check in progress, shared by the logins that wait for its result.
type InFlight = Arc<OnceCell<bool>>;

pub struct UserDirectory {
    users: HashMap<String, Account>,
    /// Random per process: a MAC kept in memory is worthless elsewhere and
    /// after a restart.
    mac_key: [u8; 32],
    gate: VerificationGate,
    /// One argon2 working memory per slot of the gate, reused.
    memory: Arc<Argon2Memory>,
    in_flight: Mutex<HashMap<Tag, InFlight>>,
    argon2_runs: Arc<AtomicU64>,
}

impl UserDirectory {
    pub fn new(users: &[User], gate: VerificationGate) -> Self {
        let mut mac_key = [0u8; 32];
        fill_random(&mut mac_key);
        UserDirectory {
            users: users
                .iter()
                .map(|u| {
                    let account = Account {
                        phc: u.password_hash.as_str().into(),
                        verified: RwLock::new(None),
                    };
                    (u.name.clone(), account)
                })
                .collect(),
            mac_key,
            memory: Arc::new(Argon2Memory::new(gate.concurrent())),
            gate,
            in_flight: Mutex::new(HashMap::new()),
            argon2_runs: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Whether `name` exists and `password` matches its hash: from the
    /// cache when this password was verified before, else by argon2 on the
    /// blocking pool, behind the gate. `still_admitted` is asked again when
    /// the check gets a core: a login whose address was locked out while it
    /// waited in the queue is rejected without argon2.
    pub async fn verify(
        &self,
        name: &str,
        password: &str,
        still_admitted: impl Fn() -> bool,
    ) -> Verdict {
        let account = self.users.get(name);
        let phc: Arc<str> = account.map_or_else(|| DECOY_HASH.into(), |a| a.phc.clone());
        let tag = self.tag(name, &phc, password);
        if account.is_some_and(|a| a.is_verified(&tag)) {
            return Verdict::Accepted;
        }
        let check = self.join_check(tag);
        let outcome = check
            .cell
            .get_or_try_init(|| self.run_argon2(phc, password, still_admitted))
            .await;
        match (outcome, account) {
            (Ok(true), Some(account)) => {
                account.remember(tag);
                Verdict::Accepted
            }
            (Ok(_), _) | (Err(NotRun::Withdrawn), _) => Verdict::Rejected,
            (Err(NotRun::Busy), _) => Verdict::Busy,
        }
    }

    /// How many argon2 verifications have run (the decoy's included).
    pub fn argon2_runs(&self) -> u64 {
        self.argon2_runs.load(Ordering::Relaxed)
    }

    fn tag(&self, name: &str, phc: &str, password: &str) -> Tag {
        let mut mac = <Blake2sMac256 as KeyInit>::new_from_slice(&self.mac_key)
            .expect("BLAKE2s takes a 32-byte key");
        // Length prefixes keep (name, phc, password) splits apart.
        for part in [name, phc] {
            mac.update(&(part.len() as u64).to_le_bytes());
            mac.update(part.as_bytes());
        }
        mac.update(password.as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// The check of `tag` already in progress, or a new one.
    fn join_check(&self, tag: Tag) -> CheckHandle<'_> {
        let mut in_flight = self.lock_in_flight();
        let cell = in_flight.entry(tag).or_default().clone();
        CheckHandle {
            directory: self,
            tag,
            cell,
        }
    }

    fn lock_in_flight(&self) -> std::sync::MutexGuard<'_, HashMap<Tag, InFlight>> {
        self.in_flight
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// An error is not shared with the logins waiting on this check: each
    /// of them then tries for itself.
    async fn run_argon2(
        &self,
        phc: Arc<str>,
        password: &str,
        still_admitted: impl Fn() -> bool,
    ) -> Result<bool, NotRun> {
        let pass = self.gate.enter().await.map_err(|Busy| NotRun::Busy)?;
        if !still_admitted() {
            return Err(NotRun::Withdrawn);
        }
        let password = password.to_string();
        let (runs, memory) = (self.argon2_runs.clone(), self.memory.clone());
        let matched = tokio::task::spawn_blocking(move || {
            let _pass = pass;
            runs.fetch_add(1, Ordering::Relaxed);
            memory.verify(&phc, password.as_bytes())
        })
        .await
        .unwrap_or(false);
        Ok(matched)
    }
}

/// A login's share in a check. Whoever finishes (or is cancelled) first
/// takes the check out of the map, so the map holds only checks in flight.
struct CheckHandle<'a> {
    directory: &'a UserDirectory,
    tag: Tag,
    cell: InFlight,
}

impl Drop for CheckHandle<'_> {
    fn drop(&mut self) {
        let mut in_flight = self.directory.lock_in_flight();
        if in_flight
            .get(&self.tag)
            .is_some_and(|cell| Arc::ptr_eq(cell, &self.cell))
        {
            in_flight.remove(&self.tag);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::phc::hash_password;
    use super::*;

    fn admitted() -> bool {
        true
    }

    async fn check(dir: &UserDirectory, name: &str, password: &str) -> Verdict {
        dir.verify(name, password, admitted).await
    }

    fn directory(users: &[(&str, &str)]) -> UserDirectory {
        let users: Vec<User> = users
            .iter()
            .map(|(name, password)| User {
                name: name.to_string(),
                password_hash: hash_password(password).unwrap(),
                ..User::default()
            })
            .collect();
        UserDirectory::new(&users, VerificationGate::new(2, 64))
    }

    #[tokio::test]
    async fn verifies_only_the_right_password() {
        let dir = directory(&[("app", "s3cret")]);
        assert_eq!(check(&dir, "app", "s3cret").await, Verdict::Accepted);
        assert_eq!(check(&dir, "app", "wrong").await, Verdict::Rejected);
        assert_eq!(check(&dir, "nobody", "s3cret").await, Verdict::Rejected);
    }

    #[tokio::test]
    async fn a_verified_password_is_accepted_again_without_argon2() {
        let dir = directory(&[("app", "s3cret")]);
        assert_eq!(check(&dir, "app", "s3cret").await, Verdict::Accepted);
        assert_eq!(dir.argon2_runs(), 1);
        for _ in 0..10 {
            assert_eq!(check(&dir, "app", "s3cret").await, Verdict::Accepted);
        }
        assert_eq!(dir.argon2_runs(), 1);
    }

    #[tokio::test]
    async fn wrong_passwords_and_unknown_users_are_never_cached() {
        let dir = directory(&[("app", "s3cret"), ("other", "pw2")]);
        assert_eq!(check(&dir, "app", "s3cret").await, Verdict::Accepted);
        for (name, password) in [
            ("app", "wrong"),
            ("app", "s3cret "),
            ("app", ""),
            ("other", "s3cret"),
            ("nobody", "s3cret"),
        ] {
            for _ in 0..2 {
                let runs = dir.argon2_runs();
                assert_eq!(check(&dir, name, password).await, Verdict::Rejected);
                // Each refusal paid for its own hash: not shortcut, not cached.
                assert_eq!(dir.argon2_runs(), runs + 1, "{name}/{password}");
            }
        }
        // The right password of the other user is still checked normally.
        assert_eq!(check(&dir, "other", "pw2").await, Verdict::Accepted);
        assert_eq!(check(&dir, "app", "s3cret").await, Verdict::Accepted);
    }

    #[tokio::test]
    async fn a_mac_is_bound_to_its_user_hash_and_key() {
        let dir = directory(&[("app", "s3cret")]);
        let phc = dir.users["app"].phc.clone();
        let tag = dir.tag("app", &phc, "s3cret");
        assert_eq!(tag, dir.tag("app", &phc, "s3cret"));
        assert_ne!(tag, dir.tag("app", DECOY_HASH, "s3cret"));
        assert_ne!(tag, dir.tag("ap", &format!("p{phc}"), "s3cret"));
        let other_process = directory(&[("app", "s3cret")]);
        assert_ne!(tag, other_process.tag("app", &phc, "s3cret"));
    }

    #[tokio::test]
    async fn simultaneous_logins_with_one_password_share_one_check() {
        let dir = Arc::new(directory(&[("app", "s3cret")]));
        let logins: Vec<_> = (0..20)
            .map(|_| {
                let dir = dir.clone();
                tokio::spawn(async move { dir.verify("app", "s3cret", admitted).await })
            })
            .collect();
        for login in logins {
            assert_eq!(login.await.unwrap(), Verdict::Accepted);
        }
        assert_eq!(dir.argon2_runs(), 1);
        assert!(dir.lock_in_flight().is_empty());
    }

    #[tokio::test]
    async fn a_full_queue_makes_the_login_busy() {
        let users = [User {
            name: "app".into(),
            password_hash: hash_password("s3cret").unwrap(),
            ..User::default()
        }];
        let dir = UserDirectory::new(&users, VerificationGate::new(1, 0));
        let held = dir.gate.enter().await.unwrap();
        assert_eq!(check(&dir, "app", "s3cret").await, Verdict::Busy);
        assert!(dir.lock_in_flight().is_empty());
        drop(held);
        assert_eq!(check(&dir, "app", "s3cret").await, Verdict::Accepted);
    }

    #[tokio::test]
    async fn a_login_withdrawn_in_the_queue_runs_no_argon2_and_its_followers_check_themselves() {
        let dir = directory(&[("app", "s3cret")]);
        assert_eq!(
            dir.verify("app", "s3cret", || false).await,
            Verdict::Rejected
        );
        assert_eq!(dir.argon2_runs(), 0);
        // Nothing was cached or shared: the same password is checked anew.
        assert_eq!(check(&dir, "app", "s3cret").await, Verdict::Accepted);
        assert_eq!(dir.argon2_runs(), 1);
    }

    #[test]
    fn decoy_hash_parses() {
        assert!(argon2::PasswordHash::new(DECOY_HASH).is_ok());
    }
}
