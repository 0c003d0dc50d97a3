CREATE TABLE drills (
    id            TEXT PRIMARY KEY,
    policy        TEXT NOT NULL,
    repository    TEXT NOT NULL,
    snapshot_id   TEXT NOT NULL,
    data_point    TEXT NOT NULL,
    target        TEXT NOT NULL,
    status        TEXT NOT NULL,
    started_at    TEXT NOT NULL,
    finished_at   TEXT NOT NULL,
    rto_ms        BIGINT,
    rto_objective_ms BIGINT,
    rpo_ms        BIGINT,
    rpo_objective_ms BIGINT,
    error         TEXT,
    report        TEXT NOT NULL
);
CREATE INDEX drills_policy_started ON drills (policy, started_at);

CREATE TABLE signoffs (
    drill_id   TEXT PRIMARY KEY REFERENCES drills (id),
    principal  TEXT NOT NULL,
    comment    TEXT NOT NULL,
    signed_at  TEXT NOT NULL
);

CREATE TABLE notices (
    name    TEXT PRIMARY KEY,
    sent_at TEXT NOT NULL
);
