//! The known-image store: hash banks and their entries, removals, the voucher database's
//! releases and each device's opened voucher shares. Both backends implement [`PsiStore`] in
//! this folder (`sqlite.rs`, `postgres.rs`) and run the cases in `conformance.rs`. Every method
//! is one transaction; the ones that take an [`AuditLine`] write it in that transaction.

use async_trait::async_trait;
use haven_proto::{DeviceId, UserName};

use crate::moderation::AuditLine;
use crate::store::{corrupt, Millis, StoreResult};

/// What a bank entry hashes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EntryKind {
    /// A PDQ perceptual hash (32 bytes).
    Pdq,
    /// MD5 of the file (16 bytes; the clearing house's lists use it).
    Md5,
    /// SHA-256 of the file (32 bytes).
    Sha256,
}

impl EntryKind {
    /// Every kind.
    pub const ALL: [EntryKind; 3] = [EntryKind::Pdq, EntryKind::Md5, EntryKind::Sha256];

    /// The stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            EntryKind::Pdq => "pdq",
            EntryKind::Md5 => "md5",
            EntryKind::Sha256 => "sha256",
        }
    }

    /// Parses the stable name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The hash's length in bytes.
    pub fn hash_len(self) -> usize {
        match self {
            EntryKind::Pdq | EntryKind::Sha256 => 32,
            EntryKind::Md5 => 16,
        }
    }
}

/// What a bank is used for; each can be switched on and off without deleting anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BankUse {
    /// The safety-voucher database (end-to-end encrypted attachments).
    Vouchers,
    /// Matching on unencrypted surfaces (profile photos, reported attachments).
    Surfaces,
}

impl BankUse {
    /// The stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            BankUse::Vouchers => "vouchers",
            BankUse::Surfaces => "surfaces",
        }
    }

    /// Parses the stable name.
    pub fn parse(s: &str) -> Option<Self> {
        [BankUse::Vouchers, BankUse::Surfaces]
            .into_iter()
            .find(|u| u.as_str() == s)
    }
}

/// A bank to create (disabled for every use until enabled).
#[derive(Debug, Clone)]
pub struct NewBank {
    /// Its name (`[a-z0-9_-]`, 1–64).
    pub name: String,
    /// What it holds, where it comes from.
    pub description: String,
    /// How many distinct sources must have added an entry before it is used.
    pub min_sources: u32,
    /// When.
    pub created_at: Millis,
}

/// A bank as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BankRow {
    /// Name.
    pub name: String,
    /// Description.
    pub description: String,
    /// Sources an entry needs.
    pub min_sources: u32,
    /// Used for the voucher database.
    pub for_vouchers: bool,
    /// Used on unencrypted surfaces.
    pub for_surfaces: bool,
    /// Created.
    pub created_at: Millis,
    /// Distinct entries (kind, hash), removed ones included.
    pub entries: u64,
    /// Entries the policy accepts (enough sources, not removed).
    pub accepted: u64,
    /// Entries removed.
    pub removed: u64,
}

/// One hash to add.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEntry {
    /// Its kind.
    pub kind: EntryKind,
    /// The hash ([`EntryKind::hash_len`] bytes).
    pub hash: Vec<u8>,
}

/// An entry the bank's policy accepts, for a use that bank is enabled for.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct AcceptedEntry {
    /// The bank.
    pub bank: String,
    /// Its kind.
    pub kind: EntryKind,
    /// The hash.
    pub hash: Vec<u8>,
}

/// A database release to store.
#[derive(Debug, Clone)]
pub struct NewRelease {
    /// Its number, as its signed header states it: the next one, or the write is refused.
    pub release: u64,
    /// The release's random id (`haven_psi::DbHeader::db_id`).
    pub db_id: [u8; 16],
    /// SHA-256 root of the database (what the release signs).
    pub root: [u8; 32],
    /// The signed release (`haven_psi::SignedRelease::encode`).
    pub signed: Vec<u8>,
    /// The database clients download (`haven_psi::PublicDb::encode`).
    pub db: Vec<u8>,
    /// The release's server key, sealed under the evidence key.
    pub server_key: Vec<u8>,
    /// Bank entries it holds.
    pub entries: u64,
    /// Distinct match keys in its table.
    pub match_keys: u64,
    /// Which banks, with their entry counts (`name:count,…`).
    pub banks: String,
    /// When.
    pub created_at: Millis,
}

