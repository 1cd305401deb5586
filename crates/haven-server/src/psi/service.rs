//! The known-image service: bank administration and database releases (for `haven admin`,
//! on the store directly), the public release endpoints, and the voucher that comes with
//! every upload — checked before the upload is read, opened, kept when it opens, and counted
//! towards the threshold.

use std::collections::HashMap;
use std::io::BufRead;
use std::sync::{Arc, Mutex};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ed25519_dalek::SigningKey;
use haven_content::attachment::{self, AttachmentKey, VoucherPayload};
use haven_proto::api;
use haven_proto::moderation::{
    AttachmentEvidence, CaseSource, EvidenceFile, EvidenceMessage, ReportReason,
};
use haven_proto::BlobId;
use haven_psi::keys::{entry_keys, EntryHash, SCHEME_1_KEYS};
use haven_psi::{
    reconstruct, OpenedShare, Params, PublicDb, Reconstruction, ServerKey, SignedRelease, Voucher,
};
use sha2::{Digest, Sha256};

use super::store::{
    AcceptedEntry, BankRow, BankUse, EntryKind, NewBank, NewEntry, NewRelease, ReleaseRow,
    StoredShare,
};
use crate::moderation::service::priority;
use crate::moderation::store::NewCase;
use crate::moderation::{AuditLine, EvidenceKey};
use crate::service::{now_ms, random_hex, Authed, Service, ServiceError, ServiceResult};
use crate::store::{Store, StoreError};

/// The `server_secrets` name of the release signing key (sealed under the evidence key).
pub const SIGNING_SECRET: &str = "psi-release-signing-key";
/// Releases a voucher may be made for: the newest and the one before it (clients that have
/// not fetched the newest yet keep working for one release).
pub const ACCEPTED_RELEASES: u32 = 2;
/// The default match threshold (Apple's published figure).
pub const DEFAULT_THRESHOLD: u16 = 30;
/// The default synthetic rate: 1 voucher in 1,024 (in units of 2^-32). Each synthetic share
/// an account holds raises the matches it takes to decode by one (`haven_psi` docs,
/// departure 5), so the rate is kept low: 10 in an account's first 10,000 files.
pub const DEFAULT_SYNTHETIC_RATE: u32 = 1 << 22;
/// The default keys per voucher: scheme 1's three (SHA-256, MD5, PDQ).
pub const DEFAULT_KEYS_PER_VOUCHER: u8 = SCHEME_1_KEYS;
/// Longest bank description and removal reason.
pub const MAX_TEXT: usize = 1000;

/// What the operator chose for a release.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReleaseParams {
    /// Distinct matching images an account's device must send before any is revealed.
    pub threshold: u16,
    /// Probability of a synthetic voucher, in units of 2^-32.
    pub synthetic_rate: u32,
    /// Keys every voucher carries (at least [`SCHEME_1_KEYS`]).
    pub keys_per_voucher: u8,
}

impl Default for ReleaseParams {
    fn default() -> Self {
        ReleaseParams {
            threshold: DEFAULT_THRESHOLD,
            synthetic_rate: DEFAULT_SYNTHETIC_RATE,
            keys_per_voucher: DEFAULT_KEYS_PER_VOUCHER,
        }
    }
}

