//! The engine worker: owns the GPU, the model store and the loaded model, and answers the
//! page's [`ToWorker`] requests with [`FromWorker`] events. Everything here is async and
//! yields to the worker's event loop at each GPU readback and storage request, so a `Stop`
//! or `Cancel` is seen between tokens or chunks.

mod api;
mod download;
mod session;
pub(crate) mod source;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

use hearth_gpu::ops::Strategy;
use hearth_gpu::{Gpu, GpuOptions};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

use crate::protocol::{check_id, AdapterSummary, ErrorKind, FromWorker, Origin, ToWorker};
use crate::store::Store;
use download::DownloadError;
use session::{LoadError, Session};

pub(crate) fn scope() -> Option<web_sys::DedicatedWorkerGlobalScope> {
    js_sys::global().dyn_into().ok()
}

/// Milliseconds on the worker's clock.
pub(crate) fn now_ms() -> f64 {
    scope().and_then(|s| s.performance()).map(|p| p.now()).unwrap_or(0.0)
}

/// Posts an event to the page.
pub fn post(event: &FromWorker) {
    if let (Some(scope), Ok(v)) = (scope(), serde_wasm_bindgen::to_value(event)) {
        let _ = scope.post_message(&v);
    }
}

fn error(kind: ErrorKind, message: impl Into<String>, id: Option<&str>) {
    post(&FromWorker::Error { kind, message: message.into(), id: id.map(str::to_string) });
}

#[derive(Default)]
struct State {
    store: RefCell<Option<Rc<Store>>>,
    gpu: RefCell<Option<Arc<Gpu>>>,
    /// The loaded model; taken out while it generates, so a second request is refused
    /// rather than racing it.
    session: RefCell<Option<Session>>,
    busy: Cell<bool>,
    stop: Cell<bool>,
    /// Counts opened devices: a device-lost callback acts only for the current one.
    device_generation: Cell<u32>,
    /// Stop switches of the downloads in progress.
    downloads: RefCell<HashMap<String, Rc<download::Cancel>>>,
    /// The model being loaded onto the GPU: it cannot be deleted meanwhile.
    loading: RefCell<Option<String>>,
    /// Models served from checked files of the browser's shared storage (`UseFile`), by id.
    files: RefCell<HashMap<String, Rc<Store>>>,
    /// Memory plans of stored models on the open adapter, by (id, sha256).
    plans: RefCell<HashMap<(String, String), crate::protocol::PlanSummary>>,
    /// The JS API's request queue.
    api: api::Api,
}

impl State {
    fn store(&self) -> Option<Rc<Store>> {
        self.store.borrow().clone()
    }
    fn gpu(&self) -> Option<Arc<Gpu>> {
        self.gpu.borrow().clone()
    }
}

thread_local! {
    static STATE: Rc<State> = Rc::default();
}

fn state() -> Rc<State> {
    STATE.with(Rc::clone)
}

/// Starts listening; called from `main` when running in the worker.
pub fn start() {
    let Some(scope) = scope() else { return };
    let on_message = Closure::<dyn FnMut(web_sys::MessageEvent)>::new(|e: web_sys::MessageEvent| {
        let data = e.data();
        let msg = js_sys::Reflect::get(&data, &"msg".into()).unwrap_or(JsValue::NULL);
        let file = js_sys::Reflect::get(&data, &"file".into()).ok().and_then(|f| f.dyn_into::<web_sys::File>().ok());
        match serde_wasm_bindgen::from_value::<ToWorker>(msg) {
            Ok(ToWorker::Stop) => state().stop.set(true),
            Ok(ToWorker::Chat { request_id, body }) => api::enqueue(&state(), request_id, body),
            Ok(ToWorker::Abort { request_id }) => api::abort(&state(), request_id),
            // Straight from the handler: the page's heartbeat sees a worker that is alive even
            // while it generates or downloads (those yield at every readback and chunk).
            Ok(ToWorker::Ping { seq }) => post(&FromWorker::Pong { seq }),
            #[cfg(feature = "test-hooks")]
            Ok(ToWorker::Panic) => panic!("a panic asked for by a test"),
            // Straight from the handler too: a load or download awaits it.
            Ok(ToWorker::StoreReply { seq, reply }) => {
                if let Some(Store::Page(broker)) = state().store().as_deref() {
                    broker.reply(seq, reply);
                }
            }
            Ok(ToWorker::Cancel { id }) => {
                if let Some(cancel) = state().downloads.borrow().get(&id) {
                    cancel.cancel();
                }
            }
            Ok(request) => wasm_bindgen_futures::spawn_local(handle(request, file)),
            Err(err) => error(ErrorKind::Other, format!("unreadable request from the page: {err}"), None),
        }
    });
    scope.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    // The worker lives as long as the page: the handler is never dropped.
    on_message.forget();
    post(&FromWorker::Booted);
}

