-- Run history: one row per backup run (the reference app's BackupRun model).
CREATE TABLE IF NOT EXISTS backup_runs (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    backup_type      TEXT    NOT NULL CHECK (backup_type IN ('database', 'media')),
    target           TEXT    NOT NULL,
    status           TEXT    NOT NULL CHECK (status IN ('running', 'success', 'failed')),
    "trigger"        TEXT    NOT NULL CHECK ("trigger" IN ('manual', 'schedule', 'catch_up')),
    scheduled_for    TEXT,
    task_id          TEXT,
    attempt          INTEGER NOT NULL DEFAULT 1,
    worker           TEXT    NOT NULL,
    started_at       TEXT    NOT NULL,
    completed_at     TEXT,
    duration_seconds REAL,
    error_message    TEXT    NOT NULL DEFAULT '',
    artifact         TEXT,
    size_bytes       INTEGER,
    sha256           TEXT
);

CREATE INDEX IF NOT EXISTS backup_runs_started_at ON backup_runs (started_at);
CREATE INDEX IF NOT EXISTS backup_runs_target ON backup_runs (backup_type, target, started_at);
CREATE INDEX IF NOT EXISTS backup_runs_status ON backup_runs (status);
