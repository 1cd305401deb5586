//! Haven's own tables in the profile database (`<home>/haven.db`), next to openmls's tables.
//!
//! Every function takes a `&Connection`, which is in practice the engine's open transaction, so
//! these rows commit or roll back together with openmls's group state.
//!
//! | table | holds |
//! |---|---|
//! | `haven_meta` | schema version, identity, MLS signature public key, session token |
//! | `haven_conversations` | one row per MLS group: kind, peer or name, state |
//! | `haven_messages` | history, with the franking material a report needs |
//! | `haven_attachments` | attachment metadata of stored messages |
//! | `haven_processed` | queue ids already processed (redelivery is a no-op) |

use haven_proto::api::Millis;
use haven_proto::{DeviceId, GroupId, UserName};
use rusqlite::{params, Connection, OptionalExtension};

use crate::content::{Body, Content, MessageId};
use crate::error::EngineError;

/// Version of Haven's schema in this file.
pub const SCHEMA_VERSION: i64 = 1;

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

/// Creates Haven's tables, or checks their version.
pub(crate) fn migrate(conn: &Connection) -> Result<(), EngineError> {
    conn.execute_batch(SCHEMA_V1)?;
    match meta_get(conn, "schema_version")? {
        None => meta_put(
            conn,
            "schema_version",
            SCHEMA_VERSION.to_string().as_bytes(),
        ),
        Some(v) if v == SCHEMA_VERSION.to_string().as_bytes() => Ok(()),
        Some(_) => Err(EngineError::Corrupt("unknown Haven schema version")),
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

/// What a conversation is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConversationKind {
    /// A 1:1 chat (a two-user MLS group; each user may have several devices).
    Direct {
        /// The other user.
        peer: UserName,
    },
    /// A named group.
    Group {
        /// Its name (empty until a `GroupName` control message arrives for a joined group).
        name: String,
    },
}

/// Whether we are still in a conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConversationState {
    /// A member.
    Active,
    /// We sent our Remove proposal; no more sending here.
    Left,
    /// A commit removed us.
    Removed,
}

impl ConversationState {
    fn as_str(self) -> &'static str {
        match self {
            ConversationState::Active => "active",
            ConversationState::Left => "left",
            ConversationState::Removed => "removed",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "active" => ConversationState::Active,
            "left" => ConversationState::Left,
            "removed" => ConversationState::Removed,
            _ => return None,
        })
    }
}

/// A conversation as stored locally.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conversation {
    /// The MLS group id.
    pub group_id: GroupId,
    /// Direct or group.
    pub kind: ConversationKind,
    /// Member, left or removed.
    pub state: ConversationState,
    /// When we created or joined it (ms).
    pub created_at: Millis,
}

/// A raw `haven_conversations` row.
type ConvRow = (Vec<u8>, String, Option<String>, Option<String>, String, i64);

fn conv_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ConvRow> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
    ))
}

fn conv_decode(row: ConvRow) -> Result<Conversation, EngineError> {
    let (gid, kind, peer, name, state, created_at) = row;
    let group_id = GroupId::from_bytes(&gid).map_err(|_| EngineError::Corrupt("group id"))?;
    let kind = match (kind.as_str(), peer, name) {
        ("direct", Some(p), _) => ConversationKind::Direct {
            peer: UserName::new(&p).map_err(|_| EngineError::Corrupt("peer"))?,
        },
        ("group", _, n) => ConversationKind::Group {
            name: n.unwrap_or_default(),
        },
        _ => return Err(EngineError::Corrupt("conversation kind")),
    };
    let state =
        ConversationState::parse(&state).ok_or(EngineError::Corrupt("conversation state"))?;
    Ok(Conversation {
        group_id,
        kind,
        state,
        created_at: u64::try_from(created_at).unwrap_or(0),
    })
}

/// `SELECT <the columns conv_from_row reads> FROM haven_conversations <rest>`, built at compile
/// time (conversation lookups run for every entry processed).
macro_rules! conv_select {
    ($rest:literal) => {
        concat!(
            "SELECT group_id, kind, peer, name, state, created_at FROM haven_conversations ",
            $rest
        )
    };
}

pub(crate) fn conversation_put(conn: &Connection, c: &Conversation) -> Result<(), EngineError> {
    let (kind, peer, name) = match &c.kind {
        ConversationKind::Direct { peer } => ("direct", Some(peer.as_str()), None),
        ConversationKind::Group { name } => ("group", None, Some(name.as_str())),
    };
    conn.prepare_cached(
        "INSERT INTO haven_conversations (group_id, kind, peer, name, state, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (group_id) DO UPDATE SET kind = excluded.kind, peer = excluded.peer,
             name = excluded.name, state = excluded.state",
    )?
    .execute(params![
        c.group_id.as_bytes(),
        kind,
        peer,
        name,
        c.state.as_str(),
        i64::try_from(c.created_at).unwrap_or(i64::MAX)
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