/// Why a bank command or a release failed.
#[derive(Debug, thiserror::Error)]
pub enum BankError {
    /// Bad input (a name, a hash, a file).
    #[error("{0}")]
    Input(String),
    /// The store failed or refused.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The voucher protocol refused.
    #[error("voucher database: {0}")]
    Psi(#[from] haven_psi::PsiError),
}

/// Checks a bank name: 1–64 of `a-z 0-9 _ -`.
pub fn check_bank_name(name: &str) -> Result<(), BankError> {
    if name.is_empty()
        || name.len() > 64
        || !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
    {
        return Err(BankError::Input(format!(
            "bad bank name {name:?}: 1–64 of a-z, 0-9, _ and -"
        )));
    }
    Ok(())
}

fn check_text(what: &str, t: &str) -> Result<(), BankError> {
    if t.len() > MAX_TEXT || t.chars().any(|c| c.is_control()) {
        return Err(BankError::Input(format!(
            "{what} must be at most {MAX_TEXT} bytes without control characters"
        )));
    }
    Ok(())
}

fn admin_line(action: &str, detail: String) -> AuditLine {
    AuditLine {
        actor: "admin-cli".into(),
        action: action.into(),
        case: None,
        detail,
        at: now_ms(),
    }
}

/// Creates a bank (disabled for every use until enabled).
pub async fn create_bank(
    store: &dyn Store,
    name: &str,
    description: &str,
    min_sources: u32,
) -> Result<(), BankError> {
    check_bank_name(name)?;
    check_text("the description", description)?;
    if min_sources == 0 || min_sources > 100 {
        return Err(BankError::Input("--min-sources must be 1–100".into()));
    }
    let bank = NewBank {
        name: name.into(),
        description: description.into(),
        min_sources,
        created_at: now_ms(),
    };
    let line = admin_line(
        "bank.create",
        format!("{name}; entries need {min_sources} source(s)"),
    );
    store.create_bank(&bank, &line).await.map_err(|e| match e {
        StoreError::AlreadyExists(_) => BankError::Input(format!("a bank named {name} exists")),
        e => e.into(),
    })
}

/// Parses one hash in hex.
pub fn parse_hash(kind: EntryKind, text: &str) -> Result<Vec<u8>, BankError> {
    let t = text.trim();
    let bytes = hex::decode(t)
        .ok()
        .filter(|b| b.len() == kind.hash_len())
        .ok_or_else(|| {
            BankError::Input(format!(
                "{t:?} is not a {} hash ({} hex digits)",
                kind.as_str(),
                kind.hash_len() * 2
            ))
        })?;
    Ok(bytes)
}

/// What an import file held.
#[derive(Debug, Default)]
pub struct Parsed {
    /// The distinct entries.
    pub entries: Vec<NewEntry>,
    /// Lines that are not entries (line number, why), at most the first 100.
    pub invalid: Vec<(u64, String)>,
    /// How many lines were invalid.
    pub invalid_count: u64,
}

/// Parses an import file: PDQ through `haven-pdq`'s list formats (bare hex or CSV with a
/// header); MD5 and SHA-256 as one hash per line, or the first field of a CSV line. Blank
/// lines and `#` comments are skipped; invalid lines are reported and skipped.
pub fn parse_entries<R: BufRead>(kind: EntryKind, reader: R) -> Result<Parsed, BankError> {
    let mut out = Parsed::default();
    match kind {
        EntryKind::Pdq => {
            let parsed = haven_pdq::hashlist::parse_list(
                reader,
                haven_pdq::hashlist::InvalidLinePolicy::Skip,
            )
            .map_err(|e| BankError::Input(e.to_string()))?;
            for id in 0..parsed.list.len() {
                let Some(h) = u32::try_from(id).ok().and_then(|i| parsed.list.hash(i)) else {
                    continue;
                };
                out.entries.push(NewEntry {
                    kind,
                    hash: h.0.to_vec(),
                });
            }
            out.invalid_count = parsed.invalid_count;
            out.invalid = parsed
                .invalid
                .iter()
                .take(100)
                .map(|l| (l.line, l.problem.to_string()))
                .collect();
        }
        EntryKind::Md5 | EntryKind::Sha256 => {
            let mut seen = std::collections::HashSet::new();
            for (n, line) in reader.lines().enumerate() {
                let n = n as u64 + 1;
                let line = line.map_err(|e| BankError::Input(format!("line {n}: {e}")))?;
                let t = line.trim();
                if t.is_empty() || t.starts_with('#') {
                    continue;
                }
                let field = t.split(',').next().unwrap_or("").trim().trim_matches('"');
                if n == 1
                    && ["hash", "md5", "sha256"].contains(&field.to_ascii_lowercase().as_str())
                {
                    continue;
                }
                match parse_hash(kind, &field.to_ascii_lowercase()) {
                    Ok(h) => {
                        if seen.insert(h.clone()) {
                            out.entries.push(NewEntry { kind, hash: h });
                        }
                    }
                    Err(e) => {
                        out.invalid_count += 1;
                        if out.invalid.len() < 100 {
                            out.invalid.push((n, e.to_string()));
                        }
                    }
                }
            }
        }
    }
    Ok(out)
}

/// Adds parsed entries to a bank as `source` added them; returns how many were new.
pub async fn import(
    store: &dyn Store,
    bank: &str,
    source: &str,
    entries: &[NewEntry],
) -> Result<u64, BankError> {
    check_bank_name(bank)?;
    if source.is_empty() {
        return Err(BankError::Input("--source must not be empty".into()));
    }
    check_text("the source", source)?;
    let line = admin_line(
        "bank.import",
        format!("{bank}: {} entries from {source:?}", entries.len()),
    );
    store
        .add_bank_entries(bank, source, entries, now_ms(), &line)
        .await
        .map_err(|e| match e {
            StoreError::NotFound(_) => BankError::Input(format!("no bank named {bank}")),
            e => e.into(),
        })
}

/// Switches a use of a bank; true if it changed.
pub async fn set_use(
    store: &dyn Store,
    bank: &str,
    use_: BankUse,
    on: bool,
) -> Result<bool, BankError> {
    let line = admin_line(
        if on { "bank.enable" } else { "bank.disable" },
        format!("{bank} for {}", use_.as_str()),
    );
    store
        .set_bank_use(bank, use_, on, &line)
        .await
        .map_err(|e| match e {
            StoreError::NotFound(_) => BankError::Input(format!("no bank named {bank}")),
            e => e.into(),
        })
}

/// Removes an entry from use (recorded with the reason); true if it was in use.
pub async fn remove(
    store: &dyn Store,
    bank: &str,
    entry: &NewEntry,
    reason: &str,
) -> Result<bool, BankError> {
    check_text("the reason", reason)?;
    let line = admin_line(
        "bank.remove",
        format!(
            "{bank}: {} {} ({reason})",
            entry.kind.as_str(),
            hex::encode(&entry.hash)
        ),
    );
    store
        .remove_bank_entry(bank, entry, reason, now_ms(), &line)
        .await
        .map_err(|e| match e {
            StoreError::NotFound(_) => BankError::Input(format!("no bank named {bank}")),
            e => e.into(),
        })
}

/// Every bank with its counts.
pub async fn list(store: &dyn Store) -> Result<Vec<BankRow>, BankError> {
    Ok(store.banks().await?)
}

/// The release signing key: made on first use, kept in `server_secrets` sealed under the
/// evidence key (every node has the evidence key file; the insert-if-absent decides a race).
pub async fn signing_key(store: &dyn Store, ek: &EvidenceKey) -> Result<SigningKey, BankError> {
    let mut seed = zeroize::Zeroizing::new([0u8; 32]);
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, seed.as_mut_slice());
    let fresh = ek.seal("psi", "release-signing-key", seed.as_slice());
    let stored = store.server_secret(SIGNING_SECRET, &fresh).await?;
    open_signing_key(ek, &stored)
}

