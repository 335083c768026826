//! The OpenDAL services behind a storage URL: a local directory and S3.

use opendal::{Operator, services};
use secrecy::ExposeSecret;

use super::{error::StorageError, local::PARTIAL_DIR};
use crate::config::{StorageSettings, StorageUrl};

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
    };
    Ok(op)
}
