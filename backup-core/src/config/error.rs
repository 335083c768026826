//! Why the configuration could not be loaded.

use std::path::PathBuf;

/// Environment variable naming the config file.
pub const CONFIG_ENV: &str = "BACKUP_CONFIG";

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A config file was named explicitly but does not exist.
    #[error("config file {} not found; check --config or {CONFIG_ENV}", path.display())]
    NotFound {
        /// The missing file.
        path: PathBuf,
    },
    /// A key has a value that does not parse or is out of range.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// An [`ConfigError::Invalid`] with this message.
pub(crate) fn invalid(msg: impl Into<String>) -> ConfigError {
    ConfigError::Invalid(msg.into())
}

/// Refuses `value` of `key` outside `range`, naming both.
pub(crate) fn check_range<T>(
    key: &str,
    value: T,
    range: std::ops::RangeInclusive<T>,
) -> Result<(), ConfigError>
where
    T: PartialOrd + std::fmt::Display,
{
    if range.contains(&value) {
        Ok(())
    } else {
        Err(invalid(format!(
            "{key} = {value} is out of range; allowed: {}..={}",
            range.start(),
            range.end()
        )))
    }
}
