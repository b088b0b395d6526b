//! Models in IndexedDB (database `hearth-models`).
//!
//! A model is a metadata record in `models` and its bytes as fixed-size chunks in `chunks`,
//! keyed `"<id>/<index, 8 digits>"` so one model's chunks sort together and delete as a key
//! range. Each chunk is written in the same transaction as the metadata that counts it, with
//! its sha256: a download cut at any point leaves a consistent prefix to resume from, and a
//! chunk damaged later is caught when it is read (see `worker::source`).
//!
//! The worker's [`Store`] is either its own database ([`IdbStore`]) or one the page holds
//! and runs calls on for it ([`StoreCall`], [`StoreReply`]): the embedded widget's page, once
//! the visitor grants it Hearth's first-party storage (the Storage Access API hands that only
//! to the window, never to a worker).
//!
//! Written on `web_sys` directly rather than `indexed_db_futures`: the widget must open the
//! database through a given `IDBFactory` (a `StorageAccessHandle`'s), which that crate cannot.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;

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
            shared: false,
        }
    }
}

/// What went wrong in storage, by what a person can do about it.
#[derive(Debug, Clone, PartialEq, thiserror::Error, Serialize, Deserialize)]
pub enum StoreError {
    #[error("browser storage is full ({0}): delete a model on the Storage page, or free disk space")]
    Quota(String),
    #[error("IndexedDB is not available here ({0}); private windows in some browsers block it")]
    Unavailable(String),
    #[error("IndexedDB failed: {0}")]
    Other(String),
}

fn classify(text: String) -> StoreError {
    if text.contains("Quota") {
        StoreError::Quota(text)
    } else {
        StoreError::Other(text)
    }
}

/// A record as the database has always held it (`indexed_db_futures`' `.serde()` settings,
/// which wrote the records of earlier versions).
fn meta_value(meta: &ModelMeta) -> Result<JsValue, StoreError> {
    meta.serialize(&serde_wasm_bindgen::Serializer::new().serialize_maps_as_objects(true))
        .map_err(|e| StoreError::Other(format!("encoding a model record: {e}")))
}

/// An exception as "Name: message". Read as properties, not through `instanceof`: the widget's
/// granted factory throws exceptions of another window's realm.
pub(crate) fn js_text(e: &JsValue) -> String {
    let get = |k: &str| js_sys::Reflect::get(e, &k.into()).ok().and_then(|v| v.as_string());
    match (get("name"), get("message")) {
        (Some(name), Some(message)) => format!("{name}: {message}"),
        _ => e.as_string().unwrap_or_else(|| format!("{e:?}")),
    }
}

/// Waits for `request` to succeed (its result) or fail (its error).
async fn done(request: &web_sys::IdbRequest) -> Result<JsValue, StoreError> {
    let settled = js_sys::Promise::new(&mut |resolve, reject| {
        request.set_onsuccess(Some(&resolve));
        request.set_onerror(Some(&reject));
    });
    match JsFuture::from(settled).await {
        Ok(_) => request.result().map_err(|e| classify(js_text(&e))),
        Err(_) => Err(match request.error() {
            Ok(Some(e)) => classify(format!("{}: {}", e.name(), e.message())),
            _ => StoreError::Other("the request failed".into()),
        }),
    }
}

fn chunk_key(id: &str, index: usize) -> String {
    format!("{id}/{index:08}")
}

/// The model database on one `IDBFactory`.
pub struct IdbStore {
    db: web_sys::IdbDatabase,
}

impl IdbStore {
    /// The database of this global (the worker's, or the page's).
    pub async fn open() -> Result<IdbStore, StoreError> {
        let factory = js_sys::Reflect::get(&js_sys::global(), &"indexedDB".into())
            .ok()
            .and_then(|f| f.dyn_into::<web_sys::IdbFactory>().ok())
            .ok_or_else(|| StoreError::Unavailable("this browser has no IndexedDB here".into()))?;
        IdbStore::open_on(&factory).await
    }