async fn handle(request: ToWorker, file: Option<web_sys::File>) {
    let st = state();
    match request {
        ToWorker::Init => init(&st).await,
        ToWorker::ListStored => list_stored(&st).await,
        ToWorker::Download { entry } => {
            let Some(store) = st.store() else { return no_store() };
            // A catalog id, or a custom URL's (the JS API's `{ url, sha256 }` has a hash to check,
            // but stays in the URL namespace).
            let origin = Origin::of(&entry.id);
            if let Err(e) = check_id(&entry.id, origin).and_then(|()| match origin {
                Origin::File => Err("a local file is imported, not downloaded".into()),
                _ => Ok(()),
            }) {
                return error(ErrorKind::Other, format!("refused download: {e}"), Some(&entry.id));
            }
            let Some(cancel) = track(&st, &entry.id) else { return };
            let result = match download::start_meta(&store, &entry).await {
                Ok(meta) => {
                    list_stored(&st).await;
                    download::download(&store, meta, cancel).await
                }
                Err(e) => Err(e),
            };
            st.downloads.borrow_mut().remove(&entry.id);
            finish_download(&store, &entry.id, result).await;
            list_stored(&st).await;
        }
        ToWorker::ImportFile { id, name } => {
            let Some(store) = st.store() else { return no_store() };
            if let Err(e) = check_id(&id, Origin::File) {
                return error(ErrorKind::Other, format!("refused import: {e}"), Some(&id));
            }
            let Some(file) = file else {
                return error(ErrorKind::Other, "no file came with the import request", Some(&id));
            };
            let Some(cancel) = track(&st, &id) else { return };
            let result = download::import_file(&store, &id, &name, file, cancel).await;
            st.downloads.borrow_mut().remove(&id);
            finish_download(&store, &id, result).await;
            list_stored(&st).await;
        }
        ToWorker::Delete { id } => {
            let Some(store) = st.store() else { return no_store() };
            // Stop its download first and wait for it to let go: a chunk written after the
            // delete would bring back a partial record.
            if st.loading.borrow().as_deref() == Some(id.as_str()) {
                return error(ErrorKind::Other, "that model is loading: delete it once the load ends", Some(&id));
            }
            let cancel = st.downloads.borrow().get(&id).cloned();
            if let Some(cancel) = cancel {
                cancel.cancel(); // aborts its fetch too, so a stalled one lets go at once
                while st.downloads.borrow().contains_key(&id) {
                    gloo_timers::future::TimeoutFuture::new(20).await;
                }
            }
            if st.session.borrow().as_ref().is_some_and(|s| s.info.id == id) {
                *st.session.borrow_mut() = None;
            }
            st.files.borrow_mut().remove(&id);
            if let Err(e) = store.delete(&id).await {
                error(ErrorKind::Other, e.to_string(), Some(&id));
            }
            list_stored(&st).await;
        }
        ToWorker::Load { id, context } => load(&st, &id, context).await,
        ToWorker::Generate { messages, sampling, stop, think } => {
            let Some(busy) = Busy::take(&st) else {
                return error(ErrorKind::Other, "still busy with the previous request; press Stop first", None);
            };
            let taken = st.session.borrow_mut().take();
            let Some(mut session) = taken else {
                return error(ErrorKind::Other, "no model is loaded: load one from the Models page", None);
            };
            st.stop.set(false);
            match session.generate(&messages, &sampling, &stop, think, &st.stop).await {
                Ok(stats) => post(&FromWorker::Done { stats }),
                Err((kind, message)) => {
                    error(kind, message, None);
                    if kind == ErrorKind::DeviceLost {
                        // The model's buffers died with the device: open a new one.
                        drop(busy);
                        return reinit(&st).await;
                    }
                }
            }
            *st.session.borrow_mut() = Some(session);
        }
        #[cfg(feature = "test-hooks")]
        ToWorker::SimulateDeviceLoss => {
            if let Some(gpu) = st.gpu() {
                gpu.device.destroy();
            }
        }
        #[cfg(feature = "test-hooks")]
        ToWorker::Panic => {}
        // Answered in the message handler.
        // Only the native engine has keys.
        ToWorker::UseFile { entry } => {
            if let Err(e) = check_id(&entry.id, Origin::Catalog) {
                return error(ErrorKind::Other, format!("refused shared file: {e}"), Some(&entry.id));
            }
            let Some(file) = file else {
                return error(ErrorKind::Other, "no file came with the request", Some(&entry.id));
            };
            let Some(cancel) = track(&st, &entry.id) else { return };
            let checked = download::verify_file(file.into(), &entry, &cancel).await;
            st.downloads.borrow_mut().remove(&entry.id);
            match checked {
                Ok(model) => {
                    st.files.borrow_mut().insert(entry.id.clone(), Rc::new(Store::File(model)));
                    list_stored(&st).await;
                }
                Err(e) => error(e.kind(), e.to_string(), Some(&entry.id)),
            }
        }
        ToWorker::UseWindowStore => {
            // Already there (the page says it again after a restart): nothing to switch.
            if !matches!(st.store().as_deref(), Some(Store::Page(_))) {
                // What is under way finishes in the store it started in.
                while !st.downloads.borrow().is_empty() || st.loading.borrow().is_some() {
                    gloo_timers::future::TimeoutFuture::new(50).await;
                }
                *st.store.borrow_mut() = Some(Rc::new(Store::Page(crate::store::Brokered::default())));
            }
            list_stored(&st).await;
        }
        ToWorker::StoreReply { .. } => {}
        ToWorker::ApiKey { .. } => error(ErrorKind::Other, "the engine in this browser needs no API key", None),
        ToWorker::Stop
        | ToWorker::Cancel { .. }
        | ToWorker::Ping { .. }
        | ToWorker::Chat { .. }
        | ToWorker::Abort { .. } => {}
    }
}

