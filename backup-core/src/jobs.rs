//! Jobs and their handlers: the payloads as queued ([`payload`]), the
//! backup job ([`backup`](mod@backup)), its retry policy as a tower layer
//! on the queue workers ([`retry`]) and the chores ([`chore`]). The
//! handlers are plain async functions; the worker registers them with
//! apalis, single-process mode and `backup-cli backup` call them directly.

pub mod backup;
pub mod chore;
pub mod payload;
pub mod retry;

pub use self::{
    backup::{
        Attempted, Done, JobFailed, Runner, Settled, attempt, backup_handler, run_backup, settle,
    },
    chore::{chore_handler, run_chore, run_verification},
    payload::{BackupJob, Chore, MaintenanceJob},
    retry::RetryLayer,
};
