//! The streaming path of a backup: source -> compression -> encryption
//! (age, when configured) -> sha256 -> storage.
//!
//! The source and the compressor run on one blocking thread (both are
//! synchronous and CPU-bound; zstd compresses on its own worker threads).
//! Compressed bytes leave it in fixed 256 KiB pieces over a small
//! bounded channel; each piece is handed to the storage writer and, at the
//! same time, to a hashing thread, so sha256 costs no time on the path the
//! dump waits on. Memory stays bounded by the channels and the compressor's
//! window, whatever the size of the database.

use std::{
    io::{self, Write},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use bytes::Bytes;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use crate::{
    Error,
    compress::Compressor,
    config::CompressionSettings,
    crypt::Sealer,
    engine::source::{EngineError, Producer},
    storage::ArtifactWriter,
};

/// Compressed bytes handed to storage at a time.
const CHUNK: usize = 256 << 10;
/// Chunks in flight between the compressor and the storage writer.
const CHANNEL_DEPTH: usize = 4;

/// Bytes read from the source so far, shared with whoever shows progress.
#[derive(Debug, Clone, Default)]
pub struct Progress(Arc<AtomicU64>);

impl Progress {
    /// Bytes read from the source so far.
    pub fn bytes(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    /// Counts `n` more bytes.
    pub(crate) fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
}

/// What went into storage.
#[derive(Debug, Clone)]
pub struct Written {
    /// Size of the stored (compressed) artifact.
    pub size: u64,
    /// sha256 of the stored bytes, lowercase hex: `sha256sum` of the file.
    pub sha256: String,
    /// Bytes the source produced before compression.
    pub source_bytes: u64,
}

/// Streams `producer`'s output through compression, encryption (with a
/// `sealer`) and hashing into `writer`. Plaintext never leaves the
/// process: the sealer encrypts in memory before a byte goes to storage.
///
/// The artifact is committed (`close`) only after the producer reported
/// success, which for dump tools means after their exit status was checked;
/// on any failure the writer is aborted so nothing becomes visible.
///
/// # Errors
///
/// The storage error if storage failed first, else the source's error.
pub async fn run<T: Send + 'static>(
    producer: Producer<T>,
    compression: &CompressionSettings,
    sealer: Option<Sealer>,
    mut writer: ArtifactWriter,
    progress: Progress,
) -> Result<(T, Written), Error> {
    let (tx, mut rx) = mpsc::channel::<Bytes>(CHANNEL_DEPTH);
    let compression = compression.clone();
    let produce = tokio::task::spawn_blocking(move || {
        let pool = Pool::default();
        let sink = ChunkSink {
            buf: pool.take(),
            pool,
            tx,
        };
        let sink = match &sealer {
            Some(sealer) => Sealed::Age(sealer.seal(sink).map_err(|source| Error::Io {
                context: "starting encryption".into(),
                source,
            })?),
            None => Sealed::Plain(sink),
        };
        let mut encoder = Compressor::new(
            compression.algorithm,
            compression.level,
            compression.threads,
            sink,
        )
        .map_err(|source| Error::Io {
            context: "starting the compressor".into(),
            source,
        })?;
        let mut counting = Counting {
            inner: &mut encoder,
            progress,
        };
        let value = producer(&mut counting)?;
        let source_bytes = counting.progress.bytes();
        encoder
            .finish()
            .and_then(Sealed::finish)
            .and_then(ChunkSink::finish)
            .map_err(EngineError::Output)?;
        Ok::<_, Error>((value, source_bytes))
    });

    // The hasher sees the same chunks (shared, not copied) as the writer.
    let (hash_tx, mut hash_rx) = mpsc::channel::<Bytes>(CHANNEL_DEPTH);
    let hashing = tokio::task::spawn_blocking(move || {
        let mut hasher = Sha256::new();
        let mut size: u64 = 0;
        while let Some(chunk) = hash_rx.blocking_recv() {
            hasher.update(&chunk);
            size += chunk.len() as u64;
        }
        (size, hex::encode(hasher.finalize()))
    });

    let mut storage_error = None;
    while let Some(chunk) = rx.recv().await {
        if hash_tx.send(chunk.clone()).await.is_err() {
            break; // cannot happen: the hasher reads until the channel closes
        }
        if let Err(e) = writer.write(chunk).await {
            storage_error = Some(e);
            break;
        }
    }
    // A producer still running now fails on its next send and stops its child.
    drop(rx);
    drop(hash_tx);
    let produced = match produce.await {
        Ok(result) => result,
        Err(join) => Err(Error::Io {
            context: "backup stream thread".into(),
            source: io::Error::other(join.to_string()),
        }),
    };
    let hashed = hashing.await.map_err(|join| Error::Io {
        context: "hashing thread".into(),
        source: io::Error::other(join.to_string()),
    });
    match (storage_error, produced, hashed) {
        (Some(e), _, _) => {
            writer.abort().await;
            Err(e.into())
        }
        (None, Err(e), _) | (None, Ok(_), Err(e)) => {
            writer.abort().await;
            Err(e)
        }
        (None, Ok((value, source_bytes)), Ok((size, sha256))) => {
            writer.close().await?;
            Ok((
                value,
                Written {
                    size,
                    sha256,
                    source_bytes,
                },
            ))
        }
    }
}

struct Counting<'a, W: Write> {
    inner: &'a mut W,
    progress: Progress,
}

