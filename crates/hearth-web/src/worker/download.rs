//! Model bytes into IndexedDB: from the network (streaming `fetch`, resumed with HTTP Range
//! after a cut connection or a reload) or from a local file. Bytes go to storage in
//! [`CHUNK`]-sized pieces as they arrive, so wasm memory holds one chunk, never the model.
//! When the last byte is stored the whole file is read back and its sha256 checked against
//! the published one; until then the model is not loadable.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use sha2::{Digest, Sha256};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;

use super::source::hex;
use super::{now_ms, post, scope};
use crate::protocol::{CatalogEntry, ErrorKind, FromWorker, Phase};
use crate::resume;
use crate::store::{ModelMeta, Store, StoreError, CHUNK};

/// A download's stop switch: a flag checked between reads, and the fetch in flight, aborted
/// at once (a stalled connection would otherwise never reach the next check).
#[derive(Default)]
pub struct Cancel {
    flag: Cell<bool>,
    fetch: RefCell<Option<web_sys::AbortController>>,
}

impl Cancel {
    pub fn cancel(&self) {
        self.flag.set(true);
        if let Some(abort) = self.fetch.borrow().as_ref() {
            abort.abort();
        }
    }

    pub fn is_set(&self) -> bool {
        self.flag.get()
    }

    /// The fetch to abort on [`Cancel::cancel`] from now on.
    fn watch(&self, abort: &web_sys::AbortController) {
        if self.flag.get() {
            abort.abort();
        }
        *self.fetch.borrow_mut() = Some(abort.clone());
    }
}

/// A body that sends nothing for this long is given up (and resumed): the connection stalled.
const IDLE_MS: i32 = 60_000;

/// Why a download stopped.
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    #[error("download cancelled")]
    Cancelled,
    #[error("the download stopped: {0}. Press Resume to continue from where it stopped")]
    Network(String),
    #[error("{0}")]
    Http(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("not enough browser storage: the model needs {needed} MB more, {free} MB are free. Delete a model on the Storage page or free disk space")]
    NoRoom { needed: u64, free: u64 },
    #[error("{0}")]
    Corrupt(String),
}

impl DownloadError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            DownloadError::Network(_) | DownloadError::Cancelled => ErrorKind::Network,
            DownloadError::Http(_) => ErrorKind::Network,
            DownloadError::Store(StoreError::Quota(_)) | DownloadError::NoRoom { .. } => ErrorKind::Quota,
            DownloadError::Store(_) => ErrorKind::Other,
            DownloadError::Corrupt(_) => ErrorKind::Corrupt,
        }
    }
}

fn js_err(e: JsValue) -> String {
    e.dyn_ref::<js_sys::Error>().map(|e| String::from(e.message())).unwrap_or_else(|| format!("{e:?}"))
}

/// Throttled progress events with a smoothed rate.
struct Progress {
    id: String,
    phase: Phase,
    start_ms: f64,
    start_bytes: u64,
    last_post: f64,
}

impl Progress {
    fn new(id: &str, phase: Phase, start_bytes: u64) -> Self {
        Progress { id: id.to_string(), phase, start_ms: now_ms(), start_bytes, last_post: 0.0 }
    }

    fn report(&mut self, done: u64, total: u64, force: bool) {
        let now = now_ms();
        if !force && now - self.last_post < 100.0 {
            return;
        }
        self.last_post = now;
        let secs = ((now - self.start_ms) / 1000.0).max(1e-3);
        let bytes_per_sec = done.saturating_sub(self.start_bytes) as f64 / secs;
        post(&FromWorker::Progress { id: self.id.clone(), phase: self.phase, done, total, bytes_per_sec });
    }
}

/// Free bytes the browser grants this origin, if it says.
pub async fn storage_estimate() -> Option<(u64, u64)> {
    let storage = scope()?.navigator().storage();
    let estimate = JsFuture::from(storage.estimate().ok()?).await.ok()?;
    let get = |k: &str| js_sys::Reflect::get(&estimate, &k.into()).ok()?.as_f64().map(|v| v as u64);
    Some((get("quota")?, get("usage")?))
}

