//! The embedded widget (`embed.html`): a compact chat built from the app's own components
//! and reducer, with the engine in its own worker and the same checked store. What differs
//! from the app:
//!
//! - the host page configures it (model, title, system prompt, theme, greeting) through
//!   [`crate::embed`]'s handshake, or through the iframe's URL; it can do nothing else;
//! - the first download is the visitor's explicit, confirmed click, showing size, license and
//!   where the model is kept;
//! - the conversation stays in memory unless the visitor opts in to keep it; "Forget" clears
//!   it;
//! - the host's system prompt is shown as "Instructions set by <host>".

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use yew::prelude::*;

use super::chat::{Composer, MessageList, SettingsPanel, Stats};
use super::state::{Action, Boot, CatalogState, ModelStatus, State, Theme};
use super::{history, models, run_effect, start_worker, util, web, Banners, Ctx, Toasts};
use crate::embed::{
    form_pairs, parse_origin, site_label, AllowList, EmbedConfig, FrameKind, FromHost, HostErrorKind, ThemeChoice,
    ToHost,
};
use crate::protocol::CatalogEntry;
use crate::store::js_text;

/// localStorage key: the visitor chose to keep conversations (on this site's partition).
const KEEP_PREF: &str = "hearth-embed-keep";
/// The download confirmation is armed only after it has been on screen this long, so a host
/// cannot rush a click through an overlay.
const ARM_MS: u32 = 800;

/// Where the widget runs, read once.
#[derive(Clone, PartialEq)]
struct Env {
    frame: FrameKind,
    /// The embedding page's origin: the browser's `location.ancestorOrigins[0]` where it has
    /// one, else the `host=` the loader put in the URL if it is an origin (checked against the
    /// handshake's real sender either way).
    host: Option<String>,
    /// `host` as the browser said it (`ancestorOrigins`), not as the URL claims it.
    verified: bool,
    /// The iframe's query string settings (plain `<iframe>` embeds): applied only once the
    /// host is known to be on the allow-list, and never to a page opened on its own.
    url_config: EmbedConfig,
}

fn read_env() -> Env {
    let Some(window) = web_sys::window() else {
        return Env { frame: FrameKind::Embedded, host: None, verified: false, url_config: EmbedConfig::default() };
    };
    let location = window.location();
    let query = location.search().unwrap_or_default();
    let top_level = window.top().ok().flatten().is_some_and(|t| js_sys::Object::is(&t, &window));
    let credentialless =
        js_sys::Reflect::get(&window, &"credentialless".into()).ok().and_then(|v| v.as_bool()).unwrap_or(false);
    let frame = FrameKind::detect(&window.origin(), credentialless, top_level);
    // Not in every browser (Firefox lacks it), nor in web-sys.
    let ancestor = js_sys::Reflect::get(&location, &"ancestorOrigins".into())
        .ok()
        .and_then(|v| v.dyn_into::<web_sys::DomStringList>().ok())
        .and_then(|list| list.item(0))
        .filter(|o| parse_origin(o).is_some());
    let claimed = form_pairs(&query).into_iter().find(|(k, _)| k == "host").map(|(_, v)| v);
    let claimed = claimed.filter(|o| parse_origin(o).is_some());
    let verified = ancestor.is_some();
    let host = if top_level { None } else { ancestor.or(claimed) };
    Env { frame, host, verified, url_config: EmbedConfig::from_query(&query) }
}

/// The host's settings so far: each message adds to what earlier ones set.
#[derive(Default, PartialEq)]
struct ConfigState(EmbedConfig);

impl Reducible for ConfigState {
    type Action = EmbedConfig;
    fn reduce(self: Rc<Self>, update: EmbedConfig) -> Rc<Self> {
        Rc::new(ConfigState(self.0.clone().merged(update)))
    }
}

type OnMessage = Closure<dyn FnMut(web_sys::MessageEvent)>;

/// The link to the host page: its checked origin, then the transferred port.
#[derive(Default)]
struct HostLink {
    origin: RefCell<Option<String>>,
    port: RefCell<Option<web_sys::MessagePort>>,
    on_window: RefCell<Option<OnMessage>>,
    on_port: RefCell<Option<OnMessage>>,
}

impl HostLink {
    /// Tells the host `msg`: on the port once connected, before that to `window.parent` with
    /// the host's exact origin as the target. Nothing goes to a host that is not allowed.
    fn send(&self, msg: ToHost) {
        let Some(origin) = self.origin.borrow().clone() else { return };
        let data = js_sys::JSON::parse(&msg.to_json()).unwrap_or(JsValue::NULL);
        if let Some(port) = self.port.borrow().as_ref() {
            let _ = port.post_message(&data);
            record_sent("port", &data);
        } else if let Some(parent) = web_sys::window().and_then(|w| w.parent().ok().flatten()) {
            let _ = parent.post_message(&data, &origin);
            record_sent(&origin, &data);
        }
    }
}

