//! `[smtp]`: the mail server for notifications, and the endpoint (host,
//! port, TLS mode, credentials) it resolves to.

use std::{
    fmt,
    path::{Path, PathBuf},
};

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use url::Url;

use super::{
    error::{ConfigError, check_range, invalid},
    values::{EmailAddress, check_userinfo, resolve, serialize_secret, serialize_url},
};
use crate::redact;

/// `[smtp]`: the mail server for notifications.
#[derive(Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpSettings {
    /// `smtp://[user[:password]@]host[:port]` (port 587, STARTTLS when the
    /// server offers it) or `smtps://...` (port 465, implicit TLS).
    #[serde(serialize_with = "serialize_url")]
    pub url: SecretString,
    /// STARTTLS on `smtp://`: `opportunistic` (default), `required` or
    /// `none`. `smtps://` is always TLS.
    #[serde(default)]
    pub tls: Option<SmtpTls>,
    /// Login name, when not in the URL.
    #[serde(default)]
    pub username: Option<String>,
    /// Password, when not in the URL (better: `BACKUP__SMTP__PASSWORD` or
    /// `password_file`).
    #[serde(default, serialize_with = "serialize_secret")]
    pub password: Option<SecretString>,
    /// A file holding the password (a container secret, say); read at load.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// Sender address.
    pub from: EmailAddress,
    /// Limit of one send, from connecting to the server's last reply, in
    /// seconds.
    #[serde(default = "default_smtp_timeout", alias = "timeout")]
    pub timeout_seconds: u64,
    /// A PEM file of CA certificates trusted besides the system ones (a
    /// private CA, or a self-signed server certificate).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

fn default_smtp_timeout() -> u64 {
    30
}

/// The `tls` key of `[smtp]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// STARTTLS, and fail when the server does not offer it.
    Required,
    /// STARTTLS when the server offers it, else plain text.
    Opportunistic,
    /// Plain text (a local relay).
    None,
}

/// How the connection to the mail server is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpSecurity {
    /// TLS from the first byte (`smtps://`).
    Implicit,
    /// STARTTLS, required.
    StartTls,
    /// STARTTLS when offered.
    Opportunistic,
    /// No TLS.
    Plain,
}

impl fmt::Display for SmtpSecurity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SmtpSecurity::Implicit => "implicit TLS",
            SmtpSecurity::StartTls => "STARTTLS required",
            SmtpSecurity::Opportunistic => "STARTTLS when offered",
            SmtpSecurity::Plain => "no TLS",
        })
    }
}

/// Where and how to reach the mail server, from a validated `[smtp]`.
#[derive(Clone)]
pub struct SmtpEndpoint {
    /// Host name or address.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// TLS mode.
    pub security: SmtpSecurity,
    /// Login name and password, when the server wants them.
    pub credentials: Option<(String, SecretString)>,
}

impl fmt::Debug for SmtpEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_string())
    }
}

impl fmt::Display for SmtpEndpoint {
    /// `smtp://user@host:port (STARTTLS required)`; never the password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.security == SmtpSecurity::Implicit {
            "smtps"
        } else {
            "smtp"
        };
        let user = self
            .credentials
            .as_ref()
            .map_or(String::new(), |(u, _)| format!("{u}@"));
        write!(
            f,
            "{scheme}://{user}{}:{} ({})",
            self.host, self.port, self.security
        )
    }
}

