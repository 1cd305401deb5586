-- The key directory (issue 11; src/kt/mod.rs has the design). Same tables as SQLite's.
CREATE TABLE kt_records (
    id      BYTEA PRIMARY KEY,
    record  BYTEA NOT NULL
);
CREATE TABLE kt_values (
    label      BYTEA NOT NULL,
    epoch      BIGINT NOT NULL,
    version    BIGINT NOT NULL,
    node_len   INTEGER NOT NULL,
    node_val   BYTEA NOT NULL,
    value      BYTEA NOT NULL,
    PRIMARY KEY (label, epoch)
);
CREATE TABLE kt_pending (
    user_name     TEXT PRIMARY KEY,
    list_version  BIGINT NOT NULL,
    value         BYTEA NOT NULL,
    queued_at     BIGINT NOT NULL
);
CREATE TABLE kt_roots (
    epoch         BIGINT PRIMARY KEY,
    root          BYTEA NOT NULL,
    signature     BYTEA NOT NULL,
    signed_at     BIGINT NOT NULL
);
CREATE TABLE kt_publisher (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    holder      TEXT NOT NULL,
    expires_at  BIGINT NOT NULL
);
INSERT INTO kt_pending (user_name, list_version, value, queued_at)
SELECT DISTINCT ON (user_name) user_name, version, list, created_at FROM device_lists
ORDER BY user_name, version DESC;
