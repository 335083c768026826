//! Media restores: the tar extracted into a staging directory beside the
//! destination, every entry checked to stay inside it, then moved into
//! place.

use std::{
    fs,
    io::{self, Read},
    path::{Path, PathBuf},
};

use super::{
    archive::{Kind, Refusal, Rules, admit_entry},
    error::RestoreError,
    find::{Found, Which, find},
    record::{RestoreReport, record},
    stream::{check_opens, stream_artifact},
};
use crate::{
    Error,
    context::Context,
    model::{BackupType, RestoreKind},
    pipeline::Progress,
    storage::Manifest,
};

/// What to restore and where: the flags of `restore media`.
#[derive(Debug, Clone, Default)]
#[cfg_attr(feature = "clap", derive(clap::Args))]
pub struct MediaRequest {
    /// The target whose backup to restore.
    #[cfg_attr(
        feature = "clap",
        arg(long, short, value_parser = crate::model::parse_target_name)
    )]
    pub target: Option<String>,
    #[cfg_attr(feature = "clap", command(flatten))]
    pub which: Which,
    /// The directory to restore into (created if missing).
    #[cfg_attr(feature = "clap", arg(long, value_name = "DIR"))]
    pub to: PathBuf,
    /// Restore into a non-empty directory, replacing same-named entries.
    #[cfg_attr(feature = "clap", arg(long))]
    pub force: bool,
}

/// A media restore, checked and ready to run.
#[derive(Debug)]
pub struct MediaPlan {
    /// The backup to restore.
    pub manifest: Manifest,
    /// The directory to restore into (absolute).
    pub to: PathBuf,
    /// Whether it exists and holds something.
    pub non_empty: bool,
    /// What the operator should know (newer damaged artifacts skipped).
    pub warnings: Vec<String>,
}

/// Finds the backup and checks the directory. Changes nothing.
///
/// # Errors
///
/// [`RestoreError`] for a missing backup or a `to` that is a file.
pub async fn plan_media(ctx: &Context, request: &MediaRequest) -> Result<MediaPlan, Error> {
    let Found { manifest, warnings } = find(
        ctx,
        BackupType::Media,
        request.target.as_deref(),
        &request.which.pick(),
    )
    .await?;
    check_opens(ctx, &manifest).await?;
    let to = &request.to;
    let to = std::path::absolute(to).map_err(|e| Error::Io {
        context: format!("resolving {}", to.display()),
        source: e,
    })?;
    let non_empty = match fs::symlink_metadata(&to) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => false,
        Err(e) => {
            return Err(Error::Io {
                context: format!("reading {}", to.display()),
                source: e,
            });
        }
        Ok(meta) if !meta.is_dir() => {
            return Err(RestoreError::Refused(format!(
                "{} exists and is not a directory",
                to.display()
            ))
            .into());
        }
        Ok(_) => fs::read_dir(&to)
            .map_err(|e| Error::Io {
                context: format!("listing {}", to.display()),
                source: e,
            })?
            .next()
            .is_some(),
    };
    Ok(MediaPlan {
        manifest,
        to,
        non_empty,
        warnings,
    })
}

/// Extracts a planned media backup into a staging directory beside `to`,
/// then moves it into place; records the restore.
///
/// # Errors
///
/// [`RestoreError::Refused`] for a non-empty directory without `force`;
/// history failures.
pub async fn run_media(
    ctx: &Context,
    plan: &MediaPlan,
    force: bool,
    progress: Progress,
) -> Result<RestoreReport, Error> {
    if plan.non_empty && !force {
        return Err(RestoreError::Refused(format!(
            "{} is not empty; pass --force to restore into it (entries with the same names are \
             replaced)",
            plan.to.display()
        ))
        .into());
    }
    let shown = plan.to.display().to_string();
    record(ctx, RestoreKind::Restore, &plan.manifest, &shown, async {
        let parent = plan
            .to
            .parent()
            .ok_or_else(|| RestoreError::Refused("cannot restore into /".into()))?;
        fs::create_dir_all(parent).map_err(|e| Error::Io {
            context: format!("creating {}", parent.display()),
            source: e,
        })?;
        let name = plan
            .to
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let staging = tempfile::Builder::new()
            .prefix(&format!(".{name}.restore-"))
            .tempdir_in(parent)
            .map_err(|e| Error::Io {
                context: format!("creating a staging directory in {}", parent.display()),
                source: e,
            })?;
        let root = staging.path().to_path_buf();
        let (files, bytes) = stream_artifact(ctx, &plan.manifest, progress, move |input| {
            extract(input, &root)
        })
        .await?;
        install(staging, &plan.to).map_err(|e| Error::Io {
            context: format!("moving the restored files into {}", plan.to.display()),
            source: e,
        })?;
        Ok((bytes, files))
    })
    .await
}