/// A stored release, without its database bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseRow {
    /// Its number (1, 2, …).
    pub release: u64,
    /// Its id.
    pub db_id: [u8; 16],
    /// Its root.
    pub root: [u8; 32],
    /// The signed release.
    pub signed: Vec<u8>,
    /// Bank entries.
    pub entries: u64,
    /// Distinct match keys.
    pub match_keys: u64,
    /// Banks and counts.
    pub banks: String,
    /// Size of the database in bytes.
    pub db_bytes: u64,
    /// When.
    pub created_at: Millis,
}

/// An opened voucher share, kept per device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredShare {
    /// The account.
    pub user: UserName,
    /// The device whose voucher it was.
    pub device: DeviceId,
    /// The share's x-coordinate (one per image).
    pub x: [u8; 32],
    /// `haven_psi::OpenedShare::encode`.
    pub share: Vec<u8>,
    /// The upload it came with.
    pub blob_id: String,
    /// The release it was made for.
    pub release: u64,
    /// When.
    pub created_at: Millis,
    /// The case it was revealed in, once it was.
    pub case_id: Option<String>,
}

/// Storage for known-image detection.
#[async_trait]
pub trait PsiStore: Send + Sync {
    /// Creates a bank. `AlreadyExists("bank")` if the name is taken.
    async fn create_bank(&self, bank: &NewBank, audit: &AuditLine) -> StoreResult<()>;
    /// Every bank, by name, with its counts.
    async fn banks(&self) -> StoreResult<Vec<BankRow>>;
    /// Switches a use of a bank on or off; true if that changed anything. `NotFound("bank")`.
    async fn set_bank_use(
        &self,
        bank: &str,
        use_: BankUse,
        on: bool,
        audit: &AuditLine,
    ) -> StoreResult<bool>;
    /// Adds entries as `source` added them; an entry the same source added before is not
    /// added again. Returns how many rows were new. `NotFound("bank")`.
    async fn add_bank_entries(
        &self,
        bank: &str,
        source: &str,
        entries: &[NewEntry],
        at: Millis,
        audit: &AuditLine,
    ) -> StoreResult<u64>;
    /// Removes an entry from use, recording why; true if the bank holds it and it was not
    /// removed already. `NotFound("bank")`.
    async fn remove_bank_entry(
        &self,
        bank: &str,
        entry: &NewEntry,
        reason: &str,
        at: Millis,
        audit: &AuditLine,
    ) -> StoreResult<bool>;
    /// The entries of the banks enabled for `use_` that their policy accepts (at least
    /// `min_sources` distinct sources, not removed), sorted, one per (bank, kind, hash).
    async fn accepted_entries(&self, use_: BankUse) -> StoreResult<Vec<AcceptedEntry>>;
    /// Stores a release under its number, which must be the next one (one more than the
    /// newest stored); `AlreadyExists("release")` and nothing written otherwise (another
    /// release was stored since this one was numbered).
    async fn put_release(&self, release: &NewRelease, audit: &AuditLine) -> StoreResult<u64>;
    /// The newest releases first, at most `limit`.
    async fn releases(&self, limit: u32) -> StoreResult<Vec<ReleaseRow>>;
    /// One release's database bytes.
    async fn release_db(&self, release: u64) -> StoreResult<Option<Vec<u8>>>;
    /// A release's number and sealed server key, by its id.
    async fn release_key(&self, db_id: &[u8; 16]) -> StoreResult<Option<(u64, Vec<u8>)>>;
    /// Keeps an opened share; false (and nothing written) if the device already has a share
    /// with this x (the same image again). `NotFound("user")` for an unknown account.
    async fn put_share(&self, share: &StoredShare) -> StoreResult<bool>;
    /// The device's shares, oldest first, at most `limit`.
    async fn device_shares(
        &self,
        user: &UserName,
        device: &DeviceId,
        limit: u32,
    ) -> StoreResult<Vec<StoredShare>>;
    /// Records that these shares were revealed in `case`.
    async fn mark_revealed(
        &self,
        user: &UserName,
        device: &DeviceId,
        xs: &[[u8; 32]],
        case: &str,
    ) -> StoreResult<()>;
}

/// A release row read back: (release, db_id, root, signed, entries, match_keys, banks,
/// db_bytes, created_at).
pub(crate) type RawRelease = (i64, Vec<u8>, Vec<u8>, Vec<u8>, i64, i64, String, i64, i64);

