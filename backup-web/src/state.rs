//! What every handler shares: the worker's context, its liveness, how it
//! starts jobs, and the sign-in setup.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use axum::extract::FromRef;
use axum_extra::extract::cookie::Key;
use backup_core::{
    context::Context,
    health::Health,
    jobs::BackupJob,
    queue::{self, Queue},
    scheduler::{LocalDispatch, RedisDispatch},
};
use metrics_exporter_prometheus::PrometheusHandle;
use secrecy::ExposeSecret;
use sha2::{Digest, Sha512};

use crate::auth::Auth;

/// How manual runs start: pushed to the Redis queue (any replica's worker
/// takes them), or run in this process (single-process mode).
#[derive(Clone)]
pub enum Launcher {
    /// Queue mode: pushes and wakes this process's workers.
    Queue(Box<RedisDispatch>),
    /// Single-process mode.
    Local(LocalDispatch),
}

impl Launcher {
    /// Starts (or enqueues) `job`; returns its task id.
    ///
    /// # Errors
    ///
    /// When the queue cannot take it.
    pub async fn launch(&self, job: &BackupJob) -> Result<String, backup_core::Error> {
        match self {
            Launcher::Queue(dispatch) => dispatch.manual(job).await,
            Launcher::Local(local) => Ok(local.manual(job.clone())),
        }
    }

    /// The queue, in queue mode.
    pub fn queue(&self) -> Option<&Queue> {
        match self {
            Launcher::Queue(dispatch) => Some(dispatch.queue()),
            Launcher::Local(_) => None,
        }
    }
}

/// What the worker hands to the web surface.
#[derive(Clone)]
pub struct Web {
    /// Settings, history, storage, notifier.
    pub ctx: Context,
    /// Liveness, for `/healthz` and the overview.
    pub health: Health,
    /// The Prometheus recorder, for `/metrics`.
    pub metrics: Option<PrometheusHandle>,
    /// How manual runs start.
    pub launcher: Launcher,
}

impl Web {
    /// Refuses a dashboard served beyond loopback with no way to sign in:
    /// it would hand the actions to anyone who can reach the port.
    ///
    /// # Errors
    ///
    /// Saying what to configure.
    pub fn check_exposure(&self, addr: SocketAddr) -> anyhow::Result<()> {
        let dashboard = &self.ctx.settings.dashboard;
        if dashboard.enabled && !addr.ip().is_loopback() && !dashboard.has_sign_in() {
            anyhow::bail!(
                "the dashboard is enabled on {addr}, beyond loopback, with no sign-in: add a \
                 [[dashboard.users]] (hash its password with `backup-cli dashboard \
                 hash-password`), a [[dashboard.tokens]] or [dashboard.trusted_header], or \
                 listen on 127.0.0.1"
            );
        }
        Ok(())
    }

    /// Worker names alive per backup queue, in queue mode.
    pub async fn replicas(&self) -> Option<Vec<String>> {
        let queue = self.launcher.queue()?;
        let within = self.ctx.settings.worker.lost_after();
        let mut names = Vec::new();
        for kind in [queue::DATABASE, queue::MEDIA] {
            if let Ok(alive) = queue.live_workers(kind, within).await {
                names.extend(alive);
            }
        }
        // One process registers a worker per queue: count processes.
        let mut hosts: Vec<String> = names
            .iter()
            .map(|n| n.split(':').next().unwrap_or(n).to_string())
            .collect();
        hosts.sort();
        hosts.dedup();
        Some(hosts)
    }

    /// Jobs waiting per queue, in queue mode.
    pub async fn depths(&self) -> Option<Vec<(&'static str, u64)>> {
        let queue = self.launcher.queue()?;
        let mut out = Vec::new();
        for kind in [queue::DATABASE, queue::MEDIA, queue::MAINTENANCE] {
            let depth = tokio::time::timeout(Duration::from_secs(2), queue.depth(kind)).await;
            out.push((kind, depth.ok().and_then(Result::ok).unwrap_or(0)));
        }
        Some(out)
    }
}

struct Inner {
    web: Web,
    auth: Auth,
    key: Key,
}

/// The router's state.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

impl AppState {
    pub fn new(web: Web) -> Self {
        let dashboard = &web.ctx.settings.dashboard;
        // Every replica derives the same key from the configured secret, so
        // a session made on one is valid on all; without one (loopback, no
        // users), a key of this process.
        let key = match &dashboard.secret_key {
            Some(secret) => Key::from(&Sha512::digest(secret.expose_secret().as_bytes())),
            None => Key::generate(),
        };
        let auth = Auth::new(dashboard, web.ctx.settings.http.listen.as_str());
        Self(Arc::new(Inner { web, auth, key }))
    }

    pub fn web(&self) -> &Web {
        &self.0.web
    }

    pub fn auth(&self) -> &Auth {
        &self.0.auth
    }

    pub fn dashboard_enabled(&self) -> bool {
        self.0.web.ctx.settings.dashboard.enabled
    }

    pub fn protect_health(&self) -> bool {
        self.0.web.ctx.settings.dashboard.protect_health
    }
}

impl FromRef<AppState> for Key {
    fn from_ref(state: &AppState) -> Self {
        state.0.key.clone()
    }
}
