-- The commit accepted in each epoch, by hash: lets a committer that lost the server's answer (a
-- crash, a dropped connection) resubmit the same commit and learn that it was accepted.
CREATE TABLE group_commits (
    group_id       BLOB NOT NULL REFERENCES mls_groups(id),
    epoch          INTEGER NOT NULL,
    commit_sha256  BLOB NOT NULL,
    committer      TEXT NOT NULL,
    accepted_at    INTEGER NOT NULL,
    -- Kept as long as the commit itself would be queued (its time-to-live), then purged.
    expires_at     INTEGER NOT NULL,
    PRIMARY KEY (group_id, epoch)
) STRICT, WITHOUT ROWID;
