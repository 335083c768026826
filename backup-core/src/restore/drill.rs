//! Restore drills: an artifact restored into a scratch database created for
//! the purpose, its tables counted, and the database dropped again.

use std::{
    fs, io,
    path::{Path, PathBuf},
};

use super::{
    database::{DatabaseOptions, DatabasePlan, restore_into},
    error::RestoreError,
    find::{Pick, find},
    record::{RestoreReport, record},
    stream::check_opens,
    verify::Verified,
};
use crate::{
    Error,
    config::{DatabaseSource, Settings},
    context::Context,
    engine::{self, mysql, postgres},
    model::{BackupType, RestoreKind},
    pipeline::Progress,
    storage::Manifest,
};

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
    check_opens(ctx, manifest).await?;
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
        create: false,
        warnings: Vec::new(),
    };
    let mut tables = Vec::new();
    let report = record(ctx, RestoreKind::Drill, manifest, &plan.shown, async {
        let bytes = restore_into(ctx, &plan, DatabaseOptions::default(), progress).await?;
        tables = engine::row_counts(scratch).await?;
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

/// Where a drill of an `engine` artifact restores to: `explicit` (a URL the
/// operator gave), else the engine's `verify_scratch`, else, for SQLite, a
/// file in `dir`. `None` when the engine has no scratch database.
///
/// # Errors
///
/// When `explicit` is not a database URL.
pub fn scratch_for(
    settings: &Settings,
    engine: &str,
    explicit: Option<&str>,
    dir: &Path,
) -> Result<Option<DatabaseSource>, Error> {
    if let Some(url) = explicit {
        return Ok(Some(
            match DatabaseSource::parse(url).map_err(RestoreError::Refused)? {
                DatabaseSource::Sqlite { path } => DatabaseSource::Sqlite {
                    path: absolute(&path)?,
                },
                other => other,
            },
        ));
    }
    if engine == "sqlite" {
        return Ok(Some(DatabaseSource::Sqlite {
            path: dir.join("drill.sqlite3"),
        }));
    }
    Ok(settings
        .verify_scratch
        .iter()
        .find(|s| s.0.engine() == engine)
        .map(|s| s.0.clone()))
}

fn absolute(path: &Path) -> Result<PathBuf, Error> {
    std::path::absolute(path).map_err(|e| Error::Io {
        context: format!("resolving {}", path.display()),
        source: e,
    })
}

/// Drills the restore of an artifact that passed verification: finds it by
/// key (its run may have left history while the artifact is kept), picks
/// the scratch database ([`scratch_for`]) and drills. `Ok(None)` when the
/// engine has no scratch database.
///
/// # Errors
///
/// [`RestoreError::Refused`] for an artifact that failed verification or is
/// not a database backup; those of [`drill`].
pub async fn drill_verified(
    ctx: &Context,
    verified: &Verified,
    explicit_scratch: Option<&str>,
    progress: Progress,
) -> Result<Option<Drill>, Error> {
    if !verified.ok {
        return Err(RestoreError::Refused(format!(
            "{} failed verification, so it is not drilled: {}",
            verified.artifact, verified.detail
        ))
        .into());
    }
    if verified.backup_type != BackupType::Database {
        return Err(RestoreError::Refused(
            "restore drills are for database backups; `verify` already reads every entry of a \
             media archive"
                .into(),
        )
        .into());
    }
    let manifest = find(
        ctx,
        BackupType::Database,
        Some(&verified.target),
        &Pick::Artifact(verified.artifact.clone()),
    )
    .await?
    .manifest;
    let dir = tempfile::tempdir().map_err(|e| Error::Io {
        context: "creating a scratch directory".into(),
        source: e,
    })?;
    let Some(scratch) = scratch_for(
        &ctx.settings,
        &manifest.engine,
        explicit_scratch,
        dir.path(),
    )?
    else {
        return Ok(None);
    };
    drill(ctx, &manifest, &scratch, progress).await.map(Some)
}