/// Opens the stored release signing key.
fn open_signing_key(ek: &EvidenceKey, stored: &[u8]) -> Result<SigningKey, BankError> {
    let opened = ek.open("psi", "release-signing-key", stored).map_err(|_| {
        BankError::Input("the release signing key does not open under this evidence key".into())
    })?;
    let seed: [u8; 32] = opened
        .as_slice()
        .try_into()
        .map_err(|_| BankError::Input("the stored release signing key is malformed".into()))?;
    Ok(SigningKey::from_bytes(&seed))
}

/// What a release build did.
#[derive(Debug, Clone)]
pub struct Released {
    /// The stored release.
    pub row: ReleaseRow,
    /// How long building and signing took.
    pub build: std::time::Duration,
}

/// Builds, signs and stores the next release from the entries the enabled banks accept.
pub async fn release(
    store: &dyn Store,
    ek: &EvidenceKey,
    params: ReleaseParams,
) -> Result<Released, BankError> {
    if usize::from(params.keys_per_voucher) < usize::from(SCHEME_1_KEYS) {
        return Err(BankError::Input(format!(
            "keys per voucher must be at least {SCHEME_1_KEYS}"
        )));
    }
    let signing = signing_key(store, ek).await?;
    let accepted = store.accepted_entries(BankUse::Vouchers).await?;
    let prev = store.releases(1).await?;
    let number = prev.first().map_or(1, |r| r.release + 1);
    let mut per_bank: std::collections::BTreeMap<&str, u64> = Default::default();
    let mut keys = Vec::with_capacity(accepted.len());
    for e in &accepted {
        *per_bank.entry(e.bank.as_str()).or_default() += 1;
        keys.extend(keys_of(e)?);
    }
    let banks = per_bank
        .iter()
        .map(|(b, n)| format!("{b}:{n}"))
        .collect::<Vec<_>>()
        .join(",");
    let entries = accepted.len() as u64;
    let started = std::time::Instant::now();
    let p = Params {
        threshold: params.threshold,
        keys_per_voucher: params.keys_per_voucher,
        synthetic_rate: params.synthetic_rate,
    };
    let (built, signed) = crate::service::blocking(move || {
        let built = PublicDb::build(&keys, p, number, &mut rand::rngs::OsRng)?;
        let signed = built.db.sign(&signing);
        Ok::<_, haven_psi::PsiError>((built, signed))
    })
    .await
    .map_err(|e| BankError::Input(e.to_string()))??;
    let build = started.elapsed();
    let db_id = built.db.header().db_id;
    let id_hex = hex::encode(db_id);
    let new = NewRelease {
        release: number,
        db_id,
        root: built.db.root(),
        signed: signed.encode(),
        db: built.db.encode(),
        server_key: ek.seal(&id_hex, "psi-key", &built.key.to_bytes()),
        entries,
        match_keys: built.distinct_keys as u64,
        banks: banks.clone(),
        created_at: now_ms(),
    };
    let line = admin_line(
        "psi.release",
        format!(
            "release {number}: root {}, {entries} entries ({banks}), threshold {}",
            hex::encode(new.root),
            params.threshold
        ),
    );
    let stored = store.put_release(&new, &line).await.map_err(|e| match e {
        StoreError::AlreadyExists(_) => BankError::Input(format!(
            "another release was stored while release {number} was being built; run again"
        )),
        e => e.into(),
    })?;
    let row = store
        .releases(ACCEPTED_RELEASES)
        .await?
        .into_iter()
        .find(|r| r.release == stored)
        .ok_or_else(|| BankError::Input("the release was stored but cannot be read".into()))?;
    Ok(Released { row, build })
}

