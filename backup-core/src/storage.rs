//! Artifact storage through OpenDAL: local directories and S3, artifact keys,
//! manifests, listing and deletion.
//!
//! An artifact becomes visible only when complete: on local disk it is
//! written in `.partial/` and renamed into place on close; on S3 a multipart
//! upload is completed on close and aborted on failure. Its manifest is
//! written after it, so a manifest always describes a whole artifact.

use std::{
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    sync::Arc,
};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use opendal::{ErrorKind, Operator, services};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use tokio::sync::OnceCell;

use crate::{
    config::{StorageSettings, StorageUrl},
    history::BackupType,
};

/// Where on local storage unfinished artifacts are written.
const PARTIAL_DIR: &str = ".partial";
/// Suffix of the manifest beside each artifact.
pub const MANIFEST_SUFFIX: &str = ".manifest.json";
/// S3 multipart part size (S3 needs at least 5 MiB); two parts upload at
/// once. Local files take each write as it comes: buffering them gains
/// nothing and costs memory.
const UPLOAD_CHUNK: usize = 8 << 20;
/// Local reads go in pieces this big, two ahead. A restore holds a few
/// pieces at a time, so they are small: restore memory is a few of these,
/// whatever the artifact's size. (S3 reads stream one GET instead.)
const READ_CHUNK: usize = 512 << 10;

/// Storage failures.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The storage could not be set up from the configuration.
    #[error("cannot open storage {url}: {source}")]
    Open {
        /// Storage URL (no secrets).
        url: String,
        /// OpenDAL's error.
        #[source]
        source: Box<opendal::Error>,
    },
    /// An operation on a key failed.
    #[error("storage {op} of {key} failed: {}", describe(source))]
    Op {
        /// What was attempted (write, read, list, delete).
        op: &'static str,
        /// The key.
        key: String,
        /// OpenDAL's error.
        #[source]
        source: Box<opendal::Error>,
    },
    /// A local file operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A manifest could not be parsed.
    #[error("manifest {key} is not valid: {message}")]
    BadManifest {
        /// The manifest key.
        key: String,
        /// What is wrong.
        message: String,
    },
}

/// OpenDAL errors print their whole context (and, for HTTP, long bodies);
/// keep the kind and the message a person needs.
fn describe(e: &opendal::Error) -> String {
    let hint = match e.kind() {
        ErrorKind::PermissionDenied => "; check the credentials and the permissions on the target",
        ErrorKind::NotFound => "; check that the bucket or directory exists",
        _ => "",
    };
    format!(
        "{} ({}){hint}",
        e.message().lines().next().unwrap_or_default(),
        e.kind()
    )
}

/// Maps an OpenDAL error of operation `op` on `key`.
fn op_err(op: &'static str, key: impl Into<String>) -> impl FnOnce(opendal::Error) -> StorageError {
    let key = key.into();
    move |source| StorageError::Op {
        op,
        key,
        source: Box::new(source),
    }
}

