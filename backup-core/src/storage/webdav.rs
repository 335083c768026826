//! Uploads to WebDAV. OpenDAL's WebDAV writer takes an object in one
//! piece, which for a database dump means holding all of it in memory; this
//! one streams instead: one PUT with a chunked body, under a staging name
//! in `.partial/`, moved into place (OpenDAL's rename, a WebDAV MOVE) when
//! the server has it all, and deleted when the run fails.

use std::io;

use bytes::Bytes;
use opendal::Operator;
use secrecy::ExposeSecret;
use tokio::{sync::mpsc, task::JoinHandle};

use super::{
    error::{StorageError, op_err},
    local::PARTIAL_DIR,
    remote::Staged,
};
use crate::config::{StorageSettings, StorageUrl};

/// An upload in flight.
pub(crate) struct DavUpload {
    tx: Option<mpsc::Sender<io::Result<Bytes>>>,
    request: Option<JoinHandle<Result<(), String>>>,
    pub(crate) staged: Staged,
}

/// `http(s)://host:port` and the root directory of a WebDAV URL.
pub(crate) fn endpoint(url: &StorageUrl) -> Option<(String, &str)> {
    match url {
        StorageUrl::Webdav {
            tls,
            host,
            port,
            root,
        } => {
            let scheme = if *tls { "https" } else { "http" };
            let port = port.unwrap_or(if *tls { 443 } else { 80 });
            Some((format!("{scheme}://{host}:{port}"), root.as_str()))
        }
        _ => None,
    }
}

impl DavUpload {
    /// Starts the PUT of the artifact `key` under its staging name.
    pub(crate) async fn start(
        op: &Operator,
        settings: &StorageSettings,
        key: &str,
    ) -> Result<Self, StorageError> {
        let staged = Staged::new(op.clone(), key);
        let dir = format!("{PARTIAL_DIR}/");
        op.create_dir(&dir).await.map_err(op_err("mkdir", dir))?;
        let (base, root) = endpoint(&settings.url).ok_or_else(|| StorageError::Config {
            message: "not a WebDAV URL".into(),
        })?;
        let url = format!(
            "{base}{}/{}",
            encode_path(root.trim_end_matches('/')),
            staged.path
        );
        let (tx, rx) = mpsc::channel::<io::Result<Bytes>>(2);
        let body =
            reqwest::Body::wrap_stream(futures_util::stream::unfold(rx, |mut rx| async move {
                rx.recv().await.map(|item| (item, rx))
            }));
        let mut request = reqwest::Client::builder()
            .build()
            .map_err(|e| StorageError::Io {
                context: "starting the WebDAV client".into(),
                source: io::Error::other(e.without_url().to_string()),
            })?
            .put(url)
            .body(body);
        if let Some(user) = &settings.username {
            request = request.basic_auth(
                user,
                settings
                    .password
                    .as_ref()
                    .map(|p| p.expose_secret().to_string()),
            );
        }
        let request = tokio::spawn(async move {
            let response = request
                .send()
                .await
                .map_err(|e| e.without_url().to_string())?;
            let status = response.status();
            if status.is_success() {
                Ok(())
            } else {
                Err(format!("the server answered {status}"))
            }
        });
        Ok(Self {
            tx: Some(tx),
            request: Some(request),
            staged,
        })
    }

    /// Sends a chunk.
    pub(crate) async fn write(&mut self, chunk: Bytes) -> Result<(), StorageError> {
        let sent = match &self.tx {
            Some(tx) => tx.send(Ok(chunk)).await.is_ok(),
            None => false,
        };
        if sent {
            return Ok(());
        }
        // The request ended early: its answer says why.
        self.tx = None;
        Err(self
            .finish()
            .await
            .err()
            .unwrap_or_else(|| StorageError::Io {
                context: format!("uploading {}", self.staged.path),
                source: io::Error::other("the server closed the upload early"),
            }))
    }

    /// Ends the body and waits for the server's answer.
    pub(crate) async fn finish(&mut self) -> Result<(), StorageError> {
        self.tx = None;
        let answer = match self.request.take() {
            Some(request) => request.await.map_err(|e| e.to_string()).and_then(|r| r),
            None => Err("the upload was already ended".into()),
        };
        answer.map_err(|why| StorageError::Io {
            context: format!("uploading {}", self.staged.path),
            source: io::Error::other(why),
        })
    }

    /// Breaks the body off, so the server drops the upload.
    pub(crate) async fn cancel(&mut self) {
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(Err(io::Error::other("the backup failed"))).await;
        }
        if let Some(request) = self.request.take() {
            let _ = request.await;
        }
    }
}

/// Percent-encodes each segment of a path (the root may hold spaces).
fn encode_path(path: &str) -> String {
    path.split('/')
        .map(|s| {
            percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
        })
        .collect::<Vec<_>>()
        .join("/")
}
