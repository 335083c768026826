//! Artifact storage through OpenDAL: local directories, S3, SFTP, WebDAV
//! and Azure Blob Storage; artifact keys, manifests, listing and deletion.
//!
//! An artifact becomes visible only when complete: on local disk, over SFTP
//! and WebDAV it is written in `.partial/` and moved into place on close; on S3
//! a multipart upload (on Azure, a block blob's block list) is completed on
//! close and aborted on failure. Its manifest is written after it, so a
//! manifest always describes a whole artifact.

pub mod error;
mod local;
pub mod manifest;
mod remote;
mod services;
mod webdav;

use std::{path::PathBuf, sync::Arc};

use bytes::Bytes;
use opendal::{ErrorKind, Operator};
use tokio::sync::OnceCell;

pub use self::{
    error::StorageError,
    manifest::{ArtifactKey, Encryption, MANIFEST_SUFFIX, Manifest, artifact_key},
};
use self::{
    error::op_err,
    local::{LocalFile, restrict},
    remote::Staged,
    webdav::DavUpload,
};
use crate::{
    config::{StorageSettings, StorageUrl},
    model::{BackupType, check_target_name},
};

/// S3 multipart part size: S3's minimum, as rclone and the AWS CLI use for
/// uploads of unknown size. Two parts upload while a third fills, so this
/// is most of the upload's memory (15 MiB). S3 allows 10,000 parts: an
/// artifact can be at most 48.8 GiB. Local files take each write as it
/// comes: buffering them gains nothing and costs memory.
const S3_PART: usize = 5 << 20;
/// Azure block size (Azure has no minimum; 50,000 blocks make 195 GiB at most).
const AZURE_BLOCK: usize = 4 << 20;
/// A manifest larger than this is damaged (they are under 2 KiB).
const MAX_MANIFEST_BYTES: u64 = 64 << 10;
/// Local reads go in pieces this big, two ahead. A restore holds a few
/// pieces at a time, so they are small: restore memory is a few of these,
/// whatever the artifact's size. (S3 reads stream one GET instead.)
const READ_CHUNK: usize = 256 << 10;

/// A storage location with the operations backups need.
///
/// The OpenDAL operator is built on first use: building an fs operator
/// creates directories, and a storage that is unavailable (a missing mount,
/// a bad bucket) must fail the run that needs it, recorded in history, not
/// the process before any run exists.
#[derive(Clone, Debug)]
pub struct Storage {
    settings: StorageSettings,
    op: Arc<OnceCell<Operator>>,
}

impl Storage {
    /// A handle on the storage named by the settings; nothing is touched yet.
    ///
    /// S3 settings not given in the config come from the usual AWS
    /// environment variables; nothing else (profiles, instance metadata) is
    /// read, so behaviour does not depend on the host.
    pub fn new(settings: &StorageSettings) -> Self {
        Self {
            settings: settings.clone(),
            op: Arc::new(OnceCell::new()),
        }
    }

    async fn op(&self) -> Result<&Operator, StorageError> {
        self.op
            .get_or_try_init(|| async { services::build(&self.settings) })
            .await
    }

    /// The storage URL (never holds secrets).
    pub fn url(&self) -> &StorageUrl {
        &self.settings.url
    }

    fn local_path(&self, key: &str) -> Option<PathBuf> {
        match &self.settings.url {
            StorageUrl::Fs { root } => Some(root.join(key)),
            _ => None,
        }
    }

