-- Who is running a run (`host:pid:nonce`, one per process) and when it last said it was
-- alive. A run whose holder is gone (its process died, or its heartbeat is older than the
-- lease time to live) is reconciled to `abandoned` instead of staying `running` for ever.
ALTER TABLE runs ADD COLUMN holder TEXT NOT NULL DEFAULT '';
ALTER TABLE runs ADD COLUMN heartbeat_at TEXT;
-- The holder of a restore request while it runs, and its heartbeat: a request whose
-- daemon died is failed (interrupted) instead of staying `running`.
ALTER TABLE restore_requests ADD COLUMN holder TEXT NOT NULL DEFAULT '';
ALTER TABLE restore_requests ADD COLUMN heartbeat_at TEXT