/// The worker's busy flag, held for one load or one reply and cleared however that ends.
struct Busy(Rc<State>);

impl Busy {
    /// `None` if the worker is busy already.
    fn take(st: &Rc<State>) -> Option<Busy> {
        (!st.busy.replace(true)).then(|| Busy(st.clone()))
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.busy.set(false);
    }
}

fn no_store() {
    error(ErrorKind::Other, "storage is not open yet", None);
}

/// Registers a download's cancel flag; `None` (and nothing done) if `id` is downloading
/// already: two writers of one model's chunks would interleave.
fn track(st: &State, id: &str) -> Option<Rc<download::Cancel>> {
    let mut downloads = st.downloads.borrow_mut();
    if downloads.contains_key(id) {
        return None;
    }
    let cancel = Rc::new(download::Cancel::default());
    downloads.insert(id.to_string(), cancel.clone());
    Some(cancel)
}

async fn finish_download(store: &Store, id: &str, result: Result<crate::store::ModelMeta, DownloadError>) {
    match result {
        Ok(_) => post(&FromWorker::Downloaded { id: id.to_string() }),
        Err(e) => {
            if let Ok(Some(meta)) = store.meta(id).await {
                post(&FromWorker::Paused {
                    id: id.to_string(),
                    stored: meta.stored_bytes(),
                    total: meta.size.unwrap_or(0),
                });
            }
            if !matches!(e, DownloadError::Cancelled) {
                error(e.kind(), e.to_string(), Some(id));
            }
        }
    }
}

async fn list_stored(st: &State) {
    let Some(store) = st.store() else { return };
    let stored = match store.models().await {
        Ok(m) => m,
        Err(e) => return error(ErrorKind::Other, e.to_string(), None),
    };
    let mut models = Vec::with_capacity(stored.len());
    for meta in &stored {
        let mut summary = meta.summary();
        summary.plan = plan(st, &store, meta).await;
        models.push(summary);
    }
    // Models served from shared files, unless storage has a complete copy too (a partial one
    // gives way: the file is what a load will use).
    let files: Vec<Rc<Store>> = st.files.borrow().values().cloned().collect();
    for file in files {
        let Store::File(f) = &*file else { continue };
        if stored.iter().any(|m| m.id == f.meta.id && m.complete) {
            continue;
        }
        let mut summary = f.meta.summary();
        summary.shared = true;
        summary.plan = plan(st, &file, &f.meta).await;
        models.retain(|m| m.id != summary.id);
        models.push(summary);
    }
    let (quota, usage) = match download::storage_estimate().await {
        Some((q, u)) => (Some(q), Some(u)),
        None => (None, None),
    };
    let persisted = download::storage_persisted().await;
    post(&FromWorker::Stored { models, quota, usage, persisted });
}

