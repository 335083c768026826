//! Scheduled database and media backups: the library both binaries wrap.
//!
//! The CLI and the worker parse arguments and wire things together; every
//! decision and every side effect lives here so tests can call it directly.
//!
//! The modules, in the order data flows through them:
//!
//! - [`config`]: the settings (TOML, then `BACKUP__` environment), parsed
//!   into domain types at load time; [`model`] holds the words every module
//!   shares (backup type, run status, trigger, target names, sizes).
//! - [`schedule`]: cron expressions and the stored schedules' setup plan;
//!   [`scheduler`] fires them, once per fire across replicas.
//! - [`queue`] (Redis) and [`jobs`]: job payloads and their handlers, with
//!   per-target [`lock`]s.
//! - [`backup`]: one run of one target, under a [`context`] (settings,
//!   storage, history, notifier).
//! - [`engine`]: the sources (PostgreSQL, MySQL/MariaDB, SQLite, media)
//!   that stream a dump; [`pipeline`] compresses ([`compress`]) and hashes
//!   it on its way to [`storage`], which writes artifacts and manifests;
//!   [`retention`] prunes old ones.
//! - [`history`]: the run, restore and schedule rows; [`maintenance`] keeps
//!   it tidy.
//! - [`notify`]: mail, webhooks and pings about outcomes; [`health`] the
//!   liveness and metrics data.
//! - [`restore`] reads back: restores, verification and drills.
//!
//! Around them: [`error`] gathers each module's errors, [`password`]
//! hashes the dashboard's passwords, [`redact`] keeps
//! secrets out of anything shown, [`telemetry`] sets up logging.

pub mod backup;
pub mod compress;
pub mod config;
pub mod context;
pub mod crypt;
pub mod engine;
pub mod error;
pub mod health;
pub mod history;
pub mod jobs;
pub mod lock;
pub mod maintenance;
pub mod model;
pub mod notify;
pub mod password;
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