/// Test builds keep every message the widget sent, with its target, in
/// `window.__hearthEmbedSent` (a cross-origin `parent.postMessage` cannot be spied on).
fn record_sent(target: &str, data: &JsValue) {
    if cfg!(feature = "test-hooks") {
        let Some(window) = web_sys::window() else { return };
        let key = JsValue::from_str("__hearthEmbedSent");
        let list = js_sys::Reflect::get(&window, &key)
            .ok()
            .and_then(|v| v.dyn_into::<js_sys::Array>().ok())
            .unwrap_or_else(|| {
                let a = js_sys::Array::new();
                let _ = js_sys::Reflect::set(&window, &key, &a);
                a
            });
        let entry = js_sys::Object::new();
        let _ = js_sys::Reflect::set(&entry, &"target".into(), &target.into());
        let _ = js_sys::Reflect::set(&entry, &"data".into(), data);
        list.push(&entry);
    }
}

/// `embed-allow.json` (the deployment's allow-list); `None` (no site allowed) if it cannot
/// be read.
async fn fetch_allow_list() -> Option<AllowList> {
    async fn fetch() -> Option<AllowList> {
        let window = web_sys::window()?;
        let resp = wasm_bindgen_futures::JsFuture::from(window.fetch_with_str("embed-allow.json")).await.ok()?;
        let resp: web_sys::Response = resp.dyn_into().ok()?;
        if !resp.ok() {
            return None;
        }
        let text = wasm_bindgen_futures::JsFuture::from(resp.text().ok()?).await.ok()?.as_string()?;
        serde_json::from_str(&text).ok()
    }
    fetch().await
}

/// Starts listening for the host's handshake (from `window.parent` only, from its origin
/// only), then says `ready`. `on_host` gets each message of the host's after that, from the
/// port alone.
fn connect_host(link: &Rc<HostLink>, host: String, on_host: Callback<FromHost>) {
    *link.origin.borrow_mut() = Some(host.clone());
    let weak = Rc::downgrade(link);
    let on_window = OnMessage::new(move |event: web_sys::MessageEvent| {
        let Some(link) = weak.upgrade() else { return };
        if link.port.borrow().is_some() || event.origin() != host {
            return;
        }
        let parent = web_sys::window().and_then(|w| w.parent().ok().flatten());
        let from_parent = match (event.source(), parent) {
            (Some(source), Some(parent)) => js_sys::Object::is(&source, &parent),
            _ => false,
        };
        if !from_parent {
            return;
        }
        let Some(FromHost::Connect { config, .. }) = parse(&event.data()) else { return };
        let Some(port) = event.ports().get(0).dyn_into::<web_sys::MessagePort>().ok() else { return };
        let to_component = on_host.clone();
        let on_port = OnMessage::new(move |e: web_sys::MessageEvent| {
            // A second handshake on the port means nothing.
            match parse(&e.data()) {
                Some(FromHost::Connect { .. }) | None => {}
                Some(msg) => to_component.emit(msg),
            }
        });
        port.set_onmessage(Some(on_port.as_ref().unchecked_ref()));
        *link.on_port.borrow_mut() = Some(on_port);
        *link.port.borrow_mut() = Some(port);
        on_host.emit(FromHost::Configure { hearth: crate::embed::PROTOCOL.into(), config });
    });
    if let Some(window) = web_sys::window() {
        let _ = window.add_event_listener_with_callback("message", on_window.as_ref().unchecked_ref());
    }
    *link.on_window.borrow_mut() = Some(on_window);
    link.send(ToHost::Ready);
}

fn parse(data: &JsValue) -> Option<FromHost> {
    let text = js_sys::JSON::stringify(data).ok()?.as_string()?;
    FromHost::parse(&text)
}

/// Which store keeps the widget's models.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tier {
    /// The browser's default for an embedded frame: storage of its own per host site.
    Site,
    /// Hearth's first-party storage, through the Storage Access API (the page runs the
    /// worker's store calls on it: `crate::store::Brokered`).
    Hearth,
}

/// Whether this browser has the Storage Access API (Chrome and Edge desktop).
fn storage_access_offered() -> bool {
    web_sys::window()
        .and_then(|w| w.document())
        .and_then(|d| js_sys::Reflect::get(&d, &"requestStorageAccess".into()).ok())
        .is_some_and(|f| f.is_function())
}

/// Whether the visitor granted it on an earlier visit (then it is had without a click).
async fn storage_access_granted() -> bool {
    async fn query() -> Option<bool> {
        let permissions = web_sys::window()?.navigator().permissions().ok()?;
        let desc = js_sys::Object::new();
        js_sys::Reflect::set(&desc, &"name".into(), &"storage-access".into()).ok()?;
        let status = wasm_bindgen_futures::JsFuture::from(permissions.query(&desc).ok()?).await.ok()?;
        Some(js_sys::Reflect::get(&status, &"state".into()).ok()?.as_string()? == "granted")
    }
    query().await.unwrap_or(false)
}

