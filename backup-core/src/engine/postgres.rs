//! PostgreSQL: `pg_dump` custom-format archives, credentials via environment.

use std::{path::PathBuf, process::Command};

use secrecy::ExposeSecret;
use sqlx::{
    ConnectOptions, Connection,
    postgres::{PgConnectOptions, PgConnection, PgSslMode},
};

use super::{
    preflight::Preflight,
    process,
    source::{EngineError, Source, SourceStats},
    tool::{tool_version, version_number},
};
use crate::config::{ServerDatabase, ToolSettings};

const DEFAULT_PORT: u16 = 5432;

/// SQLSTATEs after which retrying is pointless: bad password or role,
/// no such database, no permission to connect.
const PERMANENT_STATES: &[&str] = &["28P01", "28000", "3D000", "42501"];

/// Connects (checking credentials and the database), compares the
/// `pg_dump` and server versions, and returns the dump as a source.
///
/// # Errors
///
/// [`EngineError`] with the cause and what to do.
pub async fn prepare(db: &ServerDatabase, tools: &ToolSettings) -> Result<Source, EngineError> {
    let tool = tools
        .pg_dump
        .clone()
        .unwrap_or_else(|| PathBuf::from("pg_dump"));
    // Both wait on other processes (the server, the tool): side by side,
    // the fixed cost of a run is the slower of the two, not their sum.
    let (server, tool_line) = tokio::join!(server_version(db), tool_version(&tool, ""));
    let (server_version, server_major) = server?;
    let hint = format!(
        "install postgresql-client-{server_major} (the server's major version or newer) or set tools.pg_dump"
    );
    let tool_line = tool_line.map_err(|e| e.with_hint(&hint))?;
    let tool_number = tool_line
        .rsplit(')')
        .next()
        .map(str::trim)
        .unwrap_or(&tool_line)
        .to_string();
    let tool_major = version_number(&tool_line).map_or(0, |(major, _)| major);
    if tool_major < server_major {
        return Err(EngineError::ToolTooOld {
            tool: "pg_dump".into(),
            tool_version: tool_number
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_string(),
            server_version: server_version.clone(),
            hint,
        });
    }

    let mut cmd = Command::new(&tool);
    cmd.args(["--format=custom", "--compress=0", "--no-password"]);
    let password = connection_env(&mut cmd, db);
    cmd.env("PGDATABASE", &db.database);
    let tool_name = tool.display().to_string();
    Ok(Source {
        engine: "postgresql",
        format: "pg_dump custom archive",
        extension: "dump",
        server_version: Some(server_version),
        tool_version: Some(tool_line),
        producer: Box::new(move |out| {
            let secrets: Vec<&str> = password.iter().map(String::as_str).collect();
            let warnings = process::stream(cmd, &tool_name, &hint, &secrets, out)?;
            Ok(SourceStats {
                files: None,
                warnings,
            })
        }),
    })
}

/// Puts the connection details of `db` (but the database name) in the
/// environment of `cmd`: nothing in argv, which every user on the host can
/// read. Returns the password, for redacting the tool's messages.
fn connection_env(cmd: &mut Command, db: &ServerDatabase) -> Option<String> {
    for var in [
        "PGHOST",
        "PGPORT",
        "PGUSER",
        "PGDATABASE",
        "PGPASSWORD",
        "PGSSLMODE",
        "PGSSLROOTCERT",
        "PGCONNECT_TIMEOUT",
        "PGSERVICE",
        "PGOPTIONS",
    ] {
        cmd.env_remove(var);
    }
    if let Some(host) = db.params.get("host").or(db.host.as_ref()) {
        cmd.env("PGHOST", host);
    }
    if let Some(port) = db.port {
        cmd.env("PGPORT", port.to_string());
    }
    if let Some(user) = &db.user {
        cmd.env("PGUSER", user);
    }
    let password = db.password.as_ref().map(|p| p.expose_secret().to_string());
    if let Some(password) = &password {
        cmd.env("PGPASSWORD", password);
    }
    for (param, var) in [
        ("sslmode", "PGSSLMODE"),
        ("sslrootcert", "PGSSLROOTCERT"),
        ("connect_timeout", "PGCONNECT_TIMEOUT"),
    ] {
        if let Some(value) = db.params.get(param) {
            cmd.env(var, value);
        }
    }
    password
}

