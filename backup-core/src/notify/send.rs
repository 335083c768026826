//! One try of a notification and the policy around it: what a failed try
//! says and whether another may help, the retries with backoff, and the
//! counter of outcomes.

use std::{future::Future, time::Duration};

use crate::model::one_line;

/// Why one try of a send failed, and whether another try may help.
pub(crate) struct SendError {
    pub(crate) reason: String,
    pub(crate) retry: bool,
}

/// How often a notification is tried, and the wait before the second try
/// (doubling after).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Retry {
    pub(crate) attempts: u32,
    pub(crate) backoff: Duration,
}

impl Retry {
    /// Runs `send` until it succeeds, fails for good, or has been tried
    /// `attempts` times, waiting `backoff` (doubling) in between.
    pub(crate) async fn run<F, Fut>(&self, what: &str, mut send: F) -> Result<(), String>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<(), SendError>>,
    {
        let mut attempt = 1;
        loop {
            match send().await {
                Ok(()) => return Ok(()),
                Err(e) if !e.retry || attempt >= self.attempts => return Err(e.reason),
                Err(e) => {
                    let wait = self.backoff * (1 << (attempt - 1).min(10));
                    tracing::warn!(what, attempt, retry_in_seconds = wait.as_secs(), error = %e.reason, "notification failed; retrying");
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
            }
        }
    }
}

/// Counts a notification in `backup_notifications_total{channel, outcome}`.
pub(crate) fn count(channel: &'static str, sent: bool) {
    let outcome = if sent { "sent" } else { "failed" };
    metrics::counter!("backup_notifications_total", "channel" => channel, "outcome" => outcome)
        .increment(1);
}

/// An HTTP response as a send result: 2xx is success; 408, 429 and 5xx are
/// worth another try, other statuses are not. Errors never show the URL.
pub(crate) fn http_result(
    response: Result<reqwest::Response, reqwest::Error>,
) -> Result<u16, SendError> {
    match response {
        Ok(r) if r.status().is_success() => Ok(r.status().as_u16()),
        Ok(r) => {
            let status = r.status();
            Err(SendError {
                reason: format!("HTTP {status}"),
                retry: status.is_server_error()
                    || status == reqwest::StatusCode::REQUEST_TIMEOUT
                    || status == reqwest::StatusCode::TOO_MANY_REQUESTS,
            })
        }
        Err(e) => Err(SendError {
            reason: full_chain(&e.without_url()),
            retry: true,
        }),
    }
}

/// An error and its sources on one line.
pub(crate) fn full_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    one_line(&text)
}