/// Asks for Hearth's first-party IndexedDB (`requestStorageAccess({ indexedDB: true })`),
/// opens the model store on it, and hands the worker over to it.
async fn open_first_party_store(ctx: &Ctx, tier: &UseStateHandle<Tier>) -> Result<(), String> {
    let text = |e: JsValue| js_text(&e);
    let document = web_sys::window().and_then(|w| w.document()).ok_or("no document")?;
    let request: js_sys::Function = js_sys::Reflect::get(&document, &"requestStorageAccess".into())
        .map_err(text)?
        .dyn_into()
        .map_err(|_| "this browser has no Storage Access API".to_string())?;
    let types = js_sys::Object::new();
    js_sys::Reflect::set(&types, &"indexedDB".into(), &true.into()).map_err(text)?;
    let promise: js_sys::Promise = request.call1(&document, &types).map_err(text)?.dyn_into().map_err(text)?;
    let handle = wasm_bindgen_futures::JsFuture::from(promise).await.map_err(|_| "the browser refused".to_string())?;
    let factory = js_sys::Reflect::get(&handle, &"indexedDB".into()).map_err(text)?;
    if !js_sys::Reflect::get(&factory, &"open".into()).is_ok_and(|f| f.is_function()) {
        return Err("the browser gave no IndexedDB".into());
    }
    let store = crate::store::IdbStore::open_on(factory.unchecked_ref()).await.map_err(|e| e.to_string())?;
    *ctx.window_store.borrow_mut() = Some(Rc::new(store));
    if let Some(b) = ctx.bridge.borrow().as_ref() {
        b.send(&crate::protocol::ToWorker::UseWindowStore);
    }
    tier.set(Tier::Hearth);
    Ok(())
}

/// `navigator.crossOriginStorage`, where the browser (today, an extension) offers it: whole
/// files shared across origins, keyed by their sha256.
fn cross_origin_storage() -> Option<JsValue> {
    let navigator = web_sys::window()?.navigator();
    js_sys::Reflect::get(&navigator, &"crossOriginStorage".into()).ok().filter(|v| v.is_object())
}

/// Calls `object.name(args…)` and awaits the promise it returns.
async fn call_async(object: &JsValue, name: &str, args: &[JsValue]) -> Result<JsValue, JsValue> {
    let f: js_sys::Function = js_sys::Reflect::get(object, &name.into())?.dyn_into()?;
    let result = f.apply(object, &args.iter().collect::<js_sys::Array>())?;
    wasm_bindgen_futures::JsFuture::from(js_sys::Promise::resolve(&result)).await
}

/// The Cross-Origin Storage file handle for `sha256` (hex), created if `create`; `None` if
/// it holds no such file. The API changed its spelling in 2026: the spec draft's
/// `requestFileHandle(hash, options)` and the explainer's `requestFileHandles([hash],
/// options)` are both used.
async fn cos_handle(cos: &JsValue, sha256: &str, create: bool) -> Result<Option<JsValue>, String> {
    let hash = js_sys::Object::new();
    let options = js_sys::Object::new();
    let set = |o: &js_sys::Object, k: &str, v: JsValue| js_sys::Reflect::set(o, &k.into(), &v).map(drop);
    set(&hash, "algorithm", "SHA-256".into()).and(set(&hash, "value", sha256.into())).map_err(|e| js_text(&e))?;
    set(&options, "create", create.into()).map_err(|e| js_text(&e))?;
    let singular = js_sys::Reflect::get(cos, &"requestFileHandle".into()).is_ok_and(|f| f.is_function());
    let result = if singular {
        call_async(cos, "requestFileHandle", &[hash.into(), options.into()]).await
    } else {
        let list: js_sys::Array = std::iter::once(JsValue::from(hash)).collect();
        call_async(cos, "requestFileHandles", &[list.into(), options.into()])
            .await
            // The first handle, read without assuming an array (a bad answer is just no file).
            .map(|handles| js_sys::Reflect::get(&handles, &0.into()).unwrap_or(JsValue::UNDEFINED))
    };
    match result {
        Ok(handle) if handle.is_object() => Ok(Some(handle)),
        Ok(_) => Ok(None),
        Err(e) if js_text(&e).starts_with("NotFoundError") => Ok(None),
        Err(e) => Err(js_text(&e)),
    }
}

/// The shared file for `entry`, if Cross-Origin Storage has one (not yet checked: the worker
/// checks it before use).
async fn shared_file(entry: &CatalogEntry) -> Option<web_sys::File> {
    let (cos, sha) = (cross_origin_storage()?, entry.sha256.as_ref()?);
    let handle = cos_handle(&cos, sha, false).await.ok()??;
    let file = call_async(&handle, "getFile", &[]).await.ok()?;
    // Unchecked: an extension's file may come from another realm, which `instanceof` refuses.
    js_sys::Reflect::get(&file, &"size".into()).ok()?.as_f64()?;
    Some(file.unchecked_into())
}