fn keys_of(e: &AcceptedEntry) -> Result<Vec<haven_psi::MatchKey>, BankError> {
    let bad = || StoreError::Backend(format!("bank {} holds a malformed hash", e.bank));
    Ok(match e.kind {
        EntryKind::Sha256 => entry_keys(EntryHash::Sha256(
            e.hash.as_slice().try_into().map_err(|_| bad())?,
        )),
        EntryKind::Md5 => entry_keys(EntryHash::Md5(
            e.hash.as_slice().try_into().map_err(|_| bad())?,
        )),
        EntryKind::Pdq => entry_keys(EntryHash::Pdq(
            e.hash.as_slice().try_into().map_err(|_| bad())?,
        )),
    })
}

/// The release server keys this node has opened, and the release signing key's public half
/// (both rebuilt from the database on a miss; the signing key never changes once made).
#[derive(Default)]
pub struct KeyCache {
    servers: Mutex<HashMap<[u8; 16], CachedKey>>,
    verifying: std::sync::OnceLock<[u8; 32]>,
}

/// A release's number and its opened server key.
type CachedKey = (u64, Arc<ServerKey>);

/// A voucher checked before its upload is read.
pub(crate) struct CheckedVoucher {
    release: u64,
    threshold: u16,
    opened: Option<OpenedShare>,
}

