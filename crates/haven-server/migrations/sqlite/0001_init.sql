-- Haven server storage, SQLite. See src/store/mod.rs for the semantics.
-- Ids: users by name (TEXT), devices by 32-hex id (TEXT), groups by raw MLS group id (BLOB).
-- Times are milliseconds since the Unix epoch (INTEGER).

CREATE TABLE users (
    name        TEXT PRIMARY KEY NOT NULL,
    created_at  INTEGER NOT NULL
) STRICT;

CREATE TABLE devices (
    id           TEXT PRIMARY KEY NOT NULL,
    user_name    TEXT NOT NULL REFERENCES users(name),
    name         TEXT NOT NULL,
    auth_key     BLOB NOT NULL,
    created_at   INTEGER NOT NULL,
    -- Number of queue rows for this device (kept in step by every write that adds or removes
    -- queue rows), so the depth limit is checked without counting the queue.
    queue_depth  INTEGER NOT NULL DEFAULT 0
) STRICT;
CREATE INDEX devices_by_user ON devices(user_name, created_at, id);

CREATE TABLE challenges (
    nonce       BLOB PRIMARY KEY NOT NULL,
    device_id   TEXT NOT NULL REFERENCES devices(id),
    expires_at  INTEGER NOT NULL
) STRICT;
CREATE INDEX challenges_by_expiry ON challenges(expires_at);

CREATE TABLE sessions (
    token_hash  BLOB PRIMARY KEY NOT NULL,
    device_id   TEXT NOT NULL REFERENCES devices(id),
    expires_at  INTEGER NOT NULL
) STRICT;
CREATE INDEX sessions_by_expiry ON sessions(expires_at);

CREATE TABLE link_codes (
    code_hash   BLOB PRIMARY KEY NOT NULL,
    user_name   TEXT NOT NULL REFERENCES users(name),
    expires_at  INTEGER NOT NULL
) STRICT;
CREATE INDEX link_codes_by_expiry ON link_codes(expires_at);

-- One-time key packages; AUTOINCREMENT keeps ids increasing, so "oldest" is "smallest id".
CREATE TABLE key_packages (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    device_id  TEXT NOT NULL REFERENCES devices(id),
    bytes      BLOB NOT NULL
) STRICT;
CREATE INDEX key_packages_by_device ON key_packages(device_id, id);

CREATE TABLE last_resort_key_packages (
    device_id  TEXT PRIMARY KEY NOT NULL REFERENCES devices(id),
    bytes      BLOB NOT NULL
) STRICT;

CREATE TABLE mls_groups (
    id          BLOB PRIMARY KEY NOT NULL,
    epoch       INTEGER NOT NULL,
    created_at  INTEGER NOT NULL
) STRICT;

CREATE TABLE group_members (
    group_id   BLOB NOT NULL REFERENCES mls_groups(id),
    device_id  TEXT NOT NULL REFERENCES devices(id),
    PRIMARY KEY (group_id, device_id)
) STRICT, WITHOUT ROWID;
CREATE INDEX group_members_by_device ON group_members(device_id);

-- A message is stored once; each recipient device gets a row in `queue`.
CREATE TABLE messages (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    kind           TEXT NOT NULL,
    group_id       BLOB,
    sender_user    TEXT,
    sender_device  TEXT,
    payload        BLOB NOT NULL,
    commitment     BLOB,
    server_tag     BLOB,
    received_at    INTEGER NOT NULL,
    expires_at     INTEGER NOT NULL
) STRICT;
CREATE INDEX messages_by_expiry ON messages(expires_at);

-- AUTOINCREMENT: queue ids are never reused, even after the newest rows are acknowledged, so a
-- client's "after" cursor never skips a later entry.
CREATE TABLE queue (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    device_id   TEXT NOT NULL REFERENCES devices(id),
    message_id  INTEGER NOT NULL REFERENCES messages(id)
) STRICT;
CREATE INDEX queue_by_device ON queue(device_id, id);
CREATE INDEX queue_by_message ON queue(message_id);

CREATE TABLE server_secrets (
    name    TEXT PRIMARY KEY NOT NULL,
    secret  BLOB NOT NULL
) STRICT;
