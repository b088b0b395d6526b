//! Models in IndexedDB (database `hearth-models`), through `indexed_db_futures`.
//!
//! A model is a metadata record in `models` and its bytes as fixed-size chunks in `chunks`,
//! keyed `"<id>/<index, 8 digits>"` so one model's chunks sort together and delete as a key
//! range. Each chunk is written in the same transaction as the metadata that counts it, with
//! its sha256: a download cut at any point leaves a consistent prefix to resume from, and a
//! chunk damaged later is caught when it is read (see `worker::source`).

use indexed_db_futures::database::Database;
use indexed_db_futures::prelude::*;
use indexed_db_futures::transaction::TransactionMode;
use indexed_db_futures::KeyRange;
use serde::{Deserialize, Serialize};
use wasm_bindgen::JsValue;

use crate::protocol::StoredModel;

const DB_NAME: &str = "hearth-models";
const MODELS: &str = "models";
const CHUNKS: &str = "chunks";

/// Bytes per stored chunk: the unit of resuming and of integrity checks. 4 MiB keeps the
/// worker's buffers small and a 4 GB model at ~1000 records.
pub const CHUNK: u64 = 4 << 20;

/// A model's record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelMeta {
    pub id: String,
    pub name: String,
    pub url: String,
    /// Total bytes, once the server (or the file) said.
    pub size: Option<u64>,
    /// `size` is the catalog's: a server file of another size is refused.
    #[serde(default)]
    pub size_pinned: bool,
    /// The file's identity on the server as first seen (strong ETag or Last-Modified): sent
    /// as `If-Range` on resume and compared with every later reply (`crate::resume`).
    #[serde(default)]
    pub validator: Option<String>,
    /// The published sha256 to match, if any.
    pub expected_sha256: Option<String>,
    /// sha256 of each stored chunk, in order: `chunk_sha.len()` chunks are stored.
    pub chunk_sha: Vec<String>,
    /// All bytes stored and the whole-file sha256 checked.
    pub complete: bool,
    pub sha256: Option<String>,
    /// `sha256` matched `expected_sha256`.
    pub verified: bool,
    /// From the catalog, for the UI.
    pub default_context: u32,
}

impl ModelMeta {
    pub fn stored_bytes(&self) -> u64 {
        let full = self.chunk_sha.len() as u64 * CHUNK;
        self.size.map_or(full, |s| full.min(s))
    }

    /// What a resumed download knows before it asks.
    pub fn known(&self) -> crate::resume::Known {
        crate::resume::Known { size: self.size, pinned: self.size_pinned, validator: self.validator.clone() }
    }

    pub fn summary(&self) -> StoredModel {
        StoredModel {
            id: self.id.clone(),
            name: self.name.clone(),
            url: self.url.clone(),
            size: self.size.unwrap_or(0),
            stored: self.stored_bytes(),
            complete: self.complete,
            sha256: self.sha256.clone(),
            verified: self.verified,
        }
    }
}

/// What went wrong in storage, by what a person can do about it.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("browser storage is full ({0}): delete a model on the Storage page, or free disk space")]
    Quota(String),
    #[error("IndexedDB is not available here ({0}); private windows in some browsers block it")]
    Unavailable(String),
    #[error("IndexedDB failed: {0}")]
    Other(String),
}

fn classify(e: impl std::fmt::Debug) -> StoreError {
    let text = format!("{e:?}");
    if text.contains("Quota") {
        StoreError::Quota(text)
    } else {
        StoreError::Other(text)
    }
}

fn chunk_key(id: &str, index: usize) -> String {
    format!("{id}/{index:08}")
}

/// The open database.
pub struct Store {
    db: Database,
}

impl Store {
    pub async fn open() -> Result<Store, StoreError> {
        let db = Database::open(DB_NAME)
            .with_version(1u8)
            .with_on_upgrade_needed(|event, db| {
                if event.old_version() < 1.0 {
                    db.create_object_store(MODELS).build()?;
                    db.create_object_store(CHUNKS).build()?;
                }
                Ok(())
            })
            .await
            .map_err(|e| StoreError::Unavailable(format!("{e:?}")))?;
        Ok(Store { db })
    }

