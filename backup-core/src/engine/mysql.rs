//! MySQL and MariaDB: `mariadb-dump`/`mysqldump` SQL text in one consistent
//! transaction, credentials in a private defaults file.

use std::{
    io::Write as _,
    path::{Path, PathBuf},
    process::Command,
};

use secrecy::ExposeSecret;
use sqlx::{
    ConnectOptions, Connection,
    mysql::{MySqlConnectOptions, MySqlConnection, MySqlDatabaseError},
};

use super::{
    preflight::Preflight,
    process,
    source::{EngineError, Source, SourceStats},
    tool::tool_version,
};
use crate::config::{ServerDatabase, ToolSettings};

const DEFAULT_PORT: u16 = 3306;
const HINT: &str = "install mariadb-client (or mysql-client) or set tools.mariadb_dump";
/// Access denied (to the server or the database), unknown database.
const PERMANENT_ERRORS: &[u16] = &[1044, 1045, 1049, 1698];

/// Connects (checking credentials and the database), finds the dump tool,
/// writes the credentials to a private defaults file and returns the dump
/// as a source.
///
/// # Errors
///
/// [`EngineError`] with the cause and what to do.
pub async fn prepare(db: &ServerDatabase, tools: &ToolSettings) -> Result<Source, EngineError> {
    // Side by side, as for PostgreSQL: the server's answer and the tool's.
    let (server_version, tool) = tokio::join!(server_version(db), find_tool(tools));
    let server_version = server_version?;
    let (tool, tool_line) = tool?;

    let defaults = defaults_tempfile(db)?;

    let cmd = command(
        &tool,
        &defaults,
        &[
            "--single-transaction",
            "--routines",
            "--triggers",
            "--events",
            "--hex-blob",
            "--max-allowed-packet=1G",
        ],
        db,
    );
    let password = db.password.as_ref().map(|p| p.expose_secret().to_string());
    let tool_name = tool.display().to_string();
    Ok(Source {
        engine: "mysql",
        format: "SQL text (mariadb-dump)",
        extension: "sql",
        server_version: Some(server_version),
        tool_version: Some(tool_line),
        producer: Box::new(move |out| {
            let secrets: Vec<&str> = password.iter().map(String::as_str).collect();
            let warnings = process::stream(cmd, &tool_name, HINT, &secrets, out);
            // Removed whatever happened; the dump has read it by now.
            drop(defaults);
            Ok(SourceStats {
                files: None,
                warnings: warnings?,
            })
        }),
    })
}

/// `tool --defaults-extra-file=… ARGS --default-character-set=utf8mb4 DB`,
/// with no credentials from the environment: the option file holds them.
fn command(tool: &Path, defaults: &Path, args: &[&str], db: &ServerDatabase) -> Command {
    let mut cmd = Command::new(tool);
    // --defaults-extra-file must come first.
    cmd.arg(format!("--defaults-extra-file={}", defaults.display()))
        .args(args)
        .arg("--default-character-set=utf8mb4")
        .arg(&db.database)
        .env_remove("MYSQL_PWD")
        .env_remove("MYSQL_HOST");
    cmd
}

/// Writes the credentials of `db` to a 0600 option file that only this
/// process names (argv shows its path, never its content); removed on drop.
fn defaults_tempfile(db: &ServerDatabase) -> Result<tempfile::TempPath, EngineError> {
    let mut defaults = tempfile::Builder::new()
        .prefix("backup-mysql-")
        .suffix(".cnf")
        .tempfile()
        .map_err(|e| EngineError::Io {
            context: "creating the MySQL defaults file".into(),
            source: e,
        })?;
    defaults
        .write_all(defaults_file(db).as_bytes())
        .and_then(|()| defaults.flush())
        .map_err(|e| EngineError::Io {
            context: "writing the MySQL defaults file".into(),
            source: e,
        })?;
    Ok(defaults.into_temp_path())
}

const CLIENT_HINT: &str = "install mariadb-client (or mysql-client) or set tools.mariadb";

/// The client: `tools.mariadb`, else `mariadb` beside `tools.mariadb_dump`,
/// else `mariadb` or `mysql` on PATH.
fn client_tool(tools: &ToolSettings) -> PathBuf {
    if let Some(tool) = &tools.mariadb {
        return tool.clone();
    }
    if let Some(dir) = tools.mariadb_dump.as_ref().and_then(|d| d.parent())
        && !dir.as_os_str().is_empty()
    {
        return dir.join("mariadb");
    }
    let on_path = |name: &str| {
        std::env::var_os("PATH")
            .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(name).is_file()))
    };
    PathBuf::from(if on_path("mariadb") {
        "mariadb"
    } else {
        "mysql"
    })
}

