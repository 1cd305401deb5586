-- Account-signed device lists (issue 11; src/device_lists/mod.rs has the design): every version
-- of every account's list, as the device that signed it uploaded it (haven_kt::device_list
-- format). Versions of one account are consecutive from 1; the newest is the account's list.
CREATE TABLE device_lists (
    user_name   TEXT NOT NULL REFERENCES users(name),
    version     INTEGER NOT NULL CHECK (version >= 1),
    list        BLOB NOT NULL,
    signer      TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (user_name, version)
) STRICT;
