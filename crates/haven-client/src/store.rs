//! Haven's own tables in the profile database (`<home>/haven.db`), next to openmls's tables.
//!
//! Every function takes a `&Connection`, which is in practice the engine's open transaction, so
//! these rows commit or roll back together with openmls's group state.
//!
//! | table | holds |
//! |---|---|
//! | `haven_meta` | schema version, identity, MLS signature public key, session token |
//! | `haven_conversations` | one row per MLS group: kind, peer or local name, state, consent |
//! | `haven_messages` | history, with the franking material a report needs |
//! | `haven_attachments` | attachment metadata of stored messages |
//! | `haven_processed` | queue ids already processed (redelivery is a no-op) |

use haven_proto::api::Millis;
use haven_proto::{DeviceId, GroupId, UserName};
use rusqlite::{params, Connection, OptionalExtension};

use crate::content::{Body, Content, MessageId};
use crate::error::EngineError;

/// Version of Haven's schema in this file. Each version's upgrade runs once, in order, in its own
/// transaction; an existing version's SQL is never edited.
pub const SCHEMA_VERSION: i64 = 2;

const SCHEMA_V1: &str = "
CREATE TABLE IF NOT EXISTS haven_meta (
    key   TEXT PRIMARY KEY,
    value BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS haven_conversations (
    group_id   BLOB PRIMARY KEY,
    kind       TEXT NOT NULL CHECK (kind IN ('direct', 'group')),
    peer       TEXT,
    name       TEXT,
    state      TEXT NOT NULL CHECK (state IN ('active', 'left', 'removed')),
    created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS haven_messages (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    group_id      BLOB NOT NULL,
    message_id    TEXT NOT NULL,
    sender_user   TEXT NOT NULL,
    sender_device TEXT NOT NULL,
    content       BLOB NOT NULL,
    sent_at       INTEGER NOT NULL,
    received_at   INTEGER NOT NULL,
    commitment    BLOB NOT NULL,
    salt          BLOB NOT NULL,
    server_tag    BLOB,
    queue_id      INTEGER,
    outgoing      INTEGER NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX IF NOT EXISTS haven_messages_unique
    ON haven_messages (group_id, sender_user, message_id);
CREATE INDEX IF NOT EXISTS haven_messages_history
    ON haven_messages (group_id, received_at, seq);
CREATE TABLE IF NOT EXISTS haven_attachments (
    message_seq INTEGER PRIMARY KEY REFERENCES haven_messages (seq) ON DELETE CASCADE,
    blob_id     TEXT NOT NULL,
    name        TEXT NOT NULL,
    size        INTEGER NOT NULL,
    sha256      BLOB NOT NULL,
    local_path  TEXT
);
CREATE TABLE IF NOT EXISTS haven_pending_commits (
    group_id  BLOB PRIMARY KEY,
    epoch     INTEGER NOT NULL,
    body      BLOB NOT NULL,
    welcome   BLOB,
    added     TEXT NOT NULL,
    removed   TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS haven_processed (
    queue_id     INTEGER PRIMARY KEY,
    kind         TEXT NOT NULL,
    outcome      TEXT NOT NULL,
    processed_at INTEGER NOT NULL
);
";

/// Version 2: conversations are addressed by id and names are local labels (see
/// `engine::book`). Direct chats record whether the user opened or accepted them (existing ones
/// count as accepted: the user had them before this distinction existed); groups keep the name
/// their members announced next to the local, unique one; `added_by` is the server-authenticated
/// sender of the Welcome; a conversation may be an invitation (`invited`: re-added after leaving
/// or being removed, not yet accepted). Message ids get an index: they are looked up by id and
/// the lookup must see every message that has it.
const SCHEMA_V2: &str = "
CREATE TABLE haven_conversations_v2 (
    group_id   BLOB PRIMARY KEY,
    kind       TEXT NOT NULL CHECK (kind IN ('direct', 'group')),
    peer       TEXT,
    name       TEXT,
    state      TEXT NOT NULL CHECK (state IN ('active', 'invited', 'left', 'removed')),
    created_at INTEGER NOT NULL,
    accepted   INTEGER NOT NULL DEFAULT 1 CHECK (accepted IN (0, 1)),
    announced  TEXT,
    added_by   TEXT
);
INSERT INTO haven_conversations_v2
    (group_id, kind, peer, name, state, created_at, accepted, announced, added_by)
    SELECT group_id, kind, peer, name, state, created_at, 1, name, NULL FROM haven_conversations;
DROP TABLE haven_conversations;
ALTER TABLE haven_conversations_v2 RENAME TO haven_conversations;
CREATE INDEX haven_messages_by_id ON haven_messages (message_id);
";

/// The upgrade from each version to the next, in order: `UPGRADES[i]` takes version `i + 1` to
/// `i + 2`.
const UPGRADES: &[&str] = &[SCHEMA_V2];

fn schema_version(conn: &Connection) -> Result<Option<i64>, EngineError> {
    meta_get(conn, "schema_version")?
        .map(|v| {
            std::str::from_utf8(&v)
                .ok()
                .and_then(|s| s.parse::<i64>().ok())
                .ok_or(EngineError::Corrupt("unreadable Haven schema version"))
        })
        .transpose()
}

/// Creates Haven's tables, or upgrades them to [`SCHEMA_VERSION`]. Each step runs in one
/// `BEGIN IMMEDIATE` transaction that re-reads the version, so two processes opening the same
/// profile at once upgrade it once, and a failed step leaves the previous version intact.
pub(crate) fn migrate(conn: &Connection) -> Result<(), EngineError> {
    conn.execute_batch(SCHEMA_V1)?;
    if schema_version(conn)?.is_none() {
        meta_put(conn, "schema_version", b"1")?;
    }
    loop {
        conn.execute_batch("BEGIN IMMEDIATE")?;
        let step = (|| -> Result<bool, EngineError> {
            let v = schema_version(conn)?.ok_or(EngineError::Corrupt("no Haven schema version"))?;
            if v == SCHEMA_VERSION {
                return Ok(false);
            }
            let sql = usize::try_from(v - 1)
                .ok()
                .and_then(|i| UPGRADES.get(i))
                .ok_or(EngineError::Corrupt("unknown Haven schema version"))?;
            conn.execute_batch(sql)?;
            meta_put(conn, "schema_version", (v + 1).to_string().as_bytes())?;
            Ok(true)
        })();
        match step {
            Ok(more) => {
                conn.execute_batch("COMMIT")?;
                if !more {
                    return Ok(());
                }
            }
            Err(e) => {
                let _ = conn.execute_batch("ROLLBACK");
                return Err(e);
            }
        }
    }
}

pub(crate) fn meta_get(conn: &Connection, key: &str) -> Result<Option<Vec<u8>>, EngineError> {
    Ok(conn
        .prepare_cached("SELECT value FROM haven_meta WHERE key = ?1")?
        .query_row([key], |r| r.get(0))
        .optional()?)
}

pub(crate) fn meta_put(conn: &Connection, key: &str, value: &[u8]) -> Result<(), EngineError> {
    conn.prepare_cached(
        "INSERT INTO haven_meta (key, value) VALUES (?1, ?2)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    )?
    .execute(params![key, value])?;
    Ok(())
}

pub(crate) fn meta_delete(conn: &Connection, key: &str) -> Result<(), EngineError> {
    conn.prepare_cached("DELETE FROM haven_meta WHERE key = ?1")?
        .execute([key])?;
    Ok(())
}

/// What a conversation is. Names are local display labels; a conversation is addressed by its
/// group id (`engine::book` explains the rules).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConversationKind {
    /// A 1:1 chat (a two-user MLS group; each user may have several devices).
    Direct {
        /// The other user.
        peer: UserName,
        /// The user opened it, or accepted it (by sending in it or `accept`). A direct chat
        /// filed from a Welcome sent by `peer` is not accepted until then, and `send PEER` uses
        /// an accepted one first.
        accepted: bool,
    },
    /// A named group.
    Group {
        /// Its local name: unique among this profile's live conversations (empty until a
        /// `GroupName` control message arrives for a joined group).
        name: String,
        /// The name its members last announced (what we re-announce to members we add); differs
        /// from `name` when that was taken here.
        announced: String,
    },
}

impl ConversationKind {
    /// A direct chat this user opens.
    pub fn direct(peer: UserName) -> Self {
        ConversationKind::Direct {
            peer,
            accepted: true,
        }
    }

    /// A group this user creates, named `name`.
    pub fn group(name: impl Into<String>) -> Self {
        let name = name.into();
        ConversationKind::Group {
            announced: name.clone(),
            name,
        }
    }
}

/// Whether we are in a conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConversationState {
    /// A member.
    Active,
    /// Re-added after we left or were removed: the MLS state is applied (so it can be accepted),
    /// but nothing is sent there until the user accepts; leaving declines. Messages that arrive
    /// meanwhile are stored and shown marked as from an invitation.
    Invited,
    /// We sent our Remove proposal; no more sending here.
    Left,
    /// A commit removed us.
    Removed,
}

impl ConversationState {
    /// Stable name, as stored and printed.
    pub fn as_str(self) -> &'static str {
        match self {
            ConversationState::Active => "active",
            ConversationState::Invited => "invited",
            ConversationState::Left => "left",
            ConversationState::Removed => "removed",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "active" => ConversationState::Active,
            "invited" => ConversationState::Invited,
            "left" => ConversationState::Left,
            "removed" => ConversationState::Removed,
            _ => return None,
        })
    }

    /// Active or invited: the conversations whose names must be unique.
    pub fn is_live(self) -> bool {
        matches!(self, ConversationState::Active | ConversationState::Invited)
    }
}

/// A conversation as stored locally.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conversation {
    /// The MLS group id: what identifies the conversation.
    pub group_id: GroupId,
    /// Direct or group.
    pub kind: ConversationKind,
    /// Member, invited, left or removed.
    pub state: ConversationState,
    /// When we created or joined it (ms).
    pub created_at: Millis,
    /// Who added this device: the server-authenticated sender of the latest Welcome (`None` for
    /// conversations this device created, and for those stored before schema version 2).
    pub added_by: Option<UserName>,
}

