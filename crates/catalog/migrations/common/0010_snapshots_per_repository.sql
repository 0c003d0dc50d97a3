-- A snapshot is recorded once per repository that holds it: a copy between two repositories
-- with the same key (or none) has the same id as its original, and must not be taken for it.
CREATE TABLE snapshots_per_repository (
    id          TEXT NOT NULL,
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
    summary     TEXT NOT NULL,
    PRIMARY KEY (repository, id)
);
INSERT INTO snapshots_per_repository (id, repository, policy, source_kind, time, data_point, hostname, files, bytes, digest, facts, summary)
    SELECT id, repository, policy, source_kind, time, data_point, hostname, files, bytes, digest, facts, summary FROM snapshots;
DROP TABLE snapshots;
ALTER TABLE snapshots_per_repository RENAME TO snapshots;
CREATE INDEX snapshots_policy_time ON snapshots (policy, time);
