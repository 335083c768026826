//! SQLite: a consistent online copy with `VACUUM INTO`, never a raw copy of a
//! file that may be mid-write.

use std::{fs::File, io, path::Path, time::Duration};

use sqlx::{ConnectOptions, Connection, sqlite::SqliteConnectOptions};

use super::source::{EngineError, Source, SourceStats};

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
    let mut conn = open_read_only(path).await?;
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

/// Opens a SQLite file read-only.
async fn open_read_only(path: &Path) -> Result<sqlx::SqliteConnection, EngineError> {
    SqliteConnectOptions::new()
        .filename(path)
        .read_only(true)
        .busy_timeout(Duration::from_secs(60))
        .disable_statement_logging()
        .connect()
        .await
        .map_err(|e| EngineError::Io {
            context: format!("opening SQLite database {}", path.display()),
            source: io::Error::other(e.to_string()),
        })
}

/// Tables in a SQLite file; 0 when the file does not exist.
///
/// # Errors
///
/// When the file exists but is not a readable SQLite database.
pub async fn tables(path: &Path) -> Result<u64, EngineError> {
    if !path.exists() {
        return Ok(0);
    }
    let mut conn = open_read_only(path).await?;
    let count: Result<i64, _> = sqlx::query_scalar(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
    )
    .fetch_one(&mut conn)
    .await;
    let _ = conn.close().await;
    count.map(|n| n.max(0) as u64).map_err(|e| EngineError::Io {
        context: format!("reading SQLite database {}", path.display()),
        source: io::Error::other(e.to_string()),
    })
}

/// `PRAGMA integrity_check` of a SQLite file: `Ok(())` when it says `ok`.
///
/// # Errors
///
/// [`EngineError::TargetMissing`] with SQLite's findings when it does not.
pub async fn integrity_check(path: &Path) -> Result<(), EngineError> {
    let mut conn = open_read_only(path).await?;
    let rows: Result<Vec<String>, _> = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_all(&mut conn)
        .await;
    let _ = conn.close().await;
    match rows {
        Ok(rows) if rows.len() == 1 && rows[0] == "ok" => Ok(()),
        Ok(rows) => Err(EngineError::TargetMissing(format!(
            "SQLite integrity_check failed: {}",
            rows.into_iter().take(5).collect::<Vec<_>>().join("; ")
        ))),
        Err(e) => Err(EngineError::TargetMissing(format!(
            "SQLite integrity_check failed: {e}"
        ))),
    }
}

/// Rows per table of a SQLite file, by name.
///
/// # Errors
///
/// When the file is not a readable SQLite database.
pub async fn row_counts(path: &Path) -> Result<Vec<(String, u64)>, EngineError> {
    let mut conn = open_read_only(path).await?;
    let result = async {
        let tables: Vec<String> = sqlx::query_scalar(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' \
             ORDER BY name",
        )
        .fetch_all(&mut conn)
        .await?;
        let mut counts = Vec::new();
        for table in tables {
            let quoted = format!("\"{}\"", table.replace('"', "\"\""));
            let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                "SELECT count(*) FROM {quoted}"
            )))
            .fetch_one(&mut conn)
            .await?;
            counts.push((table, n.max(0) as u64));
        }
        Ok::<_, sqlx::Error>(counts)
    }
    .await;
    let _ = conn.close().await;
    result.map_err(|e| EngineError::Io {
        context: format!("counting rows in {}", path.display()),
        source: io::Error::other(e.to_string()),
    })
}
