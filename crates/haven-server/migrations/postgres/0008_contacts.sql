-- Safety by design for minors (src/contacts/mod.rs has the design; the SQLite migration of
-- the same number has the notes).

-- The server keeps the band, the day it next changes and how it was established, never the
-- date of birth. Accounts from before this migration are adults with a self-declared age.
ALTER TABLE users ADD COLUMN age_band TEXT NOT NULL DEFAULT 'adult'
    CHECK (age_band IN ('under-13', '13-15', '16-17', 'adult'));
ALTER TABLE users ADD COLUMN age_changes_on TEXT;
ALTER TABLE users ADD COLUMN age_source TEXT NOT NULL DEFAULT 'self-declared'
    CHECK (age_source IN ('self-declared', 'verified'));
ALTER TABLE users ADD COLUMN message_setting TEXT NOT NULL DEFAULT 'requests'
    CHECK (message_setting IN ('contacts-only', 'requests', 'everyone'));

-- One row per connected pair, in name order.
CREATE TABLE connections (
    user_a      TEXT NOT NULL REFERENCES users(name),
    user_b      TEXT NOT NULL REFERENCES users(name),
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (user_a, user_b),
    CHECK (user_a < user_b)
);
CREATE INDEX connections_by_b ON connections(user_b, user_a);

CREATE TABLE contact_requests (
    from_user   TEXT NOT NULL REFERENCES users(name),
    to_user     TEXT NOT NULL REFERENCES users(name),
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (from_user, to_user)
);
CREATE INDEX contact_requests_to ON contact_requests(to_user, created_at);

CREATE TABLE blocks (
    blocker     TEXT NOT NULL REFERENCES users(name),
    blocked     TEXT NOT NULL REFERENCES users(name),
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (blocker, blocked)
);
CREATE INDEX blocks_by_blocked ON blocks(blocked, created_at);

CREATE TABLE restricts (
    restricter  TEXT NOT NULL REFERENCES users(name),
    restricted  TEXT NOT NULL REFERENCES users(name),
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (restricter, restricted)
);

-- 1:1 conversations: only the two accounts' devices may be members.
CREATE TABLE direct_groups (
    group_id  BYTEA PRIMARY KEY REFERENCES mls_groups(id),
    user_a    TEXT NOT NULL REFERENCES users(name),
    user_b    TEXT NOT NULL REFERENCES users(name),
    CHECK (user_a < user_b)
);

-- A conversation a recipient has not accepted yet. messages_sent counts the requester's
-- application messages while the request is pending (a direct request allows one).
CREATE TABLE message_requests (
    recipient      TEXT NOT NULL REFERENCES users(name),
    group_id       BYTEA NOT NULL REFERENCES mls_groups(id),
    requester      TEXT NOT NULL REFERENCES users(name),
    kind           TEXT NOT NULL CHECK (kind IN ('direct', 'group')),
    state          TEXT NOT NULL CHECK (state IN ('pending', 'accepted', 'declined')),
    messages_sent  BIGINT NOT NULL DEFAULT 0,
    created_at     BIGINT NOT NULL,
    decided_at     BIGINT,
    PRIMARY KEY (recipient, group_id)
);
CREATE INDEX message_requests_pending ON message_requests(recipient, state, created_at);
CREATE INDEX message_requests_by_group ON message_requests(group_id, requester);

-- Every approach to another account (contact request, first message, group add), allowed or
-- refused: the rate limits and the risk signals are computed from it. Metadata only.
CREATE TABLE contact_events (
    id           BIGSERIAL PRIMARY KEY,
    actor        TEXT NOT NULL REFERENCES users(name),
    target       TEXT NOT NULL REFERENCES users(name),
    at           BIGINT NOT NULL,
    approach     TEXT NOT NULL CHECK (approach IN ('contact_request', 'first_message', 'group_add')),
    target_band  TEXT NOT NULL,
    connected    BOOLEAN NOT NULL,
    decision     TEXT NOT NULL,
    outcome      TEXT NOT NULL DEFAULT 'pending'
        CHECK (outcome IN ('pending', 'accepted', 'declined', 'blocked', 'reported'))
);
CREATE INDEX contact_events_by_actor ON contact_events(actor, at);
CREATE INDEX contact_events_by_pair ON contact_events(target, actor, at);

-- The last score computed for an account (the level drives friction); the time line it came
-- from is in contact_events.
CREATE TABLE risk_state (
    user_name    TEXT PRIMARY KEY REFERENCES users(name),
    score        DOUBLE PRECISION NOT NULL,
    level        TEXT NOT NULL CHECK (level IN ('normal', 'elevated', 'case')),
    computed_at  BIGINT NOT NULL
);

-- The contact policy and risk configuration the server runs with, written at start-up.
CREATE TABLE policy_in_force (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    version     BIGINT NOT NULL,
    config      TEXT NOT NULL,
    written_at  BIGINT NOT NULL
);

-- Safety notices queued (recipient, about): at most one per pair per day.
CREATE TABLE safety_notices (
    recipient  TEXT NOT NULL REFERENCES users(name),
    about      TEXT NOT NULL REFERENCES users(name),
    at         BIGINT NOT NULL,
    PRIMARY KEY (recipient, about)
);
