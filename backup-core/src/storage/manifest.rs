//! Manifests, the JSON document beside each artifact, and the keys
//! artifacts are stored under.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::model::{BackupType, check_target_name};

/// Suffix of the manifest beside each artifact.
pub const MANIFEST_SUFFIX: &str = ".manifest.json";

/// A manifest saying a run took longer than this is not believed.
const MAX_RUN_DAYS: i64 = 31;

/// The JSON document stored beside each artifact.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Manifest format version.
    pub version: u32,
    /// The run that wrote it.
    pub run_id: i64,
    /// `database` or `media`.
    pub backup_type: BackupType,
    /// Target name.
    pub target: String,
    /// `postgresql`, `mysql`, `sqlite` or `media`.
    pub engine: String,
    /// What the decompressed bytes are, e.g. `pg_dump custom archive`.
    pub format: String,
    /// Database server version, when there is a server.
    pub server_version: Option<String>,
    /// Dump tool version, when a tool ran.
    pub tool_version: Option<String>,
    /// `zstd`, `gzip` or `none`.
    pub compression: String,
    /// Key of the artifact in storage.
    pub artifact: String,
    /// Size of the stored artifact in bytes.
    pub size_bytes: u64,
    /// sha256 of the stored artifact.
    pub sha256: String,
    /// Bytes before compression.
    pub source_bytes: u64,
    /// Files archived (media only).
    pub files: Option<u64>,
    /// When the run started.
    pub started_at: DateTime<Utc>,
    /// When the artifact was complete.
    pub created_at: DateTime<Utc>,
    /// How the stored bytes are encrypted; absent: not encrypted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<Encryption>,
}

/// How an artifact is encrypted: manifest field `encryption`. Public keys
/// only; never a secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Encryption {
    /// Always [`Encryption::AGE`].
    pub format: String,
    /// The age public keys (`age1…`) it is encrypted to; empty with a
    /// passphrase.
    #[serde(default)]
    pub recipients: Vec<String>,
    /// Encrypted to a passphrase (age's scrypt) instead of keys.
    #[serde(default)]
    pub passphrase: bool,
}

impl Encryption {
    /// The one format.
    pub const AGE: &'static str = "age";
    /// Suffix of encrypted artifacts' keys.
    pub const SUFFIX: &'static str = ".age";

    /// Whom it is encrypted to, for messages.
    pub fn describe(&self) -> String {
        if self.passphrase {
            "a passphrase".into()
        } else {
            self.recipients.join(", ")
        }
    }

    /// Checks what a manifest read from storage says.
    fn check(&self) -> Result<(), String> {
        if self.format != Self::AGE {
            return Err(format!(
                "it names encryption {:?}; only age is known",
                self.format
            ));
        }
        if self.passphrase != self.recipients.is_empty() {
            return Err(
                "its encryption names both or neither of recipients and a passphrase".into(),
            );
        }
        if self.recipients.len() > crate::config::encryption::MAX_RECIPIENTS {
            return Err(format!("it names {} recipients", self.recipients.len()));
        }
        for r in &self.recipients {
            let plausible = r.len() <= 100
                && r.starts_with("age1")
                && r.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
            if !plausible {
                return Err("it names a recipient that is not an age public key".into());
            }
        }
        Ok(())
    }
}

impl Manifest {
    /// Key of this manifest: the artifact's key plus [`MANIFEST_SUFFIX`].
    pub fn manifest_key(&self) -> String {
        format!("{}{MANIFEST_SUFFIX}", self.artifact)
    }

    /// Checks a manifest read from storage against where it lies: storage
    /// is not trusted, so its fields must agree with its own key. The
    /// artifact is the manifest's key without [`MANIFEST_SUFFIX`], in the
    /// folder of the manifest's type and target, named for that target and
    /// run; its numbers fit what history stores.
    ///
    /// # Errors
    ///
    /// What disagrees.
    pub fn check(&self, manifest_key: &str) -> Result<(), String> {
        let artifact = manifest_key
            .strip_suffix(MANIFEST_SUFFIX)
            .ok_or_else(|| format!("{manifest_key} is not a manifest key"))?;
        if self.artifact != artifact {
            return Err(format!(
                "it names artifact {:?}, but lies beside {artifact:?}",
                self.artifact
            ));
        }
        let key = ArtifactKey::parse(artifact)?;
        if key.backup_type != self.backup_type || key.target != self.target {
            return Err(format!(
                "it says {} {:?}, but lies in the folder of {} {:?}",
                self.backup_type, self.target, key.backup_type, key.target
            ));
        }
        if key.run_id != self.run_id {
            return Err(format!(
                "it says run {}, but its artifact is named for run {}",
                self.run_id, key.run_id
            ));
        }
        // Retention orders by these times: they must be the key's own.
        let named = format!(
            "{}-{}-{}.",
            self.target,
            self.started_at.format("%Y%m%dT%H%M%SZ"),
            self.run_id
        );
        if !artifact
            .rsplit('/')
            .next()
            .is_some_and(|f| f.starts_with(&named))
        {
            return Err(format!(
                "it says the run started at {}, but its artifact is named for another time",
                self.started_at.format("%Y-%m-%dT%H:%M:%SZ")
            ));
        }
        if self.created_at < self.started_at
            || self.created_at - self.started_at > chrono::Duration::days(MAX_RUN_DAYS)
        {
            return Err(format!(
                "it says the artifact was complete at {}, not within {MAX_RUN_DAYS} days after \
                 the run started",
                self.created_at.format("%Y-%m-%dT%H:%M:%SZ")
            ));
        }
        if i64::try_from(self.size_bytes).is_err() {
            return Err(format!("its size {} is out of range", self.size_bytes));
        }
        if self.sha256.len() != 64 || !self.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!("its sha256 {:?} is not 64 hex digits", self.sha256));
        }
        match (&self.encryption, artifact.ends_with(Encryption::SUFFIX)) {
            (Some(e), true) => e.check(),
            (None, false) => Ok(()),
            (Some(_), false) => Err("it says encrypted, but its artifact is not named .age".into()),
            (None, true) => Err("its artifact is named .age, but it says not encrypted".into()),
        }
    }
}

