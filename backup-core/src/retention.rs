//! Which artifacts to keep: a pure plan, then its application.

use crate::{
    model::BackupType,
    storage::{Manifest, Storage, StorageError},
};

/// What retention will do for one target.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Artifacts kept, newest first.
    pub keep: Vec<Manifest>,
    /// Artifacts to delete, newest first.
    pub delete: Vec<Manifest>,
}

/// Keeps the `keep` newest artifacts of one target and marks the rest for
/// deletion. The newest artifact is always kept, whatever `keep` says.
pub fn plan(mut artifacts: Vec<Manifest>, keep: u32) -> Plan {
    artifacts.sort_by(|a, b| {
        b.created_at
            .cmp(&a.created_at)
            .then(b.run_id.cmp(&a.run_id))
    });
    let keep = (keep.max(1) as usize).min(artifacts.len());
    let delete = artifacts.split_off(keep);
    Plan {
        keep: artifacts,
        delete,
    }
}

/// Deletes what the plan marks for the target `backup_type`/`target`,
/// returning the deleted artifact keys. Only keys under the target's own
/// folder are ever deleted, whatever a manifest says.
///
/// # Errors
///
/// Stops at the first delete that fails; what was deleted before stays deleted.
pub async fn apply(
    storage: &Storage,
    plan: &Plan,
    backup_type: BackupType,
    target: &str,
) -> Result<Vec<String>, StorageError> {
    let folder = format!("{}/{target}/", backup_type.as_str());
    let mut deleted = Vec::new();
    for manifest in &plan.delete {
        if !manifest.artifact.starts_with(&folder)
            || manifest.check(&manifest.manifest_key()).is_err()
        {
            tracing::warn!(artifact = %manifest.artifact, folder, "not deleted: it lies outside the target's folder");
            continue;
        }
        storage.delete(manifest).await?;
        deleted.push(manifest.artifact.clone());
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, TimeZone, Utc};

    fn manifest(run_id: i64, hours: i64) -> Manifest {
        let t = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap() + Duration::hours(hours);
        Manifest {
            version: 1,
            run_id,
            backup_type: BackupType::Database,
            target: "app".into(),
            engine: "postgresql".into(),
            format: "pg_dump custom archive".into(),
            server_version: None,
            tool_version: None,
            compression: "zstd".into(),
            artifact: format!("database/app/app-{run_id}.dump.zst"),
            size_bytes: 1,
            sha256: String::new(),
            source_bytes: 1,
            files: None,
            started_at: t,
            created_at: t,
            encryption: None,
        }
    }

    #[test]
    fn keeps_the_newest_n_whatever_the_input_order() {
        let p = plan(
            vec![
                manifest(1, 1),
                manifest(3, 3),
                manifest(2, 2),
                manifest(4, 4),
            ],
            2,
        );
        let ids = |v: &[Manifest]| v.iter().map(|m| m.run_id).collect::<Vec<_>>();
        assert_eq!(ids(&p.keep), [4, 3]);
        assert_eq!(ids(&p.delete), [2, 1]);
    }

    #[test]
    fn never_deletes_the_newest_and_handles_few_artifacts() {
        assert_eq!(plan(vec![manifest(1, 1), manifest(2, 2)], 0).keep.len(), 1);
        assert!(plan(vec![manifest(1, 1)], 10).delete.is_empty());
        assert!(plan(Vec::new(), 3).keep.is_empty());
    }
}