    /// The database through `factory` (a `StorageAccessHandle`'s, in the widget).
    pub async fn open_on(factory: &web_sys::IdbFactory) -> Result<IdbStore, StoreError> {
        let unavailable = |e: JsValue| StoreError::Unavailable(js_text(&e));
        let request = factory.open_with_u32(DB_NAME, 1).map_err(unavailable)?;
        let upgrade = Closure::<dyn FnMut(web_sys::Event)>::new({
            let request = request.clone();
            move |_: web_sys::Event| {
                let Ok(db) = request.result().map(|r| r.unchecked_into::<web_sys::IdbDatabase>()) else { return };
                let names = db.object_store_names();
                for name in [MODELS, CHUNKS] {
                    if !names.contains(name) {
                        let _ = db.create_object_store(name);
                    }
                }
            }
        });
        request.set_onupgradeneeded(Some(upgrade.as_ref().unchecked_ref()));
        let result = done(&request).await;
        request.set_onupgradeneeded(None);
        // Unchecked: a factory from another window (a granted first-party one) makes objects
        // of that window's realm, which `instanceof` here would refuse.
        let db = result.map_err(|e| StoreError::Unavailable(e.to_string()))?.unchecked_into::<web_sys::IdbDatabase>();
        Ok(IdbStore { db })
    }

    fn store(
        &self,
        name: &str,
        mode: web_sys::IdbTransactionMode,
    ) -> Result<(web_sys::IdbTransaction, web_sys::IdbObjectStore), StoreError> {
        let tx = self.db.transaction_with_str_and_mode(name, mode).map_err(|e| classify(js_text(&e)))?;
        let store = tx.object_store(name).map_err(|e| classify(js_text(&e)))?;
        Ok((tx, store))
    }

    /// Runs `fill` in a read-write transaction over `stores` and waits for it to commit; an
    /// abort is classified by the transaction's own error (`QuotaExceededError` on a full disk
    /// or quota).
    async fn write(
        &self,
        stores: &[&str],
        fill: impl FnOnce(&web_sys::IdbTransaction) -> Result<(), JsValue>,
    ) -> Result<(), StoreError> {
        let names: js_sys::Array = stores.iter().map(|s| JsValue::from_str(s)).collect();
        let tx = self
            .db
            .transaction_with_str_sequence_and_mode(&names, web_sys::IdbTransactionMode::Readwrite)
            .map_err(|e| classify(js_text(&e)))?;
        if let Err(e) = fill(&tx) {
            let _ = tx.abort();
            return Err(classify(js_text(&e)));
        }
        let committed = js_sys::Promise::new(&mut |resolve, reject| {
            tx.set_oncomplete(Some(&resolve));
            tx.set_onabort(Some(&reject));
        });
        // No explicit commit: the transaction commits when its requests are done.
        match JsFuture::from(committed).await {
            Ok(_) => Ok(()),
            Err(_) => Err(match tx.error() {
                Some(e) if e.name() == "QuotaExceededError" => StoreError::Quota(e.message()),
                Some(e) => StoreError::Other(format!("{}: {}", e.name(), e.message())),
                None => StoreError::Other("the write was aborted".into()),
            }),
        }
    }

    pub async fn models(&self) -> Result<Vec<ModelMeta>, StoreError> {
        let (_tx, store) = self.store(MODELS, web_sys::IdbTransactionMode::Readonly)?;
        let all = done(&store.get_all().map_err(|e| classify(js_text(&e)))?).await?;
        let all: js_sys::Array = all.dyn_into().map_err(|_| StoreError::Other("getAll gave no array".into()))?;
        // A record that no longer reads is skipped rather than losing all the others.
        Ok(all.iter().filter_map(|v| serde_wasm_bindgen::from_value(v).ok()).collect())
    }

    pub async fn meta(&self, id: &str) -> Result<Option<ModelMeta>, StoreError> {
        let (_tx, store) = self.store(MODELS, web_sys::IdbTransactionMode::Readonly)?;
        let value = done(&store.get(&id.into()).map_err(|e| classify(js_text(&e)))?).await?;
        if value.is_undefined() {
            return Ok(None);
        }
        serde_wasm_bindgen::from_value(value).map(Some).map_err(|e| StoreError::Other(format!("a model record: {e}")))
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
        let (_tx, store) = self.store(CHUNKS, web_sys::IdbTransactionMode::Readonly)?;
        let value = done(&store.get(&chunk_key(id, index).into()).map_err(|e| classify(js_text(&e)))?).await?;
        Ok((!value.is_undefined()).then(|| js_sys::Uint8Array::new(&value).to_vec()))
    }

