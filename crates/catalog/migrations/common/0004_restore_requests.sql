CREATE TABLE restore_requests (
    id             TEXT PRIMARY KEY,
    policy         TEXT NOT NULL,
    snapshot_id    TEXT,
    point_in_time  TEXT,
    target         TEXT NOT NULL,
    reason         TEXT NOT NULL,
    allow_overlap  BIGINT NOT NULL,
    requester      TEXT NOT NULL,
    status         TEXT NOT NULL,
    created_at     TEXT NOT NULL,
    expires_at     TEXT NOT NULL,
    not_before     TEXT,
    decided_by     TEXT,
    decided_at     TEXT,
    decision_comment TEXT,
    finished_at    TEXT,
    outcome        TEXT
);
CREATE INDEX restore_requests_created ON restore_requests (created_at);