impl Conversation {
    /// The local group name, if this is a group.
    pub fn group_name(&self) -> Option<&str> {
        match &self.kind {
            ConversationKind::Group { name, .. } => Some(name),
            ConversationKind::Direct { .. } => None,
        }
    }

    /// The peer, if this is a direct chat.
    pub fn peer(&self) -> Option<&UserName> {
        match &self.kind {
            ConversationKind::Direct { peer, .. } => Some(peer),
            ConversationKind::Group { .. } => None,
        }
    }

    /// A direct chat filed from the peer's Welcome and not accepted yet.
    pub fn is_request(&self) -> bool {
        matches!(
            self.kind,
            ConversationKind::Direct {
                accepted: false,
                ..
            }
        )
    }
}

/// A raw `haven_conversations` row.
struct ConvRow {
    gid: Vec<u8>,
    kind: String,
    peer: Option<String>,
    name: Option<String>,
    state: String,
    created_at: i64,
    accepted: bool,
    announced: Option<String>,
    added_by: Option<String>,
}

fn conv_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ConvRow> {
    Ok(ConvRow {
        gid: r.get(0)?,
        kind: r.get(1)?,
        peer: r.get(2)?,
        name: r.get(3)?,
        state: r.get(4)?,
        created_at: r.get(5)?,
        accepted: r.get(6)?,
        announced: r.get(7)?,
        added_by: r.get(8)?,
    })
}

