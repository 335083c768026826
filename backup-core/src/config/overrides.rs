//! Environment overrides: `BACKUP__SECTION__KEY=value` sets `section.key`.
//!
//! A value is read as TOML where the key wants a list, a table, a number or
//! a boolean (`BACKUP__ADMINS='["ops@example.com"]'`, `BACKUP__STORAGE__KEEP=14`),
//! and as the very text given where the key wants a string: an operator who
//! writes `BACKUP__EMAIL_SUBJECT_PREFIX="[Backup]"` or `BACKUP__ENVIRONMENT=123`
//! means that text. Which keys want strings is learnt from the settings
//! themselves: a value that parsed as something else and was refused as "not
//! a string" is given again as its text.

use std::collections::{BTreeMap, BTreeSet};

use figment::{
    Error, Metadata, Profile, Provider,
    error::Kind,
    providers::Env,
    value::{Dict, Map, Value},
};

use crate::redact;

/// The `BACKUP__` variables, each parsed as TOML unless its key is in
/// `strings`, where it stays text.
#[derive(Debug, Clone)]
pub(crate) struct Overrides {
    prefix: &'static str,
    /// Dotted key (`smtp.from`) → the variable's text.
    vars: BTreeMap<String, String>,
    /// Keys whose value is taken as text.
    strings: BTreeSet<String>,
}

impl Overrides {
    /// The variables of this process that start with `prefix`.
    pub(crate) fn from_env(prefix: &'static str) -> Self {
        let vars = Env::prefixed(prefix)
            .split("__")
            .iter()
            .map(|(key, value)| (key.as_str().to_string(), value))
            .collect();
        Self {
            prefix,
            vars,
            strings: BTreeSet::new(),
        }
    }

    /// Takes as text every key that `errors` refused for not being a string
    /// while its value came from a variable; false when there was none, so
    /// the errors stand.
    pub(crate) fn learn(&mut self, errors: &Error) -> bool {
        let mut learnt = false;
        for error in errors.clone() {
            let from_env = error
                .metadata
                .as_ref()
                .is_some_and(|md| md.name.contains(self.prefix));
            let wants_string = matches!(&error.kind, Kind::InvalidType(_, expected) if expected.contains("string"));
            let key = error.path.join(".");
            if from_env && wants_string && self.vars.contains_key(&key) && self.strings.insert(key)
            {
                learnt = true;
            }
        }
        learnt
    }

    /// The variable a dotted key comes from: `smtp.from` → `BACKUP__SMTP__FROM`.
    fn variable(prefix: &str, path: &[&str]) -> String {
        let keys: Vec<String> = path.iter().map(|k| k.to_ascii_uppercase()).collect();
        format!("{prefix}{}", keys.join("__"))
    }
}

impl Provider for Overrides {
    fn metadata(&self) -> Metadata {
        let prefix = self.prefix;
        Metadata::named(format!("environment variable(s) {prefix}*"))
            .interpolater(move |_: &Profile, path: &[&str]| Self::variable(prefix, path))
    }

    fn data(&self) -> Result<Map<Profile, Dict>, Error> {
        let mut dict = Dict::new();
        for (key, text) in &self.vars {
            let value = if self.strings.contains(key) {
                Value::from(text.clone())
            } else {
                text.parse().unwrap_or_else(|never| match never {})
            };
            insert(&mut dict, key.split('.'), value);
        }
        Ok(Profile::Default.collect(dict))
    }
}

/// Sets `path` in `dict` to `value`, creating the tables on the way.
fn insert<'a>(dict: &mut Dict, mut path: impl Iterator<Item = &'a str>, value: Value) {
    let Some(first) = path.next() else { return };
    let rest: Vec<&str> = path.collect();
    if rest.is_empty() {
        dict.insert(first.to_string(), value);
        return;
    }
    let entry = dict
        .entry(first.to_string())
        .or_insert_with(|| Value::from(Dict::new()));
    if !matches!(entry, Value::Dict(..)) {
        *entry = Value::from(Dict::new());
    }
    if let Value::Dict(_, inner) = entry {
        insert(inner, rest.into_iter(), value);
    }
}

/// One load error as a line: what is wrong, with which key, from where.
/// Keys read as in the file (`media_backup.paths.0`), or as the variable
/// that set them (`BACKUP__SMTP__FROM`).
pub(crate) fn describe(error: &Error) -> String {
    let secret = error
        .path
        .iter()
        .any(|p| SECRET_KEYS.contains(&p.to_ascii_lowercase().as_str()));
    let mut text = match &error.kind {
        // The value of a secret key is never shown, even when mistyped.
        Kind::InvalidType(_, expected) if secret => {
            format!("invalid type: expected {expected} (the value is not shown)")
        }
        Kind::InvalidValue(_, expected) if secret => {
            format!("invalid value: expected {expected} (the value is not shown)")
        }
        kind => without_source_lines(&kind.to_string()),
    };
    text = redact::age_secret_keys(&text);
    let from_env = error
        .metadata
        .as_ref()
        .filter(|md| md.name.starts_with("environment variable"));
    if !error.path.is_empty() {
        let key = match (from_env, &error.profile) {
            (Some(md), Some(profile)) => md.interpolate(profile, &error.path),
            _ => error.path.join("."),
        };
        text.push_str(&format!(" for key {key:?}"));
    }
    if let Some(md) = &error.metadata {
        match &md.source {
            Some(source) => text.push_str(&format!(" in {source}")),
            None => text.push_str(&format!(" in {}", md.name)),
        }
    }
    text
}

/// Keys whose values are (or may hold) secrets: a wrong type there is
/// reported without the value. (`recipients`: a secret key pasted by
/// mistake.)
const SECRET_KEYS: &[&str] = &[
    "passphrase",
    "password",
    "secret_access_key",
    "account_key",
    "secret_key",
    "recipients",
    "url",
    "users",
    "tokens",
];

/// A TOML syntax error quotes the lines around the mistake, which may hold
/// a password: keep where it is and what is wrong, not the text.
fn without_source_lines(text: &str) -> String {
    text.lines()
        .filter(|line| {
            let t = line.trim_start();
            !(t.starts_with('|')
                || t.split_once('|').is_some_and(|(n, _)| {
                    !n.trim().is_empty() && n.trim().bytes().all(|b| b.is_ascii_digit())
                }))
        })
        .collect::<Vec<_>>()
        .join(" ")
}
