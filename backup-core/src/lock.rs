//! Per-target locks: two backups of one target never overlap, whichever
//! process runs them (worker replicas in Redis, jobs of one process in
//! memory, and `backup-cli backup` alike).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use crate::{
    config::Settings,
    model::BackupType,
    queue::{Queue, QueueError, RedisLock},
};

/// Per-target locks: two backups of one target never overlap.
#[derive(Debug, Clone)]
pub enum Locks {
    /// Across processes, in Redis.
    Redis(Queue),
    /// Within this process (single-process mode).
    Local(Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>),
}

/// A held target lock.
#[derive(Debug)]
pub enum Held {
    /// In Redis, renewed while held.
    Redis(RedisLock),
    /// In this process.
    Local(tokio::sync::OwnedMutexGuard<()>),
}

impl Held {
    /// Lets the next run of the target start.
    pub async fn release(self) {
        match self {
            Held::Redis(lock) => lock.release().await,
            Held::Local(guard) => drop(guard),
        }
    }
}

impl Locks {
    /// In-process locks.
    pub fn local() -> Self {
        Locks::Local(Arc::default())
    }

    /// Waits for the lock of `name`. A Redis lock left by a dead holder
    /// expires after `ttl`.
    ///
    /// # Errors
    ///
    /// When Redis fails.
    pub async fn acquire(&self, name: &str, ttl: Duration) -> Result<Held, QueueError> {
        match self {
            Locks::Local(map) => {
                let lock = {
                    let mut map = map.lock().unwrap_or_else(|p| p.into_inner());
                    map.entry(name.to_string()).or_default().clone()
                };
                Ok(Held::Local(lock.lock_owned().await))
            }
            Locks::Redis(queue) => {
                let mut waited = false;
                loop {
                    if let Some(lock) = queue.try_lock(name, ttl).await? {
                        return Ok(Held::Redis(lock));
                    }
                    if !waited {
                        tracing::info!(
                            lock = name,
                            "another backup of this target is running; waiting"
                        );
                        waited = true;
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    }
}

/// The lock every backup of a target takes (worker jobs and `backup-cli
/// backup` alike).
pub fn lock_name(backup_type: BackupType, target: &str) -> String {
    format!("{backup_type}:{target}")
}
/// The locks the configuration calls for: in Redis when `[queue]` is set
/// (so that they hold across every worker and the CLI), else in this
/// process.
///
/// # Errors
///
/// When `[queue]` is set and Redis cannot be reached: backing up without
/// the lock could overlap a worker's backup of the same target.
pub async fn for_settings(settings: &Settings) -> Result<Locks, QueueError> {
    match &settings.queue {
        Some(queue) => Ok(Locks::Redis(Queue::connect(queue).await?)),
        None => Ok(Locks::local()),
    }
}
