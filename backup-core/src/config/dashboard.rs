//! `[dashboard]`: the web dashboard on `http.listen`: whether it is on,
//! the key that signs its sessions, and who may sign in with what role.
//!
//! Passwords and tokens are stored only as Argon2id PHC strings (`backup-cli
//! dashboard hash-password`); the hashes are checked by `backup-web`, here
//! that they parse.

use std::net::IpAddr;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use super::{
    error::{ConfigError, check_range, invalid},
    values::serialize_secret,
};
use crate::redact;

/// What a signed-in user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Reads every page and the JSON API.
    Viewer,
    /// Also runs the actions: trigger, verify, drill, cleanup, pause,
    /// download.
    Operator,
}

impl Role {
    /// `viewer` or `operator`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
        }
    }

    /// Parses a role name as a proxy header gives it (any case).
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "viewer" => Some(Role::Viewer),
            "operator" => Some(Role::Operator),
            _ => None,
        }
    }
}

/// `[[dashboard.users]]`: one person who signs in with a password.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DashboardUser {
    /// The name typed at sign-in.
    pub name: String,
    /// Argon2id PHC string of the password.
    #[serde(serialize_with = "serialize_hash")]
    pub password_hash: SecretString,
    /// What they may do.
    pub role: Role,
}

/// `[[dashboard.tokens]]`: a bearer token for scripts and monitoring.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DashboardToken {
    /// Its name, recorded as `token:<name>` beside what it does.
    pub name: String,
    /// Argon2id PHC string of the token.
    #[serde(serialize_with = "serialize_hash")]
    pub token_hash: SecretString,
    /// What it may do.
    pub role: Role,
}

/// `[dashboard.trusted_header]`: sign-in by a forward-auth proxy (single
/// sign-on in front of the dashboard). Only requests from
/// `dashboard.trusted_proxies` are believed.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrustedHeader {
    /// The header naming the signed-in user.
    pub user_header: String,
    /// The header giving the role (`viewer` or `operator`); absent or
    /// unknown values get `default_role`.
    pub role_header: Option<String>,
    /// The role of a user whose proxy sends no role.
    pub default_role: Role,
}

impl Default for TrustedHeader {
    fn default() -> Self {
        Self {
            user_header: "X-Forwarded-User".into(),
            role_header: None,
            default_role: Role::Viewer,
        }
    }
}

/// `[dashboard]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DashboardSettings {
    /// Serve the dashboard on `http.listen`.
    pub enabled: bool,
    /// Signs and encrypts session cookies; the same on every replica, so
    /// any replica accepts a session. At least 32 characters.
    #[serde(serialize_with = "serialize_secret")]
    pub secret_key: Option<SecretString>,
    /// Hours a session lasts after sign-in.
    pub session_hours: u32,
    /// Mark cookies `Secure` always; otherwise only when a trusted proxy
    /// says the request came over HTTPS (`X-Forwarded-Proto: https`).
    pub secure_cookies: bool,
    /// Require sign-in for `/healthz` and `/metrics` too (off: they stay
    /// open, for probes and Prometheus).
    pub protect_health: bool,
    /// Password users.
    pub users: Vec<DashboardUser>,
    /// Bearer tokens.
    pub tokens: Vec<DashboardToken>,
    /// Addresses (or `a.b.c.d/n` networks) of the reverse proxies whose
    /// `X-Forwarded-*` and trusted headers are believed.
    pub trusted_proxies: Vec<String>,
    /// Sign-in by a forward-auth proxy's header.
    pub trusted_header: Option<TrustedHeader>,
}

impl Default for DashboardSettings {
    fn default() -> Self {
        Self {
            enabled: false,
            secret_key: None,
            session_hours: 12,
            secure_cookies: false,
            protect_health: false,
            users: Vec::new(),
            tokens: Vec::new(),
            trusted_proxies: Vec::new(),
            trusted_header: None,
        }
    }
}

fn serialize_hash<S: serde::Serializer>(_: &SecretString, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(redact::MASK)
}

/// A network of trusted proxies: an address and a prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxyNet {
    addr: IpAddr,
    prefix: u8,
}

