//! Who is asking, and what they may do. Four ways in, checked in order on
//! every request ([`identify`]):
//! - a bearer token (`Authorization: Bearer …`) matching a
//!   `[[dashboard.tokens]]` hash;
//! - a forward-auth proxy's user header, believed only from
//!   `dashboard.trusted_proxies`;
//! - a session cookie from signing in with a `[[dashboard.users]]`
//!   password: encrypted and signed with a key derived from
//!   `dashboard.secret_key`, so every replica accepts it;
//! - with no sign-in configured and a loopback listener, the local operator
//!   (Host must be a loopback name, so a rebound DNS name gets nothing).
//!
//! Forms carry a CSRF token that must equal the one in an encrypted
//! cookie; bearer-token requests need none (browsers never send them on
//! their own).

mod limit;

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    sync::Mutex,
    time::Instant,
};

use axum::{
    Form,
    extract::{ConnectInfo, FromRequestParts, Query, Request, State},
    http::{HeaderMap, StatusCode, header, request::Parts},
    middleware::Next,
    response::{IntoResponse, Redirect, Response},
};
use axum_extra::extract::{
    PrivateCookieJar,
    cookie::{Cookie, SameSite},
};
use backup_core::{
    config::{DashboardSettings, ProxyNet, Role},
    history::History,
};
use chrono::Utc;
use maud::html;
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use backup_core::password::{self, matches};

use self::limit::Limiter;
use crate::{state::AppState, view};

const SESSION: &str = "backup_session";
const CSRF: &str = "backup_csrf";

/// How a request was signed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// A password session.
    Session,
    /// A bearer token.
    Token,
    /// A forward-auth proxy's header.
    Proxy,
    /// The local operator (loopback, no sign-in configured).
    Local,
}

/// The signed-in user of a request.
#[derive(Debug, Clone)]
pub struct Identity {
    /// The name shown.
    pub name: String,
    /// Recorded beside what they do: `web:<user>`, `token:<name>`,
    /// `proxy:<user>`, `web:local`.
    pub actor: String,
    /// What they may do.
    pub role: Role,
    /// How.
    pub via: Via,
}

impl Identity {
    pub fn is_operator(&self) -> bool {
        self.role == Role::Operator
    }
}

/// The CSRF token of this browser (from its cookie, or new).
#[derive(Debug, Clone)]
pub struct Csrf(pub String);

/// What every signed-in handler takes: who asks, and their form token
/// (both set by [`identify`], which runs before any page or action).
pub struct Signed {
    pub me: Identity,
    pub csrf: Csrf,
}

impl<S: Send + Sync> FromRequestParts<S> for Signed {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Response> {
        let me = parts.extensions.get::<Identity>().cloned();
        let csrf = parts.extensions.get::<Csrf>().cloned();
        match (me, csrf) {
            (Some(me), Some(csrf)) => Ok(Self { me, csrf }),
            // A route mounted outside `identify`: a bug, never a way in.
            _ => Err(StatusCode::INTERNAL_SERVER_ERROR.into_response()),
        }
    }
}

/// The sign-in setup, from `[dashboard]`.
pub struct Auth {
    users: Vec<(String, String, Role)>,
    tokens: Vec<(String, String, Role)>,
    /// sha256 of tokens that matched → index in `tokens`: a token is
    /// checked with Argon2 once per process, not on every request.
    known_tokens: Mutex<HashMap<[u8; 32], usize>>,
    proxies: Vec<ProxyNet>,
    trusted: Option<backup_core::config::TrustedHeader>,
    local: bool,
    secure: bool,
    session_seconds: i64,
    limiter: Limiter,
    decoy: String,
}

impl Auth {
    pub fn new(settings: &DashboardSettings, listen: &str) -> Self {
        let loopback = listen
            .parse::<SocketAddr>()
            .is_ok_and(|a| a.ip().is_loopback());
        Self {
            users: settings
                .users
                .iter()
                .map(|u| {
                    (
                        u.name.clone(),
                        u.password_hash.expose_secret().to_string(),
                        u.role,
                    )
                })
                .collect(),
            tokens: settings
                .tokens
                .iter()
                .map(|t| {
                    (
                        t.name.clone(),
                        t.token_hash.expose_secret().to_string(),
                        t.role,
                    )
                })
                .collect(),
            known_tokens: Mutex::default(),
            proxies: settings.proxies(),
            trusted: settings.trusted_header.clone(),
            local: loopback && !settings.has_sign_in(),
            secure: settings.secure_cookies,
            session_seconds: i64::from(settings.session_hours) * 3600,
            limiter: Limiter::default(),
            decoy: if settings.users.is_empty() {
                String::new()
            } else {
                password::decoy()
            },
        }
    }