/// The memory plan of a complete model at its default context on the open adapter, from its
/// stored index (read once per model and adapter, then kept).
async fn plan(st: &State, store: &Store, meta: &crate::store::ModelMeta) -> Option<crate::protocol::PlanSummary> {
    let (Some(sha), Some(gpu)) = (meta.sha256.clone().filter(|_| meta.complete), st.gpu()) else { return None };
    let key = (meta.id.clone(), sha);
    if let Some(p) = st.plans.borrow().get(&key) {
        return Some(p.clone());
    }
    let index = source::StoredSource::new(store, meta).index().await.ok()?;
    let config = hearth_model::Config::from_gguf(&index).ok()?;
    let context = (meta.default_context as usize).clamp(1, config.max_context);
    let plan = hearth_gpu::MemoryPlan::new(&config, &index, context, &gpu.limits);
    let summary = crate::protocol::PlanSummary {
        context: context as u32,
        total: plan.total(),
        problem: plan.check(&gpu.limits).err().map(|e| e.to_string()),
    };
    st.plans.borrow_mut().insert(key, summary.clone());
    Some(summary)
}

/// "vendor architecture" from the browser's GPUAdapterInfo (wgpu passes on only the
/// description, often empty), so the kernel strategy can recognise software adapters.
async fn browser_adapter_label() -> Option<String> {
    let gpu = js_sys::Reflect::get(&scope()?.navigator(), &"gpu".into()).ok()?;
    let request = js_sys::Reflect::get(&gpu, &"requestAdapter".into()).ok()?.dyn_into::<js_sys::Function>().ok()?;
    let promise = request.call0(&gpu).ok()?.dyn_into::<js_sys::Promise>().ok()?;
    let adapter = wasm_bindgen_futures::JsFuture::from(promise).await.ok()?;
    let info = js_sys::Reflect::get(&adapter, &"info".into()).ok()?;
    let field = |k: &str| js_sys::Reflect::get(&info, &k.into()).ok().and_then(|v| v.as_string()).unwrap_or_default();
    let label = format!("{} {}", field("vendor"), field("architecture")).trim().to_string();
    (!label.is_empty()).then_some(label)
}

async fn open_gpu() -> Result<Gpu, String> {
    let has_webgpu = scope()
        .and_then(|s| js_sys::Reflect::get(&s.navigator(), &"gpu".into()).ok())
        .is_some_and(|g| !g.is_undefined() && !g.is_null());
    if !has_webgpu {
        return Err("this browser has no WebGPU".into());
    }
    let mut gpu = Gpu::new(&GpuOptions::default()).await.map_err(|e| match e {
        // The native error's advice (drivers, `--backend cpu`) does not apply here.
        hearth_gpu::GpuError::NoAdapter(_) => {
            "this browser offers WebGPU but gave no adapter (it may be turned off, or this GPU is blocklisted)"
                .to_string()
        }
        other => other.to_string(),
    })?;
    if let Some(label) = browser_adapter_label().await {
        if !gpu.info.name.to_lowercase().contains(&label.to_lowercase()) {
            gpu.info.name = format!("{label} {}", gpu.info.name).trim().to_string();
        }
    }
    Ok(gpu)
}

fn summary(gpu: &Gpu) -> AdapterSummary {
    let strategy = gpu.strategy();
    AdapterSummary {
        name: gpu.info.name.clone(),
        max_buffer_size: gpu.limits.max_buffer_size,
        max_storage_binding: gpu.limits.max_storage_buffer_binding_size,
        shader_f16: gpu.features.contains(hearth_gpu::wgpu::Features::SHADER_F16),
        strategy: format!("{strategy:?}").to_lowercase(),
        software: strategy == Strategy::Tile,
        native: false,
    }
}

async fn init(st: &Rc<State>) {
    // Storage first: cached models can be listed (and deleted) even without a GPU.
    if st.store().is_none() {
        match Store::open().await {
            // Unless the page's store came meanwhile (`UseWindowStore`).
            Ok(store) => {
                if st.store().is_none() {
                    *st.store.borrow_mut() = Some(Rc::new(store));
                }
            }
            Err(e) => error(ErrorKind::NoStorage, e.to_string(), None),
        }
    }
    reinit(st).await;
    list_stored(st).await;
}

