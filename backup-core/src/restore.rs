//! Bringing backups back and proving they can be: restore into a database
//! or a directory, and verify artifacts in storage.
//!
//! Every artifact is read through one path, [`stream_artifact`]: chunks from
//! storage are hashed as they arrive and checked against the manifest (size
//! and sha256) when the last one has been read, and the last chunk is held
//! back until then. A consumer (`pg_restore`, the `mariadb` client, a
//! SQLite temporary file, a tar extractor) therefore never sees the end of
//! a damaged artifact: it gets an error instead, and what it did so far is
//! rolled back (`pg_restore --single-transaction`) or thrown away (the
//! SQLite temporary file, the media staging directory). The `mariadb`
//! client cannot roll back DDL, so a MySQL artifact is verified in full
//! before the restore starts, and checked again while it streams.

use std::{
    fs,
    io::{self, Read},
    path::{Component, Path, PathBuf},
    sync::Arc,
    sync::atomic::{AtomicU64, Ordering},
};

use bytes::Bytes;
use chrono::Utc;
use futures_util::TryStreamExt;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use crate::{
    Error,
    backup::Context,
    compress::{self, Codec},
    config::DatabaseSource,
    engine::{EngineError, mysql, postgres, sqlite},
    history::{
        BackupRun, BackupType, HistoryError, NewRestore, RestoreKind, RestoreRun, RunStatus,
    },
    pipeline::Progress,
    storage::{MANIFEST_SUFFIX, Manifest},
};

/// Why a restore or a verification cannot go on.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// The run, artifact or manifest asked for does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The restore would do something the user did not agree to, or that
    /// cannot work (another engine, a non-empty directory, tables present).
    #[error("{0}")]
    Refused(String),
    /// The artifact is not what its manifest says.
    #[error("artifact {key} is damaged: {what}")]
    Damaged {
        /// The artifact's key.
        key: String,
        /// What differs.
        what: String,
    },
}

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
) -> Result<Manifest, Error> {
    let not_found = |msg: String| Error::from(RestoreError::NotFound(msg));
    let manifest = match pick {
        Pick::Artifact(key) => {
            let key = key.strip_suffix(MANIFEST_SUFFIX).unwrap_or(key);
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
            ctx.storage
                .manifests(Some(backup_type), Some(&target))
                .await?
                .into_iter()
                .next()
                .ok_or_else(|| {
                    not_found(format!(
                        "storage holds no complete {backup_type} backup of {target:?}; see `backup-cli artifacts list`"
                    ))
                })?
        }
    };
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
    Ok(manifest)
}

/// The manifest beside `key`, or why there is none.
async fn manifest_of(ctx: &Context, key: &str) -> Result<Manifest, Error> {
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
    let names: Vec<String> = crate::backup::select(&ctx.settings, &[backup_type], None)?
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

/// A [`Read`] over the chunks [`stream_artifact`] sends; an error, once
/// received, is returned for every later read too.
struct ChannelReader {
    rx: mpsc::Receiver<io::Result<Bytes>>,
    chunk: Bytes,
    failed: Option<(io::ErrorKind, String)>,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some((kind, msg)) = &self.failed {
            return Err(io::Error::new(*kind, msg.clone()));
        }
        while self.chunk.is_empty() {
            match self.rx.blocking_recv() {
                None => return Ok(0),
                Some(Ok(chunk)) => self.chunk = chunk,
                Some(Err(e)) => {
                    self.failed = Some((e.kind(), e.to_string()));
                    return Err(e);
                }
            }
        }
        let n = buf.len().min(self.chunk.len());
        buf[..n].copy_from_slice(&self.chunk[..n]);
        let _ = self.chunk.split_to(n);
        Ok(n)
    }
}

/// Counts the decompressed bytes a consumer reads.
struct Counting<R> {
    inner: R,
    count: Arc<AtomicU64>,
    progress: Progress,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        self.progress.add(n as u64);
        Ok(n)
    }
}