/// Copies a complete, verified model from `store` into Cross-Origin Storage (unless it is
/// there already), each chunk checked against its hash on the way: only verified files go
/// into the shared store.
async fn promote(store: &crate::store::IdbStore, id: &str, cos: &JsValue) -> Result<(), String> {
    use sha2::Digest;
    let meta = store.meta(id).await.map_err(|e| e.to_string())?;
    let Some(meta) = meta.filter(|m| m.complete && m.verified) else { return Ok(()) };
    let Some(sha) = meta.sha256.clone() else { return Ok(()) };
    if cos_handle(cos, &sha, false).await?.is_some() {
        return Ok(());
    }
    let handle = cos_handle(cos, &sha, true).await?.ok_or("the shared store made no file")?;
    let writable = call_async(&handle, "createWritable", &[]).await.map_err(|e| js_text(&e))?;
    for (index, expected) in meta.chunk_sha.iter().enumerate() {
        let bytes = store.chunk(id, index).await.map_err(|e| e.to_string())?.unwrap_or_default();
        if crate::worker::source::hex(&sha2::Sha256::digest(&bytes)) != *expected {
            let _ = call_async(&writable, "abort", &[]).await;
            return Err(format!("stored chunk {index} failed its check"));
        }
        call_async(&writable, "write", &[js_sys::Uint8Array::from(bytes.as_slice()).into()])
            .await
            .map_err(|e| js_text(&e))?;
    }
    call_async(&writable, "close", &[]).await.map_err(|e| js_text(&e)).map(drop)
}

fn theme_for(choice: ThemeChoice) -> Theme {
    match choice {
        ThemeChoice::Light => Theme::Light,
        ThemeChoice::Dark => Theme::Dark,
        ThemeChoice::Auto => web::system_theme(),
    }
}