fn conv_decode(row: ConvRow) -> Result<Conversation, EngineError> {
    let group_id = GroupId::from_bytes(&row.gid).map_err(|_| EngineError::Corrupt("group id"))?;
    let kind = match (row.kind.as_str(), row.peer, row.name) {
        ("direct", Some(p), _) => ConversationKind::Direct {
            peer: UserName::new(&p).map_err(|_| EngineError::Corrupt("peer"))?,
            accepted: row.accepted,
        },
        ("group", _, n) => {
            let name = n.unwrap_or_default();
            ConversationKind::Group {
                announced: row.announced.unwrap_or_else(|| name.clone()),
                name,
            }
        }
        _ => return Err(EngineError::Corrupt("conversation kind")),
    };
    let state =
        ConversationState::parse(&row.state).ok_or(EngineError::Corrupt("conversation state"))?;
    let added_by = row
        .added_by
        .map(|u| UserName::new(&u).map_err(|_| EngineError::Corrupt("added by")))
        .transpose()?;
    Ok(Conversation {
        group_id,
        kind,
        state,
        created_at: u64::try_from(row.created_at).unwrap_or(0),
        added_by,
    })
}

/// `SELECT <the columns conv_from_row reads> FROM haven_conversations <rest>`, built at compile
/// time (conversation lookups run for every entry processed).
macro_rules! conv_select {
    ($rest:literal) => {
        concat!(
            "SELECT group_id, kind, peer, name, state, created_at, accepted, announced, added_by
             FROM haven_conversations ",
            $rest
        )
    };
}

