-- Quotas and rate limits (see src/quota/mod.rs). Every counter is kept in step, in the same
-- transaction, by every write that adds or removes queue entries; the statements below fill them
-- in for entries queued before this migration.

-- The payload's length, so the bytes an entry held are known when it leaves a queue.
ALTER TABLE messages ADD COLUMN size BIGINT NOT NULL DEFAULT 0;
UPDATE messages SET size = octet_length(payload);

-- Bytes of the entries queued for the device.
ALTER TABLE devices ADD COLUMN queue_bytes BIGINT NOT NULL DEFAULT 0;
UPDATE devices SET queue_bytes = coalesce(
    (SELECT sum(m.size) FROM queue q JOIN messages m ON m.id = q.message_id WHERE q.device_id = devices.id), 0);

-- Bytes of the entries queued for all of the account's devices.
ALTER TABLE users ADD COLUMN queue_bytes BIGINT NOT NULL DEFAULT 0;
UPDATE users SET queue_bytes = coalesce(
    (SELECT sum(queue_bytes) FROM devices WHERE user_name = users.name), 0);

-- Each sender's share of a recipient device's queue: `sender` is `d/<device id>` for a sending
-- device and `u/<user name>` for a sending account. Rows at zero are dropped.
CREATE TABLE queue_shares (
    recipient  TEXT NOT NULL,
    sender     TEXT NOT NULL,
    entries    BIGINT NOT NULL,
    bytes      BIGINT NOT NULL,
    PRIMARY KEY (recipient, sender)
);
INSERT INTO queue_shares (recipient, sender, entries, bytes)
    SELECT q.device_id, 'd/' || m.sender_device, count(*), sum(m.size)
    FROM queue q JOIN messages m ON m.id = q.message_id
    WHERE m.sender_device IS NOT NULL AND m.sender_user IS NOT NULL
    GROUP BY q.device_id, m.sender_device;
INSERT INTO queue_shares (recipient, sender, entries, bytes)
    SELECT q.device_id, 'u/' || m.sender_user, count(*), sum(m.size)
    FROM queue q JOIN messages m ON m.id = q.message_id
    WHERE m.sender_device IS NOT NULL AND m.sender_user IS NOT NULL
    GROUP BY q.device_id, m.sender_user;

-- Token buckets: `tokens` as of `updated`; `full_at` is when the bucket is full again, after which
-- the row equals a fresh bucket and is purged.
CREATE TABLE rate_limits (
    key      TEXT PRIMARY KEY,
    tokens   DOUBLE PRECISION NOT NULL,
    updated  BIGINT NOT NULL,
    full_at  BIGINT NOT NULL
);
CREATE INDEX rate_limits_by_full_at ON rate_limits(full_at);
