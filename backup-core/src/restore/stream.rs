//! Reading an artifact back: every restore and verification reads through
//! one path, [`stream_artifact`]: chunks from
//! storage are hashed as they arrive and checked against the manifest (size
//! and sha256) when the last one has been read, and the last chunk is held
//! back until then. A consumer (`pg_restore`, the `mariadb` client, a
//! SQLite temporary file, a tar extractor) therefore never sees the end of
//! a damaged artifact: it gets an error instead, and what it did so far is
//! rolled back (`pg_restore --single-transaction`) or thrown away (the
//! SQLite temporary file, the media staging directory). The `mariadb`
//! client cannot roll back DDL, so a MySQL artifact is verified in full
//! before the restore starts, and checked again while it streams.

use std::{
    io::{self, Read},
    sync::Arc,
    sync::atomic::{AtomicU64, Ordering},
};

use bytes::Bytes;
use futures_util::TryStreamExt;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use super::error::RestoreError;
use crate::{
    Error,
    compress::{self, Codec},
    context::Context,
    crypt::Opener,
    pipeline::Progress,
    storage::Manifest,
};

/// A [`Read`] over the chunks [`stream_artifact`] sends; an error, once
/// received, is returned for every later read too.
struct ChannelReader {
    rx: mpsc::Receiver<io::Result<Bytes>>,
    chunk: Bytes,
    failed: Option<(io::ErrorKind, String)>,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some((kind, msg)) = &self.failed {
            return Err(io::Error::new(*kind, msg.clone()));
        }
        while self.chunk.is_empty() {
            match self.rx.blocking_recv() {
                None => return Ok(0),
                Some(Ok(chunk)) => self.chunk = chunk,
                Some(Err(e)) => {
                    self.failed = Some((e.kind(), e.to_string()));
                    return Err(e);
                }
            }
        }
        let n = buf.len().min(self.chunk.len());
        buf[..n].copy_from_slice(&self.chunk[..n]);
        let _ = self.chunk.split_to(n);
        Ok(n)
    }
}

/// Counts the decompressed bytes a consumer reads.
struct Counting<R> {
    inner: R,
    count: Arc<AtomicU64>,
    progress: Progress,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        self.progress.add(n as u64);
        Ok(n)
    }
}

/// Streams the artifact of `manifest`, decompressed, into `consume` (run on
/// a blocking thread), checking size and sha256 against the manifest; see
/// the module documentation. Returns what `consume` returned and the
/// decompressed byte count.
///
/// # Errors
///
/// [`RestoreError::Damaged`] when the artifact differs from its manifest
/// (whatever `consume` said), else the storage's or `consume`'s error.
pub async fn stream_artifact<T: Send + 'static>(
    ctx: &Context,
    manifest: &Manifest,
    progress: Progress,
    consume: impl FnOnce(&mut dyn Read) -> Result<T, Error> + Send + 'static,
) -> Result<(T, u64), Error> {
    let codec = Codec::from_name(&manifest.compression).ok_or_else(|| RestoreError::Damaged {
        key: manifest.artifact.clone(),
        what: format!(
            "unknown compression {:?} in its manifest",
            manifest.compression
        ),
    })?;
    // Storage reads 512 KiB pieces two ahead (S3: one GET's small frames);
    // with one held back and two here, a restore holds about 3 MiB of
    // artifact whatever its size.
    let opener = opener_of(ctx, manifest)?;
    let key = manifest.artifact.clone();
    let (tx, rx) = mpsc::channel::<io::Result<Bytes>>(2);
    let count = Arc::new(AtomicU64::new(0));
    let counted = count.clone();
    let consumer = tokio::task::spawn_blocking(move || {
        let reader = ChannelReader {
            rx,
            chunk: Bytes::new(),
            failed: None,
        };
        let reader: Box<dyn Read + Send> = match opener {
            Some(opener) => opener.open(&key, reader)?,
            None => Box::new(reader),
        };
        let decoder = compress::decoder(codec, reader).map_err(|e| Error::Io {
            context: "starting decompression".into(),
            source: e,
        })?;
        let mut input = Counting {
            inner: decoder,
            count: counted,
            progress,
        };
        consume(&mut input)
    });
    let pumped = pump(ctx, manifest, &tx).await;
    if let Err(e) = &pumped {
        // The consumer must see an error, never a clean end of input.
        let _ = tx
            .send(Err(io::Error::new(
                io::ErrorKind::InvalidData,
                e.to_string(),
            )))
            .await;
    }
    drop(tx);
    let consumed = consumer.await.map_err(|e| Error::Io {
        context: "reading the artifact".into(),
        source: io::Error::other(e.to_string()),
    })?;
    pumped?;
    Ok((consumed?, count.load(Ordering::Relaxed)))
}