/// Streams the artifact of `manifest`, decompressed, into `consume` (run on
/// a blocking thread), checking size and sha256 against the manifest; see
/// the module documentation. Returns what `consume` returned and the
/// decompressed byte count.
///
/// # Errors
///
/// [`RestoreError::Damaged`] when the artifact differs from its manifest
/// (whatever `consume` said), else the storage's or `consume`'s error.
pub async fn stream_artifact<T: Send + 'static>(
    ctx: &Context,
    manifest: &Manifest,
    progress: Progress,
    consume: impl FnOnce(&mut dyn Read) -> Result<T, Error> + Send + 'static,
) -> Result<(T, u64), Error> {
    let codec = Codec::from_name(&manifest.compression).ok_or_else(|| RestoreError::Damaged {
        key: manifest.artifact.clone(),
        what: format!(
            "unknown compression {:?} in its manifest",
            manifest.compression
        ),
    })?;
    // Storage reads 512 KiB pieces two ahead (S3: one GET's small frames);
    // with one held back and two here, a restore holds about 3 MiB of
    // artifact whatever its size.
    let (tx, rx) = mpsc::channel::<io::Result<Bytes>>(2);
    let count = Arc::new(AtomicU64::new(0));
    let counted = count.clone();
    let consumer = tokio::task::spawn_blocking(move || {
        let reader = ChannelReader {
            rx,
            chunk: Bytes::new(),
            failed: None,
        };
        let decoder = compress::decoder(codec, reader).map_err(|e| Error::Io {
            context: "starting decompression".into(),
            source: e,
        })?;
        let mut input = Counting {
            inner: decoder,
            count: counted,
            progress,
        };
        consume(&mut input)
    });
    let pumped = pump(ctx, manifest, &tx).await;
    if let Err(e) = &pumped {
        // The consumer must see an error, never a clean end of input.
        let _ = tx
            .send(Err(io::Error::new(
                io::ErrorKind::InvalidData,
                e.to_string(),
            )))
            .await;
    }
    drop(tx);
    let consumed = consumer.await.map_err(|e| Error::Io {
        context: "reading the artifact".into(),
        source: io::Error::other(e.to_string()),
    })?;
    pumped?;
    Ok((consumed?, count.load(Ordering::Relaxed)))
}

/// Sends the artifact's chunks, each one only after the next has been read,
/// and the last only once size and sha256 match the manifest.
async fn pump(
    ctx: &Context,
    manifest: &Manifest,
    tx: &mpsc::Sender<io::Result<Bytes>>,
) -> Result<(), Error> {
    let key = &manifest.artifact;
    let mut stream = ctx.storage.read(key).await?;
    let mut hasher = Sha256::new();
    let mut size: u64 = 0;
    let mut held: Option<Bytes> = None;
    let mut open = true;
    while let Some(chunk) = stream.try_next().await? {
        hasher.update(&chunk);
        size += chunk.len() as u64;
        if let Some(previous) = held.replace(chunk)
            && open
            && tx.send(Ok(previous)).await.is_err()
        {
            // The consumer stopped reading; keep hashing to the end.
            open = false;
        }
    }
    let sha = hex::encode(hasher.finalize());
    let damaged = |what: String| {
        Err(RestoreError::Damaged {
            key: key.clone(),
            what,
        }
        .into())
    };
    if size != manifest.size_bytes {
        return damaged(format!(
            "it is {size} bytes, its manifest says {}",
            manifest.size_bytes
        ));
    }
    if sha != manifest.sha256 {
        return damaged(format!(
            "its sha256 is {sha}, its manifest says {}",
            manifest.sha256
        ));
    }
    if let Some(last) = held
        && open
    {
        let _ = tx.send(Ok(last)).await;
    }
    Ok(())
}

/// A database restore, checked and ready to run.
#[derive(Debug)]
pub struct DatabasePlan {
    /// The backup to restore.
    pub manifest: Manifest,
    /// Where it goes.
    pub destination: DatabaseSource,
    /// That destination, password masked.
    pub shown: String,
    /// Tables the destination holds now.
    pub existing_tables: u64,
}

