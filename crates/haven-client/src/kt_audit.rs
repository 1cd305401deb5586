//! Auditing the key directory (`haven kt audit`): anyone, with no account, checks that every
//! epoch of a server's directory only added to the one before — every root signed by the
//! directory's key and every step covered by akd's append-only proof
//! (`haven_kt::directory::verify_audit`). A failure names the epoch.

use haven_kt::directory::{self, DirectoryError, KtKeys, SignedRoot};
use haven_proto::api;

use crate::net::Api;

/// One audited epoch.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AuditedEpoch {
    /// The epoch.
    pub epoch: u64,
    /// Its root hash (hex).
    pub root: String,
}

/// What an audit checked.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AuditReport {
    /// The directory's root-signing key (hex).
    pub root_key: String,
    /// The audited epochs, oldest first.
    pub epochs: Vec<AuditedEpoch>,
}

/// Why an audit failed.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The directory is inconsistent at this epoch.
    #[error("epoch {epoch}: {detail}")]
    Epoch {
        /// The first epoch that did not verify.
        epoch: u64,
        /// Why.
        detail: String,
    },
    /// The server could not be asked, or answered nonsense.
    #[error("{0}")]
    Server(String),
}

fn at(epoch: u64, detail: impl std::fmt::Display) -> AuditError {
    AuditError::Epoch {
        epoch,
        detail: detail.to_string(),
    }
}

/// Audits the directory of the server at `url` from epoch `from` to its newest. With
/// `root_key`, the directory's key must be that one (else the key the server names is
/// audited, and printed for comparison).
pub async fn audit(
    url: &str,
    from: u64,
    root_key: Option<[u8; 32]>,
    mut progress: impl FnMut(&AuditedEpoch),
) -> Result<AuditReport, AuditError> {
    let api = Api::new(url).map_err(|e| AuditError::Server(e.to_string()))?;
    let e = api
        .kt_epoch()
        .await
        .map_err(|e| AuditError::Server(e.to_string()))?;
    let key =
        |b: &[u8]| <[u8; 32]>::try_from(b).map_err(|_| AuditError::Server("malformed key".into()));
    let keys = KtKeys {
        root_key: key(&e.root_key)?,
        vrf_key: key(&e.vrf_key)?,
    };
    if let Some(k) = root_key {
        if k != keys.root_key {
            return Err(AuditError::Server(format!(
                "the server's directory key is {}, not the expected {}",
                hex::encode(keys.root_key),
                hex::encode(k)
            )));
        }
    }
    let newest =
        SignedRoot::decode(&e.signed_root).map_err(|e| AuditError::Server(e.to_string()))?;
    newest.verify(&keys).map_err(|e| at(newest.epoch, e))?;
    if from > newest.epoch {
        return Err(AuditError::Server(format!(
            "epoch {from} is past the newest epoch {}",
            newest.epoch
        )));
    }
    let mut epochs = Vec::new();
    let mut prev: Option<SignedRoot> = None;
    let mut start = from;
    if from == newest.epoch {
        let a = AuditedEpoch {
            epoch: newest.epoch,
            root: hex::encode(newest.root),
        };
        progress(&a);
        epochs.push(a);
    }
    while start < newest.epoch {
        let end = newest
            .epoch
            .min(start.saturating_add(api::KtAudit::MAX_EPOCHS));
        let page = api
            .kt_audit(start, end)
            .await
            .map_err(|e| AuditError::Server(format!("audit {start}..{end}: {e}")))?;
        let mut roots = Vec::with_capacity(page.roots.len());
        for (i, r) in page.roots.iter().enumerate() {
            let expect = start + i as u64;
            let r = SignedRoot::decode(r).map_err(|e| at(expect, e))?;
            if r.epoch != expect {
                return Err(at(
                    expect,
                    format!("the server sent the root of epoch {}", r.epoch),
                ));
            }
            r.verify(&keys).map_err(|e| at(expect, e))?;
            roots.push(r);
        }
        if roots.len() as u64 != end - start + 1 {
            return Err(at(start, "the server sent too few roots"));
        }
        if let (Some(p), Some(first)) = (prev, roots.first()) {
            if p != *first {
                return Err(at(
                    start,
                    "the server sent two different roots for this epoch",
                ));
            }
        }
        directory::verify_audit(&keys, &roots, &page.proof)
            .await
            .map_err(|e| match &e {
                DirectoryError::BadProof { epoch, .. }
                | DirectoryError::BadRootSignature { epoch } => at(*epoch, &e),
                _ => at(start, &e),
            })?;
        for r in &roots {
            if epochs
                .last()
                .is_some_and(|a: &AuditedEpoch| a.epoch >= r.epoch)
            {
                continue;
            }
            let a = AuditedEpoch {
                epoch: r.epoch,
                root: hex::encode(r.root),
            };
            progress(&a);
            epochs.push(a);
        }
        if end == newest.epoch && roots.last() != Some(&newest) {
            return Err(at(
                end,
                "the newest root is not the one the server announced",
            ));
        }
        prev = roots.last().copied();
        start = end;
    }
    Ok(AuditReport {
        root_key: hex::encode(keys.root_key),
        epochs,
    })
}