impl StorageError {
    /// Whether retrying cannot help (permissions, configuration).
    pub fn is_permanent(&self) -> bool {
        match self {
            StorageError::Open { .. } | StorageError::BadManifest { .. } => true,
            StorageError::Op { source, .. } => matches!(
                source.kind(),
                ErrorKind::PermissionDenied | ErrorKind::ConfigInvalid | ErrorKind::NotFound
            ),
            StorageError::Io { .. } => false,
        }
    }
}

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
            .get_or_try_init(|| async { build(&self.settings) })
            .await
    }

    /// The storage URL (never holds secrets).
    pub fn url(&self) -> &StorageUrl {
        &self.settings.url
    }

    fn local_path(&self, key: &str) -> Option<PathBuf> {
        match &self.settings.url {
            StorageUrl::Fs { root } => Some(root.join(key)),
            StorageUrl::S3 { .. } => None,
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
            StorageUrl::S3 { .. } => Sink::Remote(
                self.op()
                    .await?
                    .writer_with(key)
                    .chunk(UPLOAD_CHUNK)
                    .concurrent(2)
                    .await
                    .map_err(op_err("write", key))?,
            ),
            StorageUrl::Fs { root } => Sink::Local(LocalFile::create(root, key).await?),
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
    ) -> Result<Vec<String>, StorageError> {
        let types = backup_type.map_or_else(
            || vec![BackupType::Database, BackupType::Media],
            |t| vec![t],
        );
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
                    .map(|e| e.path().to_string()),
            );
        }
        keys.sort();
        Ok(keys)
    }

    /// Every manifest in storage, optionally of one backup type and target,
    /// newest first.
    ///
    /// # Errors
    ///
    /// When listing or reading fails, or a manifest does not parse.
    pub async fn manifests(
        &self,
        backup_type: Option<BackupType>,
        target: Option<&str>,
    ) -> Result<Vec<Manifest>, StorageError> {
        let mut out = Vec::new();
        for key in self.files(backup_type, target).await? {
            if key.ends_with(MANIFEST_SUFFIX) {
                out.push(self.read_manifest(&key).await?);
            }
        }
        out.sort_by(|a, b| {
            b.created_at
                .cmp(&a.created_at)
                .then(b.run_id.cmp(&a.run_id))
        });
        Ok(out)
    }

    async fn read_manifest(&self, key: &str) -> Result<Manifest, StorageError> {
        let body = self
            .op()
            .await?
            .read(key)
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
    /// When reading fails or the manifest does not parse.
    pub async fn manifest(&self, artifact: &str) -> Result<Option<Manifest>, StorageError> {
        let key = format!("{artifact}{MANIFEST_SUFFIX}");
        match self.read_manifest(&key).await {
            Ok(m) => Ok(Some(m)),
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
        let mut keys = self.files(backup_type, target).await?;
        keys.retain(|k| !k.ends_with(MANIFEST_SUFFIX));
        Ok(keys)
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
            // One streamed GET: its body arrives in small frames, so memory
            // stays flat without ranged requests.
            StorageUrl::S3 { .. } => reader,
            StorageUrl::Fs { .. } => reader.chunk(READ_CHUNK).concurrent(2),
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
}

impl Storage {
    /// Removes unfinished local writes older than `age` from `.partial/`:
    /// the leftovers of processes killed mid-backup. Returns how many went.
    /// (On S3, abandoned multipart uploads are the bucket's lifecycle rule's
    /// job.)
    ///
    /// # Errors
    ///
    /// When the directory cannot be read.
    pub async fn prune_partials(&self, age: std::time::Duration) -> Result<usize, StorageError> {
        let StorageUrl::Fs { root } = &self.settings.url else {
            return Ok(0);
        };
        let dir = root.join(PARTIAL_DIR);
        let io_err = |e: std::io::Error| StorageError::Io {
            context: format!("cleaning {}", dir.display()),
            source: e,
        };
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(io_err(e)),
        };
        let mut removed = 0;
        for entry in entries.flatten() {
            let old = entry
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| t.elapsed().is_ok_and(|e| e > age));
            if old && entry.file_type().is_ok_and(|t| t.is_file()) {
                std::fs::remove_file(entry.path()).map_err(io_err)?;
                removed += 1;
            }
        }
        Ok(removed)
    }
}

