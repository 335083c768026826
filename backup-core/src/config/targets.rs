//! What to back up: `[database_backup]` and `[media_backup]` with their
//! targets (database URLs parsed into sources, media directories), and the
//! selection of targets by type and name.

use std::{
    collections::{BTreeMap, HashMap},
    fmt,
    path::{Path, PathBuf},
};

use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use url::Url;

use super::{
    error::{ConfigError, invalid},
    values::{check_glob, check_http_url, check_userinfo, resolve, serialize_ping, sqlite_path},
};
use crate::{
    model::{BackupType, check_target_name, derive_target_name},
    redact,
    schedule::cron::CronSchedule,
};

/// `[database_backup]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseBackupSettings {
    /// Whether database backups are scheduled.
    pub enabled: bool,
    /// When they run.
    pub schedule: CronSchedule,
    /// The databases, each a target with its own run and artifact.
    pub databases: Vec<DatabaseTarget>,
    /// Dead-man's switch (healthchecks.io style): `{ping_url}/start` when
    /// a run starts, `{ping_url}` on success, `{ping_url}/fail` on failure.
    #[serde(serialize_with = "serialize_ping")]
    pub ping_url: Option<SecretString>,
}

impl Default for DatabaseBackupSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            schedule: CronSchedule::builtin("0 2 * * *"),
            databases: Vec::new(),
            ping_url: None,
        }
    }
}

/// `[media_backup]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MediaBackupSettings {
    /// Whether media backups are scheduled.
    pub enabled: bool,
    /// When they run.
    pub schedule: CronSchedule,
    /// The directories, each a target.
    pub paths: Vec<MediaTarget>,
    /// Glob patterns (relative to each directory) left out of every archive.
    pub exclude: Vec<String>,
    /// Dead-man's switch URL, as for databases.
    #[serde(serialize_with = "serialize_ping")]
    pub ping_url: Option<SecretString>,
}

impl Default for MediaBackupSettings {
    fn default() -> Self {
        Self {
            enabled: false,
            schedule: CronSchedule::builtin("0 3 * * 0"),
            paths: Vec::new(),
            exclude: Vec::new(),
            ping_url: None,
        }
    }
}

impl DatabaseBackupSettings {
    pub(crate) fn validate(&mut self, base: &Path) -> Result<(), ConfigError> {
        if let Some(url) = &self.ping_url {
            check_http_url("database_backup.ping_url", url)?;
        }
        let mut names: HashMap<String, String> = HashMap::new();
        for db in &mut self.databases {
            if let DatabaseSource::Sqlite { path } = &mut db.source {
                *path = resolve(base, path);
            }
            let shown = db.source.redacted_url();
            if let Some(other) = names.insert(db.name.clone(), shown.clone()) {
                return Err(invalid(format!(
                    "database_backup.databases: {other} and {shown} are both named {:?}; give one a \
                     distinct `name`",
                    db.name
                )));
            }
        }
        Ok(())
    }
}

impl MediaBackupSettings {
    pub(crate) fn validate(&mut self, base: &Path) -> Result<(), ConfigError> {
        if let Some(url) = &self.ping_url {
            check_http_url("media_backup.ping_url", url)?;
        }
        let mut names: HashMap<String, PathBuf> = HashMap::new();
        for media in &mut self.paths {
            media.path = resolve(base, &media.path);
            if let Some(other) = names.insert(media.name.clone(), media.path.clone()) {
                return Err(invalid(format!(
                    "media_backup.paths: {} and {} are both named {:?}; give one a distinct `name`",
                    other.display(),
                    media.path.display(),
                    media.name
                )));
            }
        }
        for pattern in &self.exclude {
            check_glob("media_backup.exclude", pattern)?;
        }
        Ok(())
    }
}

/// One database to back up.
#[derive(Clone, Deserialize, Serialize)]
#[serde(try_from = "DatabaseEntry", into = "DatabaseEntry")]
pub struct DatabaseTarget {
    /// Stable name: the database name unless set.
    pub name: String,
    /// How to reach it.
    pub source: DatabaseSource,
}

impl fmt::Debug for DatabaseTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatabaseTarget")
            .field("name", &self.name)
            .field("url", &self.source.redacted_url())
            .finish()
    }
}

/// A database as written in the config: a URL, or a table with a name.
#[derive(Deserialize, Serialize)]
#[serde(untagged)]
enum DatabaseEntry {
    Url(String),
    Named(NamedDatabase),
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct NamedDatabase {
    url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    name: Option<String>,
}

impl TryFrom<DatabaseEntry> for DatabaseTarget {
    type Error = String;

