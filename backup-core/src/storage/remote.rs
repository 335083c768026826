//! Writing to services that have no multipart upload to hide an unfinished
//! object (SFTP): the artifact is written under `.partial/{run}.{random}`
//! beside the type folders (never listed), renamed into place when whole,
//! and deleted when the run fails. Abandoned ones (a killed worker) are
//! found by run or by age, as on local disk.

use std::time::{Duration, SystemTime};

use opendal::{ErrorKind, Operator};

use super::{error::StorageError, error::op_err, local::PARTIAL_DIR, manifest::ArtifactKey};

/// An upload written under a staging name.
pub(crate) struct Staged {
    pub(crate) op: Operator,
    pub(crate) path: String,
}

impl Staged {
    /// The staging path of the artifact `key`: `.partial/{run}.{random}`.
    pub(crate) fn new(op: Operator, key: &str) -> Self {
        let run = ArtifactKey::parse(key).map_or(0, |k| k.run_id);
        Self {
            op,
            path: format!("{PARTIAL_DIR}/{run}.{}", uuid::Uuid::new_v4().simple()),
        }
    }

    /// Moves the whole upload to `key`.
    pub(crate) async fn publish(&self, key: &str) -> Result<(), StorageError> {
        self.op
            .rename(&self.path, key)
            .await
            .map_err(op_err("rename", key))
    }

    /// Deletes the unfinished upload.
    pub(crate) async fn discard(&self) -> Result<(), opendal::Error> {
        self.op.delete(&self.path).await
    }
}

/// Staged uploads that `pick` chooses (by file name and last change),
/// deleted; returns how many went.
pub(crate) async fn remove_partials(
    op: &Operator,
    pick: impl Fn(&str, Option<SystemTime>) -> bool,
) -> Result<usize, StorageError> {
    let dir = format!("{PARTIAL_DIR}/");
    let entries = match op.list(&dir).await {
        Ok(entries) => entries,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(op_err("list", dir)(e)),
    };
    let mut removed = 0;
    for entry in entries.iter().filter(|e| e.metadata().is_file()) {
        let changed = match entry.metadata().last_modified() {
            Some(t) => Some(SystemTime::from(t)),
            None => op
                .stat(entry.path())
                .await
                .ok()
                .and_then(|m| m.last_modified())
                .map(SystemTime::from),
        };
        if pick(entry.name(), changed) {
            op.delete(entry.path())
                .await
                .map_err(op_err("delete", entry.path()))?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// Whether a staged upload last changed more than `age` ago (unknown
/// times are kept: a live upload must never go).
pub(crate) fn older_than(changed: Option<SystemTime>, age: Duration) -> bool {
    changed
        .and_then(|t| SystemTime::now().duration_since(t).ok())
        .is_some_and(|d| d > age)
}
