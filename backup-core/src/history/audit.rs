//! The audit log: what was done from the dashboard or its API, and by whom.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::pool::{History, HistoryError, on_pool, truncate};

/// One recorded action.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct AuditEntry {
    /// Entry id.
    pub id: i64,
    /// When.
    pub at: DateTime<Utc>,
    /// Who: `web:<user>`, `token:<name>`, `proxy:<user>`.
    pub actor: String,
    /// What: `trigger`, `verify`, `drill`, `cleanup`, `pause`, `resume`,
    /// `download`, `sign-in`.
    pub action: String,
    /// On what, and how it went.
    pub detail: String,
}

impl History {
    /// Records an action.
    ///
    /// # Errors
    ///
    /// When the insert fails.
    pub async fn audit(
        &self,
        actor: &str,
        action: &str,
        detail: &str,
        at: DateTime<Utc>,
    ) -> Result<(), HistoryError> {
        let sql = "INSERT INTO audit_log (at, actor, action, detail) VALUES ($1, $2, $3, $4)";
        on_pool!(self, pool => sqlx::query(sql).bind(truncate(at)).bind(actor).bind(action).bind(detail).execute(pool).await.map(|_| ()))
            .map(|_| ())
            .map_err(|source| HistoryError::Query {
                what: "recording an action in the audit log",
                source,
            })
    }

    /// The newest `limit` entries, newest first.
    ///
    /// # Errors
    ///
    /// When the query fails.
    pub async fn audit_entries(&self, limit: i64) -> Result<Vec<AuditEntry>, HistoryError> {
        let sql = "SELECT id, at, actor, action, detail FROM audit_log ORDER BY id DESC LIMIT $1";
        on_pool!(self, pool => sqlx::query_as(sql).bind(limit).fetch_all(pool).await).map_err(
            |source| HistoryError::Query {
                what: "reading the audit log",
                source,
            },
        )
    }

    /// When `actor` last did `action` (a sign-out, say), if ever.
    ///
    /// # Errors
    ///
    /// When the query fails.
    pub async fn last_action(
        &self,
        actor: &str,
        action: &str,
    ) -> Result<Option<DateTime<Utc>>, HistoryError> {
        let sql = "SELECT at FROM audit_log WHERE actor = $1 AND action = $2 \
                   ORDER BY at DESC LIMIT 1";
        on_pool!(self, pool => sqlx::query_scalar(sql).bind(actor).bind(action).fetch_optional(pool).await)
            .map_err(|source| HistoryError::Query {
                what: "reading the audit log",
                source,
            })
    }
}
