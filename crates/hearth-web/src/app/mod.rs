//! The chat UI (Yew). `App` owns the engine worker's bridge and one reducer ([`state`]); the
//! reducer queues side effects that `App` runs after each render. Pages: model picker,
//! storage, chat.

mod chat;
mod embed;
mod history;
mod models;
pub mod state;
mod storage;
pub mod util;
mod web;

use std::cell::RefCell;
use std::rc::Rc;

use yew::prelude::*;

use crate::bridge::{Bridge, WorkerBridge};
use crate::native::{is_native_page, NativeBridge};
use crate::protocol::{FromWorker, Sampling, ToWorker};
use state::{error_advice, kind_name, Action, Boot, Effect, Page, State, Theme};

pub fn start() {
    if crate::embed::is_embed_page() {
        yew::Renderer::<embed::EmbedApp>::new().render();
    } else {
        yew::Renderer::<App>::new().render();
    }
}

/// What every component may reach: the reducer's dispatcher and the worker (for the one
/// message that carries a `File`).
#[derive(Clone)]
pub struct Ctx {
    pub dispatch: UseReducerDispatcher<State>,
    pub bridge: Rc<RefCell<Option<Bridge>>>,
    /// Whether conversations are written to IndexedDB: always in the app; in the embedded
    /// widget only once the visitor opts in.
    pub persist: Rc<std::cell::Cell<bool>>,
    /// The model store this page runs for the worker (the widget with Storage Access), if any.
    pub window_store: Rc<RefCell<Option<Rc<crate::store::IdbStore>>>>,
    /// The conversations' database (`history::APP` or `history::WIDGET`).
    pub chats_db: &'static str,
}

impl PartialEq for Ctx {
    fn eq(&self, other: &Self) -> bool {
        self.dispatch == other.dispatch && Rc::ptr_eq(&self.bridge, &other.bridge)
    }
}

/// Starts the engine worker (replacing and terminating any old one).
fn start_worker(ctx: &Ctx) {
    // The old worker goes first: two workers would both write the model store.
    ctx.bridge.borrow_mut().take();
    let (on_event, on_death) = (ctx.dispatch.clone(), ctx.dispatch.clone());
    if is_native_page() {
        *ctx.bridge.borrow_mut() =
            Some(Bridge::Native(NativeBridge::new(move |ev| on_event.dispatch(Action::Worker(ev)))));
        // As a worker says once it listens.
        ctx.dispatch.dispatch(Action::Worker(crate::protocol::FromWorker::Booted));
        return;
    }
    let (window_store, bridge) = (ctx.window_store.clone(), Rc::downgrade(&ctx.bridge));
    match WorkerBridge::spawn(
        move |ev| match ev {
            FromWorker::StoreCall { seq, call } => serve_store_call(&window_store, &bridge, seq, call),
            ev => on_event.dispatch(Action::Worker(ev)),
        },
        move |why| on_death.dispatch(Action::WorkerDied(why)),
    ) {
        Ok(b) => *ctx.bridge.borrow_mut() = Some(Bridge::Worker(b)),
        Err(e) => ctx.dispatch.dispatch(Action::WorkerFailed(e)),
    }
}

/// Runs a store call of the worker's on the store this page holds, and answers it.
fn serve_store_call(
    store: &Rc<RefCell<Option<Rc<crate::store::IdbStore>>>>,
    bridge: &std::rc::Weak<RefCell<Option<Bridge>>>,
    seq: u32,
    call: crate::store::StoreCall,
) {
    let (store, bridge) = (store.borrow().clone(), bridge.clone());
    wasm_bindgen_futures::spawn_local(async move {
        let reply = match store {
            Some(store) => store.run(call).await,
            None => crate::store::StoreReply::Failed(crate::store::StoreError::Unavailable(
                "this page holds no model store for the engine".into(),
            )),
        };
        if let Some(bridge) = bridge.upgrade() {
            if let Some(b) = bridge.borrow().as_ref() {
                b.send(&ToWorker::StoreReply { seq, reply });
            }
        }
    });
}

