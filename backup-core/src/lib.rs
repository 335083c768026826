//! Scheduled database and media backups: the library both binaries wrap.
//!
//! The CLI and the worker parse arguments and wire things together; every
//! decision and every side effect lives here so tests can call it directly.

pub mod backup;
pub mod compress;
pub mod config;
pub mod engine;
pub mod error;
pub mod history;
pub mod jobs;
pub mod notify;
pub mod pipeline;
pub mod queue;
pub mod redact;
pub mod restore;
pub mod retention;
pub mod schedule;
pub mod scheduler;
pub mod storage;
pub mod telemetry;

pub use error::{Error, Result};

/// Process-wide set-up both binaries call first thing in `main`.
///
/// Installs rustls' ring crypto provider and OpenDAL's reqwest HTTP
/// transport (without them every S3 call fails at run time), and narrows the
/// umask so that every file this process creates (artifacts on local disk,
/// the SQLite history, temporary copies) is private to its owner.
pub fn init_process() {
    install_crypto_provider();
    opendal_http_transport_reqwest::install_default();
    restrict_umask();
}

/// Makes rustls' ring provider the process default, which every TLS client
/// here (S3, webhooks, SMTP) builds on. Idempotent: a provider already
/// installed stays.
pub(crate) fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

#[allow(unsafe_code)]
fn restrict_umask() {
    // SAFETY: umask(2) only swaps the process file-mode mask; it cannot fail
    // and touches no memory.
    unsafe {
        libc::umask(0o077);
    }
}
