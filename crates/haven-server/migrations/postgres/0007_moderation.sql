-- Reports, moderation cases, account actions, appeals, roles and the audit log
-- (src/moderation/mod.rs has the design; the SQLite migration of the same number has the notes).

CREATE TABLE user_roles (
    user_name   TEXT NOT NULL REFERENCES users(name),
    role        TEXT NOT NULL CHECK (role IN ('moderator', 'admin')),
    granted_at  BIGINT NOT NULL,
    PRIMARY KEY (user_name, role)
);

ALTER TABLE users ADD COLUMN suspended_until BIGINT;
ALTER TABLE users ADD COLUMN restricted_until BIGINT;
ALTER TABLE users ADD COLUMN hold_until BIGINT;

CREATE TABLE group_membership_log (
    group_id   BYTEA NOT NULL,
    device_id  TEXT NOT NULL,
    joined_at  BIGINT NOT NULL,
    left_at    BIGINT
);
CREATE INDEX group_membership_log_by_group ON group_membership_log(group_id, device_id);
INSERT INTO group_membership_log (group_id, device_id, joined_at)
    SELECT group_id, device_id, 0 FROM group_members;
CREATE FUNCTION haven_group_member_joined() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO group_membership_log (group_id, device_id, joined_at)
    VALUES (NEW.group_id, NEW.device_id, (extract(epoch FROM clock_timestamp()) * 1000)::bigint);
    RETURN NULL;
END $$;
CREATE FUNCTION haven_group_member_left() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE group_membership_log SET left_at = (extract(epoch FROM clock_timestamp()) * 1000)::bigint
    WHERE group_id = OLD.group_id AND device_id = OLD.device_id AND left_at IS NULL;
    RETURN NULL;
END $$;
CREATE TRIGGER group_members_joined AFTER INSERT ON group_members
    FOR EACH ROW EXECUTE FUNCTION haven_group_member_joined();
CREATE TRIGGER group_members_left AFTER DELETE ON group_members
    FOR EACH ROW EXECUTE FUNCTION haven_group_member_left();

CREATE TABLE mod_cases (
    id                 TEXT PRIMARY KEY,
    source             TEXT NOT NULL,
    reason             TEXT NOT NULL,
    priority           INTEGER NOT NULL,
    state              TEXT NOT NULL CHECK (state IN ('open', 'dismissed', 'actioned', 'escalated')),
    reporter           TEXT REFERENCES users(name),
    reporter_is_minor  BOOLEAN NOT NULL DEFAULT false,
    reported_user      TEXT NOT NULL REFERENCES users(name),
    group_id           BYTEA,
    dedupe_key         BYTEA UNIQUE,
    note_sealed        BYTEA,
    created_at         BIGINT NOT NULL,
    closed_at          BIGINT,
    held_until         BIGINT,
    purge_after        BIGINT,
    evidence_purged    BOOLEAN NOT NULL DEFAULT false
);
CREATE INDEX mod_cases_queue ON mod_cases(state, priority, created_at, id);
CREATE INDEX mod_cases_by_reported ON mod_cases(reported_user, created_at);
CREATE INDEX mod_cases_by_purge ON mod_cases(purge_after);

CREATE TABLE mod_open_cases (
    id  INTEGER PRIMARY KEY CHECK (id = 1),
    n   BIGINT NOT NULL
);
INSERT INTO mod_open_cases (id, n) VALUES (1, 0);

CREATE TABLE mod_evidence (
    case_id  TEXT NOT NULL REFERENCES mod_cases(id),
    item     TEXT NOT NULL,
    sealed   BYTEA NOT NULL,
    PRIMARY KEY (case_id, item)
);

CREATE TABLE mod_actions (
    id                 TEXT PRIMARY KEY,
    case_id            TEXT NOT NULL REFERENCES mod_cases(id),
    user_name          TEXT NOT NULL REFERENCES users(name),
    action             TEXT NOT NULL,
    reason             TEXT NOT NULL,
    moderator          TEXT NOT NULL REFERENCES users(name),
    created_at         BIGINT NOT NULL,
    until              BIGINT,
    lifted_at          BIGINT,
    appeal_text        TEXT,
    appeal_filed_at    BIGINT,
    appeal_decided_by  TEXT REFERENCES users(name),
    appeal_outcome     TEXT,
    appeal_reason      TEXT,
    appeal_decided_at  BIGINT
);
CREATE INDEX mod_actions_by_user ON mod_actions(user_name, created_at);
CREATE INDEX mod_actions_by_case ON mod_actions(case_id, created_at);
CREATE INDEX mod_actions_by_appeal ON mod_actions(appeal_filed_at);

CREATE TABLE mod_audit (
    seq      BIGINT PRIMARY KEY,
    at       BIGINT NOT NULL,
    actor    TEXT NOT NULL,
    action   TEXT NOT NULL,
    case_id  TEXT,
    detail   TEXT NOT NULL,
    hash     BYTEA NOT NULL
);
CREATE INDEX mod_audit_by_case ON mod_audit(case_id, actor);
CREATE FUNCTION haven_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the audit log is append-only';
END $$;
CREATE TRIGGER mod_audit_append_only BEFORE UPDATE OR DELETE ON mod_audit
    FOR EACH ROW EXECUTE FUNCTION haven_audit_append_only();
CREATE TRIGGER mod_audit_no_truncate BEFORE TRUNCATE ON mod_audit
    FOR EACH STATEMENT EXECUTE FUNCTION haven_audit_append_only();

CREATE TABLE account_events (
    user_name  TEXT NOT NULL REFERENCES users(name),
    device_id  TEXT NOT NULL,
    event      TEXT NOT NULL CHECK (event IN ('registration', 'login', 'link')),
    ip         TEXT NOT NULL,
    at         BIGINT NOT NULL
);
CREATE INDEX account_events_by_user ON account_events(user_name, at);
CREATE INDEX account_events_by_time ON account_events(at);
