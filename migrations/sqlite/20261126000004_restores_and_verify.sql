-- Restores (and restore drills): one row each, beside the backup runs.
CREATE TABLE IF NOT EXISTS restore_runs (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    kind             TEXT    NOT NULL CHECK (kind IN ('restore', 'drill')),
    backup_type      TEXT    NOT NULL CHECK (backup_type IN ('database', 'media')),
    target           TEXT    NOT NULL,
    source_run_id    INTEGER,                -- the backup run whose artifact was restored
    artifact         TEXT    NOT NULL,
    destination      TEXT    NOT NULL,       -- database URL (redacted) or directory
    status           TEXT    NOT NULL CHECK (status IN ('running', 'success', 'failed')),
    worker           TEXT    NOT NULL,
    started_at       TEXT    NOT NULL,
    completed_at     TEXT,
    duration_seconds REAL,
    bytes            INTEGER,                -- decompressed bytes restored
    items            INTEGER,                -- tables or files restored
    error_message    TEXT    NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS restore_runs_started_at ON restore_runs (started_at);

-- The last verification of a run's artifact: when, and 'ok' or 'failed: <reason>'.
ALTER TABLE backup_runs ADD COLUMN verified_at TEXT;
ALTER TABLE backup_runs ADD COLUMN verify_result TEXT;