/// Extracts a tar stream under `root`, refusing any entry that breaks the
/// archive rules ([`super::archive`]); restores modes (without setuid and
/// setgid bits), mtimes (directories' too), symlinks, hard links and sparse
/// files. Returns the number of non-directory entries.
fn extract(input: &mut dyn Read, root: &Path) -> Result<u64, Error> {
    let refused = |msg: String| Error::from(RestoreError::Refused(msg));
    let io_err = |context: String| move |source| Error::Io { context, source };
    let mut archive = tar::Archive::new(input);
    archive.set_preserve_permissions(true);
    // As GNU tar without --same-permissions: a restored file never grants
    // its owner's or group's rights to whoever runs it.
    archive.set_mask(0o6000);
    archive.set_preserve_mtime(true);
    archive.set_unpack_xattrs(false);
    archive.set_overwrite(false);
    let mut rules = Rules::default();
    let mut files = 0;
    let mut dirs = Vec::new();
    for entry in archive
        .entries()
        .map_err(io_err("reading the archive".into()))?
    {
        let mut entry = entry.map_err(io_err("reading the archive".into()))?;
        let (path, kind) = match admit_entry(&mut rules, &entry) {
            Ok(Some(admitted)) => admitted,
            Ok(None) => continue,
            Err(Refusal::Read(e)) => return Err(io_err("reading an archive entry".into())(e)),
            Err(Refusal::Rule(why)) => return Err(refused(format!("{why}; nothing is restored"))),
        };
        let mtime = entry.header().mtime().ok();
        let unpacked = entry
            .unpack_in(root)
            .map_err(io_err(format!("restoring {}", path.display())))?;
        if !unpacked {
            return Err(refused(format!(
                "the archive's entry {} would land outside the restore directory",
                path.display()
            )));
        }
        if kind == Kind::Dir {
            dirs.push((path, mtime));
        } else {
            files += 1;
        }
    }
    // Creating entries touched their directories' mtimes: set them last,
    // deepest first. A time past what the clock can hold is left as is.
    dirs.sort_by_key(|(p, _)| std::cmp::Reverse(p.components().count()));
    for (dir, mtime) in dirs {
        let at = mtime
            .and_then(|s| std::time::UNIX_EPOCH.checked_add(std::time::Duration::from_secs(s)));
        if let Some(at) = at {
            fs::File::open(root.join(&dir))
                .and_then(|f| f.set_modified(at))
                .map_err(io_err(format!("setting the mtime of {}", dir.display())))?;
        }
    }
    Ok(files)
}

/// Moves the staged tree into `to`: the whole directory when `to` is
/// missing or empty, else entry by entry, replacing same-named ones.
fn install(staging: tempfile::TempDir, to: &Path) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let empty = match fs::read_dir(to) {
        Ok(mut entries) => entries.next().is_none(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            // The staging directory is private; a media root is not.
            fs::set_permissions(staging.path(), fs::Permissions::from_mode(0o755))?;
            let staged = staging.keep();
            return fs::rename(&staged, to);
        }
        Err(e) => return Err(e),
    };
    if empty {
        fs::set_permissions(staging.path(), fs::metadata(to)?.permissions())?;
        fs::remove_dir(to)?;
        let staged = staging.keep();
        return fs::rename(&staged, to);
    }
    for entry in fs::read_dir(staging.path())? {
        let entry = entry?;
        let dest = to.join(entry.file_name());
        match fs::symlink_metadata(&dest) {
            Ok(meta) if meta.is_dir() => fs::remove_dir_all(&dest)?,
            Ok(_) => fs::remove_file(&dest)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        fs::rename(entry.path(), &dest)?;
    }
    Ok(())
}