impl ProxyNet {
    /// Parses `10.0.0.5`, `10.0.0.0/8` or `fd00::/8`.
    ///
    /// # Errors
    ///
    /// When it is neither an address nor a network.
    pub fn parse(s: &str) -> Result<Self, String> {
        let (addr, prefix) = s.split_once('/').map_or((s, None), |(a, p)| (a, Some(p)));
        let addr: IpAddr = addr
            .trim()
            .parse()
            .map_err(|_| format!("{s:?} is not an IP address or network (10.0.0.0/8)"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{s:?}: the prefix must be 0-{max}"))?,
        };
        Ok(Self { addr, prefix })
    }

    /// Whether `ip` is in this network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl DashboardSettings {
    /// The trusted proxy networks, parsed (checked at load time).
    pub fn proxies(&self) -> Vec<ProxyNet> {
        self.trusted_proxies
            .iter()
            .filter_map(|p| ProxyNet::parse(p).ok())
            .collect()
    }

    /// Whether anyone can sign in: a user, a token or a trusted header.
    pub fn has_sign_in(&self) -> bool {
        !self.users.is_empty() || !self.tokens.is_empty() || self.trusted_header.is_some()
    }

    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        check_range("dashboard.session_hours", self.session_hours, 1..=8_760)?;
        for p in &self.trusted_proxies {
            ProxyNet::parse(p).map_err(|e| invalid(format!("dashboard.trusted_proxies: {e}")))?;
        }
        if let Some(key) = &self.secret_key
            && key.expose_secret().chars().count() < 32
        {
            return Err(invalid(
                "dashboard.secret_key must be at least 32 characters (e.g. `openssl rand -hex 32`)",
            ));
        }
        if self.enabled && !self.users.is_empty() && self.secret_key.is_none() {
            return Err(invalid(
                "dashboard.secret_key is needed to sign sessions when dashboard.users are set; \
                 make one with `openssl rand -hex 32` and give every replica the same",
            ));
        }
        if let Some(t) = &self.trusted_header {
            if self.trusted_proxies.is_empty() {
                return Err(invalid(
                    "dashboard.trusted_header needs dashboard.trusted_proxies: the addresses \
                     of the proxies whose header is believed",
                ));
            }
            if t.user_header.trim().is_empty() {
                return Err(invalid("dashboard.trusted_header.user_header is empty"));
            }
        }
        let mut names = std::collections::HashSet::new();
        for (i, user) in self.users.iter().enumerate() {
            check_name("dashboard.users", i, &user.name)?;
            if !names.insert(user.name.as_str()) {
                return Err(invalid(format!(
                    "dashboard.users: the name {:?} is used twice",
                    user.name
                )));
            }
            check_hash(
                &format!("dashboard.users[{i}].password_hash"),
                &user.password_hash,
            )?;
        }
        let mut names = std::collections::HashSet::new();
        for (i, token) in self.tokens.iter().enumerate() {
            check_name("dashboard.tokens", i, &token.name)?;
            if !names.insert(token.name.as_str()) {
                return Err(invalid(format!(
                    "dashboard.tokens: the name {:?} is used twice",
                    token.name
                )));
            }
            check_hash(
                &format!("dashboard.tokens[{i}].token_hash"),
                &token.token_hash,
            )?;
        }
        Ok(())
    }

    pub(crate) fn register_secrets(&self) {
        if let Some(key) = &self.secret_key {
            redact::register(key.expose_secret());
        }
    }
}

fn check_name(list: &str, i: usize, name: &str) -> Result<(), ConfigError> {
    let ok = !name.trim().is_empty()
        && name.chars().count() <= 100
        && !name.chars().any(char::is_control);
    if ok {
        Ok(())
    } else {
        Err(invalid(format!(
            "{list}[{i}].name must be 1-100 printable characters"
        )))
    }
}

/// An Argon2id PHC string: `$argon2id$v=19$m=...,t=...,p=...$salt$hash`.
fn check_hash(key: &str, hash: &SecretString) -> Result<(), ConfigError> {
    if crate::password::is_argon2id(hash.expose_secret()) {
        Ok(())
    } else {
        Err(invalid(format!(
            "{key} is not an Argon2id hash; make one with `backup-cli dashboard hash-password` \
             (it reads the password from stdin)"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_networks_contain_what_they_should() {
        let net = ProxyNet::parse("10.1.0.0/16").expect("net");
        assert!(net.contains("10.1.200.3".parse().expect("ip")));
        assert!(!net.contains("10.2.0.1".parse().expect("ip")));
        assert!(net.contains("::ffff:10.1.0.9".parse().expect("ip")));
        let one = ProxyNet::parse("127.0.0.1").expect("addr");
        assert!(one.contains("127.0.0.1".parse().expect("ip")));
        assert!(!one.contains("127.0.0.2".parse().expect("ip")));
        let all = ProxyNet::parse("0.0.0.0/0").expect("all");
        assert!(all.contains("192.0.2.1".parse().expect("ip")));
        assert!(ProxyNet::parse("10.0.0.0/33").is_err());
        assert!(ProxyNet::parse("example.com").is_err());
        let v6 = ProxyNet::parse("fd00::/8").expect("v6");
        assert!(v6.contains("fd12::1".parse().expect("ip")));
    }
}
