//! Argon2id: hashing a dashboard password or token for the config
//! (`backup-cli dashboard hash-password`), and checking one against its
//! hash in constant time (`backup-web`).

use argon2::{
    Argon2,
    password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString, rand_core::OsRng},
};

/// The Argon2id PHC string of `secret`, with a random salt.
///
/// # Errors
///
/// When hashing fails (it does not with the default parameters).
pub fn hash_secret(secret: &str) -> Result<String, String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(secret.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| format!("cannot hash: {e}"))
}

/// Whether `secret` matches the PHC string `hash`. A hash that does not
/// parse matches nothing.
pub fn matches(secret: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|parsed| {
        Argon2::default()
            .verify_password(secret.as_bytes(), &parsed)
            .is_ok()
    })
}

/// Whether `hash` is an Argon2id PHC string this module can check.
pub fn is_argon2id(hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|h| h.algorithm.as_str() == "argon2id" && h.hash.is_some())
}

/// A hash to check against when the user does not exist, so that an
/// unknown name costs as long as a wrong password.
pub fn decoy() -> String {
    hash_secret("decoy password that matches nothing").unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_matches_its_secret_only() {
        let hash = hash_secret("correct horse").expect("hash");
        assert!(hash.starts_with("$argon2id$"));
        assert!(matches("correct horse", &hash));
        assert!(!matches("correct horsf", &hash));
        assert!(!matches("correct horse", "not a hash"));
        assert!(is_argon2id(&hash));
        assert!(!is_argon2id(
            "$argon2i$v=19$m=16,t=2,p=1$c2FsdHNhbHQ$aGFzaA"
        ));
        assert!(!is_argon2id("plain text"));
    }
}