pub(crate) fn conversation_put(conn: &Connection, c: &Conversation) -> Result<(), EngineError> {
    let (kind, peer, name, accepted, announced) = match &c.kind {
        ConversationKind::Direct { peer, accepted } => {
            ("direct", Some(peer.as_str()), None, *accepted, None)
        }
        ConversationKind::Group { name, announced } => (
            "group",
            None,
            Some(name.as_str()),
            true,
            Some(announced.as_str()),
        ),
    };
    conn.prepare_cached(
        "INSERT INTO haven_conversations
             (group_id, kind, peer, name, state, created_at, accepted, announced, added_by)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
         ON CONFLICT (group_id) DO UPDATE SET kind = excluded.kind, peer = excluded.peer,
             name = excluded.name, state = excluded.state, accepted = excluded.accepted,
             announced = excluded.announced, added_by = excluded.added_by",
    )?
    .execute(params![
        c.group_id.as_bytes(),
        kind,
        peer,
        name,
        c.state.as_str(),
        i64::try_from(c.created_at).unwrap_or(i64::MAX),
        accepted,
        announced,
        c.added_by.as_ref().map(UserName::as_str),
    ])?;
    Ok(())
}

pub(crate) fn conversation_get(
    conn: &Connection,
    group_id: &GroupId,
) -> Result<Option<Conversation>, EngineError> {
    let row = conn
        .prepare_cached(conv_select!("WHERE group_id = ?1"))?
        .query_row([group_id.as_bytes()], conv_from_row)
        .optional()?;
    row.map(conv_decode).transpose()
}

pub(crate) fn conversation_list(conn: &Connection) -> Result<Vec<Conversation>, EngineError> {
    let mut st = conn.prepare_cached(conv_select!("ORDER BY created_at, group_id"))?;
    let rows = st.query_map([], conv_from_row)?;
    let mut out = Vec::new();
    for r in rows {
        out.push(conv_decode(r?)?);
    }
    Ok(out)
}

pub(crate) fn conversation_set_state(
    conn: &Connection,
    group_id: &GroupId,
    state: ConversationState,
) -> Result<(), EngineError> {
    conn.prepare_cached("UPDATE haven_conversations SET state = ?2 WHERE group_id = ?1")?
        .execute(params![group_id.as_bytes(), state.as_str()])?;
    Ok(())
}

/// A message in history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    /// Sender-chosen id (unique per conversation and sender).
    pub id: MessageId,
    /// The conversation.
    pub group: GroupId,
    /// Sender user, from the MLS credential.
    pub from: UserName,
    /// Sender device, from the MLS credential.
    pub from_device: DeviceId,
    /// What it says.
    pub body: Body,
    /// Sender's clock (not trusted).
    pub sent_at: Millis,
    /// The server's receive time (bound into its franking tag).
    pub received_at: Millis,
}

/// The franking material kept with a received message: what a report discloses.
#[derive(Clone, PartialEq, Eq)]
pub struct FrankRecord {
    /// The exact content bytes the commitment opens.
    pub content: Vec<u8>,
    /// The opening salt (secret until a report).
    pub salt: Vec<u8>,
    /// The commitment.
    pub commitment: Vec<u8>,
    /// The server's tag (absent for our own messages).
    pub server_tag: Option<Vec<u8>>,
}