/// Finds the backup, checks the destination (`into`, else the target's own
/// database) has the artifact's engine, and counts its tables. Changes
/// nothing.
///
/// # Errors
///
/// [`RestoreError`] for a missing backup or a mismatched engine; an
/// [`EngineError`] when the destination cannot be reached.
pub async fn plan_database(
    ctx: &Context,
    target: Option<&str>,
    pick: &Pick,
    into: Option<&str>,
) -> Result<DatabasePlan, Error> {
    let manifest = find(ctx, BackupType::Database, target, pick).await?;
    let destination = match into {
        Some(url) => {
            let mut source = DatabaseSource::parse(url).map_err(RestoreError::Refused)?;
            if let DatabaseSource::Sqlite { path } = &mut source {
                *path = std::path::absolute(&*path).map_err(|e| Error::Io {
                    context: format!("resolving {}", path.display()),
                    source: e,
                })?;
            }
            source
        }
        None => ctx
            .settings
            .database_backup
            .databases
            .iter()
            .find(|d| d.name == manifest.target)
            .map(|d| d.source.clone())
            .ok_or_else(|| {
                RestoreError::Refused(format!(
                    "target {:?} is not in the config; name the destination with --into URL",
                    manifest.target
                ))
            })?,
    };
    if destination.engine() != manifest.engine {
        return Err(RestoreError::Refused(format!(
            "{} is a {} backup ({}); it cannot be restored into {} ({})",
            manifest.artifact,
            manifest.engine,
            manifest.format,
            destination.redacted_url(),
            destination.engine()
        ))
        .into());
    }
    let existing_tables = tables(&destination).await?;
    Ok(DatabasePlan {
        shown: destination.redacted_url(),
        manifest,
        destination,
        existing_tables,
    })
}

async fn tables(destination: &DatabaseSource) -> Result<u64, EngineError> {
    match destination {
        DatabaseSource::Postgres(db) => postgres::tables(db).await,
        DatabaseSource::Mysql(db) => mysql::tables(db).await,
        DatabaseSource::Sqlite { path } => sqlite::tables(path).await,
    }
}

/// How a database restore treats what is there.
#[derive(Debug, Clone, Copy, Default)]
pub struct DatabaseOptions {
    /// The operator agreed to restore over existing tables.
    pub replace: bool,
    /// PostgreSQL: skip ownership and grants (restoring as another role).
    pub no_owner: bool,
}

/// The outcome of a restore: its history row, and the error if it failed.
#[derive(Debug)]
pub struct RestoreReport {
    /// The finished row.
    pub run: RestoreRun,
    /// Why it failed (also in `run.error_message`).
    pub error: Option<Error>,
}

/// Restores a planned database backup and records it. A failed restore is
/// a `failed` row in the report, not an `Err`.
///
/// # Errors
///
/// [`RestoreError::Refused`] when the destination has tables and
/// `replace` is not set (nothing is recorded then); history failures.
pub async fn run_database(
    ctx: &Context,
    plan: &DatabasePlan,
    options: DatabaseOptions,
    progress: Progress,
) -> Result<RestoreReport, Error> {
    if plan.existing_tables > 0 && !options.replace {
        return Err(RestoreError::Refused(format!(
            "{} already has {} table(s); restoring replaces the ones in the backup. Confirm \
             with --yes",
            plan.shown, plan.existing_tables
        ))
        .into());
    }
    record(
        ctx,
        RestoreKind::Restore,
        &plan.manifest,
        &plan.shown,
        async {
            let bytes = restore_into(ctx, plan, options, progress).await?;
            let items = tables(&plan.destination).await?;
            Ok((bytes, items))
        },
    )
    .await
}

/// Runs `work` under a restore row: `running`, then its outcome.
async fn record(
    ctx: &Context,
    kind: RestoreKind,
    manifest: &Manifest,
    destination: &str,
    work: impl Future<Output = Result<(u64, u64), Error>>,
) -> Result<RestoreReport, Error> {
    let started = ctx
        .history
        .start_restore(&NewRestore {
            kind,
            backup_type: manifest.backup_type,
            target: manifest.target.clone(),
            source_run_id: Some(manifest.run_id),
            artifact: manifest.artifact.clone(),
            destination: destination.to_string(),
            worker: ctx.worker.clone(),
        })
        .await?;
    tracing::info!(restore_id = started.id, artifact = %manifest.artifact, destination, "restore started");
    match work.await {
        Ok(done) => {
            let run = ctx.history.finish_restore(&started, Ok(done)).await?;
            tracing::info!(
                restore_id = run.id,
                bytes = done.0,
                items = done.1,
                "restore succeeded"
            );
            Ok(RestoreReport { run, error: None })
        }
        Err(e) => {
            let message = crate::backup::one_line(&e.to_string());
            tracing::error!(restore_id = started.id, error = %message, "restore failed");
            let run = ctx.history.finish_restore(&started, Err(&message)).await?;
            Ok(RestoreReport {
                run,
                error: Some(e),
            })
        }
    }
}

