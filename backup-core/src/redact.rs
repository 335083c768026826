//! Keeping secrets out of anything printed, logged, stored or mailed.

use url::Url;

/// What a secret is replaced with.
pub const MASK: &str = "***";

/// A URL with its password (if any) replaced by [`MASK`].
///
/// Every URL that is shown to a person goes through this function. Strings
/// that do not parse as URLs are returned with any `user:password@` part
/// masked by hand, so a malformed URL cannot leak either.
pub fn url(raw: &str) -> String {
    if ambiguous_userinfo(raw) {
        return only_scheme(raw);
    }
    match Url::parse(raw) {
        Ok(mut parsed) if parsed.password().is_some() => {
            // set_password only fails for URLs that cannot have one, and this
            // one has one.
            let _ = parsed.set_password(Some(MASK));
            parsed.to_string()
        }
        Ok(_) => raw.to_string(),
        Err(_) => mask_userinfo(raw),
    }
}

/// Whether a URL's user or password may hold one of the characters that
/// end that part (`/`, `?`, `#`, `@`): then no parser can tell where the
/// password ends, and none of the URL after the scheme is safe to show.
/// `postgres://u:p@ss/w@host/db` and `redis://:r/dX@host` are such URLs.
pub fn ambiguous_userinfo(raw: &str) -> bool {
    let Some((_, rest)) = raw.split_once("://") else {
        return false;
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, after) = rest.split_at(end);
    authority.matches('@').count() > 1 || after.contains('@')
}

/// `scheme://***`: all of a URL that is safe to show when its password
/// cannot be told apart.
fn only_scheme(raw: &str) -> String {
    let scheme = raw
        .split_once("://")
        .map(|(s, _)| s)
        .filter(|s| {
            s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
        })
        .unwrap_or("");
    format!("{scheme}://{MASK}")
}

/// Only the scheme, host and port of a URL whose path or query is a secret
/// (a webhook or a dead-man's-switch ping URL): `https://hooks.slack.com/***`.
pub fn endpoint(raw: &str) -> String {
    match Url::parse(raw) {
        Ok(parsed) => {
            let host = parsed.host_str().unwrap_or_default();
            let port = parsed.port().map_or(String::new(), |p| format!(":{p}"));
            let hidden =
                parsed.path() != "/" || parsed.query().is_some() || parsed.password().is_some();
            let tail = if hidden {
                format!("/{MASK}")
            } else {
                String::new()
            };
            format!("{}://{host}{port}{tail}", parsed.scheme())
        }
        Err(_) => MASK.to_string(),
    }
}

fn mask_userinfo(raw: &str) -> String {
    let Some(scheme_end) = raw.find("://") else {
        return raw.to_string();
    };
    let rest = &raw[scheme_end + 3..];
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => match rest[..at].find(':') {
            Some(colon) => format!(
                "{}{}:{}{}",
                &raw[..scheme_end + 3],
                &rest[..colon],
                MASK,
                &rest[at..]
            ),
            None => raw.to_string(),
        },
        None => raw.to_string(),
    }
}