impl std::fmt::Debug for FrankRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrankRecord")
            .field("content", &"<redacted>")
            .field("salt", &"<redacted>")
            .field("commitment", &hex::encode(&self.commitment))
            .field("server_tag", &self.server_tag.as_ref().map(hex::encode))
            .finish()
    }
}

/// A message row to insert.
pub(crate) struct NewMessage<'a> {
    pub group: &'a GroupId,
    pub content: &'a Content,
    pub content_bytes: &'a [u8],
    pub from: &'a UserName,
    pub from_device: &'a DeviceId,
    pub received_at: Millis,
    pub commitment: &'a [u8],
    pub salt: &'a [u8],
    pub server_tag: Option<&'a [u8]>,
    pub queue_id: Option<i64>,
    pub outgoing: bool,
}

/// Inserts a message; returns false if one with the same (group, sender, id) exists.
pub(crate) fn message_insert(conn: &Connection, m: &NewMessage<'_>) -> Result<bool, EngineError> {
    let n = conn
        .prepare_cached(
            "INSERT OR IGNORE INTO haven_messages (group_id, message_id, sender_user, sender_device,
                 content, sent_at, received_at, commitment, salt, server_tag, queue_id, outgoing)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
        )?
        .execute(params![
            m.group.as_bytes(),
            m.content.id.as_str(),
            m.from.as_str(),
            m.from_device.as_str(),
            m.content_bytes,
            i64::try_from(m.content.sent_at).unwrap_or(i64::MAX),
            i64::try_from(m.received_at).unwrap_or(i64::MAX),
            m.commitment,
            m.salt,
            m.server_tag,
            m.queue_id,
            m.outgoing,
        ])?;
    if n == 0 {
        return Ok(false);
    }
    if let Body::Attachment(a) = &m.content.body {
        conn.prepare_cached(
            "INSERT INTO haven_attachments (message_seq, blob_id, name, size, sha256)
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )?
        .execute(params![
            conn.last_insert_rowid(),
            a.blob_id.as_str(),
            a.name,
            i64::try_from(a.size).unwrap_or(i64::MAX),
            a.sha256.as_slice(),
        ])?;
    }
    Ok(true)
}

type MessageRow = (String, Vec<u8>, String, String, Vec<u8>, i64, i64);

/// Reads the first seven columns of a message query (id, group, user, device, content, sent_at,
/// received_at).
fn message_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<MessageRow> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
    ))
}

fn message_decode(r: MessageRow) -> Result<StoredMessage, EngineError> {
    let (id, gid, user, device, content, _sent_at, received_at) = r;
    let c = Content::decode(&content).map_err(|_| EngineError::Corrupt("stored content"))?;
    Ok(StoredMessage {
        id: MessageId::new(&id).map_err(|_| EngineError::Corrupt("message id"))?,
        group: GroupId::from_bytes(&gid).map_err(|_| EngineError::Corrupt("group id"))?,
        from: UserName::new(&user).map_err(|_| EngineError::Corrupt("sender"))?,
        from_device: DeviceId::new(&device).map_err(|_| EngineError::Corrupt("sender device"))?,
        body: c.body,
        sent_at: c.sent_at,
        received_at: u64::try_from(received_at).unwrap_or(0),
    })
}

/// The last `limit` messages of a conversation, oldest first.
/// Incoming messages stored after `cursor` (their `seq`), oldest first, at most `limit`, each
/// with its `seq` — what has not been shown yet.
pub(crate) fn messages_after(
    conn: &Connection,
    cursor: i64,
    limit: u32,
) -> Result<Vec<(i64, StoredMessage)>, EngineError> {
    let mut st = conn.prepare_cached(
        "SELECT message_id, group_id, sender_user, sender_device, content, sent_at, received_at, seq
         FROM haven_messages WHERE seq > ?1 AND outgoing = 0 ORDER BY seq LIMIT ?2",
    )?;
    let rows = st.query_map(params![cursor, limit], |r| {
        Ok((r.get::<_, i64>(7)?, message_row(r)?))
    })?;
    let mut out = Vec::new();
    for r in rows {
        let (seq, row) = r?;
        out.push((seq, message_decode(row)?));
    }
    Ok(out)
}