    /// Deletes chunks `from..` of `id` (all of them for 0).
    pub async fn delete_chunks(&self, id: &str, from: usize) -> Result<(), StoreError> {
        // Keys are "<id>/<8 digits>": '/' + 1 is '0', so "<id>0" bounds them above.
        let range = web_sys::IdbKeyRange::bound_with_lower_open_and_upper_open(
            &chunk_key(id, from).into(),
            &format!("{id}0").into(),
            false,
            true,
        )
        .map_err(|e| StoreError::Other(js_text(&e)))?;
        self.write(&[CHUNKS], |tx| tx.object_store(CHUNKS)?.delete(&range).map(drop)).await
    }

    /// Deletes a model: its chunks and its record, in one transaction.
    pub async fn delete(&self, id: &str) -> Result<(), StoreError> {
        let range = web_sys::IdbKeyRange::bound_with_lower_open_and_upper_open(
            &chunk_key(id, 0).into(),
            &format!("{id}0").into(),
            false,
            true,
        )
        .map_err(|e| StoreError::Other(js_text(&e)))?;
        self.write(&[MODELS, CHUNKS], |tx| {
            tx.object_store(CHUNKS)?.delete(&range)?;
            tx.object_store(MODELS)?.delete(&id.into()).map(drop)
        })
        .await
    }

    /// Runs a call the worker sent (the page's side of a brokered store).
    pub async fn run(&self, call: StoreCall) -> StoreReply {
        let reply = match call {
            StoreCall::Models => self.models().await.map(StoreReply::Models),
            StoreCall::Meta { id } => self.meta(&id).await.map(StoreReply::Meta),
            StoreCall::PutMeta { meta } => self.put_meta(&meta).await.map(|()| StoreReply::Done),
            StoreCall::PutChunk { meta, index, bytes } => {
                self.put_chunk(&meta, index, &bytes).await.map(|()| StoreReply::Done)
            }
            StoreCall::Chunk { id, index } => self.chunk(&id, index).await.map(StoreReply::Chunk),
            StoreCall::DeleteChunks { id, from } => self.delete_chunks(&id, from).await.map(|()| StoreReply::Done),
            StoreCall::Delete { id } => self.delete(&id).await.map(|()| StoreReply::Done),
        };
        reply.unwrap_or_else(StoreReply::Failed)
    }
}