    pub async fn models(&self) -> Result<Vec<ModelMeta>, StoreError> {
        let tx = self.db.transaction(MODELS).build().map_err(classify)?;
        let store = tx.object_store(MODELS).map_err(classify)?;
        let all: Vec<ModelMeta> = store
            .get_all()
            .serde()
            .map_err(classify)?
            .await
            .map_err(classify)?
            .collect::<Result<_, _>>()
            .map_err(classify)?;
        Ok(all)
    }

    pub async fn meta(&self, id: &str) -> Result<Option<ModelMeta>, StoreError> {
        let tx = self.db.transaction(MODELS).build().map_err(classify)?;
        let store = tx.object_store(MODELS).map_err(classify)?;
        store.get(id).serde().map_err(classify)?.await.map_err(classify)
    }

    pub async fn put_meta(&self, meta: &ModelMeta) -> Result<(), StoreError> {
        let tx = self.db.transaction(MODELS).with_mode(TransactionMode::Readwrite).build().map_err(classify)?;
        let store = tx.object_store(MODELS).map_err(classify)?;
        store.put(meta).with_key(meta.id.clone()).serde().map_err(classify)?;
        tx.commit().await.map_err(classify)
    }

    /// Stores chunk `index` (`meta.chunk_sha[index]` already set by the caller) and `meta`
    /// in one transaction.
    pub async fn put_chunk(&self, meta: &ModelMeta, index: usize, bytes: &[u8]) -> Result<(), StoreError> {
        let tx =
            self.db.transaction([MODELS, CHUNKS]).with_mode(TransactionMode::Readwrite).build().map_err(classify)?;
        let chunks = tx.object_store(CHUNKS).map_err(classify)?;
        let data: JsValue = js_sys::Uint8Array::from(bytes).into();
        chunks.put(data).with_key(chunk_key(&meta.id, index)).primitive().map_err(classify)?;
        let models = tx.object_store(MODELS).map_err(classify)?;
        models.put(meta).with_key(meta.id.clone()).serde().map_err(classify)?;
        tx.commit().await.map_err(classify)
    }

    /// Chunk `index` as stored (not checked: see `worker::source`).
    pub async fn chunk(&self, id: &str, index: usize) -> Result<Option<Vec<u8>>, StoreError> {
        let tx = self.db.transaction(CHUNKS).build().map_err(classify)?;
        let store = tx.object_store(CHUNKS).map_err(classify)?;
        let value: Option<JsValue> =
            store.get(chunk_key(id, index)).primitive().map_err(classify)?.await.map_err(classify)?;
        Ok(value.map(|v| js_sys::Uint8Array::new(&v).to_vec()))
    }

    /// Deletes chunks `from..` of `id` (all of them for 0).
    pub async fn delete_chunks(&self, id: &str, from: usize) -> Result<(), StoreError> {
        let tx = self.db.transaction(CHUNKS).with_mode(TransactionMode::Readwrite).build().map_err(classify)?;
        let store = tx.object_store(CHUNKS).map_err(classify)?;
        // Keys are "<id>/<8 digits>": '/' + 1 is '0', so "<id>0" bounds them above.
        let range = KeyRange::Bound(chunk_key(id, from), false, format!("{id}0"), true);
        store.delete::<String, _>(range).primitive().map_err(classify)?;
        tx.commit().await.map_err(classify)
    }

    /// Deletes a model: its chunks, then its record.
    pub async fn delete(&self, id: &str) -> Result<(), StoreError> {
        self.delete_chunks(id, 0).await?;
        let tx = self.db.transaction(MODELS).with_mode(TransactionMode::Readwrite).build().map_err(classify)?;
        let store = tx.object_store(MODELS).map_err(classify)?;
        store.delete::<String, _>(id.to_string()).primitive().map_err(classify)?;
        tx.commit().await.map_err(classify)
    }
}
