-- Verified groups and bound identities (see src/groups/mod.rs).

-- Each device's MLS signature key, registered with a signature by its authentication key; every
-- MLS leaf naming the device must carry it. NULL for devices registered before this: such a
-- device cannot be added to a group until it registers again.
ALTER TABLE devices ADD COLUMN mls_key BYTEA;

-- The group's public MLS state (openmls PublicGroup) at its current epoch. NULL for groups
-- created before the server verified commits: commits to them are refused.
ALTER TABLE mls_groups ADD COLUMN public_state BYTEA;

-- Key packages are now verified on upload and stored with their KeyPackageRef. Those stored
-- before were never checked: they are dropped, and clients upload fresh ones on their next sync.
DELETE FROM key_packages;
ALTER TABLE key_packages ADD COLUMN kp_ref BYTEA NOT NULL;
DELETE FROM last_resort_key_packages;
ALTER TABLE last_resort_key_packages ADD COLUMN kp_ref BYTEA NOT NULL;

-- A key package handed out to `claimer` for adding its device to `group_id`: a commit may add a
-- device only with a key package its committer claimed for that group (consumed by the commit).
CREATE TABLE key_package_claims (
    group_id    BYTEA NOT NULL REFERENCES mls_groups(id),
    claimer     TEXT NOT NULL REFERENCES devices(id),
    kp_ref      BYTEA NOT NULL,
    device_id   TEXT NOT NULL REFERENCES devices(id),
    expires_at  BIGINT NOT NULL,
    PRIMARY KEY (group_id, claimer, kp_ref)
);
CREATE INDEX key_package_claims_by_expiry ON key_package_claims(expires_at);
