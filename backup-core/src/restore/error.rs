//! Why a restore or a verification cannot go on.

/// Why a restore or a verification cannot go on.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// The run, artifact or manifest asked for does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The restore would do something the user did not agree to, or that
    /// cannot work (another engine, a non-empty directory, tables present).
    #[error("{0}")]
    Refused(String),
    /// The artifact is not what its manifest says.
    #[error("artifact {key} is damaged: {what}")]
    Damaged {
        /// The artifact's key.
        key: String,
        /// What differs.
        what: String,
    },
    /// The artifact is encrypted and no identity is configured.
    #[error("artifact {key} is encrypted with age (to {to}); {how}")]
    NoIdentity {
        /// The artifact's key.
        key: String,
        /// Whom it is encrypted to.
        to: String,
        /// What to give.
        how: &'static str,
    },
    /// The identity cannot be read, or does not open the artifact.
    #[error("{0}")]
    Identity(String),
}
