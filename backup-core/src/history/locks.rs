//! Locks on the history database: the single-process worker's instance
//! lock, and the file locks that keep SQLite migrations from racing.

use super::pool::{History, HistoryError, Pool};

/// Proof that this process is the only single-process worker on a history
/// database; released when dropped (or when the process dies).
#[derive(Debug)]
pub enum InstanceLock {
    /// An exclusive lock on `<history file>.worker.lock`.
    File(std::fs::File),
    /// A PostgreSQL session advisory lock, held by this connection.
    Postgres(sqlx::pool::PoolConnection<sqlx::Postgres>),
}

/// The advisory lock key of the single-process worker ("backup01").
const INSTANCE_LOCK_KEY: i64 = 0x6261_636b_7570_3031;

impl History {
    /// Takes the single-process worker lock of this history database, or
    /// `None` when another process holds it.
    ///
    /// # Errors
    ///
    /// When the lock file or the database cannot be used.
    pub async fn instance_lock(&self) -> Result<Option<InstanceLock>, HistoryError> {
        let err = |source| HistoryError::Query {
            what: "taking the single-worker lock",
            source,
        };
        match &self.pool {
            Pool::Sqlite(_) => {
                let file = match self.lock_file("worker.lock") {
                    Some(Ok(file)) => file,
                    Some(Err(e)) => return Err(err(sqlx::Error::Io(e))),
                    None => return Ok(None),
                };
                match file.try_lock() {
                    Ok(()) => Ok(Some(InstanceLock::File(file))),
                    Err(std::fs::TryLockError::WouldBlock) => Ok(None),
                    Err(std::fs::TryLockError::Error(e)) => Err(err(sqlx::Error::Io(e))),
                }
            }
            Pool::Postgres(pool) => {
                let mut conn = pool.acquire().await.map_err(err)?;
                let taken: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
                    .bind(INSTANCE_LOCK_KEY)
                    .fetch_one(&mut *conn)
                    .await
                    .map_err(err)?;
                Ok(taken.then_some(InstanceLock::Postgres(conn)))
            }
        }
    }

    /// Opens (creating) `<history file>.<suffix>` for locking; `None` on
    /// PostgreSQL.
    fn lock_file(&self, suffix: &str) -> Option<std::io::Result<std::fs::File>> {
        self.sqlite_path
            .as_ref()
            .map(|path| open_lock_file(path, suffix))
    }
}

/// Opens (creating) `<history file>.<suffix>`, a file to lock.
fn open_lock_file(path: &std::path::Path, suffix: &str) -> std::io::Result<std::fs::File> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut lock_path = path.as_os_str().to_owned();
    lock_path.push(".");
    lock_path.push(suffix);
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
}

/// Waits for the exclusive migration lock of a SQLite history file; held
/// until the returned file is dropped.
pub(super) async fn migration_lock(
    path: &std::path::Path,
    url: &str,
) -> Result<std::fs::File, HistoryError> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let file = open_lock_file(&path, "migrate.lock")?;
        file.lock().map(|()| file)
    })
    .await
    .map_err(|e| std::io::Error::other(e.to_string()))
    .and_then(|r| r)
    .map_err(|e| HistoryError::Migrate {
        url: url.to_string(),
        source: sqlx::migrate::MigrateError::Execute(sqlx::Error::Io(e)),
    })
}

/// Waits, when a process is migrating the SQLite history file, until it is
/// done; held until the returned file is dropped. Reads only: a history
/// that was never migrated has no lock file, and none is created.
pub(super) async fn migration_read_lock(
    path: &std::path::Path,
) -> Result<Option<std::fs::File>, HistoryError> {
    let mut lock_path = path.as_os_str().to_owned();
    lock_path.push(".migrate.lock");
    let lock_path = std::path::PathBuf::from(lock_path);
    tokio::task::spawn_blocking(move || match std::fs::File::open(&lock_path) {
        Ok(file) => file.lock_shared().map(|()| Some(file)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    })
    .await
    .map_err(|e| std::io::Error::other(e.to_string()))
    .and_then(|r| r)
    .map_err(|e| HistoryError::Open {
        url: format!("sqlite://{}", path.display()),
        source: sqlx::Error::Io(e),
    })
}
