//! Bringing backups back and proving they can be.
//!
//! A restore finds its backup ([`find`](mod@find)), streams the artifact back with its
//! size and sha256 checked on the way ([`stream`]), and writes it into a
//! database ([`database`]) or a directory ([`media`]), under a history row
//! ([`record`]). [`verify`](mod@verify) re-reads artifacts and proves their format
//! reads; a [`drill`](mod@drill) restores one into a scratch database and drops it.

pub(crate) mod archive;
pub mod database;
pub mod drill;
pub mod error;
pub mod find;
pub mod media;
pub mod record;
pub mod stream;
pub mod verify;

pub use self::{
    database::{DatabaseOptions, DatabasePlan, DatabaseRequest, plan_database, run_database},
    drill::{Drill, drill, drill_verified, scratch_for},
    error::RestoreError,
    find::{Found, Pick, Which, find},
    media::{MediaPlan, MediaRequest, plan_media, run_media},
    record::RestoreReport,
    stream::stream_artifact,
    verify::{Scope, Verified, VerifyRequest, verify},
};