fn refuse(m: impl Into<String>) -> ServiceError {
    ServiceError::BadRequest(m.into())
}

impl Service {
    fn psi_params_of(signed: &[u8]) -> ServiceResult<Params> {
        SignedRelease::decode(signed)
            .map(|r| r.header().params)
            .map_err(|_| ServiceError::Internal("stored release unreadable".into()))
    }

    async fn psi_key(&self, db_id: &[u8; 16]) -> ServiceResult<Option<(u64, Arc<ServerKey>)>> {
        if let Ok(cache) = self.psi_keys.servers.lock() {
            if let Some(hit) = cache.get(db_id) {
                return Ok(Some(hit.clone()));
            }
        }
        let Some((release, sealed)) = self.store.release_key(db_id).await? else {
            return Ok(None);
        };
        let ek = self
            .evidence_key
            .as_ref()
            .ok_or_else(|| ServiceError::Internal("no evidence key to open release keys".into()))?;
        let opened = ek
            .open(&hex::encode(db_id), "psi-key", &sealed)
            .map_err(|_| ServiceError::Internal("release key does not open".into()))?;
        let key = Arc::new(
            ServerKey::from_bytes(&opened)
                .map_err(|_| ServiceError::Internal("release key malformed".into()))?,
        );
        if let Ok(mut cache) = self.psi_keys.servers.lock() {
            cache.insert(*db_id, (release, key.clone()));
        }
        Ok(Some((release, key)))
    }

    /// The voucher an upload carries, checked before the upload is read: once the server has
    /// a release, every upload needs one made for one of the [`ACCEPTED_RELEASES`] newest,
    /// and it must open cleanly (a pair that opens onto garbage is refused). Without a
    /// release, vouchers are neither needed nor read.
    pub(crate) async fn check_voucher(
        &self,
        header: Option<&[u8]>,
    ) -> ServiceResult<Option<CheckedVoucher>> {
        let recent = self.store.releases(ACCEPTED_RELEASES).await?;
        let Some(newest) = recent.first() else {
            return Ok(None);
        };
        let Some(header) = header else {
            return Err(refuse(format!(
                "this upload needs a safety voucher (header {}) for voucher database release {} (GET /v1/psi/release)",
                api::VOUCHER_HEADER,
                newest.release
            )));
        };
        let bytes = STANDARD
            .decode(header)
            .map_err(|_| refuse("the safety voucher is not base64"))?;
        let voucher =
            Voucher::decode(&bytes).map_err(|e| refuse(format!("bad safety voucher: {e}")))?;
        let Some(row) = recent.iter().find(|r| r.db_id == voucher.db_id()) else {
            return Err(ServiceError::Conflict(format!(
                "the safety voucher was made for a voucher database release this server no longer accepts; fetch release {} (GET /v1/psi/release)",
                newest.release
            )));
        };
        let params = Self::psi_params_of(&row.signed)?;
        let (threshold, keys_per_voucher) = (params.threshold, params.keys_per_voucher);
        let (release, key) = self
            .psi_key(&voucher.db_id())
            .await?
            .ok_or_else(|| ServiceError::Internal("release key missing".into()))?;
        let opened = crate::service::blocking(move || key.open(keys_per_voucher, &voucher))
            .await?
            .map_err(|e| refuse(format!("bad safety voucher: {e}")))?;
        Ok(Some(CheckedVoucher {
            release,
            threshold,
            opened,
        }))
    }

    /// After the upload is stored: keeps an opened share and, when the device has enough,
    /// tries to reconstruct; a reconstruction that reveals images not revealed before opens a
    /// case with them.
    pub(crate) async fn take_voucher(
        &self,
        who: &Authed,
        checked: CheckedVoucher,
        blob: &BlobId,
    ) -> ServiceResult<()> {
        let Some(share) = checked.opened else {
            return Ok(());
        };
        let new = self
            .store
            .put_share(&StoredShare {
                user: who.user.clone(),
                device: who.device.clone(),
                x: share.x_bytes(),
                share: share.encode(),
                blob_id: blob.as_str().to_owned(),
                release: checked.release,
                created_at: now_ms(),
                case_id: None,
            })
            .await?;
        if new {
            self.voucher_threshold(who, checked.threshold).await?;
        }
        Ok(())
    }

