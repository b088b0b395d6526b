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
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;

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
            plan: None,
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

/// A record as `indexed_db_futures`' `.serde()` writes it (its serializer settings), so that
/// records written here read back through it.
fn meta_value(meta: &ModelMeta) -> Result<JsValue, StoreError> {
    meta.serialize(&serde_wasm_bindgen::Serializer::new().serialize_maps_as_objects(true))
        .map_err(|e| StoreError::Other(format!("encoding a model record: {e}")))
}

fn js_text(e: &JsValue) -> String {
    match e.dyn_ref::<web_sys::DomException>() {
        Some(d) => format!("{}: {}", d.name(), d.message()),
        None => e.as_string().unwrap_or_else(|| format!("{e:?}")),
    }
}

/// A plain connection to the database `indexed_db_futures` created (and upgraded).
async fn open_raw() -> Result<web_sys::IdbDatabase, JsValue> {
    let global = js_sys::global();
    let factory = js_sys::Reflect::get(&global, &"indexedDB".into())?.dyn_into::<web_sys::IdbFactory>()?;
    let request = factory.open(DB_NAME)?;
    let opened = js_sys::Promise::new(&mut |resolve, reject| {
        request.set_onsuccess(Some(&resolve));
        request.set_onerror(Some(&reject));
    });
    JsFuture::from(opened).await?;
    request.result()?.dyn_into::<web_sys::IdbDatabase>()
}

fn chunk_key(id: &str, index: usize) -> String {
    format!("{id}/{index:08}")
}

/// The open database: through `indexed_db_futures`, and a second, plain connection for the
/// writes, whose failed transactions say why (`IDBTransaction.error`: `QuotaExceededError`
/// on a full disk or quota). The crate reports an aborted commit only as "aborted", which
/// would make a full disk look like an internal error.
pub struct Store {
    db: Database,
    raw: web_sys::IdbDatabase,
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
        let raw = open_raw().await.map_err(|e| StoreError::Unavailable(js_text(&e)))?;
        Ok(Store { db, raw })
    }

    /// Runs `fill` in a read-write transaction over `stores` on the plain connection and waits
    /// for it to commit; an abort is classified by the transaction's own error.
    async fn write(
        &self,
        stores: &[&str],
        fill: impl FnOnce(&web_sys::IdbTransaction) -> Result<(), JsValue>,
    ) -> Result<(), StoreError> {
        let names: js_sys::Array = stores.iter().map(|s| JsValue::from_str(s)).collect();
        let tx = self
            .raw
            .transaction_with_str_sequence_and_mode(&names, web_sys::IdbTransactionMode::Readwrite)
            .map_err(|e| classify(js_text(&e)))?;
        if let Err(e) = fill(&tx) {
            let _ = tx.abort();
            return Err(classify(js_text(&e)));
        }
        let done = js_sys::Promise::new(&mut |resolve, reject| {
            tx.set_oncomplete(Some(&resolve));
            tx.set_onabort(Some(&reject));
        });
        // No explicit commit: the transaction commits when its requests are done.
        match JsFuture::from(done).await {
            Ok(_) => Ok(()),
            Err(_) => Err(match tx.error() {
                Some(e) if e.name() == "QuotaExceededError" => StoreError::Quota(e.message()),
                Some(e) => StoreError::Other(format!("{}: {}", e.name(), e.message())),
                None => StoreError::Other("the write was aborted".into()),
            }),
        }
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
        let value = meta_value(meta)?;
        self.write(&[MODELS], |tx| tx.object_store(MODELS)?.put_with_key(&value, &meta.id.as_str().into()).map(drop))
            .await
    }

    /// Stores chunk `index` (`meta.chunk_sha[index]` already set by the caller) and `meta`
    /// in one transaction.
    pub async fn put_chunk(&self, meta: &ModelMeta, index: usize, bytes: &[u8]) -> Result<(), StoreError> {
        let value = meta_value(meta)?;
        let data: JsValue = js_sys::Uint8Array::from(bytes).into();
        self.write(&[MODELS, CHUNKS], |tx| {
            tx.object_store(CHUNKS)?.put_with_key(&data, &chunk_key(&meta.id, index).into())?;
            tx.object_store(MODELS)?.put_with_key(&value, &meta.id.as_str().into()).map(drop)
        })
        .await
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
