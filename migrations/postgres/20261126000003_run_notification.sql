-- What became of a finished run's mail: 'sent', 'failed: <reason>' or
-- 'skipped' (toggle off, no recipients, no [smtp]). NULL while running, and
-- on attempts that were retried (only a job's last attempt is notified).
ALTER TABLE backup_runs ADD COLUMN notification TEXT;
