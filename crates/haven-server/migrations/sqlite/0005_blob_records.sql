-- Who stored which blob, how large it is and until when it is kept. A blob's bytes live in the
-- blob store under its id; they are deleted once no record names the id (records expire).
-- One row per (blob, owner): the same bytes uploaded by two accounts count for both.
CREATE TABLE blobs (
    blob_id     TEXT NOT NULL,
    owner       TEXT NOT NULL REFERENCES users(name),
    size        INTEGER NOT NULL,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    PRIMARY KEY (blob_id, owner)
) STRICT;
CREATE INDEX blobs_by_owner ON blobs(owner, expires_at);
CREATE INDEX blobs_by_expiry ON blobs(expires_at);
