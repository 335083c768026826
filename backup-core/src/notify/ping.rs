//! Dead-man's-switch pings (healthchecks.io style): `{url}/start` when a
//! run starts, `{url}` on success, `{url}/fail` on failure, so that an
//! outside service alerts when backups stop happening at all.

use std::time::Duration;

use super::send::{SendError, http_result};

/// Limit of each ping.
const PING_TIMEOUT: Duration = Duration::from_secs(10);

/// The URL pinged for `suffix` (`""`, `/start` or `/fail`).
pub(crate) fn url(base: &str, suffix: &str) -> String {
    format!("{}{suffix}", base.trim_end_matches('/'))
}

/// Pings `url` once.
pub(crate) async fn ping(http: &reqwest::Client, url: &str) -> Result<(), SendError> {
    http_result(http.get(url).timeout(PING_TIMEOUT).send().await).map(|_| ())
}