/// Opens (or re-opens, after a lost device) the GPU and reports it.
async fn reinit(st: &Rc<State>) {
    *st.session.borrow_mut() = None;
    st.plans.borrow_mut().clear(); // another device may have other limits
                                   // Whatever happens to the old device from here on is not news.
    st.device_generation.set(st.device_generation.get() + 1);
    match open_gpu().await {
        Ok(gpu) => {
            post(&FromWorker::Ready { adapter: Some(summary(&gpu)), error: None });
            // The engine's API shares the device as an Arc (natively across threads); in the
            // worker there is one thread, so its not being Send here is fine.
            #[allow(clippy::arc_with_non_send_sync)]
            let gpu = Arc::new(gpu);
            let generation = st.device_generation.get() + 1;
            st.device_generation.set(generation);
            gpu.device.set_device_lost_callback(move |reason, message| {
                let st = state();
                if st.device_generation.get() != generation {
                    return; // an old device, already replaced
                }
                error(
                    ErrorKind::DeviceLost,
                    format!("The GPU device was lost ({reason:?}: {message}); re-initializing. Load the model again."),
                    None,
                );
                wasm_bindgen_futures::spawn_local(async move { reinit(&state()).await });
            });
            *st.gpu.borrow_mut() = Some(gpu);
        }
        Err(e) => {
            let message = format!(
                "{e}. Hearth needs WebGPU: try a recent Chrome or Edge, or run the native `hearth` command-line tool."
            );
            // The page shows this as its no-WebGPU state; no separate error banner.
            post(&FromWorker::Ready { adapter: None, error: Some(message) });
        }
    }
}

async fn load(st: &Rc<State>, id: &str, context: u32) {
    let Some(busy) = Busy::take(st) else {
        return error(ErrorKind::Other, "busy: wait for the current reply or press Stop", Some(id));
    };
    *st.loading.borrow_mut() = Some(id.to_string());
    let result = load_inner(st, id, context).await;
    st.loading.borrow_mut().take();
    drop(busy);
    match result {
        Ok(session) => {
            post(&FromWorker::Loaded { info: session.info.clone() });
            *st.session.borrow_mut() = Some(session);
        }
        Err((kind, message)) => error(kind, message, Some(id)),
    }
}

async fn load_inner(st: &Rc<State>, id: &str, context: u32) -> Result<Session, (ErrorKind, String)> {
    // A complete copy in storage first, else a checked shared file.
    let mut store = st.store();
    let file = st.files.borrow().get(id).cloned();
    if let Some(file) = file {
        let stored = match &store {
            Some(s) => s.meta(id).await.ok().flatten().is_some_and(|m| m.complete),
            None => false,
        };
        if !stored {
            store = Some(file);
        }
    }
    let (Some(store), Some(gpu)) = (store, st.gpu()) else {
        return Err((ErrorKind::NoWebGpu, "no GPU: Hearth needs WebGPU to run a model".into()));
    };
    // Free the previous model's GPU memory first.
    *st.session.borrow_mut() = None;
    let mut refetched = 0;
    loop {
        let meta = store.meta(id).await.map_err(|e| (ErrorKind::Other, e.to_string()))?;
        let Some(meta) = meta.filter(|m| m.complete) else {
            return Err((ErrorKind::Other, "that model is not completely downloaded and verified yet".into()));
        };
        match Session::load(gpu.clone(), &store, &meta, context).await {
            Ok(session) => return Ok(session),
            Err(LoadError::Failed(kind, message)) => return Err((kind, message)),
            Err(LoadError::Corrupt(n)) if refetched < 8 => {
                refetched += 1;
                post(&FromWorker::Notice {
                    message: format!("Piece {n} of {} is damaged in storage; fetching it again.", meta.name),
                });
                if let Err(e) = download::refetch_chunk(&store, &meta, n).await {
                    return Err((
                        ErrorKind::Corrupt,
                        format!("A stored piece of {} is damaged and could not be fetched again ({e}). Delete the model and download it again.", meta.name),
                    ));
                }
            }
            Err(LoadError::Corrupt(_)) => {
                return Err((
                    ErrorKind::Corrupt,
                    "the stored model keeps failing its checks: delete it and download it again".into(),
                ))
            }
        }
    }
}
