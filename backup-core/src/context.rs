//! What every operation needs: the settings, storage, history, the
//! notifier, and the name of this process.

use crate::{Error, config::Settings, history::History, notify::Notifier, storage::Storage};

/// What a backup needs: settings, storage, history, and who is running it.
#[derive(Debug, Clone)]
pub struct Context {
    /// The configuration.
    pub settings: Settings,
    /// Where artifacts go.
    pub storage: Storage,
    /// Where runs are recorded.
    pub history: History,
    /// `host:pid` of this process, recorded on each run.
    pub worker: String,
    /// Mail, webhooks and dead-man's-switch pings.
    pub notifier: Notifier,
}

impl Context {
    /// Opens storage and history (migrating it) for these settings.
    ///
    /// # Errors
    ///
    /// When storage cannot be configured or history cannot be opened.
    pub async fn open(settings: Settings) -> Result<Self, Error> {
        let storage = Storage::new(&settings.storage);
        let history = History::open(&settings.history.url).await?;
        Ok(Self {
            notifier: Notifier::new(&settings),
            settings,
            storage,
            history,
            worker: worker_id(),
        })
    }
}

/// `host:pid`, naming this process in history rows.
pub fn worker_id() -> String {
    format!(
        "{}:{}",
        gethostname::gethostname().to_string_lossy(),
        std::process::id()
    )
}

/// `cli:<user>`: who asked for a manual run from the command line, as
/// recorded in its history row (`$USER`, else `$LOGNAME`, else the uid).
pub fn cli_actor() -> String {
    let user = ["USER", "LOGNAME"]
        .iter()
        .find_map(|k| std::env::var(k).ok().filter(|v| !v.trim().is_empty()))
        .unwrap_or_else(|| format!("uid {}", current_uid()));
    format!("cli:{}", user.trim())
}

#[cfg(unix)]
fn current_uid() -> u32 {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata("/proc/self").map_or(0, |m| m.uid())
}
