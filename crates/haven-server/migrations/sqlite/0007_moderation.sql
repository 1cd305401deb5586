-- Reports, moderation cases, account actions, appeals, roles and the audit log
-- (src/moderation/mod.rs has the design).

-- Roles the operator grants with `haven admin role grant`.
CREATE TABLE user_roles (
    user_name   TEXT NOT NULL REFERENCES users(name),
    role        TEXT NOT NULL CHECK (role IN ('moderator', 'admin')),
    granted_at  INTEGER NOT NULL,
    PRIMARY KEY (user_name, role)
) STRICT, WITHOUT ROWID;

-- An account's enforcement state, kept in step with mod_actions by the same transaction.
-- suspended_until: ms (9223372036854775807 for a ban); restricted_until: ms; hold_until: a
-- preserve hold on the account's records (exempt from every purge until then).
ALTER TABLE users ADD COLUMN suspended_until INTEGER;
ALTER TABLE users ADD COLUMN restricted_until INTEGER;
ALTER TABLE users ADD COLUMN hold_until INTEGER;

-- When each device joined and left each group, so a report can show that the reporter was a
-- recipient when the message was received. Written by triggers, so no membership change is
-- missed; the database's clock. Members from before this migration count from time 0.
CREATE TABLE group_membership_log (
    group_id   BLOB NOT NULL,
    device_id  TEXT NOT NULL,
    joined_at  INTEGER NOT NULL,
    left_at    INTEGER
) STRICT;
CREATE INDEX group_membership_log_by_group ON group_membership_log(group_id, device_id);
INSERT INTO group_membership_log (group_id, device_id, joined_at)
    SELECT group_id, device_id, 0 FROM group_members;
CREATE TRIGGER group_members_joined AFTER INSERT ON group_members BEGIN
    INSERT INTO group_membership_log (group_id, device_id, joined_at)
    VALUES (NEW.group_id, NEW.device_id, CAST(unixepoch('subsec') * 1000 AS INTEGER));
END;
CREATE TRIGGER group_members_left AFTER DELETE ON group_members BEGIN
    UPDATE group_membership_log SET left_at = CAST(unixepoch('subsec') * 1000 AS INTEGER)
    WHERE group_id = OLD.group_id AND device_id = OLD.device_id AND left_at IS NULL;
END;

-- Cases. dedupe_key = SHA-256 of (reporter, server tag) for a message report: reporting the
-- same message again returns the same case. The note is sealed (it may quote content).
CREATE TABLE mod_cases (
    id                 TEXT PRIMARY KEY NOT NULL,
    source             TEXT NOT NULL,
    reason             TEXT NOT NULL,
    priority           INTEGER NOT NULL,
    state              TEXT NOT NULL CHECK (state IN ('open', 'dismissed', 'actioned', 'escalated')),
    reporter           TEXT REFERENCES users(name),
    reporter_is_minor  INTEGER NOT NULL DEFAULT 0,
    reported_user      TEXT NOT NULL REFERENCES users(name),
    group_id           BLOB,
    dedupe_key         BLOB UNIQUE,
    note_sealed        BLOB,
    created_at         INTEGER NOT NULL,
    closed_at          INTEGER,
    held_until         INTEGER,
    purge_after        INTEGER,
    evidence_purged    INTEGER NOT NULL DEFAULT 0
) STRICT;
CREATE INDEX mod_cases_queue ON mod_cases(state, priority, created_at, id);
CREATE INDEX mod_cases_by_reported ON mod_cases(reported_user, created_at);
CREATE INDEX mod_cases_by_purge ON mod_cases(purge_after);

-- How many cases are open, kept in step by every write that opens or closes one, so the queue
-- shows it without counting.
CREATE TABLE mod_open_cases (
    id  INTEGER PRIMARY KEY NOT NULL CHECK (id = 1),
    n   INTEGER NOT NULL
) STRICT;
INSERT INTO mod_open_cases (id, n) VALUES (1, 0);

-- Evidence, sealed with the evidence key: 'm<N>' a verified message (JSON), 'f<N>' a file.
CREATE TABLE mod_evidence (
    case_id  TEXT NOT NULL REFERENCES mod_cases(id),
    item     TEXT NOT NULL,
    sealed   BLOB NOT NULL,
    PRIMARY KEY (case_id, item)
) STRICT, WITHOUT ROWID;

-- Actions and their appeals.
CREATE TABLE mod_actions (
    id                 TEXT PRIMARY KEY NOT NULL,
    case_id            TEXT NOT NULL REFERENCES mod_cases(id),
    user_name          TEXT NOT NULL REFERENCES users(name),
    action             TEXT NOT NULL,
    reason             TEXT NOT NULL,
    moderator          TEXT NOT NULL REFERENCES users(name),
    created_at         INTEGER NOT NULL,
    until              INTEGER,
    lifted_at          INTEGER,
    appeal_text        TEXT,
    appeal_filed_at    INTEGER,
    appeal_decided_by  TEXT REFERENCES users(name),
    appeal_outcome     TEXT,
    appeal_reason      TEXT,
    appeal_decided_at  INTEGER
) STRICT;
CREATE INDEX mod_actions_by_user ON mod_actions(user_name, created_at);
CREATE INDEX mod_actions_by_case ON mod_actions(case_id, created_at);
CREATE INDEX mod_actions_by_appeal ON mod_actions(appeal_filed_at);

-- The audit log: append-only (the triggers refuse every UPDATE and DELETE), each entry
-- chained to the one before by hash.
CREATE TABLE mod_audit (
    seq      INTEGER PRIMARY KEY NOT NULL,
    at       INTEGER NOT NULL,
    actor    TEXT NOT NULL,
    action   TEXT NOT NULL,
    case_id  TEXT,
    detail   TEXT NOT NULL,
    hash     BLOB NOT NULL
) STRICT;
CREATE INDEX mod_audit_by_case ON mod_audit(case_id, actor);
CREATE TRIGGER mod_audit_no_update BEFORE UPDATE ON mod_audit BEGIN
    SELECT RAISE(ABORT, 'the audit log is append-only');
END;
CREATE TRIGGER mod_audit_no_delete BEFORE DELETE ON mod_audit BEGIN
    SELECT RAISE(ABORT, 'the audit log is append-only');
END;

-- Registration, login and link events with the client's address, for the clearing house's
-- ipCaptureEvent. Kept 30 days, longer under a preserve hold.
CREATE TABLE account_events (
    user_name  TEXT NOT NULL REFERENCES users(name),
    device_id  TEXT NOT NULL,
    event      TEXT NOT NULL CHECK (event IN ('registration', 'login', 'link')),
    ip         TEXT NOT NULL,
    at         INTEGER NOT NULL
) STRICT;
CREATE INDEX account_events_by_user ON account_events(user_name, at);
CREATE INDEX account_events_by_time ON account_events(at);
