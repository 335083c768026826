//! Storage failures, worded for people.

use opendal::ErrorKind;

/// Storage failures.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The storage could not be set up from the configuration.
    #[error("cannot open storage {url}: {source}")]
    Open {
        /// Storage URL (no secrets).
        url: String,
        /// OpenDAL's error.
        #[source]
        source: Box<opendal::Error>,
    },
    /// An operation on a key failed.
    #[error("storage {op} of {key} failed: {}", describe(source))]
    Op {
        /// What was attempted (write, read, list, delete).
        op: &'static str,
        /// The key.
        key: String,
        /// OpenDAL's error.
        #[source]
        source: Box<opendal::Error>,
    },
    /// A local file operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A target name that cannot be a storage folder.
    #[error("{message}")]
    BadTarget {
        /// What is wrong with it.
        message: String,
    },
    /// The storage settings lack something the service needs.
    #[error("{message}")]
    Config {
        /// What is missing.
        message: String,
    },
    /// A manifest could not be parsed, or disagrees with where it lies.
    #[error("manifest {key} is not valid: {message}")]
    BadManifest {
        /// The manifest key.
        key: String,
        /// What is wrong.
        message: String,
    },
}

/// OpenDAL errors print their whole context (and, for HTTP, long bodies);
/// keep the kind and the message a person needs.
pub(crate) fn describe(e: &opendal::Error) -> String {
    let mut message = e.message().lines().next().unwrap_or_default().to_string();
    // The cause says what went wrong ("Host key verification failed",
    // "connection refused"), not only which layer failed: its first line,
    // with every registered secret masked.
    if let Some(cause) = std::error::Error::source(e) {
        let cause = cause.to_string();
        let first = cause
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty() && !l.chars().all(|c| c == '@'))
            .unwrap_or_default();
        if !first.is_empty() && !message.contains(first) {
            message = format!("{message}: {}", crate::redact::scrub(first));
        }
    }
    let refused = message.contains("Unauthorized") || message.contains("Forbidden");
    let hint = match e.kind() {
        ErrorKind::PermissionDenied => "; check the credentials and the permissions on the target",
        ErrorKind::NotFound => "; check that the bucket or directory exists",
        _ if refused => "; check the credentials",
        _ => "",
    };
    format!("{message} ({}){hint}", e.kind())
}

/// Maps an OpenDAL error of operation `op` on `key`.
pub(crate) fn op_err(
    op: &'static str,
    key: impl Into<String>,
) -> impl FnOnce(opendal::Error) -> StorageError {
    let key = key.into();
    move |source| StorageError::Op {
        op,
        key,
        source: Box::new(source),
    }
}

impl StorageError {
    /// Whether retrying cannot help (permissions, configuration).
    pub fn is_permanent(&self) -> bool {
        match self {
            StorageError::Open { .. }
            | StorageError::BadManifest { .. }
            | StorageError::BadTarget { .. }
            | StorageError::Config { .. } => true,
            StorageError::Op { source, .. } => matches!(
                source.kind(),
                ErrorKind::PermissionDenied | ErrorKind::ConfigInvalid | ErrorKind::NotFound
            ),
            StorageError::Io { .. } => false,
        }
    }
}
