//! The parsed value types of the configuration (email address, timezone,
//! history and storage URLs) and the helpers every section shares: path
//! resolution, URL and glob checks, and rendering secrets masked.

use std::{
    fmt,
    path::{Path, PathBuf},
    str::FromStr,
};

use lettre::message::Mailbox;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize, Serializer};
use url::Url;

use super::error::{ConfigError, invalid};
use crate::redact;

/// `path`, relative paths taken from `base` (the config file's directory).
pub(crate) fn resolve(base: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        base.join(path)
    }
}

/// Refuses a URL whose user or password holds a character that ends that
/// part of a URL: where the password ends cannot be told, so it is
/// neither parsed nor shown.
pub(crate) fn check_userinfo(what: &str, raw: &str) -> Result<(), String> {
    if redact::ambiguous_userinfo(raw) {
        return Err(format!(
            "{what}: the user or password in the URL holds '/', '?', '#' or '@', which end that \
             part of a URL; percent-encode them (%2F, %3F, %23, %40). The URL is not shown"
        ));
    }
    Ok(())
}

/// Checks a glob pattern of key `key`.
pub(crate) fn check_glob(key: &str, pattern: &str) -> Result<(), ConfigError> {
    globset::Glob::new(pattern)
        .map(|_| ())
        .map_err(|e| invalid(format!("{key}: bad glob {pattern:?}: {e}")))
}

/// Renders an optional secret as the mask.
pub(crate) fn serialize_secret<S: Serializer>(
    value: &Option<SecretString>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match value {
        Some(_) => s.serialize_str(redact::MASK),
        None => s.serialize_none(),
    }
}

/// An email address, checked at load time: `local@domain`, or with a
/// display name as Django's `DEFAULT_FROM_EMAIL` often is
/// (`Backups <backups@example.com>`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(try_from = "String", into = "String")]
pub struct EmailAddress(String);

impl EmailAddress {
    /// The mailbox: display name (if any) and address.
    pub fn mailbox(&self) -> Mailbox {
        // Checked when it was made.
        Mailbox::from_str(&self.0).unwrap_or_else(|_| unreachable!("checked at load"))
    }

    /// The domain of the address (`example.com`).
    pub fn domain(&self) -> String {
        self.mailbox().email.domain().to_string()
    }
}

impl TryFrom<String> for EmailAddress {
    type Error = String;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        let refused = |why: &str| {
            format!(
                "{value:?} is not an email address{why}; write local@domain or \"Name <local@domain>\""
            )
        };
        if value.matches('@').count() > 1 {
            return Err(format!(
                "{value:?} holds several addresses; give each its own list entry: [\"a@example.com\", \"b@example.com\"]"
            ));
        }
        let mailbox = Mailbox::from_str(value.trim()).map_err(|e| refused(&format!(" ({e})")))?;
        let domain = mailbox.email.domain();
        if !(domain.contains('.') || domain == "localhost") {
            return Err(refused(" (its domain has no dot)"));
        }
        Ok(Self(value.trim().to_string()))
    }
}

impl From<EmailAddress> for String {
    fn from(value: EmailAddress) -> Self {
        value.0
    }
}

impl fmt::Display for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An IANA timezone such as `Europe/Rome`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(try_from = "String", into = "String")]
pub struct Timezone(pub chrono_tz::Tz);

impl TryFrom<String> for Timezone {
    type Error = String;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        chrono_tz::Tz::from_str(&value).map(Timezone).map_err(|_| {
            format!(
                "unknown timezone {value:?}; use an IANA name such as \"UTC\" or \"Europe/Rome\""
            )
        })
    }
}

impl From<Timezone> for String {
    fn from(value: Timezone) -> Self {
        value.0.name().to_string()
    }
}
/// The history database.
#[derive(Clone, Deserialize, Serialize)]
#[serde(try_from = "String", into = "String")]
pub enum HistoryUrl {
    /// A SQLite file (absolute after loading).
    Sqlite(PathBuf),
    /// A PostgreSQL connection URL (may hold a password).
    Postgres(SecretString),
}

impl Default for HistoryUrl {
    fn default() -> Self {
        HistoryUrl::Sqlite(PathBuf::from("backups-history.db"))
    }
}

impl TryFrom<String> for HistoryUrl {
    type Error = String;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        if let Some(path) = sqlite_path(&value) {
            return path.map(HistoryUrl::Sqlite);
        }
        check_userinfo("history.url", &value)?;
        let scheme = value.split("://").next().unwrap_or_default();
        if matches!(scheme, "postgres" | "postgresql") {
            Url::parse(&value)
                .map_err(|e| format!("bad history URL {}: {e}", redact::url(&value)))?;
            return Ok(HistoryUrl::Postgres(value.into()));
        }
        Err(format!(
            "history.url {} is neither sqlite:// nor postgres://",
            redact::url(&value)
        ))
    }
}