/// Builds the OpenDAL operator (for fs this creates the root directory).
fn build(settings: &StorageSettings) -> Result<Operator, StorageError> {
    let url = settings.url.clone();
    let open_err = |source| StorageError::Open {
        url: url.to_string(),
        source: Box::new(source),
    };
    let op = match &url {
        StorageUrl::Fs { root } => {
            let partial = root.join(PARTIAL_DIR);
            let builder = services::Fs::default()
                .root(&root.to_string_lossy())
                .atomic_write_dir(&partial.to_string_lossy());
            Operator::new(builder).map_err(open_err)?
        }
        StorageUrl::S3 { bucket, prefix } => {
            let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
            let mut builder = services::S3::default()
                .bucket(bucket)
                .root(&format!("/{prefix}"))
                .region(
                    &settings
                        .region
                        .clone()
                        .or_else(|| env("AWS_REGION"))
                        .unwrap_or_else(|| "us-east-1".into()),
                )
                .disable_config_load()
                .disable_ec2_metadata();
            if let Some(endpoint) = settings
                .endpoint
                .clone()
                .or_else(|| env("AWS_ENDPOINT_URL"))
            {
                builder = builder.endpoint(&endpoint);
            }
            if let Some(key) = settings
                .access_key_id
                .clone()
                .or_else(|| env("AWS_ACCESS_KEY_ID"))
            {
                builder = builder.access_key_id(&key);
            }
            let secret = settings
                .secret_access_key
                .as_ref()
                .map(|s| s.expose_secret().to_string())
                .or_else(|| env("AWS_SECRET_ACCESS_KEY"));
            if let Some(secret) = secret {
                builder = builder.secret_access_key(&secret);
            }
            Operator::new(builder).map_err(open_err)?
        }
    };
    Ok(op)
}

fn restrict(path: &Path, key: &str) -> Result<(), StorageError> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(|e| {
        op_err("chmod", key)(opendal::Error::new(ErrorKind::Unexpected, e.to_string()))
    })
}

/// An artifact being written.
pub struct ArtifactWriter {
    sink: Sink,
    key: String,
}

enum Sink {
    /// S3: a multipart upload, completed on close and aborted on failure.
    Remote(opendal::Writer),
    /// Local disk: our own file, for durability at full speed (see
    /// [`LocalFile`]).
    Local(LocalFile),
}

/// Local writes go in pieces of this size. The kernel sizes page-cache
/// folios after the write: 1 MiB writes took large folios, which come from
/// the memory a VM's host took back (free page reporting) and fault there
/// on first touch; measured on the media backup, 128 KiB writes cut its
/// system time from about 2 s to 0.6 s.
const WRITE_PIECE: usize = 128 << 10;

/// Dirty pages of a local artifact are flushed in the background each time
/// this many more bytes were written.
const SYNC_EVERY: u64 = 64 << 20;

/// A local artifact: created 0600 under `.partial/`, flushed to disk as it
/// grows, then fsynced and renamed into place (and its directory fsynced)
/// on close, so a visible artifact survives a power cut.
///
/// A single fsync at the end would stall the close for as long as the disk
/// needs to take the whole artifact (a third of a second for 700 MB here,
/// a fifth of the media backup's time); flushing in the background while
/// the dump goes on leaves it the last few megabytes.
struct LocalFile {
    key: String,
    file: Arc<std::fs::File>,
    partial: PathBuf,
    target: PathBuf,
    unsynced: u64,
    syncing: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl LocalFile {
    async fn create(root: &Path, key: &str) -> Result<Self, StorageError> {
        use std::os::unix::fs::OpenOptionsExt;
        let target = root.join(key);
        let partial = root
            .join(PARTIAL_DIR)
            .join(uuid::Uuid::new_v4().simple().to_string());
        let paths = (partial.clone(), target.clone());
        let file = blocking(failed(key, "creating", &partial), move || {
            let (partial, target) = paths;
            for dir in [partial.parent(), target.parent()].into_iter().flatten() {
                std::fs::create_dir_all(dir)?;
            }
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&partial)
        })
        .await?;
        Ok(Self {
            key: key.to_string(),
            file: Arc::new(file),
            partial,
            target,
            unsynced: 0,
            syncing: None,
        })
    }

