-- Device removal and session revocation (security review 2026-12, finding 11).

-- A removed device keeps its row (messages and group history name it) but is revoked from this
-- time on: it cannot log in, is not listed, cannot be added to a group, and holds no sessions,
-- key packages or queue entries. NULL: a live device.
ALTER TABLE devices ADD COLUMN revoked_at INTEGER;

-- Revoking every session of a device (device removal, `haven logout --all`) looks them up by device.
CREATE INDEX sessions_by_device ON sessions(device_id);