pub(crate) fn history(
    conn: &Connection,
    group: &GroupId,
    limit: u32,
) -> Result<Vec<StoredMessage>, EngineError> {
    let mut st = conn.prepare_cached(
        "SELECT * FROM (
             SELECT message_id, group_id, sender_user, sender_device, content, sent_at,
                    received_at, seq
             FROM haven_messages WHERE group_id = ?1
             ORDER BY received_at DESC, seq DESC LIMIT ?2)
         ORDER BY received_at, seq",
    )?;
    let rows = st.query_map(params![group.as_bytes(), limit], message_row)?;
    let mut out = Vec::new();
    for r in rows {
        out.push(message_decode(r?)?);
    }
    Ok(out)
}

/// Stored messages (either direction) whose sender-chosen id is `id`, optionally only in `group`
/// and/or from `from`, oldest first, at most `limit`. Ids are unique only per (conversation,
/// sender user), so callers must treat more than one result as ambiguous, never pick one.
pub(crate) fn messages_with_id(
    conn: &Connection,
    id: &MessageId,
    group: Option<&GroupId>,
    from: Option<&UserName>,
    limit: u32,
) -> Result<Vec<StoredMessage>, EngineError> {
    let mut st = conn.prepare_cached(
        "SELECT message_id, group_id, sender_user, sender_device, content, sent_at, received_at
         FROM haven_messages
         WHERE message_id = ?1 AND (?2 IS NULL OR group_id = ?2)
             AND (?3 IS NULL OR sender_user = ?3)
         ORDER BY seq LIMIT ?4",
    )?;
    let rows = st.query_map(
        params![
            id.as_str(),
            group.map(GroupId::as_bytes),
            from.map(UserName::as_str),
            limit
        ],
        message_row,
    )?;
    let mut out = Vec::new();
    for r in rows {
        out.push(message_decode(r?)?);
    }
    Ok(out)
}

/// The franking material of a stored message.
pub(crate) fn frank_record(
    conn: &Connection,
    group: &GroupId,
    from: &UserName,
    id: &MessageId,
) -> Result<Option<FrankRecord>, EngineError> {
    Ok(conn
        .prepare_cached(
            "SELECT content, salt, commitment, server_tag FROM haven_messages
             WHERE group_id = ?1 AND sender_user = ?2 AND message_id = ?3",
        )?
        .query_row(params![group.as_bytes(), from.as_str(), id.as_str()], |r| {
            Ok(FrankRecord {
                content: r.get(0)?,
                salt: r.get(1)?,
                commitment: r.get(2)?,
                server_tag: r.get(3)?,
            })
        })
        .optional()?)
}

/// A stored message's franking material with the envelope the server's tag binds: what one
/// message of a report discloses.
#[derive(Clone, PartialEq, Eq)]
pub struct FrankedRow {
    /// The conversation.
    pub group: GroupId,
    /// Sender user.
    pub from: UserName,
    /// Sender device.
    pub from_device: DeviceId,
    /// The server's receive time (bound by its tag).
    pub received_at: Millis,
    /// Whether this device sent it.
    pub outgoing: bool,
    /// The franking material.
    pub frank: FrankRecord,
}

impl std::fmt::Debug for FrankedRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrankedRow")
            .field("group", &self.group)
            .field("from", &self.from)
            .field("from_device", &self.from_device)
            .field("received_at", &self.received_at)
            .field("outgoing", &self.outgoing)
            .field("frank", &self.frank)
            .finish()
    }
}

type FrankedCols = (
    i64,
    Vec<u8>,
    String,
    String,
    i64,
    bool,
    Vec<u8>,
    Vec<u8>,
    Vec<u8>,
    Option<Vec<u8>>,
);

const FRANKED_COLS: &str = "seq, group_id, sender_user, sender_device, received_at, outgoing,
     content, salt, commitment, server_tag";

fn franked_cols(r: &rusqlite::Row<'_>) -> rusqlite::Result<FrankedCols> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
        r.get(7)?,
        r.get(8)?,
        r.get(9)?,
    ))
}

