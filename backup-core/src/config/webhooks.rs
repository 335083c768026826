//! `[[webhooks]]`: HTTP endpoints told about outcomes.

use std::fmt;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use super::{
    error::{ConfigError, check_range},
    values::{check_http_url, serialize_endpoint},
};
use crate::redact;

/// Which outcomes a webhook hears about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NotifyOn {
    /// A successful run.
    Success,
    /// A job that failed for good (after its last attempt).
    Failure,
}

/// The body a webhook receives.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum WebhookFormat {
    /// A JSON object of the event and the run (see the README).
    #[default]
    Json,
    /// A Slack-compatible `{"text": ...}` message.
    Slack,
}

/// One `[[webhooks]]` entry.
#[derive(Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSettings {
    /// `https://...` to POST to. Treated as a secret (it usually holds a
    /// token): only its scheme and host are ever shown.
    #[serde(serialize_with = "serialize_endpoint")]
    pub url: SecretString,
    /// `["failure"]` (default) or `["success", "failure"]`.
    #[serde(default = "default_notify_on")]
    pub on: Vec<NotifyOn>,
    /// `json` (default) or `slack`.
    #[serde(default)]
    pub format: WebhookFormat,
    /// Limit of each request, in seconds.
    #[serde(default = "default_http_timeout")]
    pub timeout_seconds: u64,
}

fn default_notify_on() -> Vec<NotifyOn> {
    vec![NotifyOn::Failure]
}

fn default_http_timeout() -> u64 {
    10
}

impl fmt::Debug for WebhookSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookSettings")
            .field("url", &redact::endpoint(self.url.expose_secret()))
            .field("on", &self.on)
            .field("format", &self.format)
            .field("timeout_seconds", &self.timeout_seconds)
            .finish()
    }
}

impl WebhookSettings {
    /// Checks entry `index` of `[[webhooks]]`.
    pub(crate) fn validate(&self, index: usize) -> Result<(), ConfigError> {
        check_http_url(&format!("webhooks[{index}].url"), &self.url)?;
        check_range(
            &format!("webhooks[{index}].timeout_seconds"),
            self.timeout_seconds,
            1..=3_600,
        )
    }
}