/// `pg_restore`: `tools.pg_restore`, else the one beside `tools.pg_dump`,
/// else the one on PATH.
fn restore_tool(tools: &ToolSettings) -> PathBuf {
    if let Some(tool) = &tools.pg_restore {
        return tool.clone();
    }
    match tools.pg_dump.as_ref().and_then(|d| d.parent()) {
        Some(dir) if !dir.as_os_str().is_empty() => dir.join("pg_restore"),
        _ => PathBuf::from("pg_restore"),
    }
}

const RESTORE_HINT: &str =
    "install postgresql-client (at least the version that made the dump) or set tools.pg_restore";

/// How `pg_restore` treats the objects already in the database.
#[derive(Debug, Clone, Copy, Default)]
pub struct RestoreFlags {
    /// Drop the archive's objects before re-creating them (`--clean
    /// --if-exists`): restoring over an existing database.
    pub clean: bool,
    /// Skip ownership and grants (`--no-owner --no-privileges`): restoring
    /// as another role.
    pub no_owner: bool,
}

/// Streams a custom-format archive into `db` with `pg_restore` in one
/// transaction: any error (or a damaged input) rolls back everything.
///
/// # Errors
///
/// [`EngineError`] from `pg_restore` (its stderr, redacted) or the input.
pub fn restore(
    db: &ServerDatabase,
    tools: &ToolSettings,
    flags: RestoreFlags,
    input: &mut dyn std::io::Read,
) -> Result<(), EngineError> {
    let tool = restore_tool(tools);
    let mut cmd = Command::new(&tool);
    // A conninfo string, so that no database name is read as options.
    let quoted = db.database.replace('\\', "\\\\").replace('\'', "\\'");
    cmd.arg(format!("--dbname=dbname='{quoted}'")).args([
        "--single-transaction",
        "--exit-on-error",
        "--no-password",
    ]);
    if flags.clean {
        cmd.args(["--clean", "--if-exists"]);
    }
    if flags.no_owner {
        cmd.args(["--no-owner", "--no-privileges"]);
    }
    let password = connection_env(&mut cmd, db);
    let secrets: Vec<&str> = password.iter().map(String::as_str).collect();
    process::feed(
        cmd,
        &tool.display().to_string(),
        RESTORE_HINT,
        &secrets,
        input,
        None,
        true,
    )
    .map(|_| ())
}

/// Reads a custom-format archive with `pg_restore --list`; returns the
/// number of entries in its table of contents.
///
/// # Errors
///
/// [`EngineError`] when `pg_restore` cannot read the archive.
pub fn list_archive(
    tools: &ToolSettings,
    input: &mut dyn std::io::Read,
) -> Result<u64, EngineError> {
    let tool = restore_tool(tools);
    let mut cmd = Command::new(&tool);
    cmd.arg("--list");
    let mut listing: Vec<u8> = Vec::new();
    process::feed(
        cmd,
        &tool.display().to_string(),
        RESTORE_HINT,
        &[],
        input,
        Some(&mut listing),
        false,
    )?;
    Ok(String::from_utf8_lossy(&listing)
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with(';'))
        .count() as u64)
}

/// Connects to `db`, with the driver's reason (redacted) on failure.
pub(super) async fn connect(
    db: &ServerDatabase,
) -> Result<(PgConnection, Preflight<'_>), EngineError> {
    let options = connect_options(db)?.log_slow_statements(
        // DROP DATABASE and a drill's row counts take their time; that is
        // not news for the operator.
        log::LevelFilter::Debug,
        std::time::Duration::from_secs(1),
    );
    let preflight = Preflight {
        engine: "PostgreSQL",
        db,
        default_port: DEFAULT_PORT,
        describe,
    };
    let conn = preflight
        .connect(PgConnection::connect_with(&options))
        .await?;
    Ok((conn, preflight))
}

/// Tables in the database's own schemas (not the system catalogs).
///
/// # Errors
///
/// [`EngineError::Connect`] when it cannot be reached.
pub async fn tables(db: &ServerDatabase) -> Result<u64, EngineError> {
    let (mut conn, preflight) = connect(db).await?;
    let count: Result<i64, _> = sqlx::query_scalar(
        "SELECT count(*) FROM pg_catalog.pg_tables \
         WHERE schemaname NOT IN ('pg_catalog', 'information_schema')",
    )
    .fetch_one(&mut conn)
    .await;
    let _ = conn.close().await;
    count
        .map(|n| n.max(0) as u64)
        .map_err(|e| preflight.failed(&e))
}

