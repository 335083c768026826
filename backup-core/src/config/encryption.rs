//! `[encryption]`: artifacts encrypted with age before they leave the
//! process. Backups need only public keys (`recipients`); restores and deep
//! verification need an identity (`identity_file`, or `--identity`).

use std::{
    path::{Path, PathBuf},
    str::FromStr,
};

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use super::{
    error::{ConfigError, invalid},
    values::{resolve, serialize_secret},
};
use crate::redact;

/// At most this many recipients (each adds a stanza to every artifact).
pub const MAX_RECIPIENTS: usize = 64;

/// `[encryption]`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct EncryptionSettings {
    /// age public keys (`age1…`) every artifact is encrypted to: several,
    /// so that a second key can sit offline. After loading, this holds the
    /// keys of `recipients_file` too.
    pub recipients: Vec<String>,
    /// A file of age public keys, one per line (`#` comments), as
    /// `age-keygen -y` prints them.
    pub recipients_file: Option<PathBuf>,
    /// Encrypt to a passphrase instead (age's scrypt): every backup and
    /// every restore needs it. Better given as
    /// `BACKUP__ENCRYPTION__PASSPHRASE`.
    #[serde(serialize_with = "serialize_secret")]
    pub passphrase: Option<SecretString>,
    /// The age identity file (`age-keygen -o FILE`) that restores and
    /// verification decrypt with; not needed to back up.
    pub identity_file: Option<PathBuf>,
}

impl EncryptionSettings {
    /// Whether new artifacts are encrypted.
    pub fn enabled(&self) -> bool {
        !self.recipients.is_empty() || self.passphrase.is_some()
    }

    /// Whether an identity to decrypt with is configured.
    pub fn can_decrypt(&self) -> bool {
        self.identity_file.is_some() || self.passphrase.is_some()
    }

    pub(crate) fn validate(&mut self, base: &Path) -> Result<(), ConfigError> {
        if let Some(file) = &mut self.recipients_file {
            *file = resolve(base, file);
            let text = std::fs::read_to_string(&*file).map_err(|e| {
                invalid(format!(
                    "encryption.recipients_file {}: {e}",
                    file.display()
                ))
            })?;
            for (n, line) in text.lines().enumerate() {
                let line = line.trim();
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                check_recipient(line).map_err(|why| {
                    invalid(format!(
                        "encryption.recipients_file {} line {}: {why}",
                        file.display(),
                        n + 1
                    ))
                })?;
                self.recipients.push(line.to_string());
            }
            if self.recipients.is_empty() {
                return Err(invalid(format!(
                    "encryption.recipients_file {} holds no age public key",
                    file.display()
                )));
            }
        }
        for (i, r) in self.recipients.iter_mut().enumerate() {
            *r = r.trim().to_string();
            check_recipient(r)
                .map_err(|why| invalid(format!("encryption.recipients[{i}]: {why}")))?;
        }
        self.recipients.sort();
        self.recipients.dedup();
        if self.recipients.len() > MAX_RECIPIENTS {
            return Err(invalid(format!(
                "encryption: {} recipients; at most {MAX_RECIPIENTS}",
                self.recipients.len()
            )));
        }
        if let Some(p) = &self.passphrase {
            if !self.recipients.is_empty() {
                return Err(invalid(
                    "encryption: give recipients or a passphrase, not both (age cannot mix them)",
                ));
            }
            if p.expose_secret().chars().count() < 12 {
                return Err(invalid(
                    "encryption.passphrase must be at least 12 characters",
                ));
            }
        }
        if let Some(file) = &mut self.identity_file {
            *file = resolve(base, file);
        }
        Ok(())
    }

    pub(crate) fn register_secrets(&self) {
        if let Some(p) = &self.passphrase {
            redact::register(p.expose_secret());
        }
    }
}

/// Checks an age X25519 public key (`age1…`). The text is not echoed: a
/// secret key pasted by mistake must not reach the log.
fn check_recipient(text: &str) -> Result<(), String> {
    if text.starts_with("AGE-SECRET-KEY-") {
        return Err(
            "this is a secret key (AGE-SECRET-KEY-…); give its public key, \
                    printed by `age-keygen -y FILE`"
                .into(),
        );
    }
    age::x25519::Recipient::from_str(text)
        .map(|_| ())
        .map_err(|_| "not an age public key (age1… as `age-keygen -y` prints it)".into())
}