pub(crate) fn release_from_row(
    (release, db_id, root, signed, entries, match_keys, banks, db_bytes, created_at): RawRelease,
) -> StoreResult<ReleaseRow> {
    let u = |v: i64, what| u64::try_from(v).map_err(|_| corrupt(what));
    Ok(ReleaseRow {
        release: u(release, "release number")?,
        db_id: db_id.try_into().map_err(|_| corrupt("release id"))?,
        root: root.try_into().map_err(|_| corrupt("release root"))?,
        signed,
        entries: u(entries, "release entries")?,
        match_keys: u(match_keys, "release keys")?,
        banks,
        db_bytes: u(db_bytes, "release size")?,
        created_at,
    })
}

/// A share row read back: (device, x, share, blob_id, release, created_at, case_id).
pub(crate) type RawShare = (String, Vec<u8>, Vec<u8>, String, i64, i64, Option<String>);

pub(crate) fn share_from_row(
    user: &UserName,
    (device, x, share, blob_id, release, created_at, case_id): RawShare,
) -> StoreResult<StoredShare> {
    Ok(StoredShare {
        user: user.clone(),
        device: DeviceId::new(&device).map_err(|_| corrupt("share device"))?,
        x: x.try_into().map_err(|_| corrupt("share x"))?,
        share,
        blob_id,
        release: u64::try_from(release).map_err(|_| corrupt("share release"))?,
        created_at,
        case_id,
    })
}

/// A bank row read back: (name, description, min_sources, for_vouchers, for_surfaces,
/// created_at, entries, accepted, removed).
pub(crate) type RawBank = (String, String, i64, bool, bool, i64, i64, i64, i64);

pub(crate) fn bank_from_row(
    (
        name,
        description,
        min_sources,
        for_vouchers,
        for_surfaces,
        created_at,
        entries,
        accepted,
        removed,
    ): RawBank,
) -> StoreResult<BankRow> {
    let u = |v: i64, what| u64::try_from(v).map_err(|_| corrupt(what));
    Ok(BankRow {
        name,
        description,
        min_sources: u32::try_from(min_sources).map_err(|_| corrupt("bank min_sources"))?,
        for_vouchers,
        for_surfaces,
        created_at,
        entries: u(entries, "bank entries")?,
        accepted: u(accepted, "bank accepted")?,
        removed: u(removed, "bank removed")?,
    })
}

/// The SQL for a bank's counts, shared by both backends (`?` placeholders are not used).
pub(crate) const BANKS_SQL: &str = "
    SELECT b.name, b.description, b.min_sources, b.for_vouchers, b.for_surfaces, b.created_at,
      (SELECT COUNT(*) FROM (SELECT DISTINCT kind, hash FROM bank_entries e
         WHERE e.bank = b.name) d),
      (SELECT COUNT(*) FROM (SELECT e.kind, e.hash FROM bank_entries e
         WHERE e.bank = b.name
           AND NOT EXISTS (SELECT 1 FROM bank_removals r
             WHERE r.bank = e.bank AND r.kind = e.kind AND r.hash = e.hash)
         GROUP BY e.kind, e.hash HAVING COUNT(DISTINCT e.source) >= b.min_sources) a),
      (SELECT COUNT(*) FROM bank_removals r WHERE r.bank = b.name)
    FROM hash_banks b ORDER BY b.name";

/// The SQL for the accepted entries of banks enabled for a use (`$column` is `for_vouchers`
/// or `for_surfaces`, fixed at compile time, never input).
macro_rules! accepted_sql_for {
    ($column:literal) => {
        concat!(
            "SELECT e.bank, e.kind, e.hash FROM bank_entries e JOIN hash_banks b ON b.name = e.bank
         WHERE b.",
            $column,
            "
           AND NOT EXISTS (SELECT 1 FROM bank_removals r
             WHERE r.bank = e.bank AND r.kind = e.kind AND r.hash = e.hash)
         GROUP BY e.bank, e.kind, e.hash
         HAVING COUNT(DISTINCT e.source) >= MIN(b.min_sources)
         ORDER BY e.bank, e.kind, e.hash"
        )
    };
}

/// The accepted-entries query for `use_`.
pub(crate) fn accepted_sql(use_: BankUse) -> &'static str {
    match use_ {
        BankUse::Vouchers => accepted_sql_for!("for_vouchers"),
        BankUse::Surfaces => accepted_sql_for!("for_surfaces"),
    }
}

/// An accepted-entry row read back.
pub(crate) fn accepted_from_row(
    (bank, kind, hash): (String, String, Vec<u8>),
) -> StoreResult<AcceptedEntry> {
    Ok(AcceptedEntry {
        bank,
        kind: EntryKind::parse(&kind).ok_or_else(|| corrupt("bank entry kind"))?,
        hash,
    })
}