/// `"name"` with inner quotes doubled: a safe SQL identifier.
fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The same server and login, on its `postgres` database: where databases
/// are created and dropped.
fn admin(db: &ServerDatabase) -> ServerDatabase {
    let mut admin = db.clone();
    admin.database = "postgres".into();
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
    let exists: Result<Option<i32>, _> =
        sqlx::query_scalar("SELECT 1 FROM pg_database WHERE datname = $1")
            .bind(&db.database)
            .fetch_optional(&mut conn)
            .await;
    let _ = conn.close().await;
    exists
        .map(|row| row.is_some())
        .map_err(|e| preflight.failed(&e))
}

/// Creates the database `db` names, refusing when it already exists (a
/// drill only ever drops what it created).
///
/// # Errors
///
/// [`EngineError::TargetMissing`] when it exists; connection failures.
pub async fn create_database(db: &ServerDatabase) -> Result<(), EngineError> {
    if database_exists(db).await? {
        return Err(super::preflight::scratch_exists(&db.database));
    }
    on_server(db, format!("CREATE DATABASE {}", ident(&db.database))).await
}

/// Drops the database `db` names, disconnecting its sessions.
///
/// # Errors
///
/// Connection or `DROP DATABASE` failures.
pub async fn drop_database(db: &ServerDatabase) -> Result<(), EngineError> {
    on_server(
        db,
        format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            ident(&db.database)
        ),
    )
    .await
}

/// Rows per table (`schema.table`, or `table` in `public`), by name.
///
/// # Errors
///
/// Connection or query failures.
pub async fn row_counts(db: &ServerDatabase) -> Result<Vec<(String, u64)>, EngineError> {
    let (mut conn, preflight) = connect(db).await?;
    let result = async {
        let tables: Vec<(String, String)> = sqlx::query_as(
            "SELECT schemaname::text, tablename::text FROM pg_catalog.pg_tables \
             WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1, 2",
        )
        .fetch_all(&mut conn)
        .await?;
        let mut counts = Vec::new();
        for (schema, table) in tables {
            let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                "SELECT count(*) FROM {}.{}",
                ident(&schema),
                ident(&table)
            )))
            .fetch_one(&mut conn)
            .await?;
            let name = if schema == "public" {
                table
            } else {
                format!("{schema}.{table}")
            };
            counts.push((name, n.max(0) as u64));
        }
        Ok::<_, sqlx::Error>(counts)
    }
    .await;
    let _ = conn.close().await;
    result.map_err(|e| preflight.failed(&e))
}

fn connect_options(db: &ServerDatabase) -> Result<PgConnectOptions, EngineError> {
    let mut options = PgConnectOptions::new_without_pgpass()
        .database(&db.database)
        .application_name("backup-cli preflight");
    if let Some(host) = db.params.get("host").or(db.host.as_ref()) {
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
    if let Some(mode) = db.params.get("sslmode") {
        let mode: PgSslMode = mode.parse().map_err(|_| {
            EngineError::TargetMissing(format!(
                "unknown sslmode {mode:?} for PostgreSQL database {}",
                db.database
            ))
        })?;
        options = options.ssl_mode(mode);
    }
    if let Some(cert) = db.params.get("sslrootcert") {
        options = options.ssl_root_cert(cert.as_str());
    }
    Ok(options)
}

/// `(version string, major)` of the server, proving the target is reachable
/// with these credentials.
async fn server_version(db: &ServerDatabase) -> Result<(String, u32), EngineError> {
    let (mut conn, preflight) = connect(db).await?;
    let row: Result<(String, String), _> = sqlx::query_as(
        "SELECT current_setting('server_version'), current_setting('server_version_num')",
    )
    .fetch_one(&mut conn)
    .await;
    let _ = conn.close().await;
    let (version, num) = row.map_err(|e| preflight.failed(&e))?;
    let major = num
        .parse::<u32>()
        .map_or(0, |n| if n >= 100_000 { n / 10_000 } else { n / 100 });
    let version = version
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string();
    Ok((version, major))
}

/// A driver error as one line; permanent for the SQLSTATEs above.
fn describe(e: &sqlx::Error) -> (String, bool) {
    match e {
        sqlx::Error::Database(db) => {
            let code = db.code().unwrap_or_default();
            (
                db.message().to_string(),
                PERMANENT_STATES.contains(&code.as_ref()),
            )
        }
        other => super::preflight::describe_driver_error(other),
    }
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
