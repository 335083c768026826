//! The streaming path of a backup: source -> compression -> sha256 -> storage.
//!
//! The source and the compressor run on one blocking thread (both are
//! synchronous and CPU-bound); compressed chunks cross a small bounded
//! channel to the async storage writer. Memory stays bounded by the channel
//! and the compressor's window, whatever the size of the database.

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
    Error, compress::Compressor, config::CompressionSettings, engine::EngineError,
    storage::ArtifactWriter,
};

/// Compressed bytes handed to storage at a time.
const CHUNK: usize = 1 << 20;
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

/// Writes the whole source into the writer it is given. Runs on a blocking
/// thread; returns what the source wants to report (file counts, warnings).
pub type Producer<T> = Box<dyn FnOnce(&mut dyn Write) -> Result<T, EngineError> + Send>;

/// Streams `producer`'s output through compression and hashing into `writer`.
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
    mut writer: ArtifactWriter,
    progress: Progress,
) -> Result<(T, Written), Error> {
    let (tx, mut rx) = mpsc::channel::<Bytes>(CHANNEL_DEPTH);
    let compression = compression.clone();
    let produce = tokio::task::spawn_blocking(move || {
        let sink = HashingSink {
            hasher: Sha256::new(),
            buf: Vec::with_capacity(CHUNK),
            size: 0,
            tx,
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
        let sink = encoder.finish().map_err(EngineError::Output)?;
        let (size, sha256) = sink.finish().map_err(EngineError::Output)?;
        Ok::<_, Error>((
            value,
            Written {
                size,
                sha256,
                source_bytes,
            },
        ))
    });

    let mut storage_error = None;
    while let Some(chunk) = rx.recv().await {
        if let Err(e) = writer.write(chunk).await {
            storage_error = Some(e);
            break;
        }
    }
    // A producer still running now fails on its next send and stops its child.
    drop(rx);
    let produced = match produce.await {
        Ok(result) => result,
        Err(join) => Err(Error::Io {
            context: "backup stream thread".into(),
            source: io::Error::other(join.to_string()),
        }),
    };
    match (storage_error, produced) {
        (Some(e), _) => {
            writer.abort().await;
            Err(e.into())
        }
        (None, Err(e)) => {
            writer.abort().await;
            Err(e)
        }
        (None, Ok(done)) => {
            writer.close().await?;
            Ok(done)
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

/// Hashes what it is given and forwards it in [`CHUNK`]-sized pieces.
struct HashingSink {
    hasher: Sha256,
    buf: Vec<u8>,
    size: u64,
    tx: mpsc::Sender<Bytes>,
}

impl HashingSink {
    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
        self.tx
            .blocking_send(Bytes::from(chunk))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the storage writer stopped"))
    }

    fn finish(mut self) -> io::Result<(u64, String)> {
        self.send()?;
        Ok((self.size, hex::encode(self.hasher.finalize())))
    }
}

impl Write for HashingSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.hasher.update(buf);
        self.size += buf.len() as u64;
        self.buf.extend_from_slice(buf);
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