#[function_component(EmbedApp)]
pub fn embed_app() -> Html {
    let env = use_memo((), |_| read_env());
    let state = use_reducer(State::default);
    let bridge = use_mut_ref(|| None::<crate::bridge::Bridge>);
    let keep = use_state(|| web::load_pref(KEEP_PREF).as_deref() == Some("1"));
    let persist = use_memo((), |_| Rc::new(Cell::new(web::load_pref(KEEP_PREF).as_deref() == Some("1"))));
    let window_store = use_mut_ref(|| None);
    let ctx = Ctx {
        dispatch: state.dispatcher(),
        bridge: bridge.clone(),
        persist: (*persist).clone(),
        window_store,
        chats_db: history::WIDGET,
    };
    let tier = use_state(|| Tier::Site);
    // What the URL may set before the host is checked: the model and the theme.
    let config = use_reducer(|| {
        let u = &env.url_config;
        ConfigState(EmbedConfig { model: u.model.clone(), theme: u.theme, ..EmbedConfig::default() })
    });
    let connected = use_state(|| false);
    let link = use_memo((), |_| Rc::new(HostLink::default()));

    // Once: the engine, the catalog, kept conversations, then the host's handshake.
    {
        let (ctx, env, link, config, connected, tier) =
            (ctx.clone(), env.clone(), (*link).clone(), config.clone(), connected.clone(), tier.clone());
        use_effect_with((), move |_| {
            if env.frame != FrameKind::Sandboxed {
                start_worker(&ctx);
                // Access granted on an earlier visit: Hearth's own storage, with no click.
                if env.frame == FrameKind::Embedded && storage_access_offered() {
                    let (ctx, tier) = (ctx.clone(), tier.clone());
                    wasm_bindgen_futures::spawn_local(async move {
                        if storage_access_granted().await {
                            let _ = open_first_party_store(&ctx, &tier).await;
                        }
                    });
                }
                let d = ctx.dispatch.clone();
                wasm_bindgen_futures::spawn_local(async move {
                    d.dispatch(Action::Catalog(web::fetch_catalog().await));
                });
                if ctx.persist.get() {
                    let d = ctx.dispatch.clone();
                    wasm_bindgen_futures::spawn_local(async move {
                        if let Ok(convs) = history::load_all(history::WIDGET).await {
                            // The visitor comes back to where they were: the latest conversation.
                            let latest =
                                convs.iter().max_by(|a, b| a.updated.total_cmp(&b.updated)).map(|c| c.id.clone());
                            d.dispatch(Action::History(convs));
                            if let Some(id) = latest {
                                d.dispatch(Action::SelectChat(id));
                            }
                        }
                    });
                }
            }
            if let Some(host) = env.host.clone() {
                let dispatch = config.dispatcher();
                let on_host = {
                    let dispatch = dispatch.clone();
                    Callback::from(move |msg: FromHost| match msg {
                        FromHost::Configure { config: c, .. } | FromHost::Connect { config: c, .. } => {
                            connected.set(true);
                            dispatch.dispatch(c);
                        }
                        // The host's launcher shows or hides the frame; nothing to do inside.
                        FromHost::Open { .. } | FromHost::Close { .. } => {}
                    })
                };
                let url_config = env.url_config.clone();
                wasm_bindgen_futures::spawn_local(async move {
                    if fetch_allow_list().await.is_some_and(|list| list.allows(&host)) {
                        dispatch.dispatch(url_config);
                        connect_host(&link, host, on_host);
                        if matches!(env.frame, FrameKind::Sandboxed | FrameKind::Credentialless) {
                            link.send(ToHost::Error { kind: HostErrorKind::UnsupportedFrame });
                        }
                    }
                });
            }
        });
    }
    {
        let (state, ctx) = (state.clone(), ctx.clone());
        use_effect(move || {
            for effect in state.take_effects() {
                run_effect(effect, &ctx);
            }
        });
    }
    {
        let (system, d) = (config.0.system.clone(), ctx.dispatch.clone());
        use_effect_with(system, move |s| d.dispatch(Action::SetSystemPrompt(s.clone().unwrap_or_default())));
    }
    {
        let theme = theme_for(config.0.theme.unwrap_or_default());
        let d = ctx.dispatch.clone();
        use_effect_with(theme, move |t| {
            d.dispatch(Action::SetTheme(*t));
            web::apply_theme(*t);
        });
    }
    {
        let title = config.0.title.clone();
        use_effect_with(title, move |t| {
            if let Some(doc) = web_sys::window().and_then(|w| w.document()) {
                doc.set_title(&format!("{} · Hearth", t.as_deref().unwrap_or("Chat")));
            }
        });
    }
    {
        let no_gpu = matches!(state.boot, Boot::NoWebGpu(_));
        let link = (*link).clone();
        use_effect_with(no_gpu, move |no_gpu| {
            if *no_gpu {
                link.send(ToHost::Error { kind: HostErrorKind::NoWebgpu });
            }
        });
    }
    {
        let app_state = state.app_state();
        use_effect_with(app_state, move |s| web::set_body_state(s));
    }
    // A restarted worker opens its own store: point it at the page's again.
    {
        let ready = state.boot == Boot::Ready;
        let ctx = ctx.clone();
        use_effect_with(ready, move |ready| {
            if *ready && ctx.window_store.borrow().is_some() {
                if let Some(b) = ctx.bridge.borrow().as_ref() {
                    b.send(&crate::protocol::ToWorker::UseWindowStore);
                }
            }
        });
    }

    // A site is named only as the browser or the handshake vouches for it.
    let vouched = env.host.as_deref().filter(|_| env.verified || *connected);
    let host_label = vouched.map(site_label).unwrap_or("the page that embeds this chat").to_string();
    let config = &config.0;
    let title = config.title.clone().unwrap_or_else(|| "Chat".into());
    let close = connected.then(|| {
        let link = (*link).clone();
        Callback::from(move |_: MouseEvent| link.send(ToHost::State { open: false }))
    });
    let forget = {
        let (state, d) = (state.clone(), ctx.dispatch.clone());
        Callback::from(move |_: MouseEvent| {
            for c in &state.conversations {
                d.dispatch(Action::DeleteChat(c.id.clone()));
            }
            d.dispatch(Action::NewChat);
        })
    };
    let toggle_keep = {
        let (keep, persist, state) = (keep.clone(), (*persist).clone(), state.clone());
        Callback::from(move |_: Event| {
            let on = !*keep;
            keep.set(on);
            persist.set(on);
            let convs: Vec<_> = state.conversations.iter().map(|c| (**c).clone()).collect();
            if on {
                web::save_pref(KEEP_PREF, "1");
                wasm_bindgen_futures::spawn_local(async move {
                    for c in convs {
                        let _ = history::save(history::WIDGET, c).await;
                    }
                });
            } else {
                web::save_pref(KEEP_PREF, "0");
                wasm_bindgen_futures::spawn_local(async move {
                    for c in convs {
                        let _ = history::delete(history::WIDGET, c.id).await;
                    }
                });
            }
        })
    };
    // Verified models go into the browser's shared store (where there is one), for the
    // widget on other sites; the host learns nothing of it.
    {
        let promoted = use_mut_ref(std::collections::HashSet::<String>::new);
        let window_store = ctx.window_store.clone();
        use_effect_with(state.stored.clone(), move |stored| {
            let Some(cos) = cross_origin_storage() else { return };
            for m in stored.iter().filter(|m| m.complete && m.verified) {
                if !promoted.borrow_mut().insert(m.id.clone()) {
                    continue;
                }
                let (cos, id, window_store) = (cos.clone(), m.id.clone(), window_store.borrow().clone());
                wasm_bindgen_futures::spawn_local(async move {
                    let store = match window_store {
                        Some(s) => Ok(s),
                        None => crate::store::IdbStore::open().await.map(Rc::new).map_err(|e| e.to_string()),
                    };
                    if let Err(e) = async { promote(&*store?, &id, &cos).await }.await {
                        web_sys::console::warn_1(&format!("Hearth: {id} was not shared across sites: {e}").into());
                    }
                });
            }
        });
    }
    let busy = state.generation.is_some();

    html! {
        <ContextProvider<Ctx> context={ctx}>
            <div class="embed" data-app-state={state.app_state()} data-frame={format!("{:?}", env.frame).to_lowercase()}>
                <header class="embed-head">
                    <img src="icon.svg" alt="" width="22" height="22" />
                    <h1 class="embed-title" data-testid="embed-title">{ title }</h1>
                    if let Some(close) = close {
                        <button type="button" class="icon-btn" data-testid="embed-close" aria-label="Close chat"
                            onclick={close}>{ "–" }</button>
                    }
                </header>
                if let Some(system) = config.system.clone() {
                    <details class="embed-instructions" data-testid="embed-instructions">
                        <summary>{ format!("Instructions set by {host_label}") }</summary>
                        <p class="small">{ system }</p>
                    </details>
                }
                <Banners state={state.clone()} />
                <main class="embed-main">
                    { body(&state, &env, vouched, config, &tier) }
                </main>
                <footer class="embed-foot small muted">
                    <span>{ format!("Runs on your device; {host_label} cannot read this chat.") }</span>
                    <label class="embed-keep">
                        <input type="checkbox" data-testid="embed-keep" checked={*keep} onchange={toggle_keep} />
                        { " Keep conversations on this device" }
                    </label>
                    <button type="button" class="btn ghost small" data-testid="embed-forget" disabled={busy}
                        onclick={forget}>{ "Forget" }</button>
                    <a href="./" target="_blank" rel="noopener noreferrer" data-testid="embed-open-app">{ "Open in Hearth" }</a>
                </footer>
                <Toasts state={state.clone()} />
            </div>
        </ContextProvider<Ctx>>
    }
}