pub async fn storage_persisted() -> bool {
    let Some(scope) = scope() else { return false };
    match scope.navigator().storage().persisted() {
        Ok(p) => JsFuture::from(p).await.ok().and_then(|v| v.as_bool()).unwrap_or(false),
        Err(_) => false,
    }
}

/// Fails early when the bytes still to come cannot fit the origin's quota.
async fn check_room(remaining: u64) -> Result<(), DownloadError> {
    if let Some((quota, usage)) = storage_estimate().await {
        let free = quota.saturating_sub(usage);
        if remaining > free {
            return Err(DownloadError::NoRoom { needed: remaining.div_ceil(1 << 20), free: free / (1 << 20) });
        }
    }
    Ok(())
}

/// Where a download resumes: the record as stored, or a new one, stored (so the Storage page
/// lists it, with its Delete button, while it downloads). A stored partial download of
/// another file (the catalog's address or checksum changed since) is dropped, not resumed.
pub async fn start_meta(store: &Store, entry: &CatalogEntry) -> Result<ModelMeta, DownloadError> {
    let expected_sha256 = entry.sha256.as_ref().map(|s| s.to_lowercase());
    let stale = match store.meta(&entry.id).await? {
        Some(m) if m.complete || (m.url == entry.url && m.expected_sha256 == expected_sha256) => return Ok(m),
        Some(_) => true,
        None => false,
    };
    let meta = ModelMeta {
        id: entry.id.clone(),
        name: entry.name.clone(),
        url: entry.url.clone(),
        size: entry.size,
        size_pinned: entry.size.is_some(),
        validator: None,
        expected_sha256,
        chunk_sha: Vec::new(),
        complete: false,
        sha256: None,
        verified: false,
        default_context: entry.default_context,
    };
    // The record first: it never counts a chunk that is gone.
    store.put_meta(&meta).await?;
    if stale {
        store.delete_chunks(&entry.id, 0).await?;
    }
    Ok(meta)
}

/// Appends bytes to the model chunk by chunk.
struct ChunkWriter<'a> {
    store: &'a Store,
    meta: ModelMeta,
    buf: Vec<u8>,
}

impl ChunkWriter<'_> {
    /// Bytes stored plus those held for the next chunk.
    fn received(&self) -> u64 {
        self.meta.chunk_sha.len() as u64 * CHUNK + self.buf.len() as u64
    }

    /// Drops every byte stored or held, to start the file again from byte 0.
    async fn restart(&mut self) -> Result<(), DownloadError> {
        self.buf.clear();
        if !self.meta.chunk_sha.is_empty() {
            // The record first: it never counts a chunk that is gone.
            self.meta.chunk_sha.clear();
            self.store.put_meta(&self.meta).await?;
            self.store.delete_chunks(&self.meta.id, 0).await?;
        }
        Ok(())
    }

    async fn push(&mut self, mut bytes: &[u8]) -> Result<(), DownloadError> {
        while !bytes.is_empty() {
            let take = (CHUNK as usize - self.buf.len()).min(bytes.len());
            self.buf.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if self.buf.len() == CHUNK as usize {
                self.flush().await?;
            }
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), DownloadError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let index = self.meta.chunk_sha.len();
        self.meta.chunk_sha.push(hex(&Sha256::digest(&self.buf)));
        if let Err(e) = self.store.put_chunk(&self.meta, index, &self.buf).await {
            self.meta.chunk_sha.pop();
            return Err(e.into());
        }
        self.buf.clear();
        Ok(())
    }
}

/// A byte stream's reader: `fetch` bodies and `File::stream()` alike.
async fn read_stream(
    stream: web_sys::ReadableStream,
    writer: &mut ChunkWriter<'_>,
    total: u64,
    cancel: &Cancel,
    progress: &mut Progress,
) -> Result<(), DownloadError> {
    let reader: web_sys::ReadableStreamDefaultReader = stream.get_reader().unchecked_into();
    loop {
        if cancel.is_set() {
            let _ = reader.cancel();
            return Err(DownloadError::Cancelled);
        }
        let result = read_within(&reader, IDLE_MS).await?;
        let done = js_sys::Reflect::get(&result, &"done".into()).ok().and_then(|v| v.as_bool()).unwrap_or(true);
        if done {
            return Ok(());
        }
        let value = js_sys::Reflect::get(&result, &"value".into()).map_err(|e| DownloadError::Network(js_err(e)))?;
        let bytes = js_sys::Uint8Array::new(&value).to_vec();
        if writer.received() + bytes.len() as u64 > total {
            return Err(DownloadError::Corrupt(format!(
                "the server sent more than the {total} bytes it announced; not keeping it"
            )));
        }
        writer.push(&bytes).await?;
        progress.report(writer.received(), total, false);
    }
}

