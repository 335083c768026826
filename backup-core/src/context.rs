//! What every operation needs: the settings, storage, history, the
//! notifier, and the name of this process.

use std::sync::{Arc, OnceLock};

use crate::{
    Error,
    config::Settings,
    crypt::Opener,
    history::History,
    notify::Notifier,
    restore::error::RestoreError,
    storage::{Encryption, Storage},
};

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
    /// The identities encrypted artifacts are opened with, read once (an
    /// identity given as `<(pass show key)` can be read only once).
    opener: Arc<OnceLock<Result<Option<Arc<Opener>>, String>>>,
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
            opener: Arc::default(),
        })
    }

    /// Reads the configured identities now, when there are any: a missing
    /// or unreadable identity file is a mistake in the command, said once
    /// before any artifact is looked at.
    ///
    /// # Errors
    ///
    /// [`RestoreError::Identity`] when the identity file cannot be read.
    pub fn check_identity(&self) -> Result<(), RestoreError> {
        match self.loaded() {
            Err(why) => Err(RestoreError::Identity(why.clone())),
            Ok(_) => Ok(()),
        }
    }

    fn loaded(&self) -> &Result<Option<Arc<Opener>>, String> {
        self.opener.get_or_init(|| {
            Opener::load(&self.settings.encryption)
                .map(|o| o.map(Arc::new))
                .map_err(|e| e.to_string())
        })
    }

    /// The identities that open the encrypted artifact `key`.
    ///
    /// # Errors
    ///
    /// [`RestoreError::NoIdentity`] when none is configured,
    /// [`RestoreError::Identity`] when the identity file cannot be read.
    pub fn opener(&self, key: &str, encryption: &Encryption) -> Result<Arc<Opener>, RestoreError> {
        match self.loaded() {
            Ok(Some(opener)) => Ok(opener.clone()),
            Ok(None) => Err(RestoreError::NoIdentity {
                key: key.to_string(),
                to: encryption.describe(),
                how: if encryption.passphrase {
                    "give its passphrase: encryption.passphrase or BACKUP__ENCRYPTION__PASSPHRASE"
                } else {
                    "give the identity that opens it: --identity FILE, encryption.identity_file or \
                     BACKUP__ENCRYPTION__IDENTITY_FILE"
                },
            }),
            Err(why) => Err(RestoreError::Identity(why.clone())),
        }
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
