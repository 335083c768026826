//! The OpenDAL services behind a storage URL: a local directory, S3, SFTP,
//! WebDAV and Azure Blob Storage.

use opendal::{Operator, services};
use secrecy::ExposeSecret;

use super::{error::StorageError, local::PARTIAL_DIR};
use crate::config::{HostKeyCheck, StorageSettings, StorageUrl};

/// Builds the OpenDAL operator (for fs this creates the root directory).
pub(crate) fn build(settings: &StorageSettings) -> Result<Operator, StorageError> {
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
                // From the environment too: OpenDAL logs it at debug level.
                crate::redact::register(&secret);
                builder = builder.secret_access_key(&secret);
            }
            Operator::new(builder).map_err(open_err)?
        }
        StorageUrl::Sftp {
            user,
            host,
            port,
            root,
        } => {
            let mut builder = services::Sftp::default()
                .endpoint(&format!("ssh://{host}:{}", port.unwrap_or(22)))
                .root(root)
                .known_hosts_strategy(match settings.ssh_host_key_check {
                    HostKeyCheck::Strict => "strict",
                    HostKeyCheck::AcceptNew => "add",
                });
            if let Some(user) = user {
                builder = builder.user(user);
            }
            if let Some(key) = &settings.ssh_key {
                builder = builder.key(&key.to_string_lossy());
            }
            Operator::new(builder).map_err(open_err)?
        }
        StorageUrl::Webdav { .. } => {
            let (endpoint, root) =
                super::webdav::endpoint(&url).ok_or_else(|| StorageError::Config {
                    message: "not a WebDAV URL".into(),
                })?;
            let mut builder = services::Webdav::default().endpoint(&endpoint).root(root);
            if let Some(user) = &settings.username {
                builder = builder.username(user);
            }
            if let Some(password) = &settings.password {
                builder = builder.password(password.expose_secret());
            }
            Operator::new(builder).map_err(open_err)?
        }
        StorageUrl::Azblob { container, prefix } => {
            let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
            let account = settings
                .account_name
                .clone()
                .or_else(|| env("AZURE_STORAGE_ACCOUNT"))
                .ok_or_else(|| StorageError::Config {
                    message: "azblob:// needs storage.account_name (or AZURE_STORAGE_ACCOUNT)"
                        .into(),
                })?;
            let key = settings
                .account_key
                .as_ref()
                .map(|k| k.expose_secret().to_string())
                .or_else(|| env("AZURE_STORAGE_KEY"))
                .ok_or_else(|| StorageError::Config {
                    message: "azblob:// needs storage.account_key (or AZURE_STORAGE_KEY)".into(),
                })?;
            crate::redact::register(&key);
            let endpoint = settings
                .endpoint
                .clone()
                .unwrap_or_else(|| format!("https://{account}.blob.core.windows.net"));
            let builder = services::Azblob::default()
                .container(container)
                .root(&format!("/{prefix}"))
                .endpoint(&endpoint)
                .account_name(&account)
                .account_key(&key);
            Operator::new(builder).map_err(open_err)?
        }
    };
    Ok(op)
}