/// What an artifact key says: `{type}/{target}/{target}-{time}-{run}.{ext}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtifactKey {
    /// The type folder.
    pub backup_type: BackupType,
    /// The target folder, a valid target name.
    pub target: String,
    /// The run the file is named for.
    pub run_id: i64,
}

impl ArtifactKey {
    /// Reads an artifact key strictly: exactly three segments, a type, a
    /// valid target name, and a file named for that target and a run.
    ///
    /// # Errors
    ///
    /// What is wrong with the key.
    pub fn parse(key: &str) -> Result<Self, String> {
        let bad = |why: &str| format!("artifact key {key:?} {why}");
        let mut parts = key.split('/');
        let (Some(kind), Some(target), Some(file), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad("is not type/target/file"));
        };
        let backup_type = [BackupType::Database, BackupType::Media]
            .into_iter()
            .find(|t| t.as_str() == kind)
            .ok_or_else(|| bad("does not start with database/ or media/"))?;
        check_target_name(target).map_err(|e| bad(&format!("has a bad target: {e}")))?;
        let run_id = file
            .strip_prefix(target)
            .and_then(|rest| rest.strip_prefix('-'))
            .and_then(|rest| rest.split_once('.'))
            .and_then(|(stem, _)| stem.rsplit_once('-'))
            .and_then(|(time, id)| is_key_time(time).then_some(id))
            .and_then(|id| id.parse::<i64>().ok())
            .filter(|id| *id > 0)
            .ok_or_else(|| bad("is not named {target}-{time}-{run}.{ext}"))?;
        Ok(Self {
            backup_type,
            target: target.to_string(),
            run_id,
        })
    }
}

/// `YYYYmmddTHHMMSSZ`, as [`artifact_key`] writes it.
fn is_key_time(time: &str) -> bool {
    let b = time.as_bytes();
    b.len() == 16
        && b[8] == b'T'
        && b[15] == b'Z'
        && b[..8].iter().chain(&b[9..15]).all(u8::is_ascii_digit)
}

/// The key of a new artifact:
/// `{backup_type}/{target}/{target}-{YYYYmmddTHHMMSSZ}-{run_id}.{ext}`.
pub fn artifact_key(
    backup_type: BackupType,
    target: &str,
    started_at: DateTime<Utc>,
    run_id: i64,
    extension: &str,
) -> String {
    format!(
        "{}/{target}/{target}-{}-{run_id}.{extension}",
        backup_type.as_str(),
        started_at.format("%Y%m%dT%H%M%SZ")
    )
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn artifact_keys_read_back_strictly() {
        assert_eq!(
            ArtifactKey::parse("database/shop/shop-20261126T020000Z-42.dump.zst"),
            Ok(ArtifactKey {
                backup_type: BackupType::Database,
                target: "shop".into(),
                run_id: 42
            })
        );
        assert_eq!(
            ArtifactKey::parse("media/up-loads/up-loads-20261126T020000Z-7.tar").map(|k| k.run_id),
            Ok(7)
        );
        for bad in [
            "database/../x-20261126T020000Z-1.tar",
            "Database/shop/shop-20261126T020000Z-1.tar",
            "database/shop/other-20261126T020000Z-1.tar",
            "database/shop/sub/shop-20261126T020000Z-1.tar",
            "database/shop/shop-20261126T020000Z-x.tar",
            "database/shop/shop-20261126T020000Z-99999999999999999999.tar",
            "database/shop/shop.tar",
            "",
        ] {
            assert!(ArtifactKey::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn artifact_keys_are_readable_and_sort_by_time() {
        let t = Utc.with_ymd_and_hms(2026, 11, 26, 2, 0, 0).unwrap();
        assert_eq!(
            artifact_key(BackupType::Database, "shop", t, 42, "dump.zst"),
            "database/shop/shop-20261126T020000Z-42.dump.zst"
        );
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::ArtifactKey;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn any_key_parses_or_is_refused(s in ".{0,120}") {
            let _ = ArtifactKey::parse(&s);
        }

        #[test]
        fn near_miss_keys_parse_only_into_their_own_folder(
            kind in prop_oneof![Just("database"), Just("media"), Just(".."), Just("")],
            folder in "[a-z.]{0,6}",
            name in "[a-z.]{0,6}",
            stamp in "[0-9TZ]{0,18}",
            run in prop_oneof![any::<i64>().prop_map(|n| n.to_string()), "[0-9a-z-]{0,25}"],
            ext in "[a-z0-9.]{0,14}",
        ) {
            let key = format!("{kind}/{folder}/{name}-{stamp}-{run}.{ext}");
            if let Ok(parsed) = ArtifactKey::parse(&key) {
                prop_assert_eq!(parsed.backup_type.as_str(), kind);
                prop_assert_eq!(&parsed.target, &folder);
                prop_assert_eq!(&folder, &name);
                prop_assert!(!folder.starts_with('.'));
            }
        }
    }
}