fn run_effect(effect: Effect, ctx: &Ctx) {
    match effect {
        Effect::Send(msg) => {
            if matches!(msg, ToWorker::Download { .. } | ToWorker::ImportFile { .. }) {
                request_persistence();
            }
            if let Some(b) = ctx.bridge.borrow().as_ref() {
                b.send(&msg);
            }
        }
        Effect::SaveConversation(_) | Effect::DeleteConversation(_) if !ctx.persist.get() => {}
        Effect::SaveConversation(conv) => {
            let d = ctx.dispatch.clone();
            let db = ctx.chats_db;
            wasm_bindgen_futures::spawn_local(async move {
                if let Err(e) = history::save(db, conv).await {
                    d.dispatch(Action::Notify(format!("The conversation was not saved: {e}")));
                }
            });
        }
        Effect::DeleteConversation(id) => {
            let d = ctx.dispatch.clone();
            let db = ctx.chats_db;
            wasm_bindgen_futures::spawn_local(async move {
                if let Err(e) = history::delete(db, id).await {
                    d.dispatch(Action::Notify(format!("The conversation was not deleted: {e}")));
                }
            });
        }
        Effect::RestartWorker => {
            // A worker that dies the same way each time (a script gone after a redeploy while
            // offline, a panic at start) is not restarted forever.
            thread_local!(static RESTARTS: RefCell<Vec<f64>> = const { RefCell::new(Vec::new()) });
            let now = web::now_ms();
            let recent = RESTARTS.with(|r| {
                let mut r = r.borrow_mut();
                r.retain(|t| now - t < 120_000.0);
                r.push(now);
                r.len()
            });
            if recent > 3 {
                ctx.bridge.borrow_mut().take();
                ctx.dispatch.dispatch(Action::WorkerFailed(
                    "The engine stopped four times in two minutes, so Hearth stopped restarting it: reload the page."
                        .into(),
                ));
            } else {
                start_worker(ctx);
            }
        }
        Effect::ExpireNotice(seq) => {
            let d = ctx.dispatch.clone();
            gloo_timers::callback::Timeout::new(4_000, move || d.dispatch(Action::DismissNotice(seq))).forget();
        }
    }
}

#[function_component(App)]
pub fn app() -> Html {
    let state = use_reducer(|| State::with_theme(web::initial_theme()));
    let bridge = use_mut_ref(|| None::<Bridge>);
    let persist = use_memo((), |_| Rc::new(std::cell::Cell::new(true)));
    let window_store = use_mut_ref(|| None);
    let ctx = Ctx {
        dispatch: state.dispatcher(),
        bridge: bridge.clone(),
        persist: (*persist).clone(),
        window_store,
        chats_db: history::APP,
    };

    // Start the worker, fetch the catalog, load the history: once.
    {
        let ctx = ctx.clone();
        use_effect_with((), move |_| {
            start_worker(&ctx);
            let d = ctx.dispatch.clone();
            wasm_bindgen_futures::spawn_local(async move {
                d.dispatch(Action::Catalog(web::fetch_catalog().await));
            });
            let d = ctx.dispatch.clone();
            wasm_bindgen_futures::spawn_local(async move {
                match history::load_all(history::APP).await {
                    Ok(convs) => d.dispatch(Action::History(convs)),
                    Err(e) => d.dispatch(Action::Notify(format!("Saved conversations could not be read: {e}"))),
                }
            });
            if let Some(raw) = web::load_pref("hearth-settings") {
                // (system, sampling, stop text); settings saved before stop strings lack the third.
                let saved = serde_json::from_str::<(String, Sampling, String)>(&raw)
                    .or_else(|_| serde_json::from_str::<(String, Sampling)>(&raw).map(|(a, b)| (a, b, String::new())));
                if let Ok((system, sampling, stop)) = saved {
                    ctx.dispatch.dispatch(Action::SetSystemPrompt(system));
                    ctx.dispatch.dispatch(Action::SetSampling(sampling));
                    ctx.dispatch.dispatch(Action::SetStopText(stop));
                }
            }
        });
    }

    // Run what the reducer queued.
    {
        let (state, ctx) = (state.clone(), ctx.clone());
        use_effect(move || {
            for effect in state.take_effects() {
                run_effect(effect, &ctx);
            }
        });
    }

    {
        let theme = state.theme;
        use_effect_with(theme, move |t| {
            web::apply_theme(*t);
        });
    }
    {
        let app_state = state.app_state();
        use_effect_with(app_state, move |s| web::set_body_state(s));
    }
    {
        let settings = state.settings.clone();
        use_effect_with(settings, move |s| {
            if let Ok(json) = serde_json::to_string(&(&s.system_prompt, &s.sampling, &s.stop_text)) {
                web::save_pref("hearth-settings", &json);
            }
        });
    }

    let main = match (&state.boot, state.page) {
        (Boot::NoWebGpu(detail), _) => no_webgpu(detail),
        (Boot::NeedsApiKey(wrong), _) => html! { <ApiKeyForm wrong={*wrong} /> },
        (Boot::Booting, _) => booting(),
        (Boot::Ready, Page::Storage) => html! { <storage::StoragePage state={state.clone()} /> },
        (Boot::Ready, Page::Chat) if state.loaded.is_some() => html! { <chat::ChatView state={state.clone()} /> },
        (Boot::Ready, _) => html! { <models::ModelPicker state={state.clone()} /> },
    };

    html! {
        <ContextProvider<Ctx> context={ctx}>
            <div class="app" data-app-state={state.app_state()}>
                <Header state={state.clone()} />
                <Banners state={state.clone()} />
                <main class="main" id="main">{ main }</main>
                <Toasts state={state.clone()} />
            </div>
        </ContextProvider<Ctx>>
    }
}