/// One store operation the worker asks the page to run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum StoreCall {
    Models,
    Meta {
        id: String,
    },
    PutMeta {
        meta: ModelMeta,
    },
    PutChunk {
        meta: ModelMeta,
        index: usize,
        #[serde(with = "crate::protocol::bytes")]
        bytes: Vec<u8>,
    },
    Chunk {
        id: String,
        index: usize,
    },
    DeleteChunks {
        id: String,
        from: usize,
    },
    Delete {
        id: String,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum StoreReply {
    Models(Vec<ModelMeta>),
    Meta(Option<ModelMeta>),
    Chunk(#[serde(with = "crate::protocol::opt_bytes")] Option<Vec<u8>>),
    Done,
    Failed(StoreError),
}

/// The worker's end of a store the page runs: calls go out as `FromWorker::StoreCall` and
/// their replies come back as `ToWorker::StoreReply`, matched by number.
#[derive(Default)]
pub struct Brokered {
    next: Cell<u32>,
    waiting: RefCell<HashMap<u32, futures_channel::oneshot::Sender<StoreReply>>>,
}

impl Brokered {
    async fn call(&self, call: StoreCall) -> Result<StoreReply, StoreError> {
        let seq = self.next.get().wrapping_add(1);
        self.next.set(seq);
        let (tx, rx) = futures_channel::oneshot::channel();
        self.waiting.borrow_mut().insert(seq, tx);
        crate::worker::post(&crate::protocol::FromWorker::StoreCall { seq, call });
        match rx.await {
            Ok(StoreReply::Failed(e)) => Err(e),
            Ok(reply) => Ok(reply),
            Err(_) => Err(StoreError::Unavailable("the page holding Hearth's storage went away".into())),
        }
    }

    /// A reply from the page (ignored if nothing waits for it).
    pub fn reply(&self, seq: u32, reply: StoreReply) {
        if let Some(tx) = self.waiting.borrow_mut().remove(&seq) {
            let _ = tx.send(reply);
        }
    }
}

fn unexpected(reply: StoreReply) -> StoreError {
    StoreError::Other(format!("the page answered a store call with {reply:?}"))
}

/// One verified model file held outside IndexedDB (a `Blob` from the browser's
/// Cross-Origin Storage), read chunk by chunk like a stored model and checked against the
/// chunk hashes its verification computed (`worker::download::verify_file`). Read-only.
pub struct FileModel {
    pub meta: ModelMeta,
    pub blob: web_sys::Blob,
}

impl FileModel {
    /// Bytes `start..end` of the file.
    pub async fn slice(blob: &web_sys::Blob, start: u64, end: u64) -> Result<Vec<u8>, StoreError> {
        let part = blob.slice_with_f64_and_f64(start as f64, end as f64).map_err(|e| StoreError::Other(js_text(&e)))?;
        let buffer = JsFuture::from(part.array_buffer()).await.map_err(|e| StoreError::Other(js_text(&e)))?;
        Ok(js_sys::Uint8Array::new(&buffer).to_vec())
    }

    async fn chunk(&self, id: &str, index: usize) -> Result<Option<Vec<u8>>, StoreError> {
        let size = self.meta.size.unwrap_or(0);
        let start = index as u64 * CHUNK;
        if id != self.meta.id || start >= size {
            return Ok(None);
        }
        FileModel::slice(&self.blob, start, (start + CHUNK).min(size)).await.map(Some)
    }
}

/// The worker's model store: its own database, one the page runs for it, or one shared file.
pub enum Store {
    Own(IdbStore),
    Page(Brokered),
    File(FileModel),
}

fn read_only() -> StoreError {
    StoreError::Other("a model from the browser's shared storage cannot be changed here".into())
}

impl Store {
    pub async fn open() -> Result<Store, StoreError> {
        IdbStore::open().await.map(Store::Own)
    }

    pub async fn models(&self) -> Result<Vec<ModelMeta>, StoreError> {
        match self {
            Store::Own(s) => s.models().await,
            Store::Page(b) => match b.call(StoreCall::Models).await? {
                StoreReply::Models(m) => Ok(m),
                other => Err(unexpected(other)),
            },
            Store::File(f) => Ok(vec![f.meta.clone()]),
        }
    }

    pub async fn meta(&self, id: &str) -> Result<Option<ModelMeta>, StoreError> {
        match self {
            Store::Own(s) => s.meta(id).await,
            Store::Page(b) => match b.call(StoreCall::Meta { id: id.to_string() }).await? {
                StoreReply::Meta(m) => Ok(m),
                other => Err(unexpected(other)),
            },
            Store::File(f) => Ok((f.meta.id == id).then(|| f.meta.clone())),
        }
    }

    pub async fn put_meta(&self, meta: &ModelMeta) -> Result<(), StoreError> {
        match self {
            Store::Own(s) => s.put_meta(meta).await,
            Store::Page(b) => b.call(StoreCall::PutMeta { meta: meta.clone() }).await.map(drop),
            Store::File(_) => Err(read_only()),
        }
    }

    pub async fn put_chunk(&self, meta: &ModelMeta, index: usize, bytes: &[u8]) -> Result<(), StoreError> {
        match self {
            Store::Own(s) => s.put_chunk(meta, index, bytes).await,
            Store::Page(b) => {
                b.call(StoreCall::PutChunk { meta: meta.clone(), index, bytes: bytes.to_vec() }).await.map(drop)
            }
            Store::File(_) => Err(read_only()),
        }
    }

    pub async fn chunk(&self, id: &str, index: usize) -> Result<Option<Vec<u8>>, StoreError> {
        match self {
            Store::Own(s) => s.chunk(id, index).await,
            Store::Page(b) => match b.call(StoreCall::Chunk { id: id.to_string(), index }).await? {
                StoreReply::Chunk(c) => Ok(c),
                other => Err(unexpected(other)),
            },
            Store::File(f) => f.chunk(id, index).await,
        }
    }

    pub async fn delete_chunks(&self, id: &str, from: usize) -> Result<(), StoreError> {
        match self {
            Store::Own(s) => s.delete_chunks(id, from).await,
            Store::Page(b) => b.call(StoreCall::DeleteChunks { id: id.to_string(), from }).await.map(drop),
            Store::File(_) => Err(read_only()),
        }
    }

    pub async fn delete(&self, id: &str) -> Result<(), StoreError> {
        match self {
            Store::Own(s) => s.delete(id).await,
            Store::Page(b) => b.call(StoreCall::Delete { id: id.to_string() }).await.map(drop),
            Store::File(_) => Err(read_only()),
        }
    }
}
