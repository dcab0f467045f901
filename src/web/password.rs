//! Passwords: argon2id (memory-hard; the crate's defaults, m = 19 MiB, t = 2, p = 1, OWASP's
//! minimum) in PHC string form, the only form the store keeps. Hashing and checking cost
//! tens of milliseconds of CPU and 19 MiB, so async callers run them on the blocking pool
//! ([`hash_blocking`], [`verify_blocking`]).

use argon2::Argon2;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};

/// Why a password could not be hashed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The hash failed (no randomness for the salt).
    #[error("hashing the password failed: {0}")]
    Hash(String),
    /// The hashing task died.
    #[error("the password hashing task failed")]
    Task(#[from] tokio::task::JoinError),
}

/// The shortest password accepted.
pub const MIN_LEN: usize = 8;

/// A PHC string (`$argon2id$v=19$m=19456,t=2,p=1$…`) of `password` with a fresh salt.
pub fn hash(password: &str) -> Result<String, Error> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| Error::Hash(e.to_string()))
}

/// Whether `password` matches the PHC string `phc` (a malformed `phc` matches nothing).
pub fn verify(password: &str, phc: &str) -> bool {
    Argon2::default()
        .verify_password(password.as_bytes(), phc)
        .is_ok()
}

/// A stand-in PHC string checked when the user does not exist, so a login for an unknown
/// name costs the same as one with a wrong password (no user enumeration by timing).
pub fn decoy() -> &'static str {
    static DECOY: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        hash("lavabox decoy password").unwrap_or_else(|_| String::from("$argon2id$invalid"))
    });
    &DECOY
}

/// [`hash`] on the blocking pool.
pub async fn hash_blocking(password: String) -> Result<String, Error> {
    tokio::task::spawn_blocking(move || hash(&password)).await?
}

/// [`verify`] on the blocking pool; `phc` `None` checks the [`decoy`] and answers false.
pub async fn verify_blocking(password: String, phc: Option<String>) -> bool {
    tokio::task::spawn_blocking(move || match phc {
        Some(phc) => verify(&password, &phc),
        None => {
            let _ = verify(&password, decoy());
            false
        }
    })
    .await
    .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_salted_argon2id_and_verify() {
        let a = hash("correct horse").unwrap();
        let b = hash("correct horse").unwrap();
        assert!(a.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{a}");
        assert_ne!(a, b);
        assert!(verify("correct horse", &a));
        assert!(!verify("correct horsE", &a));
        assert!(!verify("correct horse", "not a phc string"));
    }
}
