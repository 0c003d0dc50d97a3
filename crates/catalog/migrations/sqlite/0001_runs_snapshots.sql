CREATE TABLE runs (
    id          TEXT PRIMARY KEY,
    kind        TEXT NOT NULL,
    policy      TEXT NOT NULL,
    status      TEXT NOT NULL,
    started_at  TEXT NOT NULL,
    finished_at TEXT,
    bytes       BIGINT,
    snapshot_id TEXT,
    error       TEXT,
    host        TEXT NOT NULL
);
CREATE INDEX runs_policy_started ON runs (policy, started_at);

CREATE TABLE snapshots (
    id          TEXT PRIMARY KEY,
    repository  TEXT NOT NULL,
    policy      TEXT NOT NULL,
    source_kind TEXT NOT NULL,
    time        TEXT NOT NULL,
    data_point  TEXT NOT NULL,
    hostname    TEXT NOT NULL,
    files       BIGINT NOT NULL,
    bytes       BIGINT NOT NULL,
    digest      TEXT NOT NULL,
    facts       TEXT NOT NULL,
    summary     TEXT NOT NULL
);
CREATE INDEX snapshots_policy_time ON snapshots (policy, time);

CREATE TABLE leases (
    name       TEXT PRIMARY KEY,
    holder     TEXT NOT NULL,
    expires_at TEXT NOT NULL
);