impl SmtpSettings {
    /// Host, port, TLS mode and credentials, from the URL and the keys.
    ///
    /// # Errors
    ///
    /// When the URL is not `smtp://` or `smtps://` with a host, a password
    /// is given twice, or `tls` contradicts `smtps://`.
    pub fn endpoint(&self) -> Result<SmtpEndpoint, ConfigError> {
        let raw = self.url.expose_secret();
        check_userinfo("smtp.url", raw).map_err(invalid)?;
        let shown = redact::url(raw);
        let url = Url::parse(raw).map_err(|e| invalid(format!("smtp.url {shown}: {e}")))?;
        let implicit = match url.scheme() {
            "smtps" => true,
            "smtp" => false,
            other => {
                return Err(invalid(format!(
                    "smtp.url {shown}: scheme {other:?} is not smtp:// or smtps://"
                )));
            }
        };
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| invalid(format!("smtp.url {shown} has no host")))?;
        // Url keeps the brackets of an IPv6 address; the resolver wants none.
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        if !matches!(url.path(), "" | "/") || url.query().is_some() {
            return Err(invalid(format!(
                "smtp.url {shown}: expected smtp://[user:password@]host[:port] without a path or query"
            )));
        }
        let security = match (implicit, self.tls) {
            (true, None | Some(SmtpTls::Required)) => SmtpSecurity::Implicit,
            (true, Some(other)) => {
                return Err(invalid(format!(
                    "smtp.tls = {:?} contradicts smtps:// (always TLS); use smtp:// for STARTTLS or no TLS",
                    format!("{other:?}").to_lowercase()
                )));
            }
            (false, Some(SmtpTls::Required)) => SmtpSecurity::StartTls,
            (false, None | Some(SmtpTls::Opportunistic)) => SmtpSecurity::Opportunistic,
            (false, Some(SmtpTls::None)) => SmtpSecurity::Plain,
        };
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        };
        let url_user = (!url.username().is_empty()).then(|| decode(url.username()));
        let url_password = url.password().map(decode);
        if url_user.is_some() && self.username.is_some() {
            return Err(invalid(
                "smtp: the user is given both in smtp.url and in smtp.username; keep one",
            ));
        }
        if url_password.is_some() && self.password.is_some() {
            return Err(invalid(
                "smtp: the password is given both in smtp.url and in smtp.password (or \
                 password_file, or BACKUP__SMTP__PASSWORD); keep one",
            ));
        }
        let user = url_user.or_else(|| self.username.clone());
        let password = url_password
            .map(SecretString::from)
            .or_else(|| self.password.clone());
        let credentials = match (user, password) {
            (Some(user), Some(password)) => Some((user, password)),
            (None, None) => None,
            (Some(_), None) => {
                return Err(invalid(
                    "smtp: a user is set but no password (smtp.password, password_file or \
                     BACKUP__SMTP__PASSWORD)",
                ));
            }
            (None, Some(_)) => {
                return Err(invalid(
                    "smtp: a password is set but no user (in smtp.url or smtp.username)",
                ));
            }
        };
        Ok(SmtpEndpoint {
            host,
            // The submission ports (RFC 8314); a relay on 25 names its port.
            port: url.port().unwrap_or(if implicit { 465 } else { 587 }),
            security,
            credentials,
        })
    }

    pub(crate) fn validate(&mut self, base: &Path) -> Result<(), ConfigError> {
        if let Some(file) = self.password_file.take() {
            let file = resolve(base, &file);
            if self.password.is_some() {
                return Err(invalid(
                    "smtp: both password and password_file are set; keep one",
                ));
            }
            let text = std::fs::read_to_string(&file).map_err(|e| {
                invalid(format!(
                    "smtp.password_file {}: cannot read it: {e}",
                    file.display()
                ))
            })?;
            let password = text.trim_end_matches(['\r', '\n']);
            if password.is_empty() {
                return Err(invalid(format!(
                    "smtp.password_file {} is empty",
                    file.display()
                )));
            }
            self.password = Some(password.into());
            self.password_file = Some(file);
        }
        if let Some(ca) = &mut self.ca_file {
            *ca = resolve(base, ca);
        }
        check_range("smtp.timeout_seconds", self.timeout_seconds, 1..=3_600)?;
        self.endpoint().map(|_| ())
    }
}

impl fmt::Debug for SmtpSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpSettings")
            .field("endpoint", &self.endpoint().map(|e| e.to_string()))
            .field("from", &self.from)
            .field("timeout_seconds", &self.timeout_seconds)
            .field("ca_file", &self.ca_file)
            .finish_non_exhaustive()
    }
}