    fn trusted_proxy(&self, peer: Option<IpAddr>) -> bool {
        peer.is_some_and(|ip| self.proxies.iter().any(|n| n.contains(ip)))
    }

    /// A token this process has already checked with Argon2: no work, so
    /// it is honoured even from an address locked out by others' guesses.
    fn known_token(&self, token: &str) -> Option<Identity> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let index = self
            .known_tokens
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&digest)
            .copied()?;
        Some(self.token_identity(index))
    }

    /// Checks `token` against every token hash (Argon2).
    fn token(&self, token: &str) -> Option<Identity> {
        let i = self.tokens.iter().position(|(_, h, _)| matches(token, h))?;
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        self.known_tokens
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(digest, i);
        Some(self.token_identity(i))
    }

    fn token_identity(&self, index: usize) -> Identity {
        let (name, _, role) = &self.tokens[index];
        Identity {
            name: name.clone(),
            actor: format!("token:{name}"),
            role: *role,
            via: Via::Token,
        }
    }

    fn proxy_user(&self, headers: &HeaderMap) -> Option<Identity> {
        let trusted = self.trusted.as_ref()?;
        let user = headers
            .get(trusted.user_header.as_str())?
            .to_str()
            .ok()?
            .trim();
        if user.is_empty() || user.chars().count() > 100 || user.chars().any(char::is_control) {
            return None;
        }
        let role = trusted
            .role_header
            .as_deref()
            .and_then(|h| headers.get(h))
            .and_then(|v| v.to_str().ok())
            .and_then(Role::parse)
            .unwrap_or(trusted.default_role);
        Some(Identity {
            name: user.to_string(),
            actor: format!("proxy:{user}"),
            role,
            via: Via::Proxy,
        })
    }

    /// The user of a session cookie: unexpired, still configured, and not
    /// signed out since the session began (sign-out is recorded in the
    /// audit log, so it ends the user's sessions on every replica).
    async fn session_user(&self, session: &SessionData, history: &History) -> Option<Identity> {
        if session.expires < Utc::now().timestamp() {
            return None;
        }
        let actor = format!("web:{}", session.user);
        match history.last_action(&actor, "sign-out").await {
            Ok(Some(at)) if at.timestamp_micros() >= session.issued => return None,
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "cannot check sign-outs; refusing the session");
                return None;
            }
        }
        // The role is the config's now: a demoted or removed user loses it
        // at once, on every replica.
        let (name, _, role) = self.users.iter().find(|(n, _, _)| *n == session.user)?;
        Some(Identity {
            name: name.clone(),
            actor: format!("web:{name}"),
            role: *role,
            via: Via::Session,
        })
    }
}

#[derive(Serialize, Deserialize)]
struct SessionData {
    user: String,
    /// Microseconds since the epoch.
    issued: i64,
    expires: i64,
}

fn peer(req: &Request) -> Option<IpAddr> {
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
}

fn loopback_host(headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else {
        return false;
    };
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        host.rsplit_once(':').map_or(host, |(h, _)| h)
    };
    name.eq_ignore_ascii_case("localhost")
        || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn random_token() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

/// Whether cookies set on this request must be `Secure`.
fn secure(state: &AppState, req_headers: &HeaderMap, peer: Option<IpAddr>) -> bool {
    let auth = state.auth();
    auth.secure
        || (auth.trusted_proxy(peer)
            && req_headers
                .get("x-forwarded-proto")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|p| p.eq_ignore_ascii_case("https")))
}

