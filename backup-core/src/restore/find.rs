//! Finding the backup to restore or verify: by run, by artifact key, or the
//! newest of a target, through its manifest.

use super::error::RestoreError;
use crate::{
    Error,
    context::Context,
    history::{BackupRun, HistoryError},
    model::{BackupType, RunStatus, check_target_name},
    storage::{ArtifactKey, Listed, MANIFEST_SUFFIX, Manifest},
};

/// Which backup to restore.
#[derive(Debug, Clone)]
pub enum Pick {
    /// The artifact of this backup run.
    Run(i64),
    /// The newest complete artifact of the target.
    Latest,
    /// This artifact key.
    Artifact(String),
}

/// Which backup: one of `--run`, `--latest` (the default) and
/// `--artifact`. The flags of every command that picks one backup.
#[derive(Debug, Clone, Default)]
#[cfg_attr(feature = "clap", derive(clap::Args))]
#[cfg_attr(feature = "clap", group(multiple = false))]
pub struct Which {
    /// The artifact of this backup run.
    #[cfg_attr(feature = "clap", arg(long, value_name = "ID"))]
    pub run: Option<i64>,
    /// The newest complete backup of the target (the default).
    #[cfg_attr(feature = "clap", arg(long))]
    pub latest: bool,
    /// This artifact key (see `artifacts list`).
    #[cfg_attr(feature = "clap", arg(long, value_name = "KEY"))]
    pub artifact: Option<String>,
}

impl Which {
    /// The backup these flags name.
    pub fn pick(&self) -> Pick {
        match (&self.run, &self.artifact) {
            (Some(id), _) => Pick::Run(*id),
            (_, Some(key)) => Pick::Artifact(key.clone()),
            _ => Pick::Latest,
        }
    }
}

/// The manifest of the backup `pick` names, for a target of `backup_type`.
///
/// # Errors
///
/// [`RestoreError::NotFound`] naming what is missing, or a storage/history
/// failure.
pub async fn find(
    ctx: &Context,
    backup_type: BackupType,
    target: Option<&str>,
    pick: &Pick,
) -> Result<Found, Error> {
    let not_found = |msg: String| Error::from(RestoreError::NotFound(msg));
    let mut warnings = Vec::new();
    let manifest = match pick {
        Pick::Artifact(key) => {
            let key = key.strip_suffix(MANIFEST_SUFFIX).unwrap_or(key);
            // An argument is not a path to follow anywhere in storage.
            ArtifactKey::parse(key).map_err(RestoreError::Refused)?;
            manifest_of(ctx, key).await?
        }
        Pick::Run(id) => {
            let run = match ctx.history.get(*id).await {
                Ok(run) => run,
                Err(HistoryError::NotFound(_)) => {
                    return Err(not_found(format!(
                        "no backup run with id {id}; see `backup-cli runs list`"
                    )));
                }
                Err(e) => return Err(e.into()),
            };
            let Some(key) = run
                .artifact
                .as_deref()
                .filter(|_| run.status == RunStatus::Success)
            else {
                return Err(not_found(format!(
                    "run {id} did not succeed ({}); it has no artifact to restore",
                    run.status
                )));
            };
            manifest_of(ctx, key).await?
        }
        Pick::Latest => {
            let target = match target {
                Some(t) => t.to_string(),
                None => only_target(ctx, backup_type)?,
            };
            check_target_name(&target).map_err(RestoreError::Refused)?;
            let mut newest = None;
            for listed in ctx
                .storage
                .listing(Some(backup_type), Some(&target))
                .await?
            {
                match listed {
                    Listed::Valid(manifest) => {
                        newest = Some(*manifest);
                        break;
                    }
                    // Newer than the newest valid one: say so, skip it.
                    Listed::Damaged { key, reason } => warnings.push(format!(
                        "skipped {key}, newer but damaged: {reason}; see `backup-cli artifacts list`"
                    )),
                }
            }
            newest.ok_or_else(|| {
                not_found(format!(
                    "storage holds no complete {backup_type} backup of {target:?}; see `backup-cli artifacts list`"
                ))
            })?
        }
    };
    // Storage is not trusted: where history still has the run, the
    // artifact must be the one it recorded (a forged artifact with a
    // matching manifest is refused).
    match ctx.history.get(manifest.run_id).await {
        Ok(run) => agree(&run, &manifest)?,
        Err(HistoryError::NotFound(_)) => warnings.push(format!(
            "run {} of {} is not in this history (cleaned up, or made by another deployment): \
             the artifact is checked against its own manifest only",
            manifest.run_id, manifest.artifact
        )),
        Err(e) => return Err(e.into()),
    }
    for warning in &warnings {
        tracing::warn!("{warning}");
    }
    if manifest.backup_type != backup_type {
        return Err(RestoreError::Refused(format!(
            "{} is a {} backup, not a {backup_type} one",
            manifest.artifact, manifest.backup_type
        ))
        .into());
    }
    if let Some(target) = target
        && manifest.target != target
    {
        return Err(RestoreError::Refused(format!(
            "{} is a backup of {:?}, not of {target:?}",
            manifest.artifact, manifest.target
        ))
        .into());
    }
    Ok(Found { manifest, warnings })
}

/// The backup [`find`] picked.
#[derive(Debug, Clone)]
pub struct Found {
    /// Its manifest, checked against its key.
    pub manifest: Manifest,
    /// What the operator should know: newer artifacts skipped as damaged.
    pub warnings: Vec<String>,
}

/// The manifest beside `key`, or why there is none.
pub(crate) async fn manifest_of(ctx: &Context, key: &str) -> Result<Manifest, Error> {
    if let Some(manifest) = ctx.storage.manifest(key).await? {
        return Ok(manifest);
    }
    let why = if ctx.storage.exists(key).await? {
        format!(
            "{key} has no manifest ({key}{MANIFEST_SUFFIX}): it is not a complete backup, and its \
             checksum cannot be checked"
        )
    } else {
        format!("{key} is not in storage (deleted by retention?); see `backup-cli artifacts list`")
    };
    Err(RestoreError::NotFound(why).into())
}

/// The one configured target of a type, when `--target` was not given.
fn only_target(ctx: &Context, backup_type: BackupType) -> Result<String, Error> {
    let names: Vec<String> = ctx
        .settings
        .targets(&[backup_type], None)?
        .iter()
        .map(|t| t.name().to_string())
        .collect();
    match names.as_slice() {
        [one] => Ok(one.clone()),
        _ => Err(RestoreError::Refused(format!(
            "several {backup_type} targets are configured ({}); choose one with --target",
            names.join(", ")
        ))
        .into()),
    }
}

/// Checks that history's record of a run and the manifest in storage name
/// the same artifact, size and sha256.
///
/// # Errors
///
/// [`RestoreError::Damaged`] saying how they differ.
pub(crate) fn agree(run: &BackupRun, manifest: &Manifest) -> Result<(), Error> {
    let same = run.artifact.as_deref() == Some(manifest.artifact.as_str())
        && run.sha256.as_deref() == Some(manifest.sha256.as_str())
        && run.size_bytes.and_then(|s| u64::try_from(s).ok()) == Some(manifest.size_bytes);
    if same {
        Ok(())
    } else {
        Err(RestoreError::Damaged {
            key: manifest.artifact.clone(),
            what: format!(
                "its manifest (sha256 {}, {} bytes) disagrees with run {} in history (sha256 {}, \
                 {} bytes)",
                manifest.sha256,
                manifest.size_bytes,
                run.id,
                run.sha256.as_deref().unwrap_or("none"),
                run.size_bytes.unwrap_or_default()
            ),
        }
        .into())
    }
}