/// Streams SQL text into `db` with the `mariadb` client, which stops at the
/// first error.
///
/// # Errors
///
/// [`EngineError`] from the client (its stderr, redacted) or the input.
pub fn restore(
    db: &ServerDatabase,
    tools: &ToolSettings,
    input: &mut dyn std::io::Read,
) -> Result<(), EngineError> {
    let defaults = defaults_tempfile(db)?;
    let tool = client_tool(tools);
    let cmd = command(
        &tool,
        &defaults,
        &["--batch", "--max-allowed-packet=1G"],
        db,
    );
    let password = db.password.as_ref().map(|p| p.expose_secret().to_string());
    let secrets: Vec<&str> = password.iter().map(String::as_str).collect();
    let result = process::feed(
        cmd,
        &tool.display().to_string(),
        CLIENT_HINT,
        &secrets,
        input,
        None,
        true,
    );
    drop(defaults);
    result.map(|_| ())
}

/// Tables in the database.
///
/// # Errors
///
/// [`EngineError::Connect`] when it cannot be reached.
pub async fn tables(db: &ServerDatabase) -> Result<u64, EngineError> {
    let (mut conn, preflight) = connect(db).await?;
    let count: Result<i64, _> = sqlx::query_scalar(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = DATABASE()",
    )
    .fetch_one(&mut conn)
    .await;
    let _ = conn.close().await;
    count
        .map(|n| n.max(0) as u64)
        .map_err(|e| preflight.failed(&e))
}

/// `` `name` `` with inner backticks doubled: a safe SQL identifier.
fn ident(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// The same server and login on `information_schema`, which every account
/// may use: where databases are created and dropped.
fn admin(db: &ServerDatabase) -> ServerDatabase {
    let mut admin = db.clone();
    admin.database = "information_schema".into();
    admin
}

/// Whether the database `db` names exists on its server.
///
/// # Errors
///
/// When the server cannot be reached or refuses the login.
pub async fn database_exists(db: &ServerDatabase) -> Result<bool, EngineError> {
    let admin = admin(db);
    let (mut conn, preflight) = connect(&admin).await?;
    let exists: Result<Option<String>, _> = sqlx::query_scalar(
        "SELECT schema_name FROM information_schema.schemata WHERE schema_name = ?",
    )
    .bind(&db.database)
    .fetch_optional(&mut conn)
    .await;
    let _ = conn.close().await;
    exists
        .map(|row| row.is_some())
        .map_err(|e| preflight.failed(&e))
}

/// Creates the database `db` names, refusing when it already exists.
///
/// # Errors
///
/// [`EngineError::TargetMissing`] when it exists; connection failures.
pub async fn create_database(db: &ServerDatabase) -> Result<(), EngineError> {
    if database_exists(db).await? {
        return Err(super::preflight::scratch_exists(&db.database));
    }
    on_server(
        db,
        format!(
            "CREATE DATABASE {} CHARACTER SET utf8mb4",
            ident(&db.database)
        ),
    )
    .await
}

/// Drops the database `db` names.
///
/// # Errors
///
/// Connection or `DROP DATABASE` failures.
pub async fn drop_database(db: &ServerDatabase) -> Result<(), EngineError> {
    on_server(
        db,
        format!("DROP DATABASE IF EXISTS {}", ident(&db.database)),
    )
    .await
}

/// Rows per base table, by name.
///
/// # Errors
///
/// Connection or query failures.
pub async fn row_counts(db: &ServerDatabase) -> Result<Vec<(String, u64)>, EngineError> {
    let (mut conn, preflight) = connect(db).await?;
    let result = async {
        let tables: Vec<String> = sqlx::query_scalar(
            "SELECT CAST(table_name AS CHAR) FROM information_schema.tables \
             WHERE table_schema = DATABASE() AND table_type = 'BASE TABLE' ORDER BY 1",
        )
        .fetch_all(&mut conn)
        .await?;
        let mut counts = Vec::new();
        for table in tables {
            let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                "SELECT COUNT(*) FROM {}",
                ident(&table)
            )))
            .fetch_one(&mut conn)
            .await?;
            counts.push((table, n.max(0) as u64));
        }
        Ok::<_, sqlx::Error>(counts)
    }
    .await;
    let _ = conn.close().await;
    result.map_err(|e| preflight.failed(&e))
}