fn cookie(name: &'static str, value: String, secure: bool) -> Cookie<'static> {
    Cookie::build((name, value))
        .path("/")
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(secure)
        .build()
}

/// Middleware: works out the [`Identity`] (if any) and the [`Csrf`] token
/// of every request, and sets the CSRF cookie when it was new.
pub async fn identify(
    State(state): State<AppState>,
    jar: PrivateCookieJar,
    mut req: Request,
    next: Next,
) -> Response {
    // Open health and metrics never look at credentials: a scraper that
    // sends a bearer token of its own (a Kubernetes service account's,
    // say) must not be refused or locked out.
    let path = req.uri().path();
    let open_health = (path == "/healthz" || path == "/metrics") && !state.protect_health();
    if !state.dashboard_enabled() || open_health {
        return next.run(req).await;
    }
    let auth = state.auth();
    let peer = peer(&req);
    let headers = req.headers().clone();
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let history = &state.web().ctx.history;
    let identity = if let Some(token) = bearer {
        let keys = [format!("ip:{}", peer.map_or("-".into(), |p| p.to_string()))];
        if let Some(known) = auth.known_token(token) {
            Some(known)
        } else if let Some(wait) = auth.limiter.locked(&keys, Instant::now()) {
            return view::too_many(wait);
        } else if let Some(found) = auth.token(token) {
            Some(found)
        } else {
            auth.limiter.failed(&keys, Instant::now());
            return (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer")],
                axum::Json(serde_json::json!({"error": "unknown token"})),
            )
                .into_response();
        }
    } else if let Some(user) = auth
        .trusted_proxy(peer)
        .then(|| auth.proxy_user(&headers))
        .flatten()
    {
        Some(user)
    } else if let Some(session) = jar
        .get(SESSION)
        .and_then(|c| serde_json::from_str::<SessionData>(c.value()).ok())
    {
        auth.session_user(&session, history).await
    } else if auth.local && loopback_host(&headers) {
        Some(Identity {
            name: "local".into(),
            actor: "web:local".into(),
            role: Role::Operator,
            via: Via::Local,
        })
    } else {
        None
    };
    let existing = jar.get(CSRF).map(|c| c.value().to_string());
    let token = existing.clone().unwrap_or_else(random_token);
    req.extensions_mut().insert(Csrf(token.clone()));
    if let Some(identity) = identity {
        req.extensions_mut().insert(identity);
    }
    let response = next.run(req).await;
    if existing.is_none() && state.dashboard_enabled() {
        let jar = jar.add(cookie(CSRF, token, secure(&state, &headers, peer)));
        return (jar, response).into_response();
    }
    response
}

/// Middleware: only for signed-in users; pages send the others to sign in,
/// the API and health answer 401.
pub async fn require_viewer(req: Request, next: Next) -> Response {
    if req.extensions().get::<Identity>().is_some() {
        return next.run(req).await;
    }
    let path = req.uri().path();
    if path.starts_with("/api/") || path == "/healthz" || path == "/metrics" {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            axum::Json(serde_json::json!({"error": "sign-in required"})),
        )
            .into_response();
    }
    let target = req
        .uri()
        .path_and_query()
        .map_or("/".to_string(), |p| p.as_str().to_string());
    Redirect::to(&format!("/login?next={}", view::url_encode(&target))).into_response()
}

/// Whether `given` is this browser's CSRF token (constant time).
pub fn csrf_ok(csrf: &Csrf, given: &str) -> bool {
    !given.is_empty() && bool::from(csrf.0.as_bytes().ct_eq(given.as_bytes()))
}

/// Where to go after sign-in: a path of this site only.
pub fn local_path(next: Option<&str>) -> String {
    match next {
        Some(p)
            if p.starts_with('/')
                && !p.starts_with("//")
                && !p.contains('\\')
                && !p.chars().any(char::is_control) =>
        {
            p.to_string()
        }
        _ => "/".into(),
    }
}

#[derive(Deserialize)]
pub struct LoginQuery {
    next: Option<String>,
}

pub async fn login_page(
    State(state): State<AppState>,
    axum::Extension(csrf): axum::Extension<Csrf>,
    identity: Option<axum::Extension<Identity>>,
    Query(q): Query<LoginQuery>,
) -> Response {
    if identity.is_some() {
        return Redirect::to(&local_path(q.next.as_deref())).into_response();
    }
    login_form(&state, &csrf, q.next.as_deref(), None, StatusCode::OK)
}

fn login_form(
    state: &AppState,
    csrf: &Csrf,
    next: Option<&str>,
    problem: Option<&str>,
    status: StatusCode,
) -> Response {
    let auth = state.auth();
    let body = html! {
        section.login {
            h1 { "Sign in" }
            @if let Some(problem) = problem {
                p.problem role="alert" { (problem) }
            }
            @if auth.users.is_empty() {
                p { "No password users are configured. Sign in through your proxy, use a bearer token, \
                     or add a " code { "[[dashboard.users]]" } " entry (hash its password with "
                     code { "backup-cli dashboard hash-password" } ")." }
            } @else {
                form method="post" action="/login" {
                    input type="hidden" name="csrf" value=(csrf.0);
                    input type="hidden" name="next" value=(local_path(next));
                    label { "Name" input type="text" name="name" autocomplete="username" required autofocus; }
                    label { "Password" input type="password" name="password" autocomplete="current-password" required; }
                    button type="submit" { "Sign in" }
                }
            }
        }
    };
    (status, view::bare("Sign in", body)).into_response()
}

