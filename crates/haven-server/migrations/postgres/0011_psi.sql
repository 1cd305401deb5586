-- Known-image detection (issue 12; src/psi/mod.rs has the design): hash banks with provenance,
-- removals kept as records, the signed releases of the voucher database, and each device's
-- opened voucher shares.
CREATE TABLE hash_banks (
    name          TEXT PRIMARY KEY,
    description   TEXT NOT NULL,
    min_sources   BIGINT NOT NULL CHECK (min_sources >= 1),
    for_vouchers  BOOLEAN NOT NULL,
    for_surfaces  BOOLEAN NOT NULL,
    created_at    BIGINT NOT NULL
);

-- One row per (entry, source): an entry is accepted when enough distinct sources added it.
CREATE TABLE bank_entries (
    bank      TEXT NOT NULL REFERENCES hash_banks(name),
    kind      TEXT NOT NULL CHECK (kind IN ('pdq', 'md5', 'sha256')),
    hash      BYTEA NOT NULL,
    source    TEXT NOT NULL,
    added_at  BIGINT NOT NULL,
    PRIMARY KEY (bank, kind, hash, source)
);

-- A removed entry (a false positive found in review): excluded from every later release,
-- whoever imports it again, until the record is gone (never, through Haven).
CREATE TABLE bank_removals (
    bank        TEXT NOT NULL REFERENCES hash_banks(name),
    kind        TEXT NOT NULL,
    hash        BYTEA NOT NULL,
    reason      TEXT NOT NULL,
    removed_at  BIGINT NOT NULL,
    PRIMARY KEY (bank, kind, hash)
);

CREATE TABLE psi_releases (
    release     BIGINT PRIMARY KEY CHECK (release >= 1),
    db_id       BYTEA NOT NULL UNIQUE,
    root        BYTEA NOT NULL,
    signed      BYTEA NOT NULL,
    db          BYTEA NOT NULL,
    server_key  BYTEA NOT NULL,
    entries     BIGINT NOT NULL,
    match_keys  BIGINT NOT NULL,
    banks       TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);

-- The first opened share of each image per device (x is derived from the image's digest).
CREATE TABLE psi_shares (
    user_name   TEXT NOT NULL REFERENCES users(name),
    device_id   TEXT NOT NULL,
    x           BYTEA NOT NULL,
    share       BYTEA NOT NULL,
    blob_id     TEXT NOT NULL,
    release     BIGINT NOT NULL,
    created_at  BIGINT NOT NULL,
    case_id     TEXT,
    PRIMARY KEY (user_name, device_id, x)
);
