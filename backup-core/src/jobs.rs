//! Jobs and their handlers: the payloads as queued ([`payload`]), the
//! backup job ([`backup`](mod@backup)) and the chores ([`chore`]). The
//! handlers are plain async functions; the worker registers them with
//! apalis, single-process mode and `backup-cli backup` call them directly.

pub mod backup;
pub mod chore;
pub mod payload;

pub use self::{
    backup::{Done, JobFailed, Runner, backup_handler, run_backup},
    chore::{chore_handler, run_chore, run_verification},
    payload::{BackupJob, Chore, MaintenanceJob},
};