impl From<HistoryUrl> for String {
    fn from(value: HistoryUrl) -> Self {
        match value {
            HistoryUrl::Sqlite(p) => format!("sqlite://{}", p.display()),
            HistoryUrl::Postgres(url) => redact::url(url.expose_secret()),
        }
    }
}

impl fmt::Debug for HistoryUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from(self.clone()))
    }
}

/// `sqlite:///abs/path` or `sqlite://relative/path` (also `sqlite:path`);
/// `None` when `value` is not a sqlite URL at all.
pub(crate) fn sqlite_path(value: &str) -> Option<Result<PathBuf, String>> {
    let rest = value.strip_prefix("sqlite:")?;
    let rest = rest.strip_prefix("//").unwrap_or(rest);
    Some(if rest.is_empty() || rest.contains('?') {
        Err(format!(
            "{value:?}: expected sqlite:///absolute/path or sqlite://relative/path"
        ))
    } else {
        Ok(PathBuf::from(rest))
    })
}
/// The storage location.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(try_from = "String", into = "String")]
pub enum StorageUrl {
    /// A local directory (absolute after loading).
    Fs {
        /// The directory.
        root: PathBuf,
    },
    /// An S3 bucket and key prefix.
    S3 {
        /// Bucket name.
        bucket: String,
        /// Key prefix inside the bucket ("" for none).
        prefix: String,
    },
    /// A directory on an SSH server, over SFTP.
    Sftp {
        /// Login name (default: the user running the tool).
        user: Option<String>,
        /// Host name or address.
        host: String,
        /// Port (default 22).
        port: Option<u16>,
        /// Absolute directory on the server.
        root: String,
    },
    /// A directory on a WebDAV server.
    Webdav {
        /// `https` (`webdav://`) or `http` (`webdav+http://`).
        tls: bool,
        /// Host name or address.
        host: String,
        /// Port (default 443 or 80).
        port: Option<u16>,
        /// Directory on the server ("/" for the top).
        root: String,
    },
    /// An Azure Blob Storage container and key prefix.
    Azblob {
        /// Container name.
        container: String,
        /// Key prefix inside the container ("" for none).
        prefix: String,
    },
}

impl StorageUrl {
    /// Whether artifacts live on another machine (not a local directory).
    pub fn is_remote(&self) -> bool {
        !matches!(self, StorageUrl::Fs { .. })
    }
}

/// What an `sftp://` or `webdav://` URL names, checked: no password, query
/// or fragment in it, a host that cannot read as an option (it reaches
/// `ssh` as an argument), no port 0, and no `..` however it is written
/// (the URL parser would fold it away).
struct ServerUrl {
    user: Option<String>,
    host: String,
    port: Option<u16>,
    /// Decoded, without a trailing `/`; "/" for the top.
    root: String,
}

fn server_url(value: &str) -> Option<ServerUrl> {
    let climbs = |path: &str| path.split('/').any(|s| s == "..");
    if climbs(value) || value.to_ascii_lowercase().contains("%2e%2e") {
        return None;
    }
    let url = Url::parse(value).ok()?;
    if url.password().is_some()
        || url.query().is_some()
        || url.fragment().is_some()
        || url.port() == Some(0)
    {
        return None;
    }
    let host = url
        .host_str()
        .filter(|h| !h.is_empty() && !h.starts_with('-'))?;
    let root = percent_encoding::percent_decode_str(url.path())
        .decode_utf8()
        .ok()?
        .trim_end_matches('/')
        .to_string();
    if climbs(&root) {
        return None;
    }
    Some(ServerUrl {
        user: Some(url.username())
            .filter(|u| !u.is_empty())
            .map(str::to_string),
        host: host.to_string(),
        port: url.port(),
        root: if root.is_empty() { "/".into() } else { root },
    })
}

/// `sftp://[user@]host[:port]/absolute/path`.
fn parse_sftp(value: &str) -> Result<StorageUrl, String> {
    let bad = || {
        format!(
            "storage.url {}: expected sftp://[user@]host[:port]/absolute/path (the key in \
             storage.ssh_key, never a password in the URL)",
            redact::endpoint(value)
        )
    };
    let ServerUrl {
        user,
        host,
        port,
        root,
    } = server_url(value).ok_or_else(bad)?;
    Ok(StorageUrl::Sftp {
        user,
        host,
        port,
        root,
    })
}

/// `webdav://host[:port]/path` (https) or `webdav+http://host[:port]/path`.
fn parse_webdav(value: &str) -> Result<StorageUrl, String> {
    let bad = || {
        format!(
            "storage.url {}: expected webdav://host[:port]/path (https) or \
             webdav+http://host[:port]/path, the login in storage.username and storage.password",
            redact::endpoint(value)
        )
    };
    match server_url(value) {
        Some(ServerUrl {
            user: None,
            host,
            port,
            root,
        }) => Ok(StorageUrl::Webdav {
            tls: !value.starts_with("webdav+http://"),
            host,
            port,
            root,
        }),
        _ => Err(bad()),
    }
}

