-- Known-image detection (issue 12; src/psi/mod.rs has the design): hash banks with provenance,
-- removals kept as records, the signed releases of the voucher database, and each device's
-- opened voucher shares.
CREATE TABLE hash_banks (
    name          TEXT PRIMARY KEY,
    description   TEXT NOT NULL,
    min_sources   INTEGER NOT NULL CHECK (min_sources >= 1),
    for_vouchers  INTEGER NOT NULL CHECK (for_vouchers IN (0, 1)),
    for_surfaces  INTEGER NOT NULL CHECK (for_surfaces IN (0, 1)),
    created_at    INTEGER NOT NULL
) STRICT;

-- One row per (entry, source): an entry is accepted when enough distinct sources added it.
CREATE TABLE bank_entries (
    bank      TEXT NOT NULL REFERENCES hash_banks(name),
    kind      TEXT NOT NULL CHECK (kind IN ('pdq', 'md5', 'sha256')),
    hash      BLOB NOT NULL,
    source    TEXT NOT NULL,
    added_at  INTEGER NOT NULL,
    PRIMARY KEY (bank, kind, hash, source)
) STRICT;

-- A removed entry (a false positive found in review): excluded from every later release,
-- whoever imports it again, until the record is gone (never, through Haven).
CREATE TABLE bank_removals (
    bank        TEXT NOT NULL REFERENCES hash_banks(name),
    kind        TEXT NOT NULL,
    hash        BLOB NOT NULL,
    reason      TEXT NOT NULL,
    removed_at  INTEGER NOT NULL,
    PRIMARY KEY (bank, kind, hash)
) STRICT;

CREATE TABLE psi_releases (
    release     INTEGER PRIMARY KEY CHECK (release >= 1),
    db_id       BLOB NOT NULL UNIQUE,
    root        BLOB NOT NULL,
    signed      BLOB NOT NULL,
    db          BLOB NOT NULL,
    server_key  BLOB NOT NULL,
    entries     INTEGER NOT NULL,
    match_keys  INTEGER NOT NULL,
    banks       TEXT NOT NULL,
    created_at  INTEGER NOT NULL
) STRICT;

-- The first opened share of each image per device (x is derived from the image's digest).
CREATE TABLE psi_shares (
    user_name   TEXT NOT NULL REFERENCES users(name),
    device_id   TEXT NOT NULL,
    x           BLOB NOT NULL,
    share       BLOB NOT NULL,
    blob_id     TEXT NOT NULL,
    release     INTEGER NOT NULL,
    created_at  INTEGER NOT NULL,
    case_id     TEXT,
    PRIMARY KEY (user_name, device_id, x)
) STRICT;
