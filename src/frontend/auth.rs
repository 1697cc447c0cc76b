//! Client authentication against `[[users]]`: SQL Server logins checked
//! against PHC password hashes (argon2).

use std::collections::HashMap;

use argon2::password_hash::{PasswordHash, PasswordVerifier};
use argon2::Argon2;

use crate::config::User;

/// Verified against when the user name is unknown, so that a wrong name
/// costs the same time as a wrong password and names cannot be probed.
const DECOY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c2x1aWNlZGVjb3k$9yq5E1iBzW4vQ1j5l4t7T5d5B4p1JdJ1r8l2c6iZ0y0";

pub struct UserDirectory {
    users: HashMap<String, String>,
}

impl UserDirectory {
    pub fn new(users: &[User]) -> Self {
        UserDirectory {
            users: users
                .iter()
                .map(|u| (u.name.clone(), u.password_hash.clone()))
                .collect(),
        }
    }

    /// True when `name` exists and `password` matches its hash. Runs the
    /// hash on the blocking pool: argon2 takes tens of milliseconds.
    pub async fn verify(&self, name: &str, password: &str) -> bool {
        let known = self.users.get(name);
        let hash = known.cloned().unwrap_or_else(|| DECOY_HASH.to_string());
        let password = password.to_string();
        let matched = tokio::task::spawn_blocking(move || verify_phc(&hash, &password))
            .await
            .unwrap_or(false);
        matched && known.is_some()
    }
}

fn verify_phc(hash: &str, password: &str) -> bool {
    PasswordHash::new(hash)
        .map(|parsed| {
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
        .unwrap_or(false)
}

/// A PHC string for `password` with a random salt (`sluice hash-password`).
pub fn hash_password(password: &str) -> Result<String, argon2::password_hash::Error> {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let mut bytes = [0u8; 16];
    getrandom_salt(&mut bytes);
    let salt = SaltString::encode_b64(&bytes)?;
    Ok(Argon2::default()
        .hash_password(password.as_bytes(), &salt)?
        .to_string())
}

/// Salt from the OS random source (via rustls' ring provider).
fn getrandom_salt(out: &mut [u8]) {
    let rng = rustls::crypto::ring::default_provider().secure_random;
    if rng.fill(out).is_err() {
        // No OS randomness: fall back to time and pid, still unique per call.
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
            ^ u128::from(std::process::id());
        for (i, b) in out.iter_mut().enumerate() {
            *b = (seed >> ((i % 16) * 8)) as u8;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn verifies_only_the_right_password() {
        let hash = hash_password("s3cret").unwrap();
        let dir = UserDirectory::new(&[User {
            name: "app".into(),
            password_hash: hash,
            ..User::default()
        }]);
        assert!(dir.verify("app", "s3cret").await);
        assert!(!dir.verify("app", "wrong").await);
        assert!(!dir.verify("nobody", "s3cret").await);
    }

    #[test]
    fn decoy_hash_parses() {
        assert!(PasswordHash::new(DECOY_HASH).is_ok());
    }
}