    async fn voucher_threshold(&self, who: &Authed, threshold: u16) -> ServiceResult<()> {
        let rows = self
            .store
            .device_shares(
                &who.user,
                &who.device,
                haven_psi::reveal::MAX_RECONSTRUCT_SHARES as u32,
            )
            .await?;
        if rows.len() < usize::from(threshold) {
            return Ok(());
        }
        let mut shares = Vec::with_capacity(rows.len());
        let mut by_id: HashMap<[u8; 16], &StoredShare> = HashMap::new();
        for r in &rows {
            let s = OpenedShare::decode(&r.share)
                .map_err(|_| ServiceError::Internal("stored voucher share unreadable".into()))?;
            by_id.insert(s.id, r);
            shares.push(s);
        }
        let outcome = crate::service::blocking(move || reconstruct(threshold, &shares)).await?;
        let Reconstruction::Revealed { images, .. } = outcome else {
            return Ok(());
        };
        let fresh: Vec<_> = images
            .iter()
            .filter_map(|i| by_id.get(&i.id).map(|r| (i, *r)))
            .filter(|(_, r)| r.case_id.is_none())
            .collect();
        if fresh.is_empty() {
            return Ok(());
        }
        let ek = self
            .evidence_key
            .clone()
            .ok_or_else(|| ServiceError::Internal("no evidence key to seal a case".into()))?;
        let accepted = self.store.accepted_entries(BankUse::Vouchers).await?;
        let case_id = random_hex::<12>();
        let mut evidence = Vec::new();
        let mut xs = Vec::new();
        let mut lines = Vec::new();
        for (seq, (img, row)) in fresh.iter().enumerate() {
            xs.push(row.x);
            let file_id = format!("f{seq}");
            let mut message = EvidenceMessage {
                seq: seq as u32,
                role: "matched".into(),
                verified: true,
                sender: api::Sender {
                    user: who.user.clone(),
                    device_id: who.device.clone(),
                },
                received_at: row.created_at.max(0) as u64,
                sent_at: 0,
                message_id: hex::encode(img.id),
                text: None,
                attachment: None,
                control: None,
            };
            match VoucherPayload::decode(&img.payload) {
                None => {
                    message.text = Some("the voucher's associated data is not an attachment payload (a modified client?)".into());
                }
                Some(p) => {
                    let (file, found) = self.voucher_file(who, &p, &accepted).await?;
                    lines.push(found);
                    if let Some((ev, pt)) = file {
                        message.attachment = Some(AttachmentEvidence::Kept(EvidenceFile {
                            file_id: file_id.clone(),
                            ..ev
                        }));
                        evidence.push((file_id.clone(), ek.seal(&case_id, &file_id, &pt)));
                    } else {
                        message.attachment = Some(AttachmentEvidence::Unavailable {
                            name: hex::encode(p.blob_id),
                        });
                    }
                }
            }
            let json = serde_json::to_vec(&message)
                .map_err(|e| ServiceError::Internal(format!("evidence json: {e}")))?;
            let item = format!("m{seq}");
            evidence.push((item.clone(), ek.seal(&case_id, &item, &json)));
        }
        let note = format!(
            "Safety vouchers: device {} of {} crossed the match threshold ({threshold} distinct images); {} image(s) revealed.\n{}",
            who.device,
            who.user,
            fresh.len(),
            lines.join("\n")
        );
        let mut h = Sha256::new();
        h.update(b"voucher case\0");
        h.update(who.user.as_str().as_bytes());
        h.update([0]);
        h.update(who.device.as_str().as_bytes());
        let mut sorted = xs.clone();
        sorted.sort();
        for x in &sorted {
            h.update(x);
        }
        let reason = ReportReason::ChildSexualExploitation;
        let case = NewCase {
            id: case_id.clone(),
            source: CaseSource::VoucherMatch,
            reason,
            priority: priority(reason, false),
            reporter: None,
            reporter_is_minor: false,
            reported_user: who.user.clone(),
            group_id: None,
            dedupe_key: Some(h.finalize().to_vec()),
            note_sealed: Some(ek.seal(&case_id, "note", note.as_bytes())),
            evidence,
            created_at: now_ms(),
        };
        let audit = AuditLine {
            actor: "server".into(),
            action: "voucher.case".into(),
            case: Some(case_id.clone()),
            detail: format!(
                "{} image(s) of {} over the threshold {threshold}",
                fresh.len(),
                who.user
            ),
            at: now_ms(),
        };
        let (filed, _) = self.store.file_case(&case, &audit).await?;
        self.store
            .mark_revealed(&who.user, &who.device, &xs, &filed)
            .await?;
        tracing::warn!(case = %filed, user = %who.user, images = fresh.len(), "safety vouchers crossed the threshold");
        Ok(())
    }