/// The identities that open `manifest`'s artifact, when it is encrypted.
fn opener_of(ctx: &Context, manifest: &Manifest) -> Result<Option<Arc<Opener>>, RestoreError> {
    manifest
        .encryption
        .as_ref()
        .map(|e| ctx.opener(&manifest.artifact, e))
        .transpose()
}

/// Before a restore touches its target: when the artifact is encrypted,
/// checks that the configured identity opens it (from its first bytes), so
/// a missing or wrong key is said at once and nothing is changed.
///
/// # Errors
///
/// [`RestoreError::NoIdentity`] or [`RestoreError::Identity`], else
/// storage's error.
pub(crate) async fn check_opens(ctx: &Context, manifest: &Manifest) -> Result<(), Error> {
    let Some(opener) = opener_of(ctx, manifest)? else {
        return Ok(());
    };
    let head = read_head(ctx, &manifest.artifact).await?;
    let key = manifest.artifact.clone();
    tokio::task::spawn_blocking(move || opener.check_head(&key, &head))
        .await
        .map_err(|e| Error::Io {
            context: "checking the identity".into(),
            source: io::Error::other(e.to_string()),
        })??;
    Ok(())
}

/// The first bytes of an artifact: an age header is one line per
/// recipient, and 64 KiB holds the largest the manifest check admits.
pub(crate) async fn read_head(ctx: &Context, key: &str) -> Result<Vec<u8>, Error> {
    const HEAD: usize = 64 << 10;
    let mut stream = ctx.storage.read(key).await?;
    let mut head = Vec::new();
    while head.len() < HEAD
        && let Some(chunk) = stream.try_next().await?
    {
        head.extend_from_slice(&chunk);
    }
    Ok(head)
}

/// Checks the stored bytes of `manifest`'s artifact (size and sha256)
/// without decoding them: what verification can prove of an encrypted
/// artifact without its identity.
///
/// # Errors
///
/// [`RestoreError::Damaged`] when they differ, else storage's error.
pub async fn check_stored(ctx: &Context, manifest: &Manifest) -> Result<(), Error> {
    let (tx, mut rx) = mpsc::channel::<io::Result<Bytes>>(2);
    let drain = tokio::spawn(async move { while rx.recv().await.is_some() {} });
    let pumped = pump(ctx, manifest, &tx).await;
    drop(tx);
    let _ = drain.await;
    pumped
}

/// Sends the artifact's chunks, each one only after the next has been read,
/// and the last only once size and sha256 match the manifest.
async fn pump(
    ctx: &Context,
    manifest: &Manifest,
    tx: &mpsc::Sender<io::Result<Bytes>>,
) -> Result<(), Error> {
    let key = &manifest.artifact;
    let mut stream = ctx.storage.read(key).await?;
    let mut hasher = Sha256::new();
    let mut size: u64 = 0;
    let mut held: Option<Bytes> = None;
    let mut open = true;
    while let Some(chunk) = stream.try_next().await? {
        hasher.update(&chunk);
        size += chunk.len() as u64;
        if let Some(previous) = held.replace(chunk)
            && open
            && tx.send(Ok(previous)).await.is_err()
        {
            // The consumer stopped reading; keep hashing to the end.
            open = false;
        }
    }
    let sha = hex::encode(hasher.finalize());
    let damaged = |what: String| {
        Err(RestoreError::Damaged {
            key: key.clone(),
            what,
        }
        .into())
    };
    if size != manifest.size_bytes {
        return damaged(format!(
            "it is {size} bytes, its manifest says {}",
            manifest.size_bytes
        ));
    }
    if sha != manifest.sha256 {
        return damaged(format!(
            "its sha256 is {sha}, its manifest says {}",
            manifest.sha256
        ));
    }
    if let Some(last) = held
        && open
    {
        let _ = tx.send(Ok(last)).await;
    }
    Ok(())
}