/// A response, and the switch that stops its transfer.
struct Fetched {
    response: web_sys::Response,
    abort: web_sys::AbortController,
}

impl Fetched {
    /// Stops the transfer (the connection is dropped), e.g. for a body not to be stored.
    fn discard(&self) {
        self.abort.abort();
    }
}

/// The reader's next result, or a network error when nothing comes for `idle_ms` (the reader
/// is cancelled then).
async fn read_within(reader: &web_sys::ReadableStreamDefaultReader, idle_ms: i32) -> Result<JsValue, DownloadError> {
    let scope = scope().ok_or_else(|| DownloadError::Network("no worker scope".into()))?;
    let timer = Cell::new(None);
    let idle = js_sys::Promise::new(&mut |resolve, _| {
        timer.set(scope.set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, idle_ms).ok());
    });
    let first = js_sys::Promise::race(&js_sys::Array::of2(&reader.read(), &idle));
    let result = JsFuture::from(first).await;
    if let Some(id) = timer.get() {
        scope.clear_timeout_with_handle(id);
    }
    match result {
        // The timer resolves with `undefined`; a read, with a `{ done, value }` object.
        Ok(r) if r.is_undefined() => {
            let _ = reader.cancel();
            Err(DownloadError::Network(format!("no data came for {} s", idle_ms / 1000)))
        }
        Ok(r) => Ok(r),
        Err(e) => Err(DownloadError::Network(js_err(e))),
    }
}

/// GET `url`, with a `Range` header if given, and `If-Range` if given.
async fn fetch(
    url: &str,
    range: Option<String>,
    if_range: Option<&str>,
    cancel: &Cancel,
) -> Result<Fetched, DownloadError> {
    let net = |e: JsValue| DownloadError::Network(js_err(e));
    let init = web_sys::RequestInit::new();
    let headers = web_sys::Headers::new().map_err(net)?;
    if let Some(range) = range {
        headers.set("Range", &range).map_err(net)?;
        if let Some(v) = if_range {
            headers.set("If-Range", v).map_err(net)?;
        }
    }
    init.set_headers(&headers);
    // The bytes are checked by sha256 and stored by us: the HTTP cache would only double them.
    init.set_cache(web_sys::RequestCache::NoStore);
    // Abortable at any point, headers included: a stalled fetch holds no reader to cancel.
    let abort = web_sys::AbortController::new().map_err(net)?;
    init.set_signal(Some(&abort.signal()));
    cancel.watch(&abort);
    let scope = scope().ok_or_else(|| DownloadError::Network("no worker scope".into()))?;
    let response = JsFuture::from(scope.fetch_with_str_and_init(url, &init)).await.map_err(net)?;
    Ok(Fetched { response: response.unchecked_into(), abort })
}

/// How one attempt ended, short of an error.
enum Attempt {
    /// The response ended (early or not); what came is in the writer.
    Received,
    /// The file on the server is not the one partly stored: what was stored is deleted.
    Changed,
}

