//! The stored backup schedules: read by every worker, reconciled by
//! `schedules setup`, and advanced as fires are enqueued.

use chrono::{DateTime, Utc};

use super::pool::{History, HistoryError, on_pool, truncate};
use crate::{
    config::Timezone,
    schedule::{
        cron::CronSchedule,
        plan::{Action, Pause, Plan, Schedule, StoredSchedule},
    },
};

/// A `backup_schedules` row as read.
#[derive(sqlx::FromRow)]
struct ScheduleRow {
    name: String,
    backup_type: String,
    targets: String,
    cron: String,
    timezone: String,
    enabled: bool,
    last_fire_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    paused_at: Option<DateTime<Utc>>,
    paused_by: Option<String>,
}

impl TryFrom<ScheduleRow> for StoredSchedule {
    type Error = String;

    fn try_from(row: ScheduleRow) -> Result<Self, Self::Error> {
        let bad = |what: &str, e: String| {
            format!(
                "stored schedule {:?} has an invalid {what}: {e}; run `backup-cli schedules setup`",
                row.name
            )
        };
        Ok(StoredSchedule {
            schedule: Schedule {
                backup_type: row.backup_type.parse().map_err(|e| bad("backup type", e))?,
                targets: serde_json::from_str(&row.targets)
                    .map_err(|e: serde_json::Error| bad("target list", e.to_string()))?,
                cron: row
                    .cron
                    .parse::<CronSchedule>()
                    .map_err(|e| bad("cron", e.to_string()))?,
                timezone: Timezone::try_from(row.timezone.clone())
                    .map_err(|e| bad("timezone", e))?,
                enabled: row.enabled,
                name: row.name,
            },
            paused: row.paused_at.map(|at| Pause {
                at,
                by: row.paused_by.clone().unwrap_or_default(),
            }),
            last_fire_at: row.last_fire_at,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}

impl History {
    /// Every stored schedule, by name.
    ///
    /// # Errors
    ///
    /// When the query fails or a row no longer parses.
    pub async fn schedules(&self) -> Result<Vec<StoredSchedule>, HistoryError> {
        let sql = "SELECT name, backup_type, targets, cron, timezone, enabled, last_fire_at, \
                   created_at, updated_at, paused_at, paused_by FROM backup_schedules ORDER BY name";
        let rows: Vec<ScheduleRow> =
            on_pool!(self, pool => sqlx::query_as(sql).fetch_all(pool).await).map_err(
                |source| HistoryError::Query {
                    what: "reading schedules",
                    source,
                },
            )?;
        rows.into_iter()
            .map(|row| {
                StoredSchedule::try_from(row).map_err(|e| HistoryError::Query {
                    what: "reading schedules",
                    source: sqlx::Error::Decode(e.into()),
                })
            })
            .collect()
    }

    /// Applies a schedule plan in one transaction, stamping `now`.
    ///
    /// # Errors
    ///
    /// When a statement fails; then nothing changes.
    pub async fn apply_schedules(
        &self,
        plan: &Plan,
        now: DateTime<Utc>,
    ) -> Result<(), HistoryError> {
        let err = |source| HistoryError::Query {
            what: "writing schedules",
            source,
        };
        let now = truncate(now);
        on_pool!(self, pool => {
            let mut tx = pool.begin().await.map_err(err)?;
            for (action, s) in &plan.items {
                let targets = serde_json::to_string(&s.targets).unwrap_or_else(|_| "[]".into());
                let sql = match action {
                    Action::Unchanged => continue,
                    Action::Delete => {
                        sqlx::query("DELETE FROM backup_schedules WHERE name = $1")
                            .bind(&s.name)
                            .execute(&mut *tx)
                            .await
                            .map_err(err)?;
                        continue;
                    }
                    Action::Create => {
                        "INSERT INTO backup_schedules (name, backup_type, targets, cron, timezone, \
                         enabled, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $7)"
                    }
                    Action::Update => {
                        "UPDATE backup_schedules SET backup_type = $2, targets = $3, cron = $4, \
                         timezone = $5, enabled = $6, updated_at = $7 WHERE name = $1"
                    }
                };
                let query = sqlx::query(sql)
                    .bind(&s.name)
                    .bind(s.backup_type.as_str())
                    .bind(targets)
                    .bind(s.cron.as_str().to_string())
                    .bind(s.timezone.0.name())
                    .bind(s.enabled)
                    .bind(now);
                query.execute(&mut *tx).await.map_err(err)?;
            }
            tx.commit().await.map_err(err)
        })
    }

    /// Records that `fire` of schedule `name` was enqueued. Returns false
    /// when a fire at or after it was already recorded (by this or another
    /// process), which makes this a claim in single-process mode.
    ///
    /// # Errors
    ///
    /// When the update fails.
    pub async fn advance_schedule(
        &self,
        name: &str,
        fire: DateTime<Utc>,
    ) -> Result<bool, HistoryError> {
        let sql = "UPDATE backup_schedules SET last_fire_at = $2 \
                   WHERE name = $1 AND (last_fire_at IS NULL OR last_fire_at < $2)";
        let affected = on_pool!(self, pool => sqlx::query(sql).bind(name).bind(truncate(fire)).execute(pool).await.map(|d| d.rows_affected()))
            .map_err(|source| HistoryError::Query {
                what: "recording a schedule fire",
                source,
            })?;
        Ok(affected == 1)
    }

    /// Pauses schedule `name` at runtime: no worker fires it (within the
    /// reload interval) until it is resumed; `schedules setup` keeps the
    /// pause. Returns false when there is no such schedule or it is
    /// already paused.
    ///
    /// # Errors
    ///
    /// When the update fails.
    pub async fn pause_schedule(
        &self,
        name: &str,
        by: &str,
        at: DateTime<Utc>,
    ) -> Result<bool, HistoryError> {
        let sql = "UPDATE backup_schedules SET paused_at = $2, paused_by = $3 \
                   WHERE name = $1 AND paused_at IS NULL";
        let affected = on_pool!(self, pool => sqlx::query(sql).bind(name).bind(truncate(at)).bind(by).execute(pool).await.map(|d| d.rows_affected()))
            .map_err(|source| HistoryError::Query {
                what: "pausing a schedule",
                source,
            })?;
        Ok(affected == 1)
    }

    /// Resumes a paused schedule. Fire times missed while it was paused are
    /// never caught up: the resume counts as a change. Returns false when
    /// there is no such schedule or it is not paused.
    ///
    /// # Errors
    ///
    /// When the update fails.
    pub async fn resume_schedule(
        &self,
        name: &str,
        at: DateTime<Utc>,
    ) -> Result<bool, HistoryError> {
        let sql = "UPDATE backup_schedules SET paused_at = NULL, paused_by = NULL, updated_at = $2 \
                   WHERE name = $1 AND paused_at IS NOT NULL";
        let affected = on_pool!(self, pool => sqlx::query(sql).bind(name).bind(truncate(at)).execute(pool).await.map(|d| d.rows_affected()))
            .map_err(|source| HistoryError::Query {
                what: "resuming a schedule",
                source,
            })?;
        Ok(affected == 1)
    }
}