/// The `[client]` section of an option file. Values are double-quoted with
/// `\` and `"` escaped, so any password survives.
fn defaults_file(db: &ServerDatabase) -> String {
    let quote = |v: &str| {
        let escaped = v
            .replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n");
        format!("\"{escaped}\"")
    };
    let mut text = String::from("[client]\n");
    if let Some(user) = &db.user {
        text += &format!("user={}\n", quote(user));
    }
    if let Some(password) = &db.password {
        text += &format!("password={}\n", quote(password.expose_secret()));
    }
    if let Some(host) = &db.host {
        text += &format!("host={}\n", quote(host));
    }
    if let Some(port) = db.port {
        text += &format!("port={port}\n");
    }
    if let Some(socket) = db.params.get("socket") {
        text += &format!("socket={}\n", quote(socket));
    }
    if db.host.is_some() && !db.params.contains_key("socket") {
        text += "protocol=tcp\n";
    }
    text
}

async fn find_tool(tools: &ToolSettings) -> Result<(PathBuf, String), EngineError> {
    if let Some(tool) = &tools.mariadb_dump {
        return Ok((tool.clone(), tool_version(tool, HINT).await?));
    }
    let mut last = None;
    for name in ["mariadb-dump", "mysqldump"] {
        let tool = PathBuf::from(name);
        match tool_version(&tool, HINT).await {
            Ok(line) => return Ok((tool, line)),
            Err(e) => last = Some(e),
        }
    }
    Err(match last {
        Some(EngineError::ToolMissing { .. }) | None => EngineError::ToolMissing {
            tool: "mariadb-dump (or mysqldump)".into(),
            where_: " on PATH".into(),
            hint: HINT.into(),
        },
        Some(other) => other,
    })
}

pub(super) async fn connect(
    db: &ServerDatabase,
) -> Result<(MySqlConnection, Preflight<'_>), EngineError> {
    let mut options = MySqlConnectOptions::new()
        .database(&db.database)
        // DROP DATABASE and a drill's row counts take their time; that is
        // not news for the operator.
        .log_slow_statements(log::LevelFilter::Debug, std::time::Duration::from_secs(1));
    if let Some(host) = &db.host {
        options = options.host(host);
    }
    if let Some(port) = db.port {
        options = options.port(port);
    }
    if let Some(user) = &db.user {
        options = options.username(user);
    }
    if let Some(password) = &db.password {
        options = options.password(password.expose_secret());
    }
    if let Some(socket) = db.params.get("socket") {
        options = options.socket(socket);
    }
    let preflight = Preflight {
        engine: "MySQL",
        db,
        default_port: DEFAULT_PORT,
        describe,
    };
    let conn = preflight
        .connect(MySqlConnection::connect_with(&options))
        .await?;
    Ok((conn, preflight))
}

async fn server_version(db: &ServerDatabase) -> Result<String, EngineError> {
    let (mut conn, preflight) = connect(db).await?;
    let version: Result<String, _> = sqlx::query_scalar("SELECT VERSION()")
        .fetch_one(&mut conn)
        .await;
    let _ = conn.close().await;
    version.map_err(|e| preflight.failed(&e))
}

fn describe(e: &sqlx::Error) -> (String, bool) {
    if let sqlx::Error::Database(db) = e
        && let Some(mysql) = db.try_downcast_ref::<MySqlDatabaseError>()
    {
        return (
            mysql.message().to_string(),
            PERMANENT_ERRORS.contains(&mysql.number()),
        );
    }
    super::preflight::describe_driver_error(e)
}

/// Runs one statement (`CREATE`/`DROP DATABASE`) on the server of `db`,
/// connected as its admin.
async fn on_server(db: &ServerDatabase, sql: String) -> Result<(), EngineError> {
    let admin = admin(db);
    let (mut conn, preflight) = connect(&admin).await?;
    let result = sqlx::query(sqlx::AssertSqlSafe(sql))
        .execute(&mut conn)
        .await
        .map(|_| ())
        .map_err(|e| preflight.failed(&e));
    let _ = conn.close().await;
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn defaults_file_quotes_awkward_passwords() {
        let db = ServerDatabase {
            host: Some("127.0.0.1".into()),
            port: Some(3306),
            user: Some("app".into()),
            password: Some("p\"w\\d".to_string().into()),
            database: "shop".into(),
            params: BTreeMap::new(),
            url: String::new(),
        };
        let text = defaults_file(&db);
        assert!(text.contains("password=\"p\\\"w\\\\d\"\n"), "{text}");
        assert!(text.contains("protocol=tcp"));
    }
}