    fn try_from(entry: DatabaseEntry) -> Result<Self, Self::Error> {
        let (url, name) = match entry {
            DatabaseEntry::Url(url) => (url, None),
            DatabaseEntry::Named(n) => (n.url, n.name),
        };
        let source = DatabaseSource::parse(&url)?;
        let name = match name {
            Some(name) => name,
            None => source.default_name().ok_or_else(|| {
                format!(
                    "cannot derive a target name from {}; set `name`",
                    redact::url(&url)
                )
            })?,
        };
        check_target_name(&name).map_err(|e| format!("{e}; set `name` explicitly"))?;
        Ok(Self { name, source })
    }
}

impl From<DatabaseTarget> for DatabaseEntry {
    fn from(t: DatabaseTarget) -> Self {
        DatabaseEntry::Named(NamedDatabase {
            url: t.source.redacted_url(),
            name: Some(t.name),
        })
    }
}
/// Where a database lives and how to connect to it.
#[derive(Clone)]
pub enum DatabaseSource {
    /// PostgreSQL server database.
    Postgres(ServerDatabase),
    /// MySQL or MariaDB server database.
    Mysql(ServerDatabase),
    /// SQLite file (absolute after loading).
    Sqlite {
        /// The database file.
        path: PathBuf,
    },
}

/// Connection details of a database on a server.
#[derive(Clone)]
pub struct ServerDatabase {
    /// Host name or address; `None` for the local socket default.
    pub host: Option<String>,
    /// TCP port; `None` for the engine default.
    pub port: Option<u16>,
    /// Login role; `None` for the tool's default.
    pub user: Option<String>,
    /// Password, never shown.
    pub password: Option<SecretString>,
    /// Database name.
    pub database: String,
    /// Extra connection parameters (PostgreSQL: `sslmode`, `sslrootcert`,
    /// `connect_timeout`, `host` for a socket directory).
    pub params: BTreeMap<String, String>,
    pub(crate) url: String,
}

impl ServerDatabase {
    /// The connection URL with the password masked.
    pub fn redacted_url(&self) -> String {
        redact::url(&self.url)
    }

    /// `host:port` for messages.
    pub fn address(&self, default_port: u16) -> String {
        format!(
            "{}:{}",
            self.host.as_deref().unwrap_or("localhost"),
            self.port.unwrap_or(default_port)
        )
    }
}

const PG_PARAMS: &[&str] = &["sslmode", "sslrootcert", "connect_timeout", "host"];
const MYSQL_PARAMS: &[&str] = &["socket"];

impl fmt::Debug for DatabaseSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted_url())
    }
}

impl DatabaseSource {
    /// Parses a database URL (`postgres://`, `mysql://`, `mariadb://`,
    /// `sqlite://`); a relative SQLite path stays relative.
    ///
    /// # Errors
    ///
    /// The reason, with any password masked.
    pub fn parse(raw: &str) -> Result<Self, String> {
        if let Some(path) = sqlite_path(raw) {
            return path.map(|path| DatabaseSource::Sqlite { path });
        }
        check_userinfo("database URL", raw)?;
        let url =
            Url::parse(raw).map_err(|e| format!("bad database URL {}: {e}", redact::url(raw)))?;
        let (allowed, make): (&[&str], fn(ServerDatabase) -> Self) = match url.scheme() {
            "postgres" | "postgresql" => (PG_PARAMS, DatabaseSource::Postgres),
            "mysql" | "mariadb" => (MYSQL_PARAMS, DatabaseSource::Mysql),
            other => {
                return Err(format!(
                    "database URL {}: unsupported scheme {other:?}; use postgres://, mysql://, mariadb:// or sqlite://",
                    redact::url(raw)
                ));
            }
        };
        let decode = |s: &str| -> Result<String, String> {
            percent_encoding::percent_decode_str(s)
                .decode_utf8()
                .map(|v| v.into_owned())
                .map_err(|_| format!("bad escape in {}", redact::url(raw)))
        };
        let database = decode(url.path().trim_start_matches('/'))?;
        if database.is_empty() || database.contains('/') || database.starts_with('-') {
            return Err(format!(
                "database URL {} must name one database, e.g. postgres://user@host/dbname",
                redact::url(raw)
            ));
        }
        let mut params = BTreeMap::new();
        for (k, v) in url.query_pairs() {
            if !allowed.contains(&k.as_ref()) {
                return Err(format!(
                    "database URL {}: unknown parameter {k:?} (known: {})",
                    redact::url(raw),
                    allowed.join(", ")
                ));
            }
            params.insert(k.into_owned(), v.into_owned());
        }
        let user = Some(url.username())
            .filter(|u| !u.is_empty())
            .map(&decode)
            .transpose()?;
        let password = url.password().map(&decode).transpose()?;
        if let Some(p) = url.password() {
            redact::register(p);
        }
        if let Some(p) = &password {
            redact::register(p);
        }
        let password = password.map(SecretString::from);
        Ok(make(ServerDatabase {
            host: url
                .host_str()
                .map(|h| h.trim_matches(['[', ']']).to_string()),
            port: url.port(),
            user,
            password,
            database,
            params,
            url: raw.to_string(),
        }))
    }

