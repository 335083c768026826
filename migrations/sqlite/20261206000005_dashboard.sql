-- Who asked for a manual run (`cli:<user>`, `web:<user>`, `token:<name>`).
ALTER TABLE backup_runs ADD COLUMN triggered_by TEXT;
-- The dashboard's runs page filters by status and pages by start time.
CREATE INDEX IF NOT EXISTS backup_runs_status_started ON backup_runs (status, started_at, id);
CREATE INDEX IF NOT EXISTS backup_runs_started_id ON backup_runs (started_at, id);

-- A schedule paused at runtime (from the dashboard): kept across
-- `schedules setup`, honoured by every worker within the reload interval.
ALTER TABLE backup_schedules ADD COLUMN paused_at TEXT;
ALTER TABLE backup_schedules ADD COLUMN paused_by TEXT;

-- What was done from the dashboard or its API, and by whom.
CREATE TABLE IF NOT EXISTS audit_log (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    at      TEXT    NOT NULL,
    actor   TEXT    NOT NULL,
    action  TEXT    NOT NULL,
    detail  TEXT    NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS audit_log_at ON audit_log (at);
-- A sign-out ends the user's earlier sessions: looked up per request.
CREATE INDEX IF NOT EXISTS audit_log_actor ON audit_log (actor, action, at);

-- Searching error messages reads only the rows that have one; counts per
-- status by target read an index.
CREATE INDEX IF NOT EXISTS backup_runs_errors ON backup_runs (started_at, id) WHERE error_message <> '';
CREATE INDEX IF NOT EXISTS backup_runs_target_status ON backup_runs (target, status);
CREATE INDEX IF NOT EXISTS backup_runs_target_started ON backup_runs (target, started_at, id);
CREATE INDEX IF NOT EXISTS backup_runs_type_started ON backup_runs (backup_type, started_at, id);
