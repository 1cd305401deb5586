//! akd's `Database` trait over a [`KtStore`]: the directory lives in the server's own database
//! (SQLite or PostgreSQL), so it survives restarts and every node sees the same directory.
//!
//! Mapping: akd's aZKS record and tree nodes go to `kt_records`, keyed by akd's full binary id
//! (`Storable::get_full_binary_id`), each the MessagePack encoding of akd's `DbRecord`; value
//! states go to `kt_values`, one row per (label, epoch), so a label's history and the newest
//! value of many labels are single indexed queries. akd writes a publish as one `batch_set` of
//! its transaction (`DbSetState::TransactionCommit`), which [`KtStore::kt_write`] makes one
//! database transaction: a publish is all there or not at all, whatever kills the process.

use std::collections::HashMap;
use std::sync::Arc;

use akd::errors::StorageError;
use akd::storage::types::{
    DbRecord, KeyData, StorageType, ValueState, ValueStateKey, ValueStateRetrievalFlag,
};
use akd::storage::{Database, DbSetState, Storable};
use akd::{AkdLabel, AkdValue};
use async_trait::async_trait;

use super::store::{KtStore, ValueRow};
use crate::store::StoreError;

/// akd's storage over the server's store.
#[derive(Clone)]
pub struct AkdDb {
    store: Arc<dyn KtStore>,
}

impl AkdDb {
    /// The adapter over `store`.
    pub fn new(store: Arc<dyn KtStore>) -> Self {
        AkdDb { store }
    }
}

fn backend(e: StoreError) -> StorageError {
    StorageError::Connection(e.to_string())
}

fn to_state(v: ValueRow) -> ValueState {
    DbRecord::build_user_state(v.label, v.value, v.version, v.node_len, v.node_val, v.epoch)
}

fn to_row(s: &ValueState) -> ValueRow {
    ValueRow {
        label: s.username.0.clone(),
        epoch: s.epoch,
        version: s.version,
        node_len: s.label.label_len,
        node_val: s.label.label_val,
        value: s.value.0.clone(),
    }
}

fn decode(bytes: &[u8]) -> Result<DbRecord, StorageError> {
    rmp_serde::from_slice(bytes)
        .map_err(|e| StorageError::Other(format!("corrupt key directory record: {e}")))
}

/// akd's retrieval rules over one label's states (oldest first).
fn pick(states: Vec<ValueRow>, flag: ValueStateRetrievalFlag) -> Option<ValueRow> {
    use ValueStateRetrievalFlag as F;
    let mut it = states.into_iter();
    match flag {
        F::MaxEpoch => it.max_by_key(|s| s.epoch),
        F::MinEpoch => it.min_by_key(|s| s.epoch),
        F::SpecificVersion(v) => it.find(|s| s.version == v),
        F::SpecificEpoch(e) => it.find(|s| s.epoch == e),
        F::LeqEpoch(e) => it.filter(|s| s.epoch <= e).max_by_key(|s| s.epoch),
    }
}

#[async_trait]
impl Database for AkdDb {
    async fn set(&self, record: DbRecord) -> Result<(), StorageError> {
        self.batch_set(vec![record], DbSetState::General).await
    }

    async fn batch_set(
        &self,
        records: Vec<DbRecord>,
        _state: DbSetState,
    ) -> Result<(), StorageError> {
        let mut nodes = Vec::new();
        let mut values = Vec::new();
        for r in records {
            match &r {
                DbRecord::ValueState(s) => values.push(to_row(s)),
                _ => {
                    let bytes = rmp_serde::to_vec(&r)
                        .map_err(|e| StorageError::Other(format!("encoding a record: {e}")))?;
                    nodes.push((r.get_full_binary_id(), bytes));
                }
            }
        }
        self.store.kt_write(nodes, values).await.map_err(backend)
    }

    async fn get<St: Storable>(&self, id: &St::StorageKey) -> Result<DbRecord, StorageError> {
        let mut found = self.batch_get::<St>(std::slice::from_ref(id)).await?;
        found
            .pop()
            .ok_or_else(|| StorageError::NotFound(format!("{:?} {id:?}", St::data_type())))
    }

    async fn batch_get<St: Storable>(
        &self,
        ids: &[St::StorageKey],
    ) -> Result<Vec<DbRecord>, StorageError> {
        if St::data_type() == StorageType::ValueState {
            let mut out = Vec::new();
            for id in ids {
                let bin = St::get_full_binary_key_id(id);
                let ValueStateKey(label, epoch) =
                    ValueState::key_from_full_binary(&bin).map_err(StorageError::Other)?;
                let states = self.store.kt_values(label).await.map_err(backend)?;
                if let Some(s) = pick(states, ValueStateRetrievalFlag::SpecificEpoch(epoch)) {
                    out.push(DbRecord::ValueState(to_state(s)));
                }
            }
            return Ok(out);
        }
        let bins = ids.iter().map(St::get_full_binary_key_id).collect();
        let rows = self.store.kt_records(bins).await.map_err(backend)?;
        rows.iter().map(|r| decode(r)).collect()
    }

    async fn get_user_data(&self, username: &AkdLabel) -> Result<KeyData, StorageError> {
        let states = self
            .store
            .kt_values(username.0.clone())
            .await
            .map_err(backend)?;
        if states.is_empty() {
            return Err(StorageError::NotFound(format!("ValueState {username:?}")));
        }
        Ok(KeyData {
            states: states.into_iter().map(to_state).collect(),
        })
    }

    async fn get_user_state(
        &self,
        username: &AkdLabel,
        flag: ValueStateRetrievalFlag,
    ) -> Result<ValueState, StorageError> {
        let states = self
            .store
            .kt_values(username.0.clone())
            .await
            .map_err(backend)?;
        pick(states, flag)
            .map(to_state)
            .ok_or_else(|| StorageError::NotFound(format!("ValueState {username:?}")))
    }

    async fn get_user_state_versions(
        &self,
        usernames: &[AkdLabel],
        flag: ValueStateRetrievalFlag,
    ) -> Result<HashMap<AkdLabel, (u64, AkdValue)>, StorageError> {
        let max = match flag {
            ValueStateRetrievalFlag::LeqEpoch(e) => Some(e),
            ValueStateRetrievalFlag::MaxEpoch => Some(u64::MAX),
            _ => None,
        };
        let mut out = HashMap::new();
        if let Some(max) = max {
            let labels = usernames.iter().map(|u| u.0.clone()).collect();
            for s in self
                .store
                .kt_latest_values(labels, max)
                .await
                .map_err(backend)?
            {
                out.insert(AkdLabel(s.label), (s.version, AkdValue(s.value)));
            }
            return Ok(out);
        }
        for u in usernames {
            match self.get_user_state(u, flag).await {
                Ok(s) => {
                    out.insert(u.clone(), (s.version, s.value));
                }
                Err(StorageError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }
}
