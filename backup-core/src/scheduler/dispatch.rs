//! Where fired jobs go: to Redis, where the first replica's push of a fire
//! wins ([`RedisDispatch`]), or straight into this process
//! ([`LocalDispatch`], single-process mode).

use std::{
    future::Future,
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::task::JoinSet;

use crate::{
    Error,
    jobs::{
        backup::{Runner, run_backup},
        chore::run_chore,
        payload::{BackupJob, MaintenanceJob},
    },
    pipeline::Progress,
    queue::{self, Queue, Wakes},
};

/// Where fired jobs go.
pub trait Dispatch: Send + Sync {
    /// Enqueues (or starts) a scheduled backup job; `Ok(false)` when this
    /// fire was already taken by another replica.
    fn backup(
        &self,
        schedule: &str,
        job: BackupJob,
    ) -> impl Future<Output = Result<bool, Error>> + Send;
    /// Enqueues (or starts) the maintenance job; `Ok(false)` when taken.
    fn maintenance(&self, job: MaintenanceJob) -> impl Future<Output = Result<bool, Error>> + Send;
    /// Whether the queue is known to be away (its failures are then logged
    /// once by the connection, not by each caller).
    fn is_down(&self) -> bool {
        false
    }
}

/// Fires go to Redis with an idempotency key: the first replica's push
/// wins, and wakes its own worker so the job starts at once.
#[derive(Clone)]
pub struct RedisDispatch {
    queue: Queue,
    wakes: Wakes,
}

impl RedisDispatch {
    /// Pushes to `queue`, waking this process's workers through `wakes`.
    pub fn new(queue: Queue, wakes: Wakes) -> Self {
        Self { queue, wakes }
    }

    /// Wakes queue `kind`'s worker when the push was not a duplicate.
    fn woken(&self, kind: &str, task_id: Option<String>) -> bool {
        if task_id.is_some() {
            self.wakes.get(kind).signal();
        }
        task_id.is_some()
    }
}

impl RedisDispatch {
    /// The queue it pushes to.
    pub fn queue(&self) -> &Queue {
        &self.queue
    }

    /// Enqueues a manual backup (no idempotency key: each ask is a job);
    /// returns its task id.
    ///
    /// # Errors
    ///
    /// When Redis cannot take it.
    pub async fn manual(&self, job: &BackupJob) -> Result<String, Error> {
        let kind = queue::backup_queue(job.backup_type);
        let task_id = self.queue.push(kind, job, None).await?;
        self.woken(kind, task_id.clone());
        task_id.ok_or_else(|| {
            Error::Queue(queue::QueueError::Redis {
                what: "enqueueing a manual backup",
                reason: format!("the queue dropped the job for {}", job.target),
            })
        })
    }
}

impl Dispatch for RedisDispatch {
    fn is_down(&self) -> bool {
        self.queue.is_down()
    }

    async fn backup(&self, schedule: &str, job: BackupJob) -> Result<bool, Error> {
        let key = job.idempotency_key(schedule);
        let kind = queue::backup_queue(job.backup_type);
        let task_id = self.queue.push(kind, &job, key.as_deref()).await?;
        Ok(self.woken(kind, task_id))
    }

    async fn maintenance(&self, job: MaintenanceJob) -> Result<bool, Error> {
        let key = format!("{}:{}", job.chore.as_str(), job.scheduled_for.timestamp());
        let task_id = self
            .queue
            .push(queue::MAINTENANCE, &job, Some(&key))
            .await?;
        Ok(self.woken(queue::MAINTENANCE, task_id))
    }
}

/// Single-process mode: each fire runs as a task of this process, with the
/// same handlers as the queue workers. The history claim of the fire
/// (`advance_schedule`) keeps it from running twice.
#[derive(Clone)]
pub struct LocalDispatch {
    runner: Arc<Runner>,
    tasks: Arc<Mutex<JoinSet<()>>>,
}

impl LocalDispatch {
    /// Runs jobs with `runner`.
    pub fn new(runner: Arc<Runner>) -> Self {
        Self {
            runner,
            tasks: Arc::default(),
        }
    }

    fn spawn(&self, work: impl Future<Output = ()> + Send + 'static) {
        let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        // Reap finished jobs so the set does not grow.
        while tasks.try_join_next().is_some() {}
        tasks.spawn(work);
    }

    /// Starts a manual backup in this process now; returns its task id.
    pub fn manual(&self, job: BackupJob) -> String {
        let runner = self.runner.clone();
        let task_id = uuid::Uuid::now_v7().simple().to_string();
        let id = task_id.clone();
        self.spawn(async move {
            let _ = run_backup(&runner, &job, Some(&id), Progress::default()).await;
        });
        task_id
    }

    /// Lets the running jobs finish within `grace`, then interrupts the
    /// rest; returns how many were interrupted.
    pub async fn drain(&self, grace: Duration) -> usize {
        let mut running =
            std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|p| p.into_inner()));
        if !running.is_empty() {
            tracing::info!(
                jobs = running.len(),
                grace_seconds = grace.as_secs(),
                "waiting for running jobs"
            );
        }
        let drained = tokio::time::timeout(grace, async {
            while running.join_next().await.is_some() {}
        })
        .await;
        let left = running.len();
        if drained.is_err() {
            tracing::warn!(
                jobs = left,
                "grace period over; interrupting running backups"
            );
            running.shutdown().await;
        }
        left
    }
}

impl Dispatch for LocalDispatch {
    async fn backup(&self, _schedule: &str, job: BackupJob) -> Result<bool, Error> {
        let runner = self.runner.clone();
        let task_id = uuid::Uuid::new_v4().simple().to_string();
        self.spawn(async move {
            let _ = run_backup(&runner, &job, Some(&task_id), Progress::default()).await;
        });
        Ok(true)
    }

    async fn maintenance(&self, job: MaintenanceJob) -> Result<bool, Error> {
        let runner = self.runner.clone();
        self.spawn(async move {
            if let Err(e) = run_chore(&runner.ctx, &job).await {
                tracing::error!(error = %e, chore = job.chore.as_str(), "chore failed");
            }
        });
        Ok(true)
    }
}