fn booting() -> Html {
    html! {
        <section class="splash" aria-busy="true">
            <div class="spinner" aria-hidden="true"></div>
            <h1>{ "Starting Hearth" }</h1>
            <p class="muted">{ "Starting the engine and opening your GPU…" }</p>
        </section>
    }
}

fn no_webgpu(detail: &str) -> Html {
    html! {
        <section class="splash">
            <img src="icon.svg" alt="" width="56" height="56" />
            <h1>{ "WebGPU is not available" }</h1>
            <p>{ error_advice(crate::protocol::ErrorKind::NoWebGpu) }</p>
            <p class="muted small">{ detail }</p>
        </section>
    }
}

#[derive(Properties, PartialEq)]
struct ApiKeyProps {
    wrong: bool,
}

/// `hearth serve --api-key`: the page asks for the key (kept for this tab's session only).
#[function_component(ApiKeyForm)]
fn api_key_form(props: &ApiKeyProps) -> Html {
    let ctx = use_context::<Ctx>().expect("Ctx");
    let input = use_node_ref();
    let submit = {
        let (d, input) = (ctx.dispatch.clone(), input.clone());
        Callback::from(move |e: SubmitEvent| {
            e.prevent_default();
            if let Some(el) = input.cast::<web_sys::HtmlInputElement>() {
                d.dispatch(Action::SubmitApiKey(el.value()));
            }
        })
    };
    html! {
        <section class="splash">
            <img src="icon.svg" alt="" width="56" height="56" />
            <h1>{ "This Hearth server needs its API key" }</h1>
            <p>{ "It was started with --api-key. The key stays in this tab until you close it." }</p>
            if props.wrong { <p class="error" data-testid="api-key-wrong">{ "That key was refused." }</p> }
            <form class="row" onsubmit={submit}>
                <input ref={input} class="input" type="password" autocomplete="off" data-testid="api-key"
                    aria-label="API key" placeholder="API key" />
                <button type="submit" class="btn" data-testid="api-key-submit">{ "Connect" }</button>
            </form>
        </section>
    }
}

#[derive(Properties, PartialEq)]
struct StateProps {
    state: UseReducerHandle<State>,
}

