//! The page frame, the small pieces every page uses (badges, times, sizes),
//! the static assets, the error pages, and the security headers.

use std::time::Duration;

use axum::{
    extract::Request,
    http::{HeaderValue, StatusCode, header},
    middleware::Next,
    response::{Html, IntoResponse, Response},
};
use backup_core::model::{RunStatus, human_bytes};
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use maud::{DOCTYPE, Markup, html};

use crate::auth::{Csrf, Identity};

const CSS: &str = include_str!("../static/app.css");
const SCRIPT: &str = include_str!("../static/live.js");

/// What the frame of a signed-in page needs.
pub struct Chrome<'a> {
    pub identity: &'a Identity,
    pub csrf: &'a Csrf,
    pub tz: Tz,
    pub active: &'static str,
}

impl<'a> Chrome<'a> {
    pub fn new(identity: &'a Identity, csrf: &'a Csrf, tz: Tz, active: &'static str) -> Self {
        Self {
            identity,
            csrf,
            tz,
            active,
        }
    }
}

/// A full page with navigation.
pub fn page(title: &str, chrome: &Chrome<'_>, body: Markup) -> Response {
    let nav = [
        ("/", "Overview"),
        ("/runs", "Runs"),
        ("/schedules", "Schedules"),
        ("/artifacts", "Artifacts"),
    ];
    let who = chrome.identity;
    document(
        title,
        true,
        html! {
            header.top {
                a.brand href="/" { "backups" }
                nav {
                    @for (href, label) in nav {
                        @if chrome.active == href {
                            a.active href=(href) aria-current="page" { (label) }
                        } @else {
                            a href=(href) { (label) }
                        }
                    }
                }
                div.who {
                    span.user title=(who.actor) { (who.name) " · " (who.role.as_str()) }
                    @if who.via == crate::auth::Via::Session {
                        form method="post" action="/logout" {
                            input type="hidden" name="csrf" value=(chrome.csrf.0);
                            button.link type="submit" { "Sign out" }
                        }
                    }
                }
            }
            main { (body) }
            footer { "Times in " (chrome.tz.name()) }
        },
    )
}

/// A page without navigation (sign-in, errors).
pub fn bare(title: &str, body: Markup) -> Response {
    document(
        title,
        false,
        html! {
            header.top { a.brand href="/" { "backups" } }
            main { (body) }
        },
    )
}

/// The HTML document around a page's body; `live` loads the script that
/// refreshes `[data-live]` parts.
fn document(title: &str, live: bool, body: Markup) -> Response {
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · backups" }
                link rel="stylesheet" href="/static/app.css";
                @if live { script src="/static/live.js" defer {} }
            }
            body { (body) }
        }
    };
    Html(markup.into_string()).into_response()
}

fn error_page(status: StatusCode, title: &str, text: &str) -> Response {
    (
        status,
        bare(title, html! { section.error { h1 { (title) } p { (text) } p { a href="/" { "Back to the overview" } } } }),
    )
        .into_response()
}

pub fn forbidden(text: &str) -> Response {
    error_page(StatusCode::FORBIDDEN, "Not allowed", text)
}

pub fn not_found_page() -> Response {
    error_page(
        StatusCode::NOT_FOUND,
        "Not found",
        "There is nothing at this address.",
    )
}

pub async fn not_found() -> Response {
    not_found_page()
}

pub fn bad_request(text: &str) -> Response {
    error_page(StatusCode::BAD_REQUEST, "Bad request", text)
}

/// An internal failure: logged in full, shown as a reference only.
pub fn internal(what: &str, error: &dyn std::fmt::Display) -> Response {
    let reference = uuid::Uuid::new_v4().simple().to_string()[..8].to_string();
    tracing::error!(reference = %reference, error = %error, "dashboard: {what} failed");
    error_page(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Something went wrong",
        &format!("The worker's log has the details (reference {reference})."),
    )
}