fn franked_decode(c: FrankedCols) -> Result<(i64, FrankedRow), EngineError> {
    let (seq, gid, user, device, received_at, outgoing, content, salt, commitment, server_tag) = c;
    Ok((
        seq,
        FrankedRow {
            group: GroupId::from_bytes(&gid).map_err(|_| EngineError::Corrupt("group id"))?,
            from: UserName::new(&user).map_err(|_| EngineError::Corrupt("sender"))?,
            from_device: DeviceId::new(&device)
                .map_err(|_| EngineError::Corrupt("sender device"))?,
            received_at: u64::try_from(received_at).unwrap_or(0),
            outgoing,
            frank: FrankRecord {
                content,
                salt,
                commitment,
                server_tag,
            },
        },
    ))
}

/// A stored message with its franking material, and its position (`seq`) in receive order.
pub(crate) fn franked_message(
    conn: &Connection,
    group: &GroupId,
    from: &UserName,
    id: &MessageId,
) -> Result<Option<(i64, FrankedRow)>, EngineError> {
    let row = conn
        .prepare_cached(&format!(
            "SELECT {FRANKED_COLS} FROM haven_messages
             WHERE group_id = ?1 AND sender_user = ?2 AND message_id = ?3"
        ))?
        .query_row(
            params![group.as_bytes(), from.as_str(), id.as_str()],
            franked_cols,
        )
        .optional()?;
    row.map(franked_decode).transpose()
}

/// Up to `limit` messages of `group` received before the message at (`received_at`, `seq`)
/// that carry a server tag (the nearest ones), oldest first: a report's context.
pub(crate) fn franked_before(
    conn: &Connection,
    group: &GroupId,
    received_at: Millis,
    seq: i64,
    limit: u32,
) -> Result<Vec<FrankedRow>, EngineError> {
    let mut st = conn.prepare_cached(&format!(
        "SELECT {FRANKED_COLS} FROM haven_messages
         WHERE group_id = ?1 AND server_tag IS NOT NULL
             AND (received_at < ?2 OR (received_at = ?2 AND seq < ?3))
         ORDER BY received_at DESC, seq DESC LIMIT ?4"
    ))?;
    let rows = st.query_map(
        params![
            group.as_bytes(),
            i64::try_from(received_at).unwrap_or(i64::MAX),
            seq,
            limit
        ],
        franked_cols,
    )?;
    let mut out = Vec::new();
    for r in rows {
        out.push(franked_decode(r?)?.1);
    }
    out.reverse();
    Ok(out)
}

pub(crate) fn is_processed(conn: &Connection, queue_id: i64) -> Result<bool, EngineError> {
    Ok(conn
        .prepare_cached("SELECT 1 FROM haven_processed WHERE queue_id = ?1")?
        .query_row([queue_id], |_| Ok(()))
        .optional()?
        .is_some())
}

pub(crate) fn mark_processed(
    conn: &Connection,
    queue_id: i64,
    kind: &str,
    outcome: &str,
    now: Millis,
) -> Result<(), EngineError> {
    conn.prepare_cached(
        "INSERT INTO haven_processed (queue_id, kind, outcome, processed_at)
         VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![
        queue_id,
        kind,
        outcome,
        i64::try_from(now).unwrap_or(i64::MAX)
    ])?;
    Ok(())
}

/// The outcome recorded for a processed queue id (for tests and diagnostics).
pub(crate) fn processed_outcome(
    conn: &Connection,
    queue_id: i64,
) -> Result<Option<String>, EngineError> {
    Ok(conn
        .prepare_cached("SELECT outcome FROM haven_processed WHERE queue_id = ?1")?
        .query_row([queue_id], |r| r.get(0))
        .optional()?)
}

