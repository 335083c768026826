//! Webhooks: the notice POSTed as JSON or as a Slack message.

use std::time::Duration;

use secrecy::ExposeSecret;

use super::{
    message::{Notice, webhook_json, webhook_slack},
    send::{SendError, http_result},
};
use crate::config::{Settings, WebhookFormat, WebhookSettings};

/// Posts `notice` to one webhook once; returns the HTTP status.
pub(crate) async fn post(
    http: &reqwest::Client,
    settings: &Settings,
    hook: &WebhookSettings,
    notice: &Notice,
) -> Result<u16, SendError> {
    let body = match hook.format {
        WebhookFormat::Json => webhook_json(settings, notice),
        WebhookFormat::Slack => webhook_slack(settings, notice),
    };
    let request = http
        .post(hook.url.expose_secret())
        .timeout(Duration::from_secs(hook.timeout_seconds))
        .json(&body);
    http_result(request.send().await)
}