pub fn too_many(wait: Duration) -> Response {
    let minutes = wait.as_secs().div_ceil(60).max(1);
    let mut response = error_page(
        StatusCode::TOO_MANY_REQUESTS,
        "Too many failed sign-ins",
        &format!("Try again in {minutes} minute(s)."),
    );
    if let Ok(v) = HeaderValue::from_str(&wait.as_secs().max(1).to_string()) {
        response.headers_mut().insert(header::RETRY_AFTER, v);
    }
    response
}

pub async fn css() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        CSS,
    )
}

pub async fn script() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        SCRIPT,
    )
}

/// Middleware: the security headers of every response.
pub async fn security_headers(req: Request, next: Next) -> Response {
    let mut response = next.run(req).await;
    let headers = response.headers_mut();
    let set = |headers: &mut axum::http::HeaderMap, name: &'static str, value: &'static str| {
        headers.insert(name, HeaderValue::from_static(value));
    };
    set(
        headers,
        "content-security-policy",
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
         connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    );
    set(headers, "x-frame-options", "DENY");
    set(headers, "referrer-policy", "same-origin");
    set(headers, "x-content-type-options", "nosniff");
    if !headers.contains_key(header::CACHE_CONTROL) {
        set(headers, "cache-control", "no-store");
    }
    response
}

/// A status badge: colour and text, never colour alone.
pub fn badge(status: RunStatus) -> Markup {
    let mark = match status {
        RunStatus::Success => "✓",
        RunStatus::Failed => "✗",
        RunStatus::Running => "◌",
    };
    html! { span class={"badge " (status.as_str())} { (mark) " " (status.as_str()) } }
}

/// A time in the configured zone.
pub fn time(t: DateTime<Utc>, tz: Tz) -> String {
    t.with_timezone(&tz)
        .format("%Y-%m-%d %H:%M:%S %Z")
        .to_string()
}

/// A time with its age: `<time title="…">5 min ago</time>`.
pub fn when(t: DateTime<Utc>, tz: Tz, now: DateTime<Utc>) -> Markup {
    html! { time datetime=(t.to_rfc3339()) title=(time(t, tz)) { (age(t, now)) } }
}

/// How long ago (or, for a future time, how soon).
pub fn age(t: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let future = t > now;
    let n = (now - t).num_seconds().abs();
    let text = match n {
        0..=59 => format!("{n} s"),
        60..=3_599 => format!("{} min", n / 60),
        3_600..=172_799 => format!("{} h", n / 3_600),
        _ => format!("{} d", n / 86_400),
    };
    if future {
        format!("in {text}")
    } else {
        format!("{text} ago")
    }
}

/// Percent-encodes a query value (everything but unreserved characters).
pub fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

pub fn bytes(n: Option<i64>) -> String {
    n.map_or_else(|| "-".into(), |n| human_bytes(n.max(0) as u64))
}

pub fn seconds(d: Option<f64>) -> String {
    match d {
        None => "-".into(),
        Some(d) if d < 60.0 => format!("{d:.1} s"),
        Some(d) => format!("{}m {:02}s", (d / 60.0) as u64, (d % 60.0) as u64),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_as_people_say_them() {
        let now = Utc::now();
        assert_eq!(age(now - chrono::TimeDelta::seconds(5), now), "5 s ago");
        assert_eq!(age(now - chrono::TimeDelta::minutes(90), now), "1 h ago");
        assert_eq!(age(now + chrono::TimeDelta::minutes(3), now), "in 3 min");
        assert_eq!(age(now - chrono::TimeDelta::days(3), now), "3 d ago");
        // A fire a fraction of a second away is still to come.
        assert_eq!(
            age(now + chrono::TimeDelta::milliseconds(400), now),
            "in 0 s"
        );
    }

    #[test]
    fn markup_escapes_what_it_shows() {
        let name = "<script>alert(1)</script>";
        let out = html! { p { (name) } }.into_string();
        assert!(out.contains("&lt;script&gt;"), "{out}");
        assert!(!out.contains("<script>"), "{out}");
    }
}