/// What the panel shows: a problem, the model to fetch or start, or the chat.
fn body(
    state: &UseReducerHandle<State>,
    env: &Env,
    host: Option<&str>,
    config: &EmbedConfig,
    tier: &UseStateHandle<Tier>,
) -> Html {
    let problem = |kind: &str, text: String| {
        html! { <div class="embed-problem" role="alert" data-testid="embed-problem" data-kind={kind.to_string()}>{ text }</div> }
    };
    match env.frame {
        FrameKind::Sandboxed => {
            return problem(
                "sandboxed",
                "This chat cannot run in a sandboxed frame: the site embedded it with `sandbox`, which gives it no \
                 storage for models. Open Hearth in its own tab instead."
                    .into(),
            )
        }
        FrameKind::Credentialless => {}
        FrameKind::Embedded | FrameKind::TopLevel => {}
    }
    let mut out = Vec::new();
    if env.frame == FrameKind::Credentialless {
        out.push(problem(
            "credentialless",
            "This site embeds the chat as `credentialless`: a model downloaded here is not kept after you leave the page."
                .into(),
        ));
    }
    match &state.boot {
        Boot::NoWebGpu(detail) => {
            out.push(problem(
                "no-webgpu",
                format!("This browser offers no WebGPU, which the chat needs to run on your device ({detail})."),
            ));
            return out.into_iter().collect();
        }
        Boot::Booting | Boot::NeedsApiKey(_) => {
            out.push(html! { <p class="muted embed-booting" aria-busy="true">{ "Starting…" }</p> });
            return out.into_iter().collect();
        }
        Boot::Ready => {}
    }
    if state.loaded.is_some() {
        let greeting = config.greeting.clone().map(AttrValue::from);
        out.push(html! { <EmbedChat state={state.clone()} greeting={greeting} /> });
        return out.into_iter().collect();
    }
    let entry = match &state.catalog {
        CatalogState::Ready(c) => match &config.model {
            Some(id) => match c.iter().find(|e| &e.id == id) {
                Some(e) => e.clone(),
                None => {
                    out.push(problem(
                        "unknown-model",
                        format!("This site asked for a model Hearth does not offer (\u{201c}{id}\u{201d})."),
                    ));
                    return out.into_iter().collect();
                }
            },
            None => match c.first() {
                Some(e) => e.clone(),
                None => return problem("unknown-model", "Hearth's model catalog is empty.".into()),
            },
        },
        CatalogState::Failed(e) => return problem("catalog", format!("The model list could not be read: {e}")),
        CatalogState::Loading => return html! { <p class="muted">{ "Looking up the model…" }</p> },
    };
    // Keyed by the model: a host that switches models resets the confirmation (no armed
    // button for another, larger model).
    out.push(html! {
        <ModelGate key={entry.id.clone()} state={state.clone()} entry={entry.clone()} frame={env.frame} host={host.map(str::to_string)}
            tier={tier.clone()} />
    });
    out.into_iter().collect()
}

