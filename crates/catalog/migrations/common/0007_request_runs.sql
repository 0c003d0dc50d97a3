-- The run that carries a restore request once it runs (a job like the others), and
-- whether the restore is creating its target: a request interrupted by a daemon that
-- died has the database or directory it created removed by the daemon that finds it.
ALTER TABLE restore_requests ADD COLUMN run_id TEXT;
ALTER TABLE restore_requests ADD COLUMN creates_target BIGINT NOT NULL DEFAULT 0