    async fn write(&mut self, chunk: Bytes) -> Result<(), StorageError> {
        use std::io::Write;
        let file = self.file.clone();
        let len = chunk.len() as u64;
        blocking(failed(&self.key, "writing", &self.partial), move || {
            chunk
                .chunks(WRITE_PIECE)
                .try_for_each(|piece| (&*file).write_all(piece))
        })
        .await?;
        self.unsynced += len;
        if self.unsynced >= SYNC_EVERY && self.syncing.as_ref().is_none_or(|s| s.is_finished()) {
            self.settle().await?;
            let file = self.file.clone();
            self.syncing = Some(tokio::task::spawn_blocking(move || file.sync_data()));
            self.unsynced = 0;
        }
        Ok(())
    }

    /// Waits for the background flush, if any, and reports its failure.
    async fn settle(&mut self) -> Result<(), StorageError> {
        if let Some(syncing) = self.syncing.take() {
            let context = failed(&self.key, "flushing", &self.partial);
            syncing
                .await
                .map_err(|e| std::io::Error::other(e.to_string()))
                .and_then(|r| r)
                .map_err(|source| StorageError::Io { context, source })?;
        }
        Ok(())
    }

    async fn close(&mut self) -> Result<(), StorageError> {
        self.settle().await?;
        let (file, partial, target) =
            (self.file.clone(), self.partial.clone(), self.target.clone());
        blocking(failed(&self.key, "completing", &self.target), move || {
            file.sync_all()?;
            std::fs::rename(&partial, &target)?;
            match target.parent() {
                Some(dir) => std::fs::File::open(dir)?.sync_all(),
                None => Ok(()),
            }
        })
        .await
    }

    async fn abort(&mut self) -> Result<(), StorageError> {
        let _ = self.settle().await;
        let partial = self.partial.clone();
        blocking(
            failed(&self.key, "removing", &self.partial),
            move || match std::fs::remove_file(&partial) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            },
        )
        .await
    }
}

/// The context of a local storage error, worded like OpenDAL's.
fn failed(key: &str, what: &str, path: &Path) -> String {
    format!("storage write of {key} failed: {what} {}", path.display())
}

/// Runs file I/O on the blocking pool.
async fn blocking<T: Send + 'static>(
    context: String,
    work: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> Result<T, StorageError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))
        .and_then(|r| r)
        .map_err(|source| StorageError::Io { context, source })
}

impl ArtifactWriter {
    /// Appends a chunk.
    ///
    /// # Errors
    ///
    /// When storage rejects the write.
    pub async fn write(&mut self, chunk: Bytes) -> Result<(), StorageError> {
        match &mut self.sink {
            Sink::Remote(w) => w
                .write(chunk)
                .await
                .map_err(op_err("write", self.key.clone())),
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
        match &mut self.sink {
            Sink::Remote(w) => w
                .close()
                .await
                .map(|_| ())
                .map_err(op_err("write", self.key.clone())),
            Sink::Local(f) => f.close().await,
        }
    }

    /// Abandons the artifact; nothing becomes visible.
    pub async fn abort(&mut self) {
        let failed = match &mut self.sink {
            Sink::Remote(w) => w.abort().await.err().map(|e| e.to_string()),
            Sink::Local(f) => f.abort().await.err().map(|e| e.to_string()),
        };
        if let Some(error) = failed {
            tracing::warn!(key = %self.key, %error, "could not abort the unfinished upload");
        }
    }
}

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
}

impl Manifest {
    /// Key of this manifest: the artifact's key plus [`MANIFEST_SUFFIX`].
    pub fn manifest_key(&self) -> String {
        format!("{}{MANIFEST_SUFFIX}", self.artifact)
    }
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
    use super::*;
    use chrono::TimeZone;

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

    #[test]
    fn artifact_keys_are_readable_and_sort_by_time() {
        let t = Utc.with_ymd_and_hms(2026, 11, 26, 2, 0, 0).unwrap();
        assert_eq!(
            artifact_key(BackupType::Database, "shop", t, 42, "dump.zst"),
            "database/shop/shop-20261126T020000Z-42.dump.zst"
        );
    }
}