/// Remembers the commit staged for a group until it is merged or cleared, so that after a crash
/// or a lost answer it can be resubmitted as the same bytes (see `Client::settle_pending_commits`).
pub(crate) fn pending_commit_put(
    conn: &Connection,
    c: &crate::engine::OutgoingCommit,
) -> Result<(), EngineError> {
    let ids = |v: &[DeviceId]| {
        serde_json::to_string(&v.iter().map(DeviceId::as_str).collect::<Vec<_>>())
            .map_err(|_| EngineError::Internal("device ids as JSON"))
    };
    conn.prepare_cached(
        "INSERT OR REPLACE INTO haven_pending_commits (group_id, epoch, body, welcome, added, removed)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        c.group_id.as_bytes(),
        i64::try_from(c.epoch).map_err(|_| EngineError::Internal("epoch"))?,
        c.commit,
        c.welcome,
        ids(&c.added)?,
        ids(&c.removed)?
    ])?;
    Ok(())
}

pub(crate) fn pending_commit_delete(conn: &Connection, group: &GroupId) -> Result<(), EngineError> {
    conn.prepare_cached("DELETE FROM haven_pending_commits WHERE group_id = ?1")?
        .execute([group.as_bytes()])?;
    Ok(())
}

pub(crate) fn pending_commit_list(
    conn: &Connection,
) -> Result<Vec<crate::engine::OutgoingCommit>, EngineError> {
    let mut st = conn.prepare_cached(
        "SELECT group_id, epoch, body, welcome, added, removed FROM haven_pending_commits",
    )?;
    let rows = st.query_map([], |r| {
        Ok((
            r.get::<_, Vec<u8>>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, Vec<u8>>(2)?,
            r.get::<_, Option<Vec<u8>>>(3)?,
            r.get::<_, String>(4)?,
            r.get::<_, String>(5)?,
        ))
    })?;
    let ids = |s: &str| -> Result<Vec<DeviceId>, EngineError> {
        let v: Vec<String> =
            serde_json::from_str(s).map_err(|_| EngineError::Corrupt("pending commit"))?;
        v.iter()
            .map(|d| DeviceId::new(d).map_err(|_| EngineError::Corrupt("pending commit")))
            .collect()
    };
    let mut out = Vec::new();
    for row in rows {
        let (g, epoch, commit, welcome, added, removed) = row?;
        out.push(crate::engine::OutgoingCommit {
            group_id: GroupId::from_bytes(&g)
                .map_err(|_| EngineError::Corrupt("pending commit"))?,
            epoch: u64::try_from(epoch).map_err(|_| EngineError::Corrupt("pending commit"))?,
            commit,
            welcome,
            added: ids(&added)?,
            removed: ids(&removed)?,
        });
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// A profile written by schema version 1 (before conversations had consent or announced
    /// names) upgrades in place: its direct chats count as accepted.
    #[test]
    fn version_1_profiles_upgrade_and_their_direct_chats_count_as_accepted() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(SCHEMA_V1).unwrap();
        meta_put(&conn, "schema_version", b"1").unwrap();
        let (d, g) = ([1u8; 16], [2u8; 16]);
        conn.execute(
            "INSERT INTO haven_conversations (group_id, kind, peer, name, state, created_at)
             VALUES (?1, 'direct', 'bob', NULL, 'active', 1), (?2, 'group', NULL, 'family', 'left', 2)",
            params![d.as_slice(), g.as_slice()],
        )
        .unwrap();
        migrate(&conn).unwrap();
        migrate(&conn).unwrap();
        assert_eq!(schema_version(&conn).unwrap(), Some(SCHEMA_VERSION));
        let all = conversation_list(&conn).unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(
            all[0].kind,
            ConversationKind::Direct {
                peer: UserName::new("bob").unwrap(),
                accepted: true
            }
        );
        assert_eq!(all[0].added_by, None);
        assert_eq!(all[1].kind, ConversationKind::group("family"));
        assert_eq!(all[1].state, ConversationState::Left);
        // The new state is storable; the id index exists.
        conversation_set_state(&conn, &all[1].group_id, ConversationState::Invited).unwrap();
        assert_eq!(
            conversation_get(&conn, &all[1].group_id)
                .unwrap()
                .unwrap()
                .state,
            ConversationState::Invited
        );
        let n: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE name = 'haven_messages_by_id'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(n, 1);
        // A profile from a newer version is refused, not guessed at.
        meta_put(&conn, "schema_version", b"99").unwrap();
        assert!(matches!(migrate(&conn), Err(EngineError::Corrupt(_))));
    }
}
