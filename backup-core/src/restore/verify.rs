//! Verification: artifacts re-read from storage, checked against their
//! manifest and history (size, sha256), then proven readable in their format
//! (`pg_restore --list`, the dump's completion line, SQLite's
//! `integrity_check`, a full tar listing).

use std::io::{self, Read};

use chrono::Utc;

use super::{
    archive::{Refusal, Rules, admit_entry},
    error::RestoreError,
    find::{agree, manifest_of},
    stream::{check_stored, read_head, stream_artifact},
};
use crate::{
    Error,
    config::ToolSettings,
    context::Context,
    engine::{postgres, sqlite},
    history::HistoryError,
    model::{BackupType, RunStatus, human_bytes, one_line},
    pipeline::Progress,
    storage::{ArtifactKey, Manifest},
};

/// Which artifacts to verify, and whether to drill one: the flags of
/// `verify`.
#[derive(Debug, Clone, Default)]
#[cfg_attr(feature = "clap", derive(clap::Args))]
pub struct VerifyRequest {
    /// The artifact of this backup run.
    #[cfg_attr(
        feature = "clap",
        arg(long, value_name = "ID", conflicts_with_all = ["latest", "all"])
    )]
    pub run: Option<i64>,
    /// The newest artifact of each target (the default).
    #[cfg_attr(feature = "clap", arg(long, conflicts_with = "all"))]
    pub latest: bool,
    /// Every artifact in storage.
    #[cfg_attr(feature = "clap", arg(long))]
    pub all: bool,
    /// Only this target's artifacts.
    #[cfg_attr(
        feature = "clap",
        arg(long, short, value_parser = crate::model::parse_target_name)
    )]
    pub target: Option<String>,
    /// Restore drill: restore the artifact into a scratch database created
    /// for it, count the rows of each table, and drop it again.
    #[cfg_attr(
        feature = "clap",
        arg(long, requires = "target", conflicts_with = "all")
    )]
    pub restore_test: bool,
    /// The drill's scratch database; it must not exist. Default: the
    /// engine's `verify_scratch`, or a temporary file for SQLite. A URL with
    /// a password is better given as BACKUP_VERIFY_SCRATCH.
    #[cfg_attr(
        feature = "clap",
        arg(
            long,
            value_name = "URL",
            env = "BACKUP_VERIFY_SCRATCH",
            hide_env_values = true,
            requires = "restore_test"
        )
    )]
    pub scratch: Option<String>,
}

impl VerifyRequest {
    /// The artifacts these flags name.
    pub fn scope(&self) -> Scope {
        match (self.run, self.all) {
            (Some(id), _) => Scope::Run(id),
            (None, true) => Scope::All,
            (None, false) => Scope::Latest,
        }
    }
}

/// Which artifacts to verify.
#[derive(Debug, Clone)]
pub enum Scope {
    /// The artifact of one run.
    Run(i64),
    /// The newest artifact of each target.
    Latest,
    /// Every artifact in storage.
    All,
}

/// The outcome of verifying one artifact.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Verified {
    /// The run that made it, when known.
    pub run_id: Option<i64>,
    /// Database or media.
    pub backup_type: BackupType,
    /// Target name.
    pub target: String,
    /// The artifact's key.
    pub artifact: String,
    /// `postgresql`, `mysql`, `sqlite` or `media`, when its manifest was read.
    pub engine: Option<String>,
    /// Whether it is whole and readable.
    pub ok: bool,
    /// Whether its content was read through and checked in its format;
    /// false when only the stored bytes could be (encrypted, no identity).
    pub content_checked: bool,
    /// The configured identity did not open it (a fact about the key, not
    /// the artifact: not recorded in history).
    #[serde(skip)]
    pub identity_refused: bool,
    /// What was checked, or what is wrong.
    pub detail: String,
}

