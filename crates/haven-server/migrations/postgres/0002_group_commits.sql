-- The commit accepted in each epoch, by hash: lets a committer that lost the server's answer (a
-- crash, a dropped connection) resubmit the same commit and learn that it was accepted.
CREATE TABLE group_commits (
    group_id       BYTEA NOT NULL REFERENCES mls_groups(id),
    epoch          BIGINT NOT NULL,
    commit_sha256  BYTEA NOT NULL,
    committer      TEXT NOT NULL,
    accepted_at    BIGINT NOT NULL,
    -- Kept as long as the commit itself would be queued (its time-to-live), then purged.
    expires_at     BIGINT NOT NULL,
    PRIMARY KEY (group_id, epoch)
);