#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    password: String,
    next: Option<String>,
}

pub async fn login(
    State(state): State<AppState>,
    axum::Extension(csrf): axum::Extension<Csrf>,
    jar: PrivateCookieJar,
    req_headers: HeaderMap,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Form(form): Form<LoginForm>,
) -> Response {
    if !csrf_ok(&csrf, &form.csrf) {
        return view::forbidden("The form expired; reload the page and try again.");
    }
    let auth = state.auth();
    let keys = [
        format!("ip:{}", peer.ip()),
        format!("user:{}", form.name.trim().to_lowercase()),
    ];
    let now = Instant::now();
    if let Some(wait) = auth.limiter.locked(&keys, now) {
        tracing::warn!(address = %peer.ip(), "dashboard sign-in refused: too many failures");
        return view::too_many(wait);
    }
    let user = auth.users.iter().find(|(n, _, _)| *n == form.name);
    let ok = match user {
        Some((_, hash, _)) => matches(&form.password, hash),
        None => {
            let _ = matches(&form.password, &auth.decoy);
            false
        }
    };
    let Some((name, _, _)) = user.filter(|_| ok) else {
        auth.limiter.failed(&keys, now);
        tracing::warn!(address = %peer.ip(), "dashboard sign-in failed");
        return login_form(
            &state,
            &csrf,
            form.next.as_deref(),
            Some("Wrong name or password."),
            StatusCode::UNAUTHORIZED,
        );
    };
    auth.limiter.succeeded(&keys[1]);
    let now = Utc::now();
    let session = SessionData {
        user: name.clone(),
        issued: now.timestamp_micros(),
        expires: now.timestamp() + auth.session_seconds,
    };
    let secure = secure(&state, &req_headers, Some(peer.ip()));
    let value = serde_json::to_string(&session).unwrap_or_default();
    // Ends with the browser; the lifetime inside is what counts.
    let session_cookie = cookie(SESSION, value, secure);
    // A new CSRF token with the new session.
    let jar = jar
        .add(session_cookie)
        .add(cookie(CSRF, random_token(), secure));
    let history = &state.web().ctx.history;
    if let Err(e) = history
        .audit(&format!("web:{name}"), "sign-in", "", Utc::now())
        .await
    {
        tracing::warn!(error = %e, "cannot record a sign-in");
    }
    tracing::info!(user = %name, "dashboard sign-in");
    (jar, Redirect::to(&local_path(form.next.as_deref()))).into_response()
}

#[derive(Deserialize)]
pub struct LogoutForm {
    #[serde(default)]
    csrf: String,
}

/// Signs out: clears the cookies and records the sign-out, which ends every
/// session of this user begun before it (a copied cookie included), on
/// every replica.
pub async fn logout(
    State(state): State<AppState>,
    axum::Extension(csrf): axum::Extension<Csrf>,
    identity: Option<axum::Extension<Identity>>,
    jar: PrivateCookieJar,
    Form(form): Form<LogoutForm>,
) -> Response {
    if !csrf_ok(&csrf, &form.csrf) {
        return view::forbidden("The form expired; reload the page and try again.");
    }
    if let Some(axum::Extension(me)) = identity
        && me.via == Via::Session
    {
        let history = &state.web().ctx.history;
        if let Err(e) = history.audit(&me.actor, "sign-out", "", Utc::now()).await {
            tracing::warn!(error = %e, "cannot record a sign-out");
            return view::internal("signing out", &e);
        }
    }
    let jar = jar
        .remove(Cookie::build(SESSION).path("/"))
        .remove(Cookie::build(CSRF).path("/"));
    (jar, Redirect::to("/login")).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_paths_are_followed_after_sign_in() {
        assert_eq!(
            local_path(Some("/runs?status=failed")),
            "/runs?status=failed"
        );
        for bad in [
            "//evil.example",
            "https://evil.example",
            "/\\evil",
            "runs",
            "",
        ] {
            assert_eq!(local_path(Some(bad)), "/", "{bad}");
        }
        assert_eq!(local_path(None), "/");
    }

    #[test]
    fn the_local_operator_needs_a_loopback_host() {
        let with = |h: &str| {
            let mut m = HeaderMap::new();
            m.insert(header::HOST, h.parse().expect("header"));
            loopback_host(&m)
        };
        assert!(with("127.0.0.1:9187"));
        assert!(with("localhost:9187"));
        assert!(with("[::1]:9187"));
        assert!(!with("rebound.example:9187"));
        assert!(!with("10.0.0.5"));
    }
}