/// Verifies the artifacts in `scope` (of one target if given): size and
/// sha256 against the manifest and history, then a format check (`pg_restore
/// --list`, the dump's completion line, SQLite's `integrity_check`, a full
/// tar listing). Records each outcome on its run.
///
/// # Errors
///
/// When storage cannot be listed or history read; a bad artifact is a
/// result with `ok = false`, not an error.
pub async fn verify(
    ctx: &Context,
    scope: &Scope,
    target: Option<&str>,
) -> Result<Vec<Verified>, Error> {
    let keys: Vec<String> = match scope {
        Scope::Run(id) => {
            let run = match ctx.history.get(*id).await {
                Ok(run) => run,
                Err(HistoryError::NotFound(_)) => {
                    return Err(RestoreError::NotFound(format!(
                        "no backup run with id {id}; see `backup-cli runs list`"
                    ))
                    .into());
                }
                Err(e) => return Err(e.into()),
            };
            match run.artifact {
                Some(key) if run.status == RunStatus::Success => vec![key],
                _ => {
                    return Err(RestoreError::NotFound(format!(
                        "run {id} did not succeed ({}); it has no artifact",
                        run.status
                    ))
                    .into());
                }
            }
        }
        Scope::All | Scope::Latest => {
            let mut keys = ctx.storage.artifact_keys(None, target).await?;
            if matches!(scope, Scope::Latest) {
                // Keys are `{type}/{target}/{target}-{time}-{run}.{ext}`:
                // the newest of a target sorts last.
                let mut newest: Vec<String> = Vec::new();
                for key in keys {
                    let dir = key.rsplit_once('/').map(|(d, _)| d.to_string());
                    match newest.last_mut() {
                        Some(last) if last.rsplit_once('/').map(|(d, _)| d.to_string()) == dir => {
                            *last = key;
                        }
                        _ => newest.push(key),
                    }
                }
                keys = newest;
            }
            keys
        }
    };
    // A bad identity file is the command's mistake, not the artifacts'.
    ctx.check_identity()?;
    if keys.is_empty() {
        return Err(RestoreError::NotFound(match target {
            Some(t) => format!("storage holds no artifact of {t:?}"),
            None => "storage holds no artifacts".into(),
        })
        .into());
    }
    let mut results = Vec::new();
    for key in keys {
        let result = verify_one(ctx, &key).await;
        // An identity that does not open the artifact says nothing about
        // the artifact: reported, not recorded against its run.
        if let Some(id) = result.run_id.filter(|_| !result.identity_refused) {
            let outcome = if result.ok && result.content_checked {
                "ok".to_string()
            } else if result.ok {
                "ok (stored bytes only: encrypted, not decrypted)".to_string()
            } else {
                format!("failed: {}", result.detail)
            };
            match ctx.history.set_verified(id, Utc::now(), &outcome).await {
                Ok(()) | Err(HistoryError::NotFound(_)) => {}
                Err(e) => {
                    tracing::warn!(run_id = id, error = %e, "could not record the verification")
                }
            }
        }
        if result.ok {
            tracing::info!(artifact = %result.artifact, detail = %result.detail, "artifact verified");
        } else {
            tracing::error!(artifact = %result.artifact, detail = %result.detail, "artifact failed verification");
        }
        results.push(result);
    }
    Ok(results)
}

async fn verify_one(ctx: &Context, key: &str) -> Verified {
    // What the key says, until the manifest is read and checked.
    let named = ArtifactKey::parse(key).ok();
    let mut result = Verified {
        run_id: named.as_ref().map(|k| k.run_id),
        backup_type: named.as_ref().map_or_else(
            || {
                if key.starts_with("media/") {
                    BackupType::Media
                } else {
                    BackupType::Database
                }
            },
            |k| k.backup_type,
        ),
        target: named.map_or_else(
            || key.split('/').nth(1).unwrap_or_default().to_string(),
            |k| k.target,
        ),
        artifact: key.to_string(),
        engine: None,
        ok: false,
        content_checked: false,
        identity_refused: false,
        detail: String::new(),
    };
    match check(ctx, key).await {
        Ok((manifest, content, detail)) => {
            result.content_checked = content;
            result.run_id = Some(manifest.run_id);
            result.backup_type = manifest.backup_type;
            result.target = manifest.target;
            result.engine = Some(manifest.engine);
            result.ok = true;
            result.detail = detail;
        }
        Err(e) => {
            result.identity_refused = matches!(
                e,
                Error::Restore(RestoreError::Identity(_) | RestoreError::NoIdentity { .. })
            );
            result.detail = one_line(&e.to_string());
        }
    }
    result
}