/// `azblob://container/prefix`; container names are 3-63 characters of
/// lowercase letters, digits and single hyphens.
fn parse_azblob(value: &str, rest: &str) -> Result<StorageUrl, String> {
    let (container, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    let valid = (3..=63).contains(&container.len())
        && container
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !container.starts_with('-')
        && !container.ends_with('-')
        && !container.contains("--");
    if !valid {
        return Err(format!(
            "storage.url {}: expected azblob://container/prefix, the container 3-63 \
             lowercase letters, digits and hyphens; put the account in [storage]",
            redact::endpoint(value)
        ));
    }
    if prefix
        .split('/')
        .any(|s| s == ".." || s.eq_ignore_ascii_case("%2e%2e"))
    {
        return Err(format!(
            "storage.url {}: the prefix must not climb (..)",
            redact::endpoint(value)
        ));
    }
    Ok(StorageUrl::Azblob {
        container: container.to_string(),
        prefix: prefix.trim_matches('/').to_string(),
    })
}

impl TryFrom<String> for StorageUrl {
    type Error = String;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        if let Some(rest) = value.strip_prefix("file://") {
            if rest.is_empty() {
                return Err("storage.url file:// needs a path, e.g. file:///var/backups".into());
            }
            // OpenDAL would read file://relative/path as /path; keep it relative.
            return Ok(StorageUrl::Fs {
                root: PathBuf::from(rest),
            });
        }
        if let Some(rest) = value.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() || bucket.contains(['@', '?', ':']) {
                return Err(format!(
                    "storage.url {}: expected s3://bucket/prefix; put endpoint, region and keys in [storage]",
                    redact::endpoint(&value)
                ));
            }
            return Ok(StorageUrl::S3 {
                bucket: bucket.to_string(),
                prefix: prefix.trim_matches('/').to_string(),
            });
        }
        if value.starts_with("sftp://") {
            return parse_sftp(&value);
        }
        if value.starts_with("webdav://") || value.starts_with("webdav+http://") {
            return parse_webdav(&value);
        }
        if let Some(rest) = value.strip_prefix("azblob://") {
            return parse_azblob(&value, rest);
        }
        if value.contains("://") {
            return Err(format!(
                "storage.url {}: unsupported scheme; use file:///path, s3://bucket/prefix, \
                 sftp://host/path, webdav://host/path or azblob://container/prefix",
                redact::endpoint(&value)
            ));
        }
        if value.is_empty() {
            return Err("storage.url is empty".into());
        }
        Ok(StorageUrl::Fs {
            root: PathBuf::from(value),
        })
    }
}

impl From<StorageUrl> for String {
    fn from(value: StorageUrl) -> Self {
        value.to_string()
    }
}

impl fmt::Display for StorageUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StorageUrl::Fs { root } => write!(f, "file://{}", root.display()),
            StorageUrl::S3 { bucket, prefix } if prefix.is_empty() => write!(f, "s3://{bucket}"),
            StorageUrl::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
            StorageUrl::Sftp {
                user,
                host,
                port,
                root,
            } => {
                f.write_str("sftp://")?;
                if let Some(user) = user {
                    write!(f, "{user}@")?;
                }
                f.write_str(host)?;
                if let Some(port) = port {
                    write!(f, ":{port}")?;
                }
                f.write_str(root)
            }
            StorageUrl::Webdav {
                tls,
                host,
                port,
                root,
            } => {
                f.write_str(if *tls { "webdav://" } else { "webdav+http://" })?;
                f.write_str(host)?;
                if let Some(port) = port {
                    write!(f, ":{port}")?;
                }
                f.write_str(root)
            }
            StorageUrl::Azblob { container, prefix } if prefix.is_empty() => {
                write!(f, "azblob://{container}")
            }
            StorageUrl::Azblob { container, prefix } => write!(f, "azblob://{container}/{prefix}"),
        }
    }
}
/// Renders a secret URL as its scheme and host only.
pub(crate) fn serialize_endpoint<S: Serializer>(
    value: &SecretString,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.serialize_str(&redact::endpoint(value.expose_secret()))
}

/// Renders an optional secret URL as its scheme and host only.
pub(crate) fn serialize_ping<S: Serializer>(
    value: &Option<SecretString>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match value {
        Some(url) => serialize_endpoint(url, s),
        None => s.serialize_none(),
    }
}

/// Checks that a webhook or ping URL is an absolute http(s) URL.
pub(crate) fn check_http_url(key: &str, value: &SecretString) -> Result<(), ConfigError> {
    let shown = redact::endpoint(value.expose_secret());
    let url =
        Url::parse(value.expose_secret()).map_err(|e| invalid(format!("{key} {shown}: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(invalid(format!(
            "{key} {shown}: expected an http:// or https:// URL"
        )));
    }
    Ok(())
}

/// Renders a URL with its password masked.
pub(crate) fn serialize_url<S: Serializer>(value: &SecretString, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&redact::url(value.expose_secret()))
}
