//! SQLite: a consistent online copy with `VACUUM INTO`, never a raw copy of a
//! file that may be mid-write.

use std::{fs::File, io, path::Path, time::Duration};

use sqlx::{ConnectOptions, Connection, sqlite::SqliteConnectOptions};

use super::{EngineError, Source, SourceStats};

/// Copies the database into a private temporary directory (the one staging
/// copy the design allows) and returns it as a source; the copy is removed
/// when the source has been streamed or dropped.
///
/// # Errors
///
/// [`EngineError::TargetMissing`] for a missing or non-SQLite file,
/// [`EngineError::Io`] when the copy cannot be made.
pub async fn prepare(path: &Path) -> Result<Source, EngineError> {
    if !path.is_file() {
        return Err(EngineError::TargetMissing(format!(
            "SQLite database {} does not exist or is not a file; check database_backup.databases",
            path.display()
        )));
    }
    let dir = tempfile::Builder::new()
        .prefix("backup-sqlite-")
        .tempdir()
        .map_err(|e| EngineError::Io {
            context: "creating a temporary directory for the SQLite copy".into(),
            source: e,
        })?;
    let copy = dir.path().join("copy.sqlite3");
    let fail = |e: sqlx::Error| EngineError::Io {
        context: format!("copying SQLite database {}", path.display()),
        source: io::Error::other(e.to_string()),
    };
    let mut conn = SqliteConnectOptions::new()
        .filename(path)
        .read_only(true)
        .busy_timeout(Duration::from_secs(60))
        .disable_statement_logging()
        .connect()
        .await
        .map_err(fail)?;
    let version: String = sqlx::query_scalar("SELECT sqlite_version()")
        .fetch_one(&mut conn)
        .await
        .map_err(fail)?;
    sqlx::query("VACUUM INTO $1")
        .bind(copy.to_string_lossy().into_owned())
        .execute(&mut conn)
        .await
        .map_err(fail)?;
    let _ = conn.close().await;

    Ok(Source {
        engine: "sqlite",
        format: "SQLite database file",
        extension: "sqlite3",
        server_version: Some(version),
        tool_version: None,
        producer: Box::new(move |out| {
            let mut file = File::open(&copy).map_err(|e| EngineError::Io {
                context: "opening the SQLite copy".into(),
                source: e,
            })?;
            io::copy(&mut file, out).map_err(EngineError::Output)?;
            drop(dir);
            Ok(SourceStats::default())
        }),
    })
}