/// Checks one artifact; returns its manifest, whether its content was
/// read through (not only its stored bytes), and what was proven.
async fn check(ctx: &Context, key: &str) -> Result<(Manifest, bool, String), Error> {
    let manifest = manifest_of(ctx, key).await?;
    // History must agree with the manifest, when it still has the run.
    let in_history = match ctx.history.get(manifest.run_id).await {
        Ok(run) => {
            agree(&run, &manifest)?;
            true
        }
        Err(HistoryError::NotFound(_)) => false,
        Err(e) => return Err(e.into()),
    };
    let history_too = if in_history { " and history" } else { "" };
    if let Some(encryption) = &manifest.encryption
        && !ctx.settings.encryption.can_decrypt()
    {
        check_stored(ctx, &manifest).await?;
        let head = read_head(ctx, &manifest.artifact).await?;
        crate::crypt::check_header(&head, encryption).map_err(|what| RestoreError::Damaged {
            key: manifest.artifact.clone(),
            what,
        })?;
        return Ok((
            manifest.clone(),
            false,
            format!(
                "{} bytes, sha256 matches the manifest{history_too}, and the age header is whole; \
                 encrypted (to {}): its content is checked only with the identity (--identity \
                 FILE)",
                manifest.size_bytes,
                encryption.describe()
            ),
        ));
    }
    let tools = ctx.settings.tools.clone();
    let engine = manifest.engine.clone();
    let key = manifest.artifact.clone();
    let (deep, expanded) = stream_artifact(ctx, &manifest, Progress::default(), move |input| {
        deep_check(&key, &engine, &tools, input)
    })
    .await?;
    let deep = match deep {
        Deep::Done(text) => text,
        Deep::SqliteFile(temp) => {
            sqlite::integrity_check(temp.path()).await?;
            "SQLite integrity_check ok".into()
        }
    };
    Ok((
        manifest.clone(),
        true,
        format!(
            "{} bytes, sha256 matches the manifest{history_too}; {}expands to {expanded} bytes \
             ({}); {deep}",
            manifest.size_bytes,
            if manifest.encryption.is_some() {
                "decrypts and "
            } else {
                ""
            },
            human_bytes(expanded)
        ),
    ))
}

/// What a format check left to finish on the async side.
enum Deep {
    Done(String),
    SqliteFile(tempfile::NamedTempFile),
}

/// The format check of a decompressed artifact, by engine.
fn deep_check(
    key: &str,
    engine: &str,
    tools: &ToolSettings,
    input: &mut dyn Read,
) -> Result<Deep, Error> {
    let read_err = |e| Error::Io {
        context: "reading the artifact".into(),
        source: e,
    };
    match engine {
        "postgresql" => {
            let entries = postgres::list_archive(tools, input)?;
            Ok(Deep::Done(format!(
                "pg_restore --list reads {entries} entries"
            )))
        }
        "mysql" => {
            // mariadb-dump ends a complete dump with "-- Dump completed on ...".
            let mut tail: Vec<u8> = Vec::new();
            let mut buf = vec![0u8; 256 * 1024];
            loop {
                let n = input.read(&mut buf).map_err(read_err)?;
                if n == 0 {
                    break;
                }
                tail.extend_from_slice(&buf[..n]);
                if tail.len() > 4096 {
                    tail.drain(..tail.len() - 4096);
                }
            }
            let text = String::from_utf8_lossy(&tail);
            match text.lines().rev().find(|l| !l.trim().is_empty()) {
                Some(line) if line.starts_with("-- Dump completed") => Ok(Deep::Done(
                    "the SQL dump is complete (\"-- Dump completed\")".into(),
                )),
                _ => Err(RestoreError::Damaged {
                    key: key.to_string(),
                    what: "it does not end with mariadb-dump's \"-- Dump completed\" line".into(),
                }
                .into()),
            }
        }
        "sqlite" => {
            let mut temp = tempfile::Builder::new()
                .prefix("backup-verify-")
                .suffix(".sqlite3")
                .tempfile()
                .map_err(|e| Error::Io {
                    context: "creating a temporary file".into(),
                    source: e,
                })?;
            io::copy(input, temp.as_file_mut()).map_err(read_err)?;
            Ok(Deep::SqliteFile(temp))
        }
        "media" => {
            // The rules a restore would apply: an archive it would refuse
            // is not whole.
            let mut archive = tar::Archive::new(input);
            let mut rules = Rules::default();
            let mut entries = 0u64;
            for entry in archive.entries().map_err(read_err)? {
                let mut entry = entry.map_err(read_err)?;
                match admit_entry(&mut rules, &entry) {
                    Ok(_) => {}
                    Err(Refusal::Read(e)) => return Err(read_err(e)),
                    Err(Refusal::Rule(what)) => {
                        return Err(RestoreError::Damaged {
                            key: key.to_string(),
                            what: format!("a restore would refuse it: {what}"),
                        }
                        .into());
                    }
                }
                io::copy(&mut entry, &mut io::sink()).map_err(read_err)?;
                entries += 1;
            }
            Ok(Deep::Done(format!(
                "the tar archive lists {entries} entries"
            )))
        }
        other => Err(RestoreError::Damaged {
            key: key.to_string(),
            what: format!("unknown engine {other:?} in its manifest"),
        }
        .into()),
    }
}