/// Streams the artifact into the destination; returns the bytes restored.
async fn restore_into(
    ctx: &Context,
    plan: &DatabasePlan,
    options: DatabaseOptions,
    progress: Progress,
) -> Result<u64, Error> {
    let tools = ctx.settings.tools.clone();
    let engine_err = |e: EngineError| Error::from(e);
    match &plan.destination {
        DatabaseSource::Postgres(db) => {
            let db = db.clone();
            let flags = postgres::RestoreFlags {
                clean: plan.existing_tables > 0,
                no_owner: options.no_owner,
            };
            let ((), bytes) = stream_artifact(ctx, &plan.manifest, progress, move |input| {
                postgres::restore(&db, &tools, flags, input).map_err(engine_err)
            })
            .await?;
            Ok(bytes)
        }
        DatabaseSource::Mysql(db) => {
            // The client commits as it goes: prove the artifact whole first.
            stream_artifact(ctx, &plan.manifest, Progress::default(), |input| {
                io::copy(input, &mut io::sink()).map_err(|e| Error::Io {
                    context: "reading the artifact".into(),
                    source: e,
                })
            })
            .await?;
            let db = db.clone();
            let ((), bytes) = stream_artifact(ctx, &plan.manifest, progress, move |input| {
                mysql::restore(&db, &tools, input).map_err(engine_err)
            })
            .await?;
            Ok(bytes)
        }
        DatabaseSource::Sqlite { path } => {
            restore_sqlite(ctx, &plan.manifest, path, progress).await
        }
    }
}

/// Writes the database to a temporary file beside `path`, checks it, and
/// renames it over `path`: a failed restore leaves the old file as it was.
async fn restore_sqlite(
    ctx: &Context,
    manifest: &Manifest,
    path: &Path,
    progress: Progress,
) -> Result<u64, Error> {
    let io_err = |context: String| move |source| Error::Io { context, source };
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf();
    fs::create_dir_all(&dir).map_err(io_err(format!("creating {}", dir.display())))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "db".into());
    let temp = tempfile::Builder::new()
        .prefix(&format!(".{name}.restore-"))
        .tempfile_in(&dir)
        .map_err(io_err(format!(
            "creating a temporary file in {}",
            dir.display()
        )))?;
    let (temp, bytes) = stream_artifact(ctx, manifest, progress, move |input| {
        let mut temp = temp;
        io::copy(input, temp.as_file_mut())
            .and_then(|_| temp.as_file().sync_all())
            .map_err(|e| Error::Io {
                context: "writing the restored SQLite file".into(),
                source: e,
            })?;
        Ok(temp)
    })
    .await?;
    sqlite::integrity_check(temp.path()).await?;
    if let Ok(meta) = fs::metadata(path) {
        fs::set_permissions(temp.path(), meta.permissions())
            .map_err(io_err(format!("copying the mode of {}", path.display())))?;
    }
    // A stale write-ahead log of the old file would be replayed into the
    // new one: remove it (the application must be stopped meanwhile).
    for suffix in ["-wal", "-shm"] {
        let mut side = path.as_os_str().to_owned();
        side.push(suffix);
        match fs::remove_file(&side) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(io_err(format!("removing {}", Path::new(&side).display()))(
                    e,
                ));
            }
        }
    }
    temp.persist(path).map_err(|e| {
        io_err(format!("renaming the restored file to {}", path.display()))(e.error)
    })?;
    Ok(bytes)
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
}