/// Replaces every occurrence of each secret in `text` by [`MASK`], and masks
/// the password of any URL embedded in it.
///
/// Used on text that came from outside (a dump tool's stderr, a driver's
/// error) before it is logged, stored in history or sent anywhere.
pub fn text(text: &str, secrets: &[&str]) -> String {
    let mut out = text.to_string();
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        out = out.replace(secret, MASK);
    }
    out.split(' ')
        .map(|word| {
            if word.contains("://") {
                url(word)
            } else {
                word.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The secrets this process knows (from its config and arguments), in
/// every spelling a log line may give them, longest first.
static KNOWN: std::sync::RwLock<Vec<String>> = std::sync::RwLock::new(Vec::new());

/// Shorter values are not masked: they would blank out ordinary words.
const MIN_SECRET_LEN: usize = 4;

/// Makes `secret` one that [`scrub`] masks, as written and as JSON, Rust
/// debug output and URL percent-encoding would spell it.
pub fn register(secret: &str) {
    if secret.chars().count() < MIN_SECRET_LEN {
        return;
    }
    let quoted = |s: String| s.trim_matches('"').to_string();
    let mut spellings = vec![
        secret.to_string(),
        quoted(serde_json::to_string(secret).unwrap_or_default()),
        quoted(format!("{secret:?}")),
        percent_encoding::utf8_percent_encode(secret, percent_encoding::NON_ALPHANUMERIC)
            .to_string(),
        percent_encoding::utf8_percent_encode(secret, USERINFO).to_string(),
    ];
    if let Ok(decoded) = percent_encoding::percent_decode_str(secret).decode_utf8() {
        spellings.push(decoded.into_owned());
    }
    let mut known = KNOWN
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    for s in spellings {
        if s.chars().count() >= MIN_SECRET_LEN && !known.contains(&s) {
            known.push(s);
        }
    }
    known.sort_by_key(|s| std::cmp::Reverse(s.len()));
}

/// The password of `raw`, a URL, as written and decoded; and for URLs
/// whose path is the secret (webhooks, pings), that path and query.
pub fn register_url(raw: &str, path_is_secret: bool) {
    if ambiguous_userinfo(raw) {
        register(raw);
        return;
    }
    let Ok(parsed) = Url::parse(raw) else {
        register(raw);
        return;
    };
    if let Some(password) = parsed.password() {
        register(password);
    }
    if path_is_secret {
        register(raw);
        // As an HTTP client's trace shows the request: path, then query.
        let path = parsed.path();
        if path != "/" {
            register(path);
        }
        if let Some(query) = parsed.query() {
            register(query);
            register(&format!("{path}?{query}"));
        }
    }
}

/// What `url` encodes in a user or password.
const USERINFO: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// `text` with every [registered](register) secret replaced by [`MASK`].
/// Every log line passes through it, at every level.
pub fn scrub(text: &str) -> std::borrow::Cow<'_, str> {
    let known = KNOWN
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if !known.iter().any(|s| text.contains(s.as_str())) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = text.to_string();
    for secret in known.iter() {
        out = out.replace(secret.as_str(), MASK);
    }
    std::borrow::Cow::Owned(out)
}

/// `text` with every age secret key (`AGE-SECRET-KEY-1…`, any case) masked.
pub fn age_secret_keys(text: &str) -> String {
    const PREFIX: &str = "age-secret-key-";
    let lower = text.to_ascii_lowercase();
    let mut out = String::with_capacity(text.len());
    let mut rest = 0;
    while let Some(found) = lower[rest..].find(PREFIX) {
        let start = rest + found;
        let end = start
            + PREFIX.len()
            + lower[start + PREFIX.len()..]
                .bytes()
                .take_while(u8::is_ascii_alphanumeric)
                .count();
        out.push_str(&text[rest..start]);
        out.push_str("AGE-SECRET-KEY-");
        out.push_str(MASK);
        rest = end;
    }
    out.push_str(&text[rest..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_url_passwords_and_keeps_the_rest() {
        assert_eq!(
            url("postgres://app:s3cret@db:5432/app"),
            "postgres://app:***@db:5432/app"
        );
        assert_eq!(url("postgres://app@db/app"), "postgres://app@db/app");
        assert_eq!(url("s3://bucket/prefix"), "s3://bucket/prefix");
    }

    #[test]
    fn endpoints_keep_only_scheme_host_and_port() {
        assert_eq!(
            endpoint("https://hooks.slack.com/services/T0/B0/XXXXsecret"),
            "https://hooks.slack.com/***"
        );
        assert_eq!(
            endpoint("http://u:pw@127.0.0.1:8080/ping/uuid?x=1"),
            "http://127.0.0.1:8080/***"
        );
        assert_eq!(endpoint("https://example.com"), "https://example.com");
        assert_eq!(endpoint("not a url with secret"), MASK);
    }

    #[test]
    fn masks_unparseable_urls_by_hand() {
        assert_eq!(url("mysql://root:pw@[bad/db"), "mysql://root:***@[bad/db");
    }

    #[test]
    fn shows_nothing_of_a_url_whose_password_cannot_be_told_apart() {
        for (raw, secret) in [
            ("postgres://u:p@ss:w/\"rd 1%?#X@host/db", "ss:w"),
            ("redis://:r/dX@host", "r/dX"),
            ("postgres://u:123/x@host/db", "123/x"),
            ("mysql://root:p@ss@[bad/db", "ss"),
        ] {
            assert!(ambiguous_userinfo(raw), "{raw}");
            let shown = url(raw);
            assert!(!shown.contains(secret), "{shown}");
            assert!(shown.ends_with("://***"), "{shown}");
        }
        assert!(!ambiguous_userinfo("postgres://u:p%40ss@host/db"));
        assert!(!ambiguous_userinfo("s3://bucket/prefix"));
    }

    #[test]
    fn masks_known_secrets_and_embedded_urls_in_free_text() {
        let got = text(
            "FATAL: password hunter2 rejected for smtp://u:pw@mail:25 now",
            &["hunter2"],
        );
        assert_eq!(
            got,
            "FATAL: password *** rejected for smtp://u:***@mail:25 now"
        );
    }

    #[test]
    fn registered_secrets_are_scrubbed_in_every_spelling() {
        register("Zq9/\"pl@nted S3cret");
        register("abc");
        register_url("https://hc-ping.example.com/0f1e2d3c-uuid?x=1", true);
        register_url("https://hooks.example.com/?token=T0k3nValue", true);
        register_url("redis://:R3dis%2Fpw@127.0.0.1:6379/0", false);
        let line = r#"secret_access_key: "Zq9/\"pl@nted S3cret", json "Zq9/\"pl@nted S3cret" \
                      enc Zq9%2F%22pl%40nted%20S3cret ping /0f1e2d3c-uuid?x=1 hook token=T0k3nValue redis R3dis%2Fpw R3dis/pw abc"#;
        let out = scrub(line);
        for leaked in ["pl@nted", "pl%40nted", "0f1e2d3c", "T0k3n", "R3dis"] {
            assert!(!out.contains(leaked), "{leaked} in {out}");
        }
        assert!(out.ends_with("abc"), "short values stay: {out}");
        assert_eq!(scrub("nothing here"), "nothing here");
    }
}
