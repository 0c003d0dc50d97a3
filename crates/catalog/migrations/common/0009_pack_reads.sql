-- Verification coverage: when each pack of a repository was last read whole and found clean
-- by a check, and each repository's coverage as of its last reading check.
CREATE TABLE pack_reads (
    repository TEXT NOT NULL,
    pack TEXT NOT NULL,
    read_at TEXT NOT NULL,
    PRIMARY KEY (repository, pack)
);
CREATE TABLE coverage (
    repository TEXT PRIMARY KEY,
    checked_at TEXT NOT NULL,
    packs BIGINT NOT NULL,
    packs_never_read BIGINT NOT NULL,
    oldest_read_at TEXT,
    bytes_read BIGINT NOT NULL
);