#[function_component(Header)]
fn header(StateProps { state }: &StateProps) -> Html {
    let ctx = use_context::<Ctx>().expect("Ctx");
    let nav = |page: Page| {
        let d = ctx.dispatch.clone();
        Callback::from(move |_: MouseEvent| d.dispatch(Action::Navigate(page)))
    };
    let toggle_theme = {
        let d = ctx.dispatch.clone();
        let next = if state.theme == Theme::Dark { Theme::Light } else { Theme::Dark };
        Callback::from(move |_: MouseEvent| {
            web::save_pref("hearth-theme", next.name());
            d.dispatch(Action::SetTheme(next));
        })
    };
    let native = state.adapter.as_ref().is_some_and(|a| a.native);
    let adapter = match (&state.boot, &state.adapter) {
        (_, Some(a)) if a.native => {
            format!(
                "Native engine (hearth serve){}",
                state.loaded.as_ref().map(|l| format!(" · {}", l.name)).unwrap_or_default()
            )
        }
        (_, Some(a)) => {
            let mut s = format!("GPU: {}", a.name);
            if a.software {
                s.push_str(" · software adapter, slow");
            }
            s
        }
        (Boot::NoWebGpu(_), None) => "GPU: none (no WebGPU)".to_string(),
        (Boot::NeedsApiKey(_), None) => "Native engine (hearth serve): needs its API key".to_string(),
        _ => "GPU: opening…".to_string(),
    };
    let adapter_title = state
        .adapter
        .as_ref()
        .map(|a| {
            format!(
                "max buffer {} · max storage binding {} · shader-f16 {} · kernels: {}",
                util::bytes(a.max_buffer_size),
                util::bytes(a.max_storage_binding),
                if a.shader_f16 { "yes" } else { "no" },
                a.strategy
            )
        })
        .unwrap_or_default();
    let current = |p: Page| if state.page == p { "page" } else { "false" };
    let chat_ready = state.loaded.is_some();
    let is_chat = state.page == Page::Chat && chat_ready;
    let is_models = state.page == Page::Models || (state.page == Page::Chat && !chat_ready);
    let (theme_icon, theme_label) = match state.theme {
        Theme::Dark => ("☀", "Switch to light theme"),
        Theme::Light => ("☾", "Switch to dark theme"),
    };
    html! {
        <header class="topbar">
            <div class="brand">
                <img src="icon.svg" alt="" width="28" height="28" />
                <span class="brand-name">{ "Hearth" }</span>
            </div>
            <div class={classes!("adapter", state.adapter.as_ref().is_some_and(|a| a.software).then_some("software"))}
                data-testid="adapter" title={adapter_title}>
                <span class="dot" aria-hidden="true"></span>
                <span class="adapter-text">{ adapter }</span>
            </div>
            <nav class="nav" aria-label="Main">
                <button type="button" class={classes!("nav-btn", is_chat.then_some("active"))} data-testid="nav-chat"
                    aria-current={if is_chat { "page" } else { "false" }} disabled={!chat_ready}
                    title={if chat_ready { "Chat" } else { "Load a model first" }} onclick={nav(Page::Chat)}>
                    { "Chat" }
                </button>
                // The native engine runs the model its server loaded: nothing to download or store.
                if !native {
                    <button type="button" class={classes!("nav-btn", is_models.then_some("active"))} data-testid="nav-models"
                        aria-current={if is_models { "page" } else { "false" }} onclick={nav(Page::Models)}>
                        { "Models" }
                    </button>
                    <button type="button" class={classes!("nav-btn", (state.page == Page::Storage).then_some("active"))}
                        data-testid="nav-storage" aria-current={current(Page::Storage)} onclick={nav(Page::Storage)}>
                        { "Storage" }
                    </button>
                }
                <button type="button" class="icon-btn" data-testid="theme-toggle" aria-label={theme_label}
                    title={theme_label} onclick={toggle_theme}>
                    <span aria-hidden="true">{ theme_icon }</span>
                </button>
            </nav>
        </header>
    }
}

#[function_component(Banners)]
fn banners(StateProps { state }: &StateProps) -> Html {
    let ctx = use_context::<Ctx>().expect("Ctx");
    if state.banners.is_empty() {
        return html! {};
    }
    html! {
        <div class="banners">
            { for state.banners.iter().map(|b| {
                let d = ctx.dispatch.clone();
                let seq = b.seq;
                let advice = error_advice(b.kind);
                let detail = (b.message.trim() != advice).then(|| b.message.clone());
                html! {
                    <div class={classes!("banner", format!("banner-{}", kind_name(b.kind)))} role="alert"
                        data-testid="error-banner" data-kind={kind_name(b.kind)}>
                        <span class="banner-icon" aria-hidden="true">{ "!" }</span>
                        <div class="banner-text">
                            <strong>{ advice }</strong>
                            if let Some(detail) = detail { <span class="banner-detail">{ detail }</span> }
                        </div>
                        <button type="button" class="icon-btn" aria-label="Dismiss"
                            onclick={Callback::from(move |_: MouseEvent| d.dispatch(Action::DismissBanner(seq)))}>
                            { "✕" }
                        </button>
                    </div>
                }
            }) }
        </div>
    }
}

#[function_component(Toasts)]
fn toasts(StateProps { state }: &StateProps) -> Html {
    html! {
        <div class="toasts" aria-live="polite" role="status">
            { for state.notices.iter().map(|n| html! {
                <div class="toast" data-testid="notice" key={n.seq}>{ &n.message }</div>
            }) }
        </div>
    }
}

/// Asks the browser to keep this origin's storage (models) from eviction under disk
/// pressure. Only the page can ask (`persist()` is not exposed to workers); the worker
/// reports the answer in `Stored.persisted`.
fn request_persistence() {
    if let Some(storage) = web_sys::window().map(|w| w.navigator().storage()) {
        if let Ok(promise) = storage.persist() {
            wasm_bindgen_futures::spawn_local(async move {
                let _ = wasm_bindgen_futures::JsFuture::from(promise).await;
            });
        }
    }
}