    /// Fetches and decrypts a revealed attachment; the evidence file and plaintext (if the
    /// blob is still there and opens), and a line saying which bank entries it matches.
    async fn voucher_file(
        &self,
        who: &Authed,
        p: &VoucherPayload,
        accepted: &[AcceptedEntry],
    ) -> ServiceResult<(Option<(EvidenceFile, Vec<u8>)>, String)> {
        let id = BlobId::from_digest(p.blob_id);
        let Some(ct) = self.fetch_blob(who, &id).await? else {
            return Ok((None, format!("blob {id}: expired before review")));
        };
        if attachment::sha256(&ct) != p.blob_id {
            return Ok((None, format!("blob {id}: stored bytes do not match the id")));
        }
        let key = AttachmentKey::from_slice(p.key.as_bytes())
            .map_err(|_| ServiceError::Internal("attachment key".into()))?;
        let sha = p.sha256;
        let Ok(pt) = crate::service::blocking(move || attachment::open(&ct, &key, &sha)).await?
        else {
            return Ok((
                None,
                format!("blob {id}: does not decrypt with the revealed key"),
            ));
        };
        let (md5, pdq) = crate::service::blocking({
            let pt = pt.clone();
            move || crate::moderation::service::file_hashes(&pt)
        })
        .await?;
        let md5_bytes = hex::decode(&md5).unwrap_or_default();
        let pdq_bytes = pdq
            .as_ref()
            .and_then(|(h, _)| hex::decode(h).ok())
            .unwrap_or_default();
        let matched: Vec<String> = accepted
            .iter()
            .filter(|e| match e.kind {
                EntryKind::Sha256 => e.hash == p.sha256,
                EntryKind::Md5 => e.hash == md5_bytes,
                EntryKind::Pdq => !pdq_bytes.is_empty() && e.hash == pdq_bytes,
            })
            .map(|e| format!("{} {} {}", e.bank, e.kind.as_str(), hex::encode(&e.hash)))
            .collect();
        let line = format!(
            "blob {id}: {}",
            if matched.is_empty() {
                "matches no entry in use now (removed since, or a synthetic share on the polynomial)".to_owned()
            } else {
                format!("matches {}", matched.join("; "))
            }
        );
        let ev = EvidenceFile {
            file_id: String::new(),
            name: format!("{id}.bin"),
            size: pt.len() as u64,
            sha256: hex::encode(p.sha256),
            md5,
            pdq_quality: pdq.as_ref().map(|p| p.1),
            pdq: pdq.map(|p| p.0),
        };
        Ok((Some((ev, pt)), line))
    }

