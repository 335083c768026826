//! backup-web: the worker's one HTTP surface. `/healthz` and `/metrics`
//! (open, unless `dashboard.protect_health`), and with `[dashboard]
//! enabled` the dashboard: server-rendered pages, a JSON API beside them,
//! sign-in (password sessions in encrypted cookies, bearer tokens, or a
//! forward-auth proxy's header), and the actions an operator runs from it.
//!
//! Every page works without JavaScript; `static/live.js` only refreshes
//! the parts marked `data-live` while a run is running. HTML is rendered
//! with maud, which escapes every value it is given.

mod actions;
mod api;
mod auth;
mod data;
mod health;
mod pages;
mod state;
mod view;

use std::net::SocketAddr;

use anyhow::Context as _;
use axum::{
    Router,
    extract::DefaultBodyLimit,
    middleware,
    routing::{get, post},
};
use backup_core::{context::Context, health::Health};

use self::state::AppState;
pub use self::{
    health::install_metrics,
    state::{Launcher, Web},
};

/// The router: health and metrics always, the dashboard when enabled.
pub fn router(web: Web) -> Router {
    let state = AppState::new(web);
    let health = Router::new()
        .route("/healthz", get(health::healthz))
        .route("/metrics", get(health::metrics_text));
    let health = if state.protect_health() {
        health.route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_viewer,
        ))
    } else {
        health
    };
    let mut app = Router::new().merge(health);
    if state.dashboard_enabled() {
        let pages = Router::new()
            .route("/", get(pages::overview))
            .route("/runs", get(pages::runs))
            .route("/runs/{id}", get(pages::run))
            .route("/schedules", get(pages::schedules))
            .route("/artifacts", get(pages::artifacts))
            .route("/cleanup", get(actions::cleanup_preview))
            .route("/artifacts/download", get(actions::download))
            .route("/actions/trigger", post(actions::trigger))
            .route("/actions/verify", post(actions::verify))
            .route("/actions/drill", post(actions::drill))
            .route("/actions/cleanup", post(actions::cleanup))
            .route("/schedules/{name}/pause", post(actions::pause))
            .route("/schedules/{name}/resume", post(actions::resume))
            .route("/api/runs", get(api::runs))
            .route("/api/runs/{id}", get(api::run))
            .route("/api/targets", get(api::targets))
            .route("/api/trigger/{kind}", post(api::trigger))
            .route_layer(middleware::from_fn_with_state(
                state.clone(),
                auth::require_viewer,
            ));
        app = app
            .merge(pages)
            .route("/login", get(auth::login_page).post(auth::login))
            .route("/logout", post(auth::logout))
            .route("/static/app.css", get(view::css))
            .route("/static/live.js", get(view::script))
            .fallback(view::not_found);
    }
    app.layer(middleware::from_fn_with_state(
        state.clone(),
        auth::identify,
    ))
    .layer(middleware::from_fn(view::security_headers))
    .layer(DefaultBodyLimit::max(64 * 1024))
    .with_state(state)
}

/// Starts the listener on `http.listen`; `None` when it is empty (off).
///
/// # Errors
///
/// When the address cannot be bound, or the dashboard would be open to the
/// network with no sign-in configured.
pub async fn serve(web: Web) -> anyhow::Result<Option<tokio::task::JoinHandle<()>>> {
    let listen = web.ctx.settings.http.listen.clone();
    if listen.is_empty() {
        return Ok(None);
    }
    let addr: SocketAddr = listen
        .parse()
        .with_context(|| format!("http.listen {listen:?}"))?;
    web.check_exposure(addr)?;
    let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| {
        format!("cannot listen on {addr} (http.listen); is another worker using it?")
    })?;
    let bound = listener.local_addr().unwrap_or(addr);
    let dashboard = web.ctx.settings.dashboard.enabled;
    if dashboard {
        tracing::info!(address = %bound, "serving the dashboard, /healthz and /metrics");
    } else {
        tracing::info!(address = %bound, "serving /healthz and /metrics");
    }
    let app = router(web).into_make_service_with_connect_info::<SocketAddr>();
    Ok(Some(tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "HTTP listener failed");
        }
    })))
}

/// What the worker hands over: its context, liveness and how it starts
/// jobs.
pub fn web(
    ctx: Context,
    health: Health,
    metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    launcher: Launcher,
) -> Web {
    Web {
        ctx,
        health,
        metrics,
        launcher,
    }
}