    /// Starts writing an artifact; nothing is visible at `key` until
    /// [`ArtifactWriter::close`].
    ///
    /// # Errors
    ///
    /// When the storage cannot be written.
    pub async fn writer(&self, key: &str) -> Result<ArtifactWriter, StorageError> {
        let sink = match &self.settings.url {
            StorageUrl::Fs { root } => Sink::Local(LocalFile::create(root, key).await?),
            StorageUrl::Sftp { .. } => {
                let op = self.op().await?;
                let staged = Staged::new(op.clone(), key);
                let writer = op
                    .writer(&staged.path)
                    .await
                    .map_err(op_err("write", key))?;
                Sink::Remote(writer, Some(staged))
            }
            StorageUrl::Webdav { .. } => {
                Sink::Dav(DavUpload::start(self.op().await?, &self.settings, key).await?)
            }
            StorageUrl::S3 { .. } | StorageUrl::Azblob { .. } => Sink::Remote(
                self.op()
                    .await?
                    .writer_with(key)
                    .chunk(match self.settings.url {
                        StorageUrl::S3 { .. } => S3_PART,
                        _ => AZURE_BLOCK,
                    })
                    .concurrent(2)
                    .await
                    .map_err(op_err("write", key))?,
                None,
            ),
        };
        Ok(ArtifactWriter {
            sink,
            key: key.to_string(),
        })
    }

    /// Writes the manifest beside its artifact.
    ///
    /// # Errors
    ///
    /// When the storage cannot be written.
    pub async fn write_manifest(&self, manifest: &Manifest) -> Result<(), StorageError> {
        let key = manifest.manifest_key();
        let body = serde_json::to_vec_pretty(manifest).map_err(|e| StorageError::BadManifest {
            key: key.clone(),
            message: e.to_string(),
        })?;
        self.op()
            .await?
            .write(&key, body)
            .await
            .map_err(op_err("write", key.clone()))?;
        if let Some(path) = self.local_path(&key) {
            restrict(&path, &key)?;
        }
        Ok(())
    }