impl<W: Write> Write for Counting<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.progress.add(n as u64);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The compressor's output: encrypted on its way to the chunks, or not.
enum Sealed {
    Age(age::stream::StreamWriter<ChunkSink>),
    Plain(ChunkSink),
}

impl Sealed {
    /// Writes the last encrypted chunk and returns the chunk sink.
    fn finish(self) -> io::Result<ChunkSink> {
        match self {
            Sealed::Age(w) => w.finish(),
            Sealed::Plain(sink) => Ok(sink),
        }
    }
}

impl Write for Sealed {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Sealed::Age(w) => w.write(buf),
            Sealed::Plain(sink) => sink.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Sealed::Age(w) => w.flush(),
            Sealed::Plain(sink) => sink.flush(),
        }
    }
}

/// Cuts what it is given into [`CHUNK`]-sized pieces and sends each one.
struct ChunkSink {
    buf: Vec<u8>,
    pool: Pool,
    tx: mpsc::Sender<Bytes>,
}

impl ChunkSink {
    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buf, self.pool.take());
        self.tx
            .blocking_send(self.pool.bytes(chunk))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the storage writer stopped"))
    }

    fn finish(mut self) -> io::Result<()> {
        self.send()
    }
}

/// Chunk buffers, used again once the writer and the hasher are done with
/// them. Freed, a buffer this big goes back to the kernel, and the next one
/// is fresh memory that faults page by page: measured on the media backup,
/// that was a second of system time (on a VM, each fault of a page the host
/// took back is a trip to the host). Recycled, the same few megabytes serve
/// the whole run.
#[derive(Clone, Default)]
struct Pool(Arc<std::sync::Mutex<Vec<Vec<u8>>>>);

/// Buffers kept for reuse; more are never in flight at once.
const POOLED: usize = 2 * CHANNEL_DEPTH + 4;

impl Pool {
    fn take(&self) -> Vec<u8> {
        self.0
            .lock()
            .ok()
            .and_then(|mut free| free.pop())
            .unwrap_or_else(|| Vec::with_capacity(CHUNK))
    }

    /// `buf` as shared bytes that come back here when the last user drops them.
    fn bytes(&self, buf: Vec<u8>) -> Bytes {
        Bytes::from_owner(Pooled {
            buf,
            pool: self.clone(),
        })
    }
}

struct Pooled {
    buf: Vec<u8>,
    pool: Pool,
}

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        if let Ok(mut free) = self.pool.0.lock()
            && free.len() < POOLED
        {
            free.push(buf);
        }
    }
}

impl Write for ChunkSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut rest = buf;
        while !rest.is_empty() {
            let take = rest.len().min(CHUNK - self.buf.len());
            self.buf.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if self.buf.len() == CHUNK {
                self.send()?;
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