/// One attempt: ask for the bytes after those received so far (the stored chunks and the
/// partial chunk the writer holds), and keep the answer only where [`resume::next`] says it
/// continues them.
async fn fetch_rest(
    writer: &mut ChunkWriter<'_>,
    cancel: &Cancel,
    send_if_range: bool,
) -> Result<Attempt, DownloadError> {
    let known = writer.meta.known();
    let Some(offset) = resume::request_from(writer.received(), &known) else {
        // Every byte is here (the last, partial chunk perhaps only in the writer): verify.
        writer.flush().await?;
        return Ok(Attempt::Received);
    };
    let if_range = known.validator.as_deref().filter(|_| send_if_range);
    let fetched = fetch(&writer.meta.url, (offset > 0).then(|| format!("bytes={offset}-")), if_range, cancel).await?;
    let response = &fetched.response;
    let header = |name: &str| response.headers().get(name).ok().flatten();
    let (content_range, etag, last_modified) = (header("Content-Range"), header("ETag"), header("Last-Modified"));
    let reply = resume::Reply {
        status: response.status(),
        content_range: content_range.as_deref(),
        content_length: header("Content-Length").and_then(|v| v.parse().ok()),
        etag: etag.as_deref(),
        last_modified: last_modified.as_deref(),
    };
    let next = resume::next(offset, &known, &reply).map_err(|refusal| {
        fetched.discard();
        match refusal {
            resume::Refusal::Status(status) => DownloadError::Http(format!(
                "the server answered {status} {} for {}: check the address",
                response.status_text(),
                writer.meta.url
            )),
            resume::Refusal::SizeMismatch { .. } => DownloadError::Corrupt(refusal.to_string()),
            other => DownloadError::Http(other.to_string()),
        }
    })?;
    let meta = &mut writer.meta;
    let total = match next {
        resume::Next::Complete => {
            fetched.discard();
            writer.flush().await?;
            return Ok(Attempt::Received);
        }
        resume::Next::Changed => {
            fetched.discard();
            writer.restart().await?;
            writer.meta.validator = None;
            if !writer.meta.size_pinned {
                writer.meta.size = None;
            }
            writer.store.put_meta(&writer.meta).await?;
            return Ok(Attempt::Changed);
        }
        resume::Next::Restart { total } => {
            meta.validator = resume::validator(reply.etag, reply.last_modified);
            writer.restart().await?;
            total
        }
        resume::Next::Append { total } => {
            if meta.validator.is_none() {
                meta.validator = resume::validator(reply.etag, reply.last_modified);
            }
            total
        }
    };
    writer.meta.size = Some(total);
    writer.store.put_meta(&writer.meta).await?;
    if let Err(e) = check_room(total - writer.received()).await {
        fetched.discard();
        return Err(e);
    }
    let Some(body) = response.body() else {
        return Ok(Attempt::Received);
    };
    let mut progress = Progress::new(&writer.meta.id, Phase::Downloading, writer.received());
    let read = read_stream(body, writer, total, cancel, &mut progress).await;
    if read.is_err() {
        fetched.discard();
    }
    progress.report(writer.received(), total, true);
    // The last, partial chunk is stored once the file is whole, even if the stream then
    // failed to end cleanly; a partial chunk of a broken stream stays in the writer for the
    // next attempt to complete.
    if writer.received() == total && !matches!(read, Err(DownloadError::Cancelled)) {
        writer.flush().await?;
        return Ok(Attempt::Received);
    }
    read.map(|_| Attempt::Received)
}

/// Downloads (or resumes) the model of `meta` (from [`start_meta`]), retrying a broken connection with backoff (reset whenever
/// an attempt got something), then verifies it. Returns the complete record.
pub async fn download(store: &Store, meta: ModelMeta, cancel: Rc<Cancel>) -> Result<ModelMeta, DownloadError> {
    if meta.complete {
        return Ok(meta);
    }
    let mut writer = ChunkWriter { store, meta, buf: Vec::with_capacity(CHUNK as usize) };
    let mut delay_ms = 500;
    let mut attempts = 0;
    let mut restarts = 0;
    // `If-Range` is not a CORS-safelisted header: a CDN that refuses it in the preflight fails
    // the fetch itself. Then resume without it; the validator is still compared by hand.
    let mut send_if_range = true;
    loop {
        let before = writer.received();
        let msg = match fetch_rest(&mut writer, &cancel, send_if_range).await {
            Ok(Attempt::Received) if writer.meta.size.is_some_and(|s| writer.meta.stored_bytes() >= s) => break,
            Ok(Attempt::Received) => "the server closed the connection early".to_string(),
            Ok(Attempt::Changed) => {
                restarts += 1;
                if restarts > 2 {
                    return Err(DownloadError::Http(
                        "the file on the server keeps changing while it downloads; try again later".into(),
                    ));
                }
                post(&FromWorker::Notice {
                    message: format!(
                        "{} changed on the server; downloading it again from the start.",
                        writer.meta.name
                    ),
                });
                continue;
            }
            Err(DownloadError::Network(msg)) => msg,
            Err(e) => return Err(e),
        };
        if writer.received() > before {
            attempts = 0;
            delay_ms = 500;
        } else {
            attempts += 1;
            if writer.meta.validator.is_some() && writer.received() > 0 {
                send_if_range = false;
            }
        }
        if cancel.is_set() {
            return Err(DownloadError::Cancelled);
        }
        if attempts >= 4 {
            return Err(DownloadError::Network(msg));
        }
        post(&FromWorker::Notice {
            message: format!("The connection broke ({msg}); resuming from {} MB.", writer.received() >> 20),
        });
        gloo_timers::future::TimeoutFuture::new(delay_ms).await;
        delay_ms = (delay_ms * 2).min(8000);
    }
    verify(store, writer.meta, &cancel).await
}

