//! Database restores: plan (find the backup, check the destination), then
//! stream the artifact into PostgreSQL (one transaction), MariaDB (after a
//! full check) or SQLite (a temporary file renamed into place).

use std::{fs, io, path::Path};

use super::{
    error::RestoreError,
    find::{Found, Which, find},
    record::{RestoreReport, record},
    stream::{check_opens, stream_artifact},
};
use crate::{
    Error,
    config::DatabaseSource,
    context::Context,
    engine::{self, EngineError, mysql, postgres, sqlite},
    model::{BackupType, RestoreKind},
    pipeline::Progress,
    storage::Manifest,
};

/// What to restore and where: the flags of `restore database`.
#[derive(Debug, Clone, Default)]
#[cfg_attr(feature = "clap", derive(clap::Args))]
pub struct DatabaseRequest {
    /// The target whose backup to restore.
    #[cfg_attr(
        feature = "clap",
        arg(long, short, value_parser = crate::model::parse_target_name)
    )]
    pub target: Option<String>,
    #[cfg_attr(feature = "clap", command(flatten))]
    pub which: Which,
    /// Restore into this database instead of the target's own (same engine).
    /// A URL with a password is better given as BACKUP_RESTORE_INTO.
    #[cfg_attr(
        feature = "clap",
        arg(
            long,
            value_name = "URL",
            env = "BACKUP_RESTORE_INTO",
            hide_env_values = true
        )
    )]
    pub into: Option<String>,
    /// Restore over existing tables without asking.
    #[cfg_attr(feature = "clap", arg(long))]
    pub yes: bool,
    /// PostgreSQL: skip ownership and grants (restoring as another role).
    #[cfg_attr(feature = "clap", arg(long))]
    pub no_owner: bool,
    /// Create the database first when it does not exist (a failed restore
    /// drops it again).
    #[cfg_attr(feature = "clap", arg(long))]
    pub create: bool,
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
    /// The destination does not exist yet: the restore creates it.
    pub create: bool,
    /// What the operator should know (newer damaged artifacts skipped).
    pub warnings: Vec<String>,
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
    request: &DatabaseRequest,
) -> Result<DatabasePlan, Error> {
    let Found { manifest, warnings } = find(
        ctx,
        BackupType::Database,
        request.target.as_deref(),
        &request.which.pick(),
    )
    .await?;
    check_opens(ctx, &manifest).await?;
    let destination = match &request.into {
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
    let exists = engine::database_exists(&destination).await?;
    if !exists && !request.create {
        return Err(RestoreError::Refused(format!(
            "{} does not exist; create it (createdb, CREATE DATABASE) or pass --create to have \
             the restore create it",
            destination.redacted_url()
        ))
        .into());
    }
    let existing_tables = if exists {
        engine::tables(&destination).await?
    } else {
        0
    };
    Ok(DatabasePlan {
        create: !exists,
        warnings,
        shown: destination.redacted_url(),
        manifest,
        destination,
        existing_tables,
    })
}

/// How a database restore treats what is there.
#[derive(Debug, Clone, Copy, Default)]
pub struct DatabaseOptions {
    /// The operator agreed to restore over existing tables.
    pub replace: bool,
    /// PostgreSQL: skip ownership and grants (restoring as another role).
    pub no_owner: bool,
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
            if plan.create {
                engine::create_database(&plan.destination).await?;
            }
            let restored = restore_into(ctx, plan, options, progress).await;
            if restored.is_err() && plan.create {
                // Nothing of the backup stayed in it (one transaction, or a
                // database made for it): leave the server as it was.
                if let Err(e) = engine::drop_database(&plan.destination).await {
                    tracing::warn!(error = %e, "could not drop the database created for the failed restore");
                }
            }
            let bytes = restored?;
            let items = engine::tables(&plan.destination).await?;
            Ok((bytes, items))
        },
    )
    .await
}

/// Streams the artifact into the destination; returns the bytes restored.
pub(crate) async fn restore_into(
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
