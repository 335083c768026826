//! Manifests, the JSON document beside each artifact, and the keys
//! artifacts are stored under.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::model::BackupType;

/// Suffix of the manifest beside each artifact.
pub const MANIFEST_SUFFIX: &str = ".manifest.json";

/// The JSON document stored beside each artifact.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Manifest format version.
    pub version: u32,
    /// The run that wrote it.
    pub run_id: i64,
    /// `database` or `media`.
    pub backup_type: BackupType,
    /// Target name.
    pub target: String,
    /// `postgresql`, `mysql`, `sqlite` or `media`.
    pub engine: String,
    /// What the decompressed bytes are, e.g. `pg_dump custom archive`.
    pub format: String,
    /// Database server version, when there is a server.
    pub server_version: Option<String>,
    /// Dump tool version, when a tool ran.
    pub tool_version: Option<String>,
    /// `zstd`, `gzip` or `none`.
    pub compression: String,
    /// Key of the artifact in storage.
    pub artifact: String,
    /// Size of the stored artifact in bytes.
    pub size_bytes: u64,
    /// sha256 of the stored artifact.
    pub sha256: String,
    /// Bytes before compression.
    pub source_bytes: u64,
    /// Files archived (media only).
    pub files: Option<u64>,
    /// When the run started.
    pub started_at: DateTime<Utc>,
    /// When the artifact was complete.
    pub created_at: DateTime<Utc>,
}

impl Manifest {
    /// Key of this manifest: the artifact's key plus [`MANIFEST_SUFFIX`].
    pub fn manifest_key(&self) -> String {
        format!("{}{MANIFEST_SUFFIX}", self.artifact)
    }
}

/// The key of a new artifact:
/// `{backup_type}/{target}/{target}-{YYYYmmddTHHMMSSZ}-{run_id}.{ext}`.
pub fn artifact_key(
    backup_type: BackupType,
    target: &str,
    started_at: DateTime<Utc>,
    run_id: i64,
    extension: &str,
) -> String {
    format!(
        "{}/{target}/{target}-{}-{run_id}.{extension}",
        backup_type.as_str(),
        started_at.format("%Y%m%dT%H%M%SZ")
    )
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn artifact_keys_are_readable_and_sort_by_time() {
        let t = Utc.with_ymd_and_hms(2026, 11, 26, 2, 0, 0).unwrap();
        assert_eq!(
            artifact_key(BackupType::Database, "shop", t, 42, "dump.zst"),
            "database/shop/shop-20261126T020000Z-42.dump.zst"
        );
    }
}