#[derive(Properties, PartialEq)]
struct GateProps {
    state: UseReducerHandle<State>,
    entry: CatalogEntry,
    frame: FrameKind,
    host: Option<String>,
    tier: UseStateHandle<Tier>,
}

/// The model before the chat: download (the visitor's confirmed click), resume, or start.
#[function_component(ModelGate)]
fn model_gate(props: &GateProps) -> Html {
    let ctx = use_context::<Ctx>().expect("Ctx");
    let confirming = use_state(|| false);
    let armed = use_state(|| false);
    // Set by the visitor's download or start click: load as soon as the model is stored.
    let want_chat = use_state(|| false);
    let e = &props.entry;
    let status = props.state.status(&e.id);
    // Not stored on this site: a checked copy from the browser's shared store, if it has one.
    {
        let tried = use_mut_ref(std::collections::HashSet::<String>::new);
        let (entry, bridge, ready) = (e.clone(), ctx.bridge.clone(), props.state.boot == Boot::Ready);
        use_effect_with((status, e.id.clone(), ready), move |(status, id, ready)| {
            if *ready
                && matches!(status, ModelStatus::None | ModelStatus::Paused)
                && tried.borrow_mut().insert(id.clone())
            {
                wasm_bindgen_futures::spawn_local(async move {
                    let Some(file) = shared_file(&entry).await else { return };
                    if let Some(b) = bridge.borrow().as_ref() {
                        b.send_file(&crate::protocol::ToWorker::UseFile { entry: Box::new(entry) }, &file);
                    }
                });
            }
        });
    }
    {
        let (want, d, id, ready) =
            (want_chat.clone(), ctx.dispatch.clone(), e.id.clone(), props.state.boot == Boot::Ready);
        use_effect_with((status, *want_chat), move |(status, wanted)| {
            if *wanted && ready && *status == ModelStatus::Stored {
                want.set(false);
                d.dispatch(Action::Load(id));
            }
        });
    }
    {
        let armed = armed.clone();
        use_effect_with(*confirming, move |c| {
            armed.set(false);
            let timer = c.then(|| gloo_timers::callback::Timeout::new(ARM_MS, move || armed.set(true)));
            move || drop(timer)
        });
    }
    let size = e.size.map(util::bytes).unwrap_or_else(|| "size unknown".into());
    // Served from a checked shared file (the worker says so in its list).
    let shared = props.state.stored.iter().any(|m| m.id == e.id && m.shared);
    let mut where_kept = match (props.frame, &props.host) {
        _ if shared => "It comes from your browser's shared model storage (checked before use), which Hearth \
             can use on every site."
            .to_string(),
        (FrameKind::TopLevel, _) => "It is kept in Hearth's storage in this browser.".to_string(),
        _ if *props.tier == Tier::Hearth => {
            "It is kept in Hearth's own storage in this browser (you allowed it), shared with the Hearth app \
             and every site where you allow it."
                .to_string()
        }
        (_, Some(h)) => format!(
            "It is kept in this browser for {} only: on another site the model is downloaded again.",
            site_label(h)
        ),
        (_, None) => "It is kept in this browser for this site only.".to_string(),
    };
    if !shared && cross_origin_storage().is_some() {
        where_kept.push_str(
            " Once checked, a copy also goes to your browser's shared model storage, which only Hearth reads, on any site.",
        );
    }
    let act = |a: Action| {
        let d = ctx.dispatch.clone();
        Callback::from(move |_: MouseEvent| d.dispatch(a.clone()))
    };
    let start = {
        let (d, id) = (ctx.dispatch.clone(), e.id.clone());
        Callback::from(move |_: MouseEvent| d.dispatch(Action::Load(id.clone())))
    };
    let ask = {
        let c = confirming.clone();
        Callback::from(move |_: MouseEvent| c.set(true))
    };
    let cancel_confirm = {
        let c = confirming.clone();
        Callback::from(move |_: MouseEvent| c.set(false))
    };
    let confirm = {
        let (d, entry, c, want) = (ctx.dispatch.clone(), e.clone(), confirming.clone(), want_chat.clone());
        Callback::from(move |_: MouseEvent| {
            c.set(false);
            want.set(true);
            d.dispatch(Action::Download(entry.clone()));
        })
    };
    let progress = props.state.progress.get(&e.id).map(|p| models::progress_bar(&e.id, p));
    // Chrome's Storage Access API: Hearth's own storage, after the browser asks the visitor.
    let offer_hearth = props.frame == FrameKind::Embedded
        && *props.tier == Tier::Site
        && matches!(status, ModelStatus::None | ModelStatus::Paused)
        && storage_access_offered();
    let use_hearth = {
        let (ctx, tier) = (ctx.clone(), props.tier.clone());
        Callback::from(move |_: MouseEvent| {
            let (ctx, tier) = (ctx.clone(), tier.clone());
            wasm_bindgen_futures::spawn_local(async move {
                if let Err(why) = open_first_party_store(&ctx, &tier).await {
                    ctx.dispatch.dispatch(Action::Notify(format!(
                        "Hearth's own storage is not available here ({why}): models stay stored for this site."
                    )));
                }
            });
        })
    };
    let action = match status {
        // The browser gives this frame no storage: a download could not be kept.
        ModelStatus::None | ModelStatus::Paused if props.state.no_storage => html! {
            <p class="embed-problem" data-testid="embed-problem" data-kind="no-storage">
                { "This browser gives chats embedded in other sites no storage, so the model cannot be downloaded \
                   here. Use Hearth's own storage (below, where the browser offers it), or open Hearth in its own tab." }
            </p>
        },
        ModelStatus::None | ModelStatus::Paused if *confirming => html! {
            <div class="embed-confirm" data-testid="embed-confirm">
                <p>{ format!("Download {} ({size}) to this device?", e.name) }</p>
                <p class="small muted">{ where_kept.clone() }</p>
                <div class="row">
                    <button type="button" class="btn primary" data-testid="embed-download-confirm" disabled={!*armed}
                        onclick={confirm}>{ "Download" }</button>
                    <button type="button" class="btn ghost" onclick={cancel_confirm}>{ "Cancel" }</button>
                </div>
            </div>
        },
        ModelStatus::None => html! {
            <button type="button" class="btn primary" data-testid="embed-download" onclick={ask}>
                { format!("Download the model · {size}") }
            </button>
        },
        ModelStatus::Paused => html! {
            <button type="button" class="btn primary" data-testid="embed-download" onclick={ask}>{ "Resume the download" }</button>
        },
        ModelStatus::Downloading => html! {
            <button type="button" class="btn ghost" data-testid="embed-cancel" onclick={act(Action::Cancel(e.id.clone()))}>
                { "Pause" }
            </button>
        },
        ModelStatus::Stored => html! {
            <button type="button" class="btn primary" data-testid="embed-start" onclick={start}>{ "Start the chat" }</button>
        },
        ModelStatus::Loading | ModelStatus::Loaded => {
            html! { <p class="muted">{ "Starting the model on your GPU…" }</p> }
        }
    };
    html! {
        <section class="embed-gate" data-testid="embed-gate" data-state={status.name()}>
            <h2>{ &e.name }</h2>
            <p class="small">
                { format!("{} parameters · {} · {size} · license ", e.params, e.quant) }
                <a href={e.license_url.clone()} target="_blank" rel="noopener noreferrer">{ &e.license }</a>
            </p>
            <p class="small muted" data-testid="embed-storage-note">
                { "The model runs on your own GPU; nothing you type leaves this device. " }{ where_kept }
            </p>
            { progress.unwrap_or_default() }
            { action }
            if offer_hearth {
                <button type="button" class="btn ghost small" data-testid="embed-use-hearth" onclick={use_hearth}
                    title="Models you downloaded in Hearth, or in this chat on other sites where you allowed it, without a second download">
                    { "Use models already in Hearth (your browser will ask)" }
                </button>
            }
        </section>
    }
}

