//! The jobs as queued: a backup of one target, and the scheduled chores.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::model::{BackupType, Trigger};

/// A backup of one target, as queued.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackupJob {
    /// What to back up.
    pub backup_type: BackupType,
    /// The target's name.
    pub target: String,
    /// Manual, scheduled or catch-up.
    pub trigger: Trigger,
    /// Who asked for it, when manual (`cli:<user>`, `web:<user>`,
    /// `token:<name>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub triggered_by: Option<String>,
    /// The fire time, when scheduled.
    pub scheduled_for: Option<DateTime<Utc>>,
    /// The job this delivery belongs to: the task id of its first delivery.
    /// A retry is a new delivery of the same job; its attempts are numbered
    /// on, and its outcome is the job's. `None` on the first delivery.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,
}

impl BackupJob {
    /// The id the job's runs and result are kept under: `job_id`, else this
    /// delivery's task id.
    pub fn id(&self, task_id: Option<&str>) -> Option<String> {
        self.job_id.clone().or_else(|| task_id.map(str::to_string))
    }

    /// The key that makes a scheduled fire enqueue once across replicas:
    /// schedule, target and fire time. Manual jobs have none.
    pub fn idempotency_key(&self, schedule: &str) -> Option<String> {
        self.scheduled_for
            .map(|at| format!("{schedule}:{}:{}", self.target, at.timestamp()))
    }
}

/// A scheduled chore: the daily maintenance, or the verification of the
/// newest artifacts (`verify_schedule`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MaintenanceJob {
    /// Its fire time.
    pub scheduled_for: DateTime<Utc>,
    /// Which chore.
    #[serde(default)]
    pub chore: Chore,
}

/// The chores the maintenance queue runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Chore {
    /// History cleanup, lost runs, partial uploads.
    #[default]
    Maintenance,
    /// Verify the newest artifact of each target, drill restores.
    Verify,
}

impl Chore {
    /// Its name, as in idempotency keys and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Chore::Maintenance => "maintenance",
            Chore::Verify => "verify",
        }
    }
}
