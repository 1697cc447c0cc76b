//! PHC password hashes (argon2): making one, and checking a password
//! against one in argon2 working memory that is kept and reused.
//!
//! Why reuse: argon2's own `verify_password` allocates its working memory
//! (19 MiB with the default parameters) on every call, 64-byte aligned. With
//! glibc those aligned blocks do not fit in the holes earlier ones leave, so
//! each blocking-pool thread's arena grew by about 19 MiB per check up to
//! some 160 MiB, and a few threads made hundreds of MiB of RSS out of a
//! handful of concurrent checks. Keeping one buffer per verification slot
//! makes the memory of all checks exactly slots × `m` KiB, for good.

use std::sync::Mutex;

use argon2::password_hash::{PasswordHash, PasswordHasher, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use subtle::ConstantTimeEq;

/// Longest salt a PHC string carries [PHC string format: 64 bytes of B64].
const MAX_SALT_BYTES: usize = 64;

/// argon2 working memory, one buffer per verification that may run at once.
pub struct Argon2Memory {
    free: Mutex<Vec<Vec<Block>>>,
    keep: usize,
}

impl Argon2Memory {
    /// Keeps at most `keep` buffers between checks (the number that can
    /// run at once); a check beyond that allocates and frees its own.
    pub fn new(keep: usize) -> Self {
        Argon2Memory {
            free: Mutex::new(Vec::new()),
            keep,
        }
    }

    /// Whether `password` matches the PHC string `phc`; false for a string
    /// that is not an argon2 hash. Blocks for as long as argon2 takes.
    pub fn verify(&self, phc: &str, password: &[u8]) -> bool {
        let mut memory = self.lock().pop().unwrap_or_default();
        let matched = verify_in(phc, password, &mut memory);
        let mut free = self.lock();
        if free.len() < self.keep {
            free.push(memory);
        }
        matched
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Vec<Block>>> {
        // A Vec of buffers is consistent after every step.
        self.free
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// What argon2's `PasswordVerifier` does (parameters, algorithm, version and
/// salt from the PHC string; constant-time comparison of the outputs), with
/// the caller's memory instead of a fresh allocation. argon2 writes every
/// block before it reads it, so what a buffer held before does not matter.
fn verify_in(phc: &str, password: &[u8], memory: &mut Vec<Block>) -> bool {
    let Ok(hash) = PasswordHash::new(phc) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (hash.salt, hash.hash) else {
        return false;
    };
    let Ok(params) = Params::try_from(&hash) else {
        return false;
    };
    let Ok(algorithm) = Algorithm::try_from(hash.algorithm) else {
        return false;
    };
    let version = match hash.version.map(Version::try_from).transpose() {
        Ok(version) => version.unwrap_or_default(),
        Err(_) => return false,
    };
    let mut salt_bytes = [0u8; MAX_SALT_BYTES];
    let Ok(salt) = salt.decode_b64(&mut salt_bytes) else {
        return false;
    };
    if memory.len() < params.block_count() {
        memory.resize(params.block_count(), Block::default());
    }
    let mut output = vec![0u8; expected.len()];
    Argon2::new(algorithm, version, params)
        .hash_password_into_with_memory(password, salt, &mut output, memory.as_mut_slice())
        .is_ok()
        && bool::from(expected.as_bytes().ct_eq(&output))
}

/// A PHC string for `password` with a random salt (`sluice hash-password`).
pub fn hash_password(password: &str) -> Result<String, argon2::password_hash::Error> {
    let mut bytes = [0u8; 16];
    fill_random(&mut bytes);
    let salt = SaltString::encode_b64(&bytes)?;
    Ok(Argon2::default()
        .hash_password(password.as_bytes(), &salt)?
        .to_string())
}

/// Salts and MAC keys from the OS random source (via rustls' ring provider).
pub fn fill_random(out: &mut [u8]) {
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
    use argon2::password_hash::PasswordVerifier;

    fn argon2_verifies(phc: &str, password: &str) -> bool {
        let hash = PasswordHash::new(phc).unwrap();
        Argon2::default()
            .verify_password(password.as_bytes(), &hash)
            .is_ok()
    }

    /// One buffer, reused across hashes of different sizes, algorithms and
    /// versions, gives what argon2's own verifier gives.
    #[test]
    fn agrees_with_argon2s_own_verifier_while_reusing_one_buffer() {
        let small = Params::new(64, 1, 1, None).unwrap();
        let mut hashes = vec![hash_password("right").unwrap()];
        for (algorithm, version) in [
            (Algorithm::Argon2i, Version::V0x10),
            (Algorithm::Argon2d, Version::V0x13),
            (Algorithm::Argon2id, Version::V0x13),
        ] {
            let salt = SaltString::encode_b64(b"sixteen byte sal").unwrap();
            let hasher = Argon2::new(algorithm, version, small.clone());
            hashes.push(hasher.hash_password(b"right", &salt).unwrap().to_string());
        }
        let memory = Argon2Memory::new(1);
        for phc in &hashes {
            for password in ["right", "wrong", "", "right "] {
                assert_eq!(
                    memory.verify(phc, password.as_bytes()),
                    argon2_verifies(phc, password),
                    "{phc} / {password:?}"
                );
            }
        }
        assert!(memory.verify(&hashes[0], b"right"));
        assert_eq!(memory.lock().len(), 1);
    }

    #[test]
    fn a_string_that_is_not_an_argon2_hash_matches_nothing() {
        let memory = Argon2Memory::new(1);
        for phc in [
            "",
            "not a hash",
            "$scrypt$ln=16,r=8,p=1$aM15713r3Xsvxbi31lqr1Q$nFNh2CVHVjNldFVKDHDlm4CbdRSCdEBsjjJxD+iCs5E",
            "$argon2id$v=19$m=64,t=1,p=1$c2l4dGVlbiBieXRlIHNhbA",
        ] {
            assert!(!memory.verify(phc, b""), "{phc}");
        }
    }
}