#[derive(Properties, PartialEq)]
struct ChatProps {
    state: UseReducerHandle<State>,
    greeting: Option<AttrValue>,
}

/// The conversation, composer and (on demand) sampling settings.
#[function_component(EmbedChat)]
fn embed_chat(ChatProps { state, greeting }: &ChatProps) -> Html {
    let settings_open = use_state(|| false);
    let conv = state.conversation().cloned();
    let generating = state.generation.as_ref().filter(|g| Some(&g.conversation) == state.current.as_ref());
    let busy = state.generation.is_some();
    let can_regenerate = !busy && conv.as_ref().is_some_and(|c| !c.messages.is_empty());
    let toggle = {
        let open = settings_open.clone();
        Callback::from(move |_: MouseEvent| open.set(!*open))
    };
    let close = {
        let open = settings_open.clone();
        Callback::from(move |_: MouseEvent| open.set(false))
    };
    html! {
        <div class="embed-chat">
            <div class="embed-chat-tools">
                <button type="button" class="btn ghost small" data-testid="settings-toggle"
                    aria-expanded={settings_open.to_string()} onclick={toggle}>{ "⚙ Settings" }</button>
            </div>
            if *settings_open {
                <SettingsPanel settings={state.settings.clone()} on_close={close} embedded={true}
                    can_think={state.loaded.as_ref().is_some_and(|l| l.can_think)} />
            }
            <MessageList conversation={conv} streaming={generating.map(|g| AttrValue::from(g.text.clone()))}
                busy={busy} embedded={true} greeting={greeting.clone()} />
            <Composer generating={busy} stopping={state.generation.as_ref().is_some_and(|g| g.stopping)}
                can_regenerate={can_regenerate} />
            if let Some(stats) = &state.stats { <Stats stats={stats.clone()} /> }
        </div>
    }
}
