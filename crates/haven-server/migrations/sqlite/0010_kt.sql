-- The key directory (issue 11; src/kt/mod.rs has the design).
-- akd's records: the aZKS root record and the tree nodes, keyed by akd's full binary id, each
-- the MessagePack encoding of akd's DbRecord.
CREATE TABLE kt_records (
    id      BLOB PRIMARY KEY,
    record  BLOB NOT NULL
) STRICT, WITHOUT ROWID;
-- akd's value states: every value every label ever had, one row per (label, epoch).
CREATE TABLE kt_values (
    label      BLOB NOT NULL,
    epoch      INTEGER NOT NULL,
    version    INTEGER NOT NULL,
    node_len   INTEGER NOT NULL,
    node_val   BLOB NOT NULL,
    value      BLOB NOT NULL,
    PRIMARY KEY (label, epoch)
) STRICT, WITHOUT ROWID;
-- Lists waiting for the next publish: the newest uploaded list of each account (written in the
-- transaction that stores the list; deleted once published).
CREATE TABLE kt_pending (
    user_name     TEXT PRIMARY KEY,
    list_version  INTEGER NOT NULL,
    value         BLOB NOT NULL,
    queued_at     INTEGER NOT NULL
) STRICT;
-- The signed root of every epoch (written once; a different root for a stored epoch is refused).
CREATE TABLE kt_roots (
    epoch         INTEGER PRIMARY KEY,
    root          BLOB NOT NULL,
    signature     BLOB NOT NULL,
    signed_at     INTEGER NOT NULL
) STRICT;
-- Which node publishes (a lease, so one node at a time writes the directory).
CREATE TABLE kt_publisher (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    holder      TEXT NOT NULL,
    expires_at  INTEGER NOT NULL
) STRICT;
-- Lists already stored before the directory existed are queued for the first publish.
INSERT INTO kt_pending (user_name, list_version, value, queued_at)
SELECT d.user_name, d.version, d.list, d.created_at FROM device_lists d
WHERE d.version = (SELECT MAX(version) FROM device_lists e WHERE e.user_name = d.user_name);