    /// Keys of every file under `{type}/` (or `{type}/{target}/`), sorted;
    /// unfinished local uploads (`.partial/`) lie outside and never show.
    async fn files(
        &self,
        backup_type: Option<BackupType>,
        target: Option<&str>,
    ) -> Result<Vec<(String, u64)>, StorageError> {
        let types = backup_type.map_or_else(
            || vec![BackupType::Database, BackupType::Media],
            |t| vec![t],
        );
        if let Some(target) = target {
            // A name from an argument becomes a path: `..` would climb.
            check_target_name(target).map_err(|message| StorageError::BadTarget { message })?;
        }
        let mut keys = Vec::new();
        for t in types {
            let prefix = match target {
                Some(target) => format!("{}/{target}/", t.as_str()),
                None => format!("{}/", t.as_str()),
            };
            let entries = match self.op().await?.list_with(&prefix).recursive(true).await {
                Ok(entries) => entries,
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) => return Err(op_err("list", prefix)(e)),
            };
            keys.extend(
                entries
                    .iter()
                    .filter(|e| e.metadata().is_file())
                    .map(|e| (e.path().to_string(), e.metadata().content_length())),
            );
        }
        keys.sort();
        Ok(keys)
    }

    /// Every manifest in storage, optionally of one backup type and target,
    /// newest first (by the time and run in their keys), each checked
    /// against its own key ([`Manifest::check`]): one that does not parse or
    /// disagrees is [`Listed::Damaged`], never trusted, and never stops the
    /// listing.
    ///
    /// # Errors
    ///
    /// When listing fails.
    pub async fn listing(
        &self,
        backup_type: Option<BackupType>,
        target: Option<&str>,
    ) -> Result<Vec<Listed>, StorageError> {
        let mut out = Vec::new();
        for (key, size) in self.files(backup_type, target).await? {
            if !key.ends_with(MANIFEST_SUFFIX) {
                continue;
            }
            // The listing gave the size (0: a service that does not say),
            // so no second request per manifest.
            let listed = match self
                .read_manifest(&key, Some(size).filter(|s| *s > 0))
                .await
            {
                Ok(manifest) => match manifest.check(&key) {
                    Ok(()) => Listed::Valid(Box::new(manifest)),
                    Err(reason) => Listed::Damaged { key, reason },
                },
                Err(StorageError::BadManifest { message, .. }) => Listed::Damaged {
                    key,
                    reason: format!("it does not parse: {message}"),
                },
                Err(e) => return Err(e),
            };
            out.push(listed);
        }
        out.sort_by_key(|l| std::cmp::Reverse(l.order()));
        Ok(out)
    }

    /// The valid manifests of [`Storage::listing`], newest first.
    ///
    /// # Errors
    ///
    /// When listing fails.
    pub async fn manifests(
        &self,
        backup_type: Option<BackupType>,
        target: Option<&str>,
    ) -> Result<Vec<Manifest>, StorageError> {
        Ok(self
            .listing(backup_type, target)
            .await?
            .into_iter()
            .filter_map(|l| match l {
                Listed::Valid(m) => Some(*m),
                Listed::Damaged { .. } => None,
            })
            .collect())
    }

    /// `size` is the manifest's size when a listing gave it (else it is
    /// asked for).
    async fn read_manifest(&self, key: &str, size: Option<u64>) -> Result<Manifest, StorageError> {
        // Storage is not trusted: a manifest is a few hundred bytes, and a
        // huge one is refused before it is held in memory.
        let op = self.op().await?;
        let size = match size {
            Some(size) => size,
            None => op
                .stat(key)
                .await
                .map_err(op_err("read", key))?
                .content_length(),
        };
        if size > MAX_MANIFEST_BYTES {
            return Err(StorageError::BadManifest {
                key: key.into(),
                message: format!("it is {size} bytes; a manifest is at most {MAX_MANIFEST_BYTES}"),
            });
        }
        // No more than it said it was, should it grow meanwhile.
        let body = op
            .read_with(key)
            .range(0..size)
            .await
            .map_err(op_err("read", key))?;
        serde_json::from_slice(&body.to_vec()).map_err(|e| StorageError::BadManifest {
            key: key.into(),
            message: e.to_string(),
        })
    }

    /// The manifest of the artifact at `artifact`, or `None` when there is
    /// none (the artifact is incomplete, or not there at all).
    ///
    /// # Errors
    ///
    /// When reading fails, or the manifest does not parse or disagrees
    /// with its key.
    pub async fn manifest(&self, artifact: &str) -> Result<Option<Manifest>, StorageError> {
        let key = format!("{artifact}{MANIFEST_SUFFIX}");
        match self.read_manifest(&key, None).await {
            Ok(m) => match m.check(&key) {
                Ok(()) => Ok(Some(m)),
                Err(message) => Err(StorageError::BadManifest { key, message }),
            },
            Err(StorageError::Op { source, .. }) if source.kind() == ErrorKind::NotFound => {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Whether `key` exists.
    ///
    /// # Errors
    ///
    /// When storage cannot answer.
    pub async fn exists(&self, key: &str) -> Result<bool, StorageError> {
        self.op()
            .await?
            .exists(key)
            .await
            .map_err(op_err("stat", key))
    }

    /// Keys of every artifact file (manifests and unfinished uploads left
    /// out), optionally of one type and target, sorted.
    ///
    /// # Errors
    ///
    /// When listing fails.
    pub async fn artifact_keys(
        &self,
        backup_type: Option<BackupType>,
        target: Option<&str>,
    ) -> Result<Vec<String>, StorageError> {
        Ok(self
            .files(backup_type, target)
            .await?
            .into_iter()
            .map(|(key, _)| key)
            .filter(|k| !k.ends_with(MANIFEST_SUFFIX))
            .collect())
    }

    /// The bytes of `key`, streamed in chunks.
    ///
    /// # Errors
    ///
    /// When the key cannot be opened.
    pub async fn read(
        &self,
        key: &str,
    ) -> Result<impl futures_util::Stream<Item = Result<Bytes, StorageError>> + use<>, StorageError>
    {
        use futures_util::StreamExt;
        let op = self.op().await?;
        let reader = op.reader_with(key);
        let reader = match self.settings.url {
            StorageUrl::Fs { .. } => reader.chunk(READ_CHUNK).concurrent(2),
            // One streamed GET (S3, Azure) or read (SFTP): its body arrives
            // in small frames, so memory stays flat without ranged requests.
            _ => reader,
        };
        let reader = reader.await.map_err(op_err("read", key))?;
        let stream = reader
            .into_bytes_stream(..)
            .await
            .map_err(op_err("read", key))?;
        let key = key.to_string();
        Ok(stream.map(move |chunk| {
            chunk.map_err(|e| StorageError::Io {
                context: format!("reading {key}"),
                source: e,
            })
        }))
    }

    /// Deletes an artifact and then its manifest.
    ///
    /// # Errors
    ///
    /// When either delete fails.
    pub async fn delete(&self, manifest: &Manifest) -> Result<(), StorageError> {
        for key in [manifest.artifact.clone(), manifest.manifest_key()] {
            self.op()
                .await?
                .delete(&key)
                .await
                .map_err(op_err("delete", key))?;
        }
        Ok(())
    }

    /// Deletes a key if present (cleanup after a failed run).
    ///
    /// # Errors
    ///
    /// When the delete fails.
    pub async fn delete_key(&self, key: &str) -> Result<(), StorageError> {
        self.op()
            .await?
            .delete(key)
            .await
            .map_err(op_err("delete", key))
    }

    /// Removes the unfinished local writes of run `run_id`, whose worker
    /// died: at once, not a day later, so that the retry has the disk.
    /// Returns how many went. On S3 an abandoned multipart upload cannot
    /// be found by run through OpenDAL: the bucket's lifecycle rule
    /// (`AbortIncompleteMultipartUpload`) removes it.
    ///
    /// # Errors
    ///
    /// When the directory cannot be read or a file removed.
    pub async fn remove_partials_of(&self, run_id: i64) -> Result<usize, StorageError> {
        match &self.settings.url {
            StorageUrl::Fs { root } => {
                let root = root.clone();
                tokio::task::spawn_blocking(move || local::remove_partials_of(&root, run_id))
                    .await
                    .map_err(|e| StorageError::Io {
                        context: "cleaning unfinished uploads".into(),
                        source: std::io::Error::other(e.to_string()),
                    })?
            }
            StorageUrl::Sftp { .. } | StorageUrl::Webdav { .. } => {
                let prefix = format!("{run_id}.");
                remote::remove_partials(self.op().await?, |name, _| name.starts_with(&prefix)).await
            }
            StorageUrl::S3 { .. } | StorageUrl::Azblob { .. } => Ok(0),
        }
    }

    /// Removes unfinished local writes older than `age` from `.partial/`:
    /// the leftovers of processes killed mid-backup. Returns how many went.
    /// (On S3, abandoned multipart uploads are the bucket's lifecycle rule's
    /// job.)
    ///
    /// # Errors
    ///
    /// When the directory cannot be read.
    pub async fn prune_partials(&self, age: std::time::Duration) -> Result<usize, StorageError> {
        match &self.settings.url {
            StorageUrl::Fs { root } => local::prune_partials(root, age),
            StorageUrl::Sftp { .. } | StorageUrl::Webdav { .. } => {
                remote::remove_partials(self.op().await?, |_, changed| {
                    remote::older_than(changed, age)
                })
                .await
            }
            StorageUrl::S3 { .. } | StorageUrl::Azblob { .. } => Ok(0),
        }
    }
}

/// An artifact being written.
pub struct ArtifactWriter {
    sink: Sink,
    key: String,
}

enum Sink {
    /// S3 and Azure: a multipart upload, completed on close and aborted on
    /// failure. SFTP: a staged file, renamed into place on close and
    /// deleted on failure.
    Remote(opendal::Writer, Option<Staged>),
    /// WebDAV: one streamed PUT of a staged file, moved into place on
    /// close and deleted on failure.
    Dav(DavUpload),
    /// Local disk: our own file, for durability at full speed (see
    /// [`LocalFile`]).
    Local(LocalFile),
}
impl ArtifactWriter {
    /// Appends a chunk.
    ///
    /// # Errors
    ///
    /// When storage rejects the write.
    pub async fn write(&mut self, chunk: Bytes) -> Result<(), StorageError> {
        match &mut self.sink {
            Sink::Remote(w, _) => w
                .write(chunk)
                .await
                .map_err(op_err("write", self.key.clone())),
            Sink::Dav(d) => d.write(chunk).await,
            Sink::Local(f) => f.write(chunk).await,
        }
    }

    /// Completes the artifact, making it visible (and, on local disk,
    /// durable and private to its owner).
    ///
    /// # Errors
    ///
    /// When the upload, flush or rename fails.
    pub async fn close(&mut self) -> Result<(), StorageError> {
        let closed = match &mut self.sink {
            Sink::Remote(w, staged) => {
                let closed = w
                    .close()
                    .await
                    .map(|_| ())
                    .map_err(op_err("write", self.key.clone()));
                match (closed, staged) {
                    (Ok(()), Some(staged)) => staged.publish(&self.key).await,
                    (closed, _) => closed,
                }
            }
            Sink::Dav(d) => match d.finish().await {
                Ok(()) => d.staged.publish(&self.key).await,
                Err(e) => Err(e),
            },
            Sink::Local(f) => f.close().await,
        };
        if closed.is_err() {
            // The local partial, or the multipart upload, goes now.
            self.abort().await;
        }
        closed
    }

    /// Abandons the artifact; nothing becomes visible.
    pub async fn abort(&mut self) {
        let failed = match &mut self.sink {
            Sink::Remote(w, staged) => {
                let aborted = w.abort().await.err();
                // A staged file may be closed already (a failed rename).
                let discarded = match staged {
                    Some(staged) => staged.discard().await.err(),
                    None => None,
                };
                discarded.or(aborted).map(|e| e.to_string())
            }
            Sink::Dav(d) => {
                d.cancel().await;
                d.staged.discard().await.err().map(|e| e.to_string())
            }
            Sink::Local(f) => f.abort().await.err().map(|e| e.to_string()),
        };
        if let Some(error) = failed {
            tracing::warn!(key = %self.key, %error, "could not abort the unfinished upload");
        }
    }
}

/// A manifest as storage holds it.
#[derive(Debug, Clone)]
pub enum Listed {
    /// It parses and agrees with its key.
    Valid(Box<Manifest>),
    /// It does not: never trusted (not restored, verified or pruned).
    Damaged {
        /// The manifest's key.
        key: String,
        /// What is wrong.
        reason: String,
    },
}

impl Listed {
    /// The manifest's key.
    pub fn key(&self) -> String {
        match self {
            Listed::Valid(m) => m.manifest_key(),
            Listed::Damaged { key, .. } => key.clone(),
        }
    }

    /// Sorts by what the key says, time then run (the same for valid and
    /// damaged manifests), then by key.
    fn order(&self) -> (String, i64, String) {
        let key = self.key();
        let artifact = key.strip_suffix(MANIFEST_SUFFIX).unwrap_or(&key);
        let run = ArtifactKey::parse(artifact).map_or(0, |k| k.run_id);
        let time = artifact
            .rsplit('/')
            .next()
            .and_then(|file| file.rsplit_once('-'))
            .and_then(|(rest, _)| rest.rsplit_once('-'))
            .map_or(String::new(), |(_, time)| time.to_string());
        (time, run, key)
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::local::{PARTIAL_DIR, SYNC_EVERY};
    use super::*;

    fn local(root: &Path) -> Storage {
        Storage::new(&StorageSettings {
            url: StorageUrl::Fs {
                root: root.to_path_buf(),
            },
            ..StorageSettings::default()
        })
    }

    /// Past the background flush threshold, the artifact appears whole, 0600,
    /// only on close, and nothing is left in `.partial/`.
    #[tokio::test]
    async fn a_local_artifact_appears_whole_and_private_only_on_close() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let storage = local(dir.path());
        let key = "media/m/m-20261126T000000Z-1.tar";
        let mut writer = storage.writer(key).await.unwrap();
        let chunk = Bytes::from(vec![7u8; 3 << 20]);
        let chunks = (SYNC_EVERY as usize * 2) / chunk.len() + 1;
        for _ in 0..chunks {
            writer.write(chunk.clone()).await.unwrap();
        }
        assert!(!dir.path().join(key).exists(), "visible before close");
        writer.close().await.unwrap();
        let meta = std::fs::metadata(dir.path().join(key)).unwrap();
        assert_eq!(meta.len(), (chunks * chunk.len()) as u64);
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        let partial = std::fs::read_dir(dir.path().join(PARTIAL_DIR)).unwrap();
        assert_eq!(partial.count(), 0, "a partial file was left");
    }

    #[tokio::test]
    async fn an_aborted_local_artifact_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let storage = local(dir.path());
        let key = "database/db/db-20261126T000000Z-2.dump.zst";
        let mut writer = storage.writer(key).await.unwrap();
        writer
            .write(Bytes::from_static(b"half a dump"))
            .await
            .unwrap();
        writer.abort().await;
        assert!(!dir.path().join(key).exists());
        let partial = std::fs::read_dir(dir.path().join(PARTIAL_DIR)).unwrap();
        assert_eq!(partial.count(), 0, "a partial file was left");
    }

    fn partials(root: &Path) -> Vec<String> {
        std::fs::read_dir(root.join(PARTIAL_DIR))
            .map(|d| {
                d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// A failed close (here the rename: a directory holds the key) and a
    /// write dropped unfinished both take their partial with them.
    #[tokio::test]
    async fn a_failed_close_or_a_dropped_write_leaves_no_partial() {
        let dir = tempfile::tempdir().unwrap();
        let storage = local(dir.path());
        let key = "database/db/db-20261126T000000Z-3.dump.zst";
        std::fs::create_dir_all(dir.path().join(key).join("blocker")).unwrap();
        let mut writer = storage.writer(key).await.unwrap();
        writer.write(Bytes::from(vec![1u8; 1 << 20])).await.unwrap();
        assert_eq!(partials(dir.path()).len(), 1);
        assert!(writer.close().await.is_err());
        assert_eq!(partials(dir.path()), Vec::<String>::new());

        let key = "database/db/db-20261126T000000Z-4.dump.zst";
        let mut writer = storage.writer(key).await.unwrap();
        writer
            .write(Bytes::from_static(b"cancelled"))
            .await
            .unwrap();
        drop(writer);
        assert_eq!(partials(dir.path()), Vec::<String>::new());
    }

    /// Partials are named for their run, and a taken-over run's go at once.
    #[tokio::test]
    async fn the_partials_of_one_run_are_removed_by_run() {
        let dir = tempfile::tempdir().unwrap();
        let storage = local(dir.path());
        let mut five = storage
            .writer("media/m/m-20261126T000000Z-5.tar")
            .await
            .unwrap();
        let mut fifty = storage
            .writer("media/m/m-20261126T000000Z-50.tar")
            .await
            .unwrap();
        five.write(Bytes::from_static(b"five")).await.unwrap();
        fifty.write(Bytes::from_static(b"fifty")).await.unwrap();
        let names = partials(dir.path());
        assert!(names.iter().any(|n| n.starts_with("5.")), "{names:?}");
        assert_eq!(storage.remove_partials_of(5).await.unwrap(), 1);
        assert_eq!(partials(dir.path()).len(), 1);
        assert!(partials(dir.path())[0].starts_with("50."));
        std::mem::forget(five);
        fifty.close().await.unwrap();
        assert!(partials(dir.path()).is_empty());
    }
}