    /// `GET /v1/psi/release`.
    pub async fn psi_release(&self) -> ServiceResult<api::PsiRelease> {
        let row = self
            .store
            .releases(1)
            .await?
            .pop()
            .ok_or(ServiceError::NotFound("voucher database release"))?;
        let ek = self
            .evidence_key
            .as_ref()
            .ok_or_else(|| ServiceError::Internal("no evidence key".into()))?;
        let verifying = match self.psi_keys.verifying.get() {
            Some(k) => *k,
            None => {
                // A release exists, so its signing key does: read it, never make one here.
                let stored = self
                    .store
                    .get_server_secret(SIGNING_SECRET)
                    .await?
                    .ok_or_else(|| ServiceError::Internal("release signing key missing".into()))?;
                let key = open_signing_key(ek, &stored)
                    .map_err(|e| ServiceError::Internal(e.to_string()))?;
                *self
                    .psi_keys
                    .verifying
                    .get_or_init(|| key.verifying_key().to_bytes())
            }
        };
        Ok(api::PsiRelease {
            release: row.release,
            signed: row.signed,
            signing_key: verifying.to_vec(),
            db_bytes: row.db_bytes,
        })
    }

    /// `GET /v1/psi/releases`.
    pub async fn psi_releases(&self) -> ServiceResult<api::PsiReleases> {
        let rows = self.store.releases(api::PsiReleases::MAX).await?;
        Ok(api::PsiReleases {
            releases: rows
                .into_iter()
                .map(|r| api::PsiReleaseInfo {
                    release: r.release,
                    root: hex::encode(r.root),
                    entries: r.entries,
                    match_keys: r.match_keys,
                    db_bytes: r.db_bytes,
                    created_at: r.created_at.max(0) as u64,
                })
                .collect(),
        })
    }

    /// `GET /v1/psi/db/{release}`.
    pub async fn psi_db(&self, release: u64) -> ServiceResult<Vec<u8>> {
        self.store
            .release_db(release)
            .await?
            .ok_or(ServiceError::NotFound("voucher database release"))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

    use super::*;
    use crate::store::conformance::sqlite_store;

    fn service(store: Arc<dyn Store>, dir: &std::path::Path, ek: EvidenceKey) -> Service {
        let blobs = crate::blobs::LocalBlobStore::new(dir.join("blobs")).unwrap();
        let ring = haven_frank::Keyring::new(
            haven_frank::KeyId::new(1),
            haven_frank::KeyEntry {
                key: haven_frank::ServerKey::random(),
                created_at_ms: 0,
            },
            false,
        );
        Service::new(store, Arc::new(blobs), Default::default(), ring).with_evidence_key(ek)
    }

    /// The public release endpoint: 404 before any release; after one, the signed release
    /// and a signing key that verifies it — read from the store, never made by the request,
    /// and the same on a second node that opens it cold.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn release_endpoint_serves_the_key_that_signed() {
        let (store, dir) = sqlite_store().await;
        let store: Arc<dyn Store> = store;
        let ek = EvidenceKey::random();
        let node = service(store.clone(), dir.path(), ek.clone());
        assert!(matches!(
            node.psi_release().await,
            Err(ServiceError::NotFound(_))
        ));
        assert!(
            store
                .get_server_secret(SIGNING_SECRET)
                .await
                .unwrap()
                .is_none(),
            "a request makes no signing key"
        );
        create_bank(&*store, "b", "test bank", 1).await.unwrap();
        set_use(&*store, "b", BankUse::Vouchers, true)
            .await
            .unwrap();
        let entry = NewEntry {
            kind: EntryKind::Sha256,
            hash: vec![7; 32],
        };
        import(&*store, "b", "src", &[entry]).await.unwrap();
        let params = ReleaseParams {
            threshold: 2,
            ..Default::default()
        };
        let done = release(&*store, &ek, params).await.unwrap();
        for n in [
            &node,
            &node,
            &service(store.clone(), dir.path(), ek.clone()),
        ] {
            let r = n.psi_release().await.unwrap();
            assert_eq!(r.release, done.row.release);
            let vk = ed25519_dalek::VerifyingKey::from_bytes(
                r.signing_key.as_slice().try_into().unwrap(),
            )
            .unwrap();
            let verified = SignedRelease::decode(&r.signed)
                .unwrap()
                .verify(&vk)
                .unwrap();
            assert_eq!(verified.root(), done.row.root);
            assert_eq!(r.db_bytes, done.row.db_bytes);
        }
    }
}
