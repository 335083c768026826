-- Backup schedules, reconciled from the config by `backup-cli schedules setup`
-- and read by every worker, so all replicas and the CLI share one set.
CREATE TABLE IF NOT EXISTS backup_schedules (
    name         TEXT    PRIMARY KEY,
    backup_type  TEXT    NOT NULL CHECK (backup_type IN ('database', 'media')),
    targets      TEXT    NOT NULL,          -- JSON array of target names
    cron         TEXT    NOT NULL,
    timezone     TEXT    NOT NULL,
    enabled      BOOLEAN NOT NULL DEFAULT TRUE,
    last_fire_at TEXT,                      -- newest fire time enqueued
    created_at   TEXT    NOT NULL,
    updated_at   TEXT    NOT NULL
);

-- Liveness of a running backup: a row whose beat stopped belongs to a lost
-- worker and is finished as failed.
ALTER TABLE backup_runs ADD COLUMN heartbeat_at TEXT;
CREATE INDEX IF NOT EXISTS backup_runs_task_id ON backup_runs (task_id);