    /// A target name made from the database's name or the file's stem.
    fn default_name(&self) -> Option<String> {
        match self {
            DatabaseSource::Postgres(db) | DatabaseSource::Mysql(db) => {
                derive_target_name(&db.database)
            }
            DatabaseSource::Sqlite { path } => {
                derive_target_name(&path.file_stem()?.to_string_lossy())
            }
        }
    }

    /// The engine's name as recorded in manifests.
    pub fn engine(&self) -> &'static str {
        match self {
            DatabaseSource::Postgres(_) => "postgresql",
            DatabaseSource::Mysql(_) => "mysql",
            DatabaseSource::Sqlite { .. } => "sqlite",
        }
    }

    /// Whether the URL carries a password.
    pub fn has_password(&self) -> bool {
        match self {
            DatabaseSource::Postgres(db) | DatabaseSource::Mysql(db) => db.password.is_some(),
            DatabaseSource::Sqlite { .. } => false,
        }
    }

    /// The URL with any password masked.
    pub fn redacted_url(&self) -> String {
        match self {
            DatabaseSource::Postgres(db) | DatabaseSource::Mysql(db) => db.redacted_url(),
            DatabaseSource::Sqlite { path } => format!("sqlite://{}", path.display()),
        }
    }
}

/// A database a restore drill may create and drop.
#[derive(Clone, Deserialize, Serialize)]
#[serde(try_from = "String", into = "String")]
pub struct ScratchDatabase(pub DatabaseSource);

impl TryFrom<String> for ScratchDatabase {
    type Error = String;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        match DatabaseSource::parse(&value)? {
            DatabaseSource::Sqlite { .. } => Err(
                "verify_scratch takes postgres:// or mysql:// URLs; SQLite drills use a temporary file"
                    .into(),
            ),
            source => Ok(Self(source)),
        }
    }
}

impl From<ScratchDatabase> for String {
    fn from(value: ScratchDatabase) -> Self {
        value.0.redacted_url()
    }
}

impl fmt::Debug for ScratchDatabase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.redacted_url())
    }
}

/// One directory tree to back up.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(try_from = "MediaEntry", into = "MediaEntry")]
pub struct MediaTarget {
    /// Stable name: the directory's last component unless set.
    pub name: String,
    /// The directory (absolute after loading).
    pub path: PathBuf,
    /// Glob patterns left out of this archive (on top of the global ones).
    pub exclude: Vec<String>,
}

#[derive(Deserialize, Serialize)]
#[serde(untagged)]
enum MediaEntry {
    Path(PathBuf),
    Named(NamedMedia),
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct NamedMedia {
    path: PathBuf,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    exclude: Vec<String>,
}

impl TryFrom<MediaEntry> for MediaTarget {
    type Error = String;

    fn try_from(entry: MediaEntry) -> Result<Self, Self::Error> {
        let (path, name, exclude) = match entry {
            MediaEntry::Path(path) => (path, None, Vec::new()),
            MediaEntry::Named(n) => (n.path, n.name, n.exclude),
        };
        if path.as_os_str().is_empty() {
            return Err("media_backup.paths: empty path".into());
        }
        let name = match name {
            Some(name) => name,
            None => path
                .file_name()
                .and_then(|n| derive_target_name(&n.to_string_lossy()))
                .ok_or_else(|| {
                    format!(
                        "cannot derive a target name from {}; set `name`",
                        path.display()
                    )
                })?,
        };
        check_target_name(&name).map_err(|e| format!("{e}; set `name` explicitly"))?;
        for pattern in &exclude {
            globset::Glob::new(pattern)
                .map_err(|e| format!("bad exclude glob {pattern:?}: {e}"))?;
        }
        Ok(Self {
            name,
            path,
            exclude,
        })
    }
}

impl From<MediaTarget> for MediaEntry {
    fn from(t: MediaTarget) -> Self {
        MediaEntry::Named(NamedMedia {
            path: t.path,
            name: Some(t.name),
            exclude: t.exclude,
        })
    }
}

/// One configured thing to back up.
#[derive(Debug, Clone, Copy)]
pub enum Target<'a> {
    /// A database.
    Database(&'a DatabaseTarget),
    /// A directory tree.
    Media(&'a MediaTarget),
}

impl Target<'_> {
    /// Its backup type.
    pub fn backup_type(&self) -> BackupType {
        match self {
            Target::Database(_) => BackupType::Database,
            Target::Media(_) => BackupType::Media,
        }
    }

    /// Its stable name.
    pub fn name(&self) -> &str {
        match self {
            Target::Database(t) => &t.name,
            Target::Media(t) => &t.name,
        }
    }
}