/// Imports a local file through the same chunk writer; no Range needed, and no published
/// hash to compare with (the file's own sha256 is recorded).
pub async fn import_file(
    store: &Store,
    id: &str,
    name: &str,
    file: web_sys::File,
    cancel: Rc<Cancel>,
) -> Result<ModelMeta, DownloadError> {
    let total = file.size() as u64;
    // Room first: a file that cannot fit must not cost the copy already stored under this id.
    let replaced = store.meta(id).await?.map_or(0, |m| m.stored_bytes());
    check_room(total.saturating_sub(replaced)).await?;
    let meta = ModelMeta {
        id: id.to_string(),
        name: name.to_string(),
        url: format!("file:{name}"),
        size: Some(total),
        size_pinned: true,
        validator: None,
        expected_sha256: None,
        chunk_sha: Vec::new(),
        complete: false,
        sha256: None,
        verified: false,
        default_context: 2048,
    };
    // The new record first: a copy already stored under this id is never marked complete
    // while its chunks go.
    store.put_meta(&meta).await?;
    store.delete_chunks(id, 0).await?;
    let mut writer = ChunkWriter { store, meta, buf: Vec::with_capacity(CHUNK as usize) };
    let mut progress = Progress::new(id, Phase::Downloading, 0);
    let imported = async {
        read_stream(file.stream(), &mut writer, total, &cancel, &mut progress).await?;
        writer.flush().await?;
        progress.report(writer.received(), total, true);
        Ok(())
    }
    .await;
    if let Err(e) = imported {
        // An import cannot resume (the file is gone with the page's request): free its space.
        let _ = store.delete(id).await;
        return Err(e);
    }
    verify(store, writer.meta, &cancel).await
}

/// Checks a model file from the browser's shared storage before anything of it is used: its
/// size and whole-file sha256 against the catalog's, reading it once in store-sized chunks
/// and keeping each chunk's hash, so the load checks every chunk again as it reads it (a file
/// that changes afterwards is caught too).
pub async fn verify_file(
    blob: web_sys::Blob,
    entry: &CatalogEntry,
    cancel: &Cancel,
) -> Result<crate::store::FileModel, DownloadError> {
    let (Some(size), Some(expected)) = (entry.size, entry.sha256.clone()) else {
        return Err(DownloadError::Corrupt(
            "a shared file is used only for a model with a published size and sha256".into(),
        ));
    };
    let total = blob.size() as u64;
    if total != size {
        return Err(DownloadError::Corrupt(format!("the shared copy has {total} bytes, the model {size}: not used")));
    }
    let mut progress = Progress::new(&entry.id, Phase::Verifying, 0);
    let (mut file, mut chunk_sha, mut done) = (Sha256::new(), Vec::new(), 0u64);
    while done < total {
        if cancel.is_set() {
            return Err(DownloadError::Cancelled);
        }
        let bytes = crate::store::FileModel::slice(&blob, done, (done + CHUNK).min(total)).await?;
        if bytes.is_empty() {
            return Err(DownloadError::Corrupt("the shared copy ended early: not used".into()));
        }
        file.update(&bytes);
        chunk_sha.push(hex(&Sha256::digest(&bytes)));
        done += bytes.len() as u64;
        progress.report(done, total, false);
    }
    let sha = hex(&file.finalize());
    if sha != expected {
        return Err(DownloadError::Corrupt(format!(
            "the shared copy's sha256 is {sha}, the model's {expected}: it is not used"
        )));
    }
    let meta = ModelMeta {
        id: entry.id.clone(),
        name: entry.name.clone(),
        url: entry.url.clone(),
        size: Some(size),
        size_pinned: true,
        validator: None,
        expected_sha256: Some(expected),
        chunk_sha,
        complete: true,
        sha256: Some(sha),
        verified: true,
        default_context: entry.default_context,
    };
    Ok(crate::store::FileModel { meta, blob })
}

