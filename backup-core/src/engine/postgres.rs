//! PostgreSQL: `pg_dump` custom-format archives, credentials via environment.

use std::{path::PathBuf, process::Command};

use secrecy::ExposeSecret;
use sqlx::{
    Connection,
    postgres::{PgConnectOptions, PgConnection, PgSslMode},
};

use super::{EngineError, Preflight, Source, SourceStats, process, tool_version, version_number};
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
    let (server_version, server_major) = server_version(db).await?;
    let hint = format!(
        "install postgresql-client-{server_major} (the server's major version or newer) or set tools.pg_dump"
    );
    let tool_line = tool_version(&tool, &hint).await?;
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
    // Connection details travel in the environment: nothing in argv, which
    // every user on the host can read.
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
    cmd.env("PGDATABASE", &db.database);
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
    let options = connect_options(db)?;
    let preflight = Preflight {
        engine: "PostgreSQL",
        db,
        default_port: DEFAULT_PORT,
        describe,
    };
    let mut conn = preflight
        .connect(PgConnection::connect_with(&options))
        .await?;
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
        other => super::describe_driver_error(other),
    }
}