/// Finds the backup and checks the directory. Changes nothing.
///
/// # Errors
///
/// [`RestoreError`] for a missing backup or a `to` that is a file.
pub async fn plan_media(
    ctx: &Context,
    target: Option<&str>,
    pick: &Pick,
    to: &Path,
) -> Result<MediaPlan, Error> {
    let manifest = find(ctx, BackupType::Media, target, pick).await?;
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

/// Whether `path` is a plain relative path inside the archive root.
pub(crate) fn contained(path: &Path) -> bool {
    let mut depth: usize = 0;
    for part in path.components() {
        match part {
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            Component::ParentDir => match depth.checked_sub(1) {
                Some(d) => depth = d,
                None => return false,
            },
            Component::RootDir | Component::Prefix(_) => return false,
        }
    }
    true
}

/// Extracts a tar stream under `root`, refusing any entry that would write
/// or point outside it; restores modes, mtimes (directories' too) and
/// symlinks. Returns the number of non-directory entries.
fn extract(input: &mut dyn Read, root: &Path) -> Result<u64, Error> {
    let refused = |msg: String| Error::from(RestoreError::Refused(msg));
    let io_err = |context: String| move |source| Error::Io { context, source };
    let mut archive = tar::Archive::new(input);
    archive.set_preserve_permissions(true);
    archive.set_preserve_mtime(true);
    archive.set_unpack_xattrs(false);
    archive.set_overwrite(true);
    let mut files = 0;
    let mut dirs = Vec::new();
    for entry in archive
        .entries()
        .map_err(io_err("reading the archive".into()))?
    {
        let mut entry = entry.map_err(io_err("reading the archive".into()))?;
        let path = entry
            .path()
            .map_err(io_err("reading an archive entry name".into()))?
            .into_owned();
        if path.as_os_str().is_empty()
            || !contained(&path)
            || path.components().any(|c| c == Component::ParentDir)
        {
            return Err(refused(format!(
                "the archive has an entry outside the restore directory ({}); nothing is restored",
                path.display()
            )));
        }
        let kind = entry.header().entry_type();
        match kind {
            tar::EntryType::Regular | tar::EntryType::Directory => {}
            tar::EntryType::Symlink | tar::EntryType::Link => {
                let link = entry
                    .link_name()
                    .map_err(io_err("reading a link target".into()))?
                    .ok_or_else(|| refused(format!("link {} has no target", path.display())))?;
                // A symlink resolves from its own directory; a hard link
                // names an archive path.
                let resolved = if kind == tar::EntryType::Symlink {
                    path.parent().unwrap_or(Path::new("")).join(&link)
                } else {
                    link.to_path_buf()
                };
                if !contained(&resolved) {
                    return Err(refused(format!(
                        "the archive's link {} points outside the restore directory ({}); nothing \
                         is restored",
                        path.display(),
                        link.display()
                    )));
                }
            }
            other => {
                return Err(refused(format!(
                    "the archive has an entry of an unexpected type ({other:?}) at {}",
                    path.display()
                )));
            }
        }
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
        if kind == tar::EntryType::Directory {
            dirs.push((path, mtime));
        } else {
            files += 1;
        }
    }
    // Creating entries touched their directories' mtimes: set them last,
    // deepest first.
    dirs.sort_by_key(|(p, _)| std::cmp::Reverse(p.components().count()));
    for (dir, mtime) in dirs {
        if let Some(mtime) = mtime {
            let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(mtime);
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

/// What a restore drill found.
#[derive(Debug)]
pub struct Drill {
    /// The drill's restore row (`kind = drill`).
    pub report: RestoreReport,
    /// Rows per table of the restored copy.
    pub tables: Vec<(String, u64)>,
}

/// A restore drill: restores `manifest` into `scratch`, a database created
/// for the purpose (it must not exist), counts the rows of each table, and
/// drops it again, whatever happened.
///
/// # Errors
///
/// [`RestoreError::Refused`] for another engine or an existing scratch
/// database; failing to create or drop it. A failed restore is a `failed`
/// row in the report.
pub async fn drill(
    ctx: &Context,
    manifest: &Manifest,
    scratch: &DatabaseSource,
    progress: Progress,
) -> Result<Drill, Error> {
    if scratch.engine() != manifest.engine {
        return Err(RestoreError::Refused(format!(
            "{} is a {} backup; the scratch database {} is {}",
            manifest.artifact,
            manifest.engine,
            scratch.redacted_url(),
            scratch.engine()
        ))
        .into());
    }
    match scratch {
        DatabaseSource::Postgres(db) => postgres::create_database(db).await?,
        DatabaseSource::Mysql(db) => mysql::create_database(db).await?,
        DatabaseSource::Sqlite { path } => {
            if path.exists() {
                return Err(RestoreError::Refused(format!(
                    "scratch file {} exists; name one that does not (the drill creates and removes its own)",
                    path.display()
                ))
                .into());
            }
        }
    }
    let plan = DatabasePlan {
        manifest: manifest.clone(),
        destination: scratch.clone(),
        shown: scratch.redacted_url(),
        existing_tables: 0,
    };
    let mut tables = Vec::new();
    let report = record(ctx, RestoreKind::Drill, manifest, &plan.shown, async {
        let bytes = restore_into(ctx, &plan, DatabaseOptions::default(), progress).await?;
        tables = match scratch {
            DatabaseSource::Postgres(db) => postgres::row_counts(db).await?,
            DatabaseSource::Mysql(db) => mysql::row_counts(db).await?,
            DatabaseSource::Sqlite { path } => sqlite::row_counts(path).await?,
        };
        Ok((bytes, tables.len() as u64))
    })
    .await;
    let dropped = match scratch {
        DatabaseSource::Postgres(db) => postgres::drop_database(db).await.map_err(Error::from),
        DatabaseSource::Mysql(db) => mysql::drop_database(db).await.map_err(Error::from),
        DatabaseSource::Sqlite { path } => {
            let mut result = Ok(());
            for suffix in ["", "-wal", "-shm", "-journal"] {
                let mut file = path.as_os_str().to_owned();
                file.push(suffix);
                match fs::remove_file(&file) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => {
                        result = Err(Error::Io {
                            context: format!("removing {}", Path::new(&file).display()),
                            source: e,
                        });
                    }
                    _ => {}
                }
            }
            result
        }
    };
    let report = report?;
    dropped?;
    Ok(Drill { report, tables })
}

/// Which artifacts to verify.
#[derive(Debug, Clone)]
pub enum Scope {
    /// The artifact of one run.
    Run(i64),
    /// The newest artifact of each target.
    Latest,
    /// Every artifact in storage.
    All,
}

/// The outcome of verifying one artifact.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Verified {
    /// The run that made it, when known.
    pub run_id: Option<i64>,
    /// Database or media.
    pub backup_type: BackupType,
    /// Target name.
    pub target: String,
    /// The artifact's key.
    pub artifact: String,
    /// `postgresql`, `mysql`, `sqlite` or `media`, when its manifest was read.
    pub engine: Option<String>,
    /// Whether it is whole and readable.
    pub ok: bool,
    /// What was checked, or what is wrong.
    pub detail: String,
}

/// Verifies the artifacts in `scope` (of one target if given): size and
/// sha256 against the manifest and history, then a format check (`pg_restore
/// --list`, the dump's completion line, SQLite's `integrity_check`, a full
/// tar listing). Records each outcome on its run.
///
/// # Errors
///
/// When storage cannot be listed or history read; a bad artifact is a
/// result with `ok = false`, not an error.
pub async fn verify(
    ctx: &Context,
    scope: &Scope,
    target: Option<&str>,
) -> Result<Vec<Verified>, Error> {
    let keys: Vec<String> = match scope {
        Scope::Run(id) => {
            let run = match ctx.history.get(*id).await {
                Ok(run) => run,
                Err(HistoryError::NotFound(_)) => {
                    return Err(RestoreError::NotFound(format!(
                        "no backup run with id {id}; see `backup-cli runs list`"
                    ))
                    .into());
                }
                Err(e) => return Err(e.into()),
            };
            match run.artifact {
                Some(key) if run.status == RunStatus::Success => vec![key],
                _ => {
                    return Err(RestoreError::NotFound(format!(
                        "run {id} did not succeed ({}); it has no artifact",
                        run.status
                    ))
                    .into());
                }
            }
        }
        Scope::All | Scope::Latest => {
            let mut keys = ctx.storage.artifact_keys(None, target).await?;
            if matches!(scope, Scope::Latest) {
                // Keys are `{type}/{target}/{target}-{time}-{run}.{ext}`:
                // the newest of a target sorts last.
                let mut newest: Vec<String> = Vec::new();
                for key in keys {
                    let dir = key.rsplit_once('/').map(|(d, _)| d.to_string());
                    match newest.last_mut() {
                        Some(last) if last.rsplit_once('/').map(|(d, _)| d.to_string()) == dir => {
                            *last = key;
                        }
                        _ => newest.push(key),
                    }
                }
                keys = newest;
            }
            keys
        }
    };
    if keys.is_empty() {
        return Err(RestoreError::NotFound(match target {
            Some(t) => format!("storage holds no artifact of {t:?}"),
            None => "storage holds no artifacts".into(),
        })
        .into());
    }
    let mut results = Vec::new();
    for key in keys {
        let result = verify_one(ctx, &key).await;
        if let Some(id) = result.run_id {
            let outcome = if result.ok {
                "ok".to_string()
            } else {
                format!("failed: {}", result.detail)
            };
            match ctx.history.set_verified(id, Utc::now(), &outcome).await {
                Ok(()) | Err(HistoryError::NotFound(_)) => {}
                Err(e) => {
                    tracing::warn!(run_id = id, error = %e, "could not record the verification")
                }
            }
        }
        if result.ok {
            tracing::info!(artifact = %result.artifact, detail = %result.detail, "artifact verified");
        } else {
            tracing::error!(artifact = %result.artifact, detail = %result.detail, "artifact failed verification");
        }
        results.push(result);
    }
    Ok(results)
}

/// `{type}/{target}/{target}-{time}-{run}.{ext}` → (type, target, run).
fn parse_key(key: &str) -> (Option<BackupType>, String, Option<i64>) {
    let mut parts = key.splitn(3, '/');
    let backup_type = parts.next().and_then(|t| t.parse().ok());
    let target = parts.next().unwrap_or_default().to_string();
    let run = parts
        .next()
        .and_then(|file| file.strip_prefix(&format!("{target}-")))
        .and_then(|rest| rest.split_once('.'))
        .and_then(|(stem, _)| stem.rsplit_once('-'))
        .and_then(|(_, id)| id.parse().ok());
    (backup_type, target, run)
}

async fn verify_one(ctx: &Context, key: &str) -> Verified {
    let (backup_type, target, run_id) = parse_key(key);
    let mut result = Verified {
        run_id,
        backup_type: backup_type.unwrap_or(BackupType::Database),
        target,
        artifact: key.to_string(),
        engine: None,
        ok: false,
        detail: String::new(),
    };
    match check(ctx, key).await {
        Ok((manifest, detail)) => {
            result.run_id = Some(manifest.run_id);
            result.backup_type = manifest.backup_type;
            result.target = manifest.target;
            result.engine = Some(manifest.engine);
            result.ok = true;
            result.detail = detail;
        }
        Err(e) => result.detail = crate::backup::one_line(&e.to_string()),
    }
    result
}

/// Checks one artifact; returns its manifest and what was proven.
async fn check(ctx: &Context, key: &str) -> Result<(Manifest, String), Error> {
    let manifest = manifest_of(ctx, key).await?;
    // History must agree with the manifest, when it still has the run.
    let in_history = match ctx.history.get(manifest.run_id).await {
        Ok(run) => {
            agree(&run, &manifest)?;
            true
        }
        Err(HistoryError::NotFound(_)) => false,
        Err(e) => return Err(e.into()),
    };
    let tools = ctx.settings.tools.clone();
    let engine = manifest.engine.clone();
    let key = manifest.artifact.clone();
    let (deep, _) = stream_artifact(ctx, &manifest, Progress::default(), move |input| {
        deep_check(&key, &engine, &tools, input)
    })
    .await?;
    let deep = match deep {
        Deep::Done(text) => text,
        Deep::SqliteFile(temp) => {
            sqlite::integrity_check(temp.path()).await?;
            "SQLite integrity_check ok".into()
        }
    };
    Ok((
        manifest.clone(),
        format!(
            "{} bytes, sha256 matches the manifest{}; {deep}",
            manifest.size_bytes,
            if in_history { " and history" } else { "" }
        ),
    ))
}

fn agree(run: &BackupRun, manifest: &Manifest) -> Result<(), Error> {
    let same = run.artifact.as_deref() == Some(manifest.artifact.as_str())
        && run.sha256.as_deref() == Some(manifest.sha256.as_str())
        && run.size_bytes == Some(manifest.size_bytes as i64);
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

/// What a format check left to finish on the async side.
enum Deep {
    Done(String),
    SqliteFile(tempfile::NamedTempFile),
}

/// The format check of a decompressed artifact, by engine.
fn deep_check(
    key: &str,
    engine: &str,
    tools: &crate::config::ToolSettings,
    input: &mut dyn Read,
) -> Result<Deep, Error> {
    let read_err = |e| Error::Io {
        context: "reading the artifact".into(),
        source: e,
    };
    match engine {
        "postgresql" => {
            let entries = postgres::list_archive(tools, input)?;
            Ok(Deep::Done(format!(
                "pg_restore --list reads {entries} entries"
            )))
        }
        "mysql" => {
            // mariadb-dump ends a complete dump with "-- Dump completed on ...".
            let mut tail: Vec<u8> = Vec::new();
            let mut buf = vec![0u8; 256 * 1024];
            loop {
                let n = input.read(&mut buf).map_err(read_err)?;
                if n == 0 {
                    break;
                }
                tail.extend_from_slice(&buf[..n]);
                if tail.len() > 4096 {
                    tail.drain(..tail.len() - 4096);
                }
            }
            let text = String::from_utf8_lossy(&tail);
            match text.lines().rev().find(|l| !l.trim().is_empty()) {
                Some(line) if line.starts_with("-- Dump completed") => Ok(Deep::Done(
                    "the SQL dump is complete (\"-- Dump completed\")".into(),
                )),
                _ => Err(RestoreError::Damaged {
                    key: key.to_string(),
                    what: "it does not end with mariadb-dump's \"-- Dump completed\" line".into(),
                }
                .into()),
            }
        }
        "sqlite" => {
            let mut temp = tempfile::Builder::new()
                .prefix("backup-verify-")
                .suffix(".sqlite3")
                .tempfile()
                .map_err(|e| Error::Io {
                    context: "creating a temporary file".into(),
                    source: e,
                })?;
            io::copy(input, temp.as_file_mut()).map_err(read_err)?;
            Ok(Deep::SqliteFile(temp))
        }
        "media" => {
            let mut archive = tar::Archive::new(input);
            let mut entries = 0u64;
            for entry in archive.entries().map_err(read_err)? {
                let mut entry = entry.map_err(read_err)?;
                io::copy(&mut entry, &mut io::sink()).map_err(read_err)?;
                entries += 1;
            }
            Ok(Deep::Done(format!(
                "the tar archive lists {entries} entries"
            )))
        }
        other => Err(RestoreError::Damaged {
            key: key.to_string(),
            what: format!("unknown engine {other:?} in its manifest"),
        }
        .into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_relative_paths_are_contained() {
        for ok in ["a", "a/b", "./a", "a/../b", "a/b/../../c"] {
            assert!(contained(Path::new(ok)), "{ok}");
        }
        for bad in ["/etc/passwd", "..", "../x", "a/../../x", "a/b/../../../x"] {
            assert!(!contained(Path::new(bad)), "{bad}");
        }
    }

    #[test]
    fn artifact_keys_name_their_run() {
        assert_eq!(
            parse_key("database/shop/shop-20261126T020000Z-42.dump.zst"),
            (Some(BackupType::Database), "shop".into(), Some(42))
        );
        assert_eq!(
            parse_key("media/up-loads/up-loads-20261126T020000Z-7.tar"),
            (Some(BackupType::Media), "up-loads".into(), Some(7))
        );
    }
}
