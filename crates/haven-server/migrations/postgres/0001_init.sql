-- Haven server storage, PostgreSQL. See src/store/mod.rs for the semantics.
-- Tables are created unqualified, in the first schema of the search_path.
-- Times are milliseconds since the Unix epoch (BIGINT).

CREATE TABLE users (
    name        TEXT PRIMARY KEY,
    created_at  BIGINT NOT NULL
);

CREATE TABLE devices (
    id           TEXT PRIMARY KEY,
    user_name    TEXT NOT NULL REFERENCES users(name),
    name         TEXT NOT NULL,
    auth_key     BYTEA NOT NULL,
    created_at   BIGINT NOT NULL,
    -- Number of queue rows for this device (kept in step by every write that adds or removes
    -- queue rows, under the device row's lock), so the depth limit is checked without counting.
    queue_depth  BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX devices_by_user ON devices(user_name, created_at, id);

CREATE TABLE challenges (
    nonce       BYTEA PRIMARY KEY,
    device_id   TEXT NOT NULL REFERENCES devices(id),
    expires_at  BIGINT NOT NULL
);
CREATE INDEX challenges_by_expiry ON challenges(expires_at);

CREATE TABLE sessions (
    token_hash  BYTEA PRIMARY KEY,
    device_id   TEXT NOT NULL REFERENCES devices(id),
    expires_at  BIGINT NOT NULL
);
CREATE INDEX sessions_by_expiry ON sessions(expires_at);

CREATE TABLE link_codes (
    code_hash   BYTEA PRIMARY KEY,
    user_name   TEXT NOT NULL REFERENCES users(name),
    expires_at  BIGINT NOT NULL
);
CREATE INDEX link_codes_by_expiry ON link_codes(expires_at);

CREATE TABLE key_packages (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    device_id  TEXT NOT NULL REFERENCES devices(id),
    bytes      BYTEA NOT NULL
);
CREATE INDEX key_packages_by_device ON key_packages(device_id, id);

CREATE TABLE last_resort_key_packages (
    device_id  TEXT PRIMARY KEY REFERENCES devices(id),
    bytes      BYTEA NOT NULL
);

CREATE TABLE mls_groups (
    id          BYTEA PRIMARY KEY,
    epoch       BIGINT NOT NULL,
    created_at  BIGINT NOT NULL
);

CREATE TABLE group_members (
    group_id   BYTEA NOT NULL REFERENCES mls_groups(id),
    device_id  TEXT NOT NULL REFERENCES devices(id),
    PRIMARY KEY (group_id, device_id)
);
CREATE INDEX group_members_by_device ON group_members(device_id);

-- A message is stored once; each recipient device gets a row in `queue`.
CREATE TABLE messages (
    id             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind           TEXT NOT NULL,
    group_id       BYTEA,
    sender_user    TEXT,
    sender_device  TEXT,
    payload        BYTEA NOT NULL,
    commitment     BYTEA,
    server_tag     BYTEA,
    received_at    BIGINT NOT NULL,
    expires_at     BIGINT NOT NULL
);
CREATE INDEX messages_by_expiry ON messages(expires_at);

-- Queue ids come from a sequence. Writers lock every recipient's device row before taking ids
-- and hold it to commit, so for one device ids become visible in increasing order.
CREATE TABLE queue (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    device_id   TEXT NOT NULL REFERENCES devices(id),
    message_id  BIGINT NOT NULL REFERENCES messages(id)
);
CREATE INDEX queue_by_device ON queue(device_id, id);
CREATE INDEX queue_by_message ON queue(message_id);

CREATE TABLE server_secrets (
    name    TEXT PRIMARY KEY,
    secret  BYTEA NOT NULL
);
