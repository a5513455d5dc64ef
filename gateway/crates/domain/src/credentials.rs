//! Posts' MQTT passwords: generated once, shown once, stored only as a salted hash in
//! Mosquitto's own `$7$` format (PBKDF2-HMAC-SHA512), so the same hash serves the embedded
//! broker's check and the password file written for an external Mosquitto.

use std::num::NonZeroU32;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use ring::pbkdf2;
use ring::rand::{SecureRandom, SystemRandom};

use crate::secret::SecretString;

/// PBKDF2 rounds. Mosquitto's own default is 101; the passwords are 144 random bits, so rounds
/// add little against guessing, and a broker checks one at every (re)connect of every post.
const ROUNDS: u32 = 1_000;
/// Salt length Mosquitto uses.
const SALT_BYTES: usize = 12;
/// SHA-512 output.
const HASH_BYTES: usize = 64;
/// Random bytes in a generated password (24 characters of URL-safe base64).
const PASSWORD_BYTES: usize = 18;

/// Why a password could not be issued.
#[derive(Debug, thiserror::Error)]
#[error("the system random generator failed")]
pub struct RandomUnavailable;

/// A stored `$7$rounds$salt$hash` line part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswordHash(String);

impl PasswordHash {
    /// Hashes `password` with a fresh salt.
    pub fn new(password: &str) -> Result<Self, RandomUnavailable> {
        let mut salt = [0u8; SALT_BYTES];
        SystemRandom::new()
            .fill(&mut salt)
            .map_err(|_| RandomUnavailable)?;
        Ok(Self::with_salt(password, &salt, ROUNDS))
    }

    fn with_salt(password: &str, salt: &[u8], rounds: u32) -> Self {
        let mut out = [0u8; HASH_BYTES];
        let rounds = NonZeroU32::new(rounds).unwrap_or(NonZeroU32::MIN);
        pbkdf2::derive(
            pbkdf2::PBKDF2_HMAC_SHA512,
            rounds,
            salt,
            password.as_bytes(),
            &mut out,
        );
        Self(format!(
            "$7${rounds}${}${}",
            STANDARD.encode(salt),
            STANDARD.encode(out)
        ))
    }

    /// Reads a stored hash, refusing anything but the `$7$` form.
    pub fn parse(stored: &str) -> Option<Self> {
        Self::parts(stored).map(|_| Self(stored.to_string()))
    }

    fn parts(stored: &str) -> Option<(NonZeroU32, Vec<u8>, Vec<u8>)> {
        let mut it = stored.strip_prefix("$7$")?.split('$');
        let rounds = it.next()?.parse::<NonZeroU32>().ok()?;
        let salt = STANDARD.decode(it.next()?).ok()?;
        let hash = STANDARD.decode(it.next()?).ok()?;
        (it.next().is_none() && !salt.is_empty() && hash.len() == HASH_BYTES)
            .then_some((rounds, salt, hash))
    }

    /// Whether `password` matches (constant time in the hash comparison).
    pub fn verify(&self, password: &str) -> bool {
        match Self::parts(&self.0) {
            Some((rounds, salt, hash)) => pbkdf2::verify(
                pbkdf2::PBKDF2_HMAC_SHA512,
                rounds,
                &salt,
                password.as_bytes(),
                &hash,
            )
            .is_ok(),
            None => false,
        }
    }

    /// The stored form.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A new random password: 24 characters from `A-Z a-z 0-9 - _`, safe in URLs, shells and
/// Mosquitto's password file.
pub fn generate_password() -> Result<SecretString, RandomUnavailable> {
    let mut bytes = [0u8; PASSWORD_BYTES];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| RandomUnavailable)?;
    Ok(SecretString::new(
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes),
    ))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_hash_verifies_its_password_only() {
        let pw = generate_password().unwrap();
        assert_eq!(pw.expose().len(), 24);
        let h = PasswordHash::new(pw.expose()).unwrap();
        assert!(h.verify(pw.expose()));
        assert!(!h.verify("wrong"));
        assert!(!h.verify(""));
        let again = PasswordHash::parse(h.as_str()).unwrap();
        assert!(again.verify(pw.expose()));
        // Two hashes of one password differ by their salt.
        assert_ne!(PasswordHash::new(pw.expose()).unwrap(), h);
    }

    #[test]
    fn matches_mosquitto_passwd_output() {
        // Python's hashlib.pbkdf2_hmac("sha512", b"secret", salt, 101), the computation
        // mosquitto_passwd does (real Mosquitto also checks our file in tests/deploy_bundle.rs).
        let salt = STANDARD.decode("c2FsdHNhbHRzYWx0").unwrap();
        let h = PasswordHash::with_salt("secret", &salt, 101);
        assert_eq!(
            h.as_str(),
            "$7$101$c2FsdHNhbHRzYWx0$Hd71hnNoKcARd6Fkl1rUE+opfs3V78ZJB2AgXXC1kaKQiWfi5S5qX7D1mY5b+bIzvyidWMnS8VA+YAsAygq9EA=="
        );
        assert!(PasswordHash::parse(h.as_str()).unwrap().verify("secret"));
    }

    #[test]
    fn other_formats_are_refused() {
        for bad in [
            "",
            "plain",
            "$6$c2FsdA==$abc",
            "$7$0$c2FsdA==$",
            "$7$101$$x",
            "$7$101$c2FsdA==$c2hvcnQ=",
            "$7$x$c2FsdA==$c2hvcnQ=",
        ] {
            assert!(PasswordHash::parse(bad).is_none(), "{bad:?}");
        }
    }
}