/// Reads every stored chunk back, checks it against its own hash and the whole file against
/// the published sha256, and marks the model complete. A mismatch deletes the bytes.
async fn verify(store: &Store, mut meta: ModelMeta, cancel: &Cancel) -> Result<ModelMeta, DownloadError> {
    let total = meta.size.unwrap_or(0);
    let mut progress = Progress::new(&meta.id, Phase::Verifying, 0);
    let mut file = Sha256::new();
    let mut done = 0u64;
    for (index, expected) in meta.chunk_sha.iter().enumerate() {
        if cancel.is_set() {
            return Err(DownloadError::Cancelled);
        }
        let bytes = store.chunk(&meta.id, index).await?.unwrap_or_default();
        if hex(&Sha256::digest(&bytes)) != *expected {
            store.delete_chunks(&meta.id, index).await?;
            meta.chunk_sha.truncate(index);
            store.put_meta(&meta).await?;
            return Err(DownloadError::Corrupt(format!(
                "stored chunk {index} changed after it was written; it was deleted, press Resume to fetch it again"
            )));
        }
        file.update(&bytes);
        done += bytes.len() as u64;
        progress.report(done, total, false);
    }
    let sha = hex(&file.finalize());
    if done != total {
        return Err(DownloadError::Corrupt(format!("stored {done} bytes of {total}")));
    }
    if let Some(expected) = &meta.expected_sha256 {
        if *expected != sha {
            store.delete(&meta.id).await?;
            return Err(DownloadError::Corrupt(format!(
                "the downloaded file's sha256 is {sha}, but the published one is {expected}: it was deleted and will not be run. Try again; if it repeats, the file on the server changed"
            )));
        }
    }
    meta.verified = meta.expected_sha256.is_some();
    meta.sha256 = Some(sha);
    meta.complete = true;
    store.put_meta(&meta).await?;
    progress.report(total, total, true);
    Ok(meta)
}

/// Fetches chunk `index` again (after it failed its check at load) and stores it if it
/// matches the hash recorded when the verified download wrote it.
pub async fn refetch_chunk(store: &Store, meta: &ModelMeta, index: usize) -> Result<(), DownloadError> {
    let total = meta.size.unwrap_or(0);
    let start = index as u64 * CHUNK;
    let end = (start + CHUNK).min(total);
    if start >= end {
        return Err(DownloadError::Corrupt(format!("piece {index} lies past the end of a {total}-byte model")));
    }
    // No If-Range: the piece's recorded sha256 decides, and a cross-origin preflight is saved.
    let fetched = fetch(&meta.url, Some(format!("bytes={start}-{}", end - 1)), None, &Cancel::default()).await?;
    let response = &fetched.response;
    if response.status() != 206 {
        fetched.discard();
        return Err(DownloadError::Http(format!(
            "re-fetching a damaged piece: the server answered {}",
            response.status()
        )));
    }
    let buf = JsFuture::from(response.array_buffer().map_err(|e| DownloadError::Network(js_err(e)))?)
        .await
        .map_err(|e| DownloadError::Network(js_err(e)))?;
    let bytes = js_sys::Uint8Array::new(&buf).to_vec();
    if meta.chunk_sha.get(index).map(String::as_str) != Some(hex(&Sha256::digest(&bytes)).as_str()) {
        return Err(DownloadError::Corrupt(format!(
            "the re-fetched piece {index} does not match what was verified; delete the model and download it again"
        )));
    }
    store.put_chunk(meta, index, &bytes).await?;
    Ok(())
}
