//! The model picker: a card per model (catalog, custom URL, local file) with its download /
//! load state, a "does it fit this GPU" verdict, and the context length to load with.

use yew::prelude::*;

use super::state::{Action, CatalogState, ModelStatus, ProgressInfo, State};
use super::util::{self, FitLevel};
use super::{web, Ctx};
use crate::protocol::{AdapterSummary, CatalogEntry, Phase, StoredModel, ToWorker};

#[derive(Properties, PartialEq)]
pub struct PickerProps {
    pub state: UseReducerHandle<State>,
}

#[function_component(ModelPicker)]
pub fn model_picker(PickerProps { state }: &PickerProps) -> Html {
    let ctx = use_context::<Ctx>().expect("Ctx");
    // "Only what fits": hides the models too large for this GPU (nothing while the GPU's
    // limits are unknown).
    let only_fitting = use_state(|| false);
    let entries: Vec<CatalogEntry> = state
        .entries()
        .into_iter()
        .filter(|e| {
            let stored = state.stored.iter().find(|s| s.id == e.id);
            !*only_fitting || util::fit(e, state.adapter.as_ref(), stored).level != FitLevel::TooLarge
        })
        .collect();
    let on_fit_filter = {
        let only_fitting = only_fitting.clone();
        Callback::from(move |e: Event| {
            only_fitting.set(e.target_unchecked_into::<web_sys::HtmlInputElement>().checked());
        })
    };
    let on_context = {
        let d = ctx.dispatch.clone();
        Callback::from(move |e: Event| {
            let v = e.target_unchecked_into::<web_sys::HtmlSelectElement>().value();
            d.dispatch(Action::SetContext(v.parse().ok()));
        })
    };
    let catalog_note = match &state.catalog {
        CatalogState::Loading => html! { <p class="muted">{ "Loading the model catalog…" }</p> },
        CatalogState::Failed(e) => html! {
            <div class="inline-error" role="alert">
                <strong>{ "The model catalog could not be loaded." }</strong>
                <span>{ format!(" {e}. You can still add a model by URL or from a file below.") }</span>
            </div>
        },
        CatalogState::Ready(_) => html! {},
    };
    let choice = state.context_choice.map(|c| c.to_string()).unwrap_or_default();
    let intro = if state.loaded.is_some() {
        "Switch models, or download another. Everything stays on this device."
    } else {
        "Pick a model to run on your GPU. It downloads once, is stored in this browser, and works offline."
    };
    html! {
        <section class="page models-page" aria-labelledby="models-title">
            <div class="page-head">
                <div>
                    <h1 id="models-title">{ "Models" }</h1>
                    <p class="muted">{ intro }</p>
                </div>
                <div class="page-controls">
                    <label class="field inline check">
                        <input type="checkbox" data-testid="fit-filter" checked={*only_fitting} onchange={on_fit_filter} />
                        <span>{ "Only models that fit this GPU" }</span>
                    </label>
                    <label class="field inline">
                        <span>{ "Context length" }</span>
                        <select data-testid="context-select" aria-label="Context length to load with" onchange={on_context}>
                            <option value="" selected={choice.is_empty()}>{ "Model default" }</option>
                            { for [512u32, 1024, 2048, 4096].iter().map(|c| html! {
                                <option value={c.to_string()} selected={choice == c.to_string()}>
                                    { format!("{c} tokens") }
                                </option>
                            }) }
                        </select>
                    </label>
                </div>
            </div>
            { catalog_note }
            <div class="cards">
                { for entries.iter().map(|e| {
                    let status = state.status(&e.id);
                    let stored = state.stored.iter().find(|s| s.id == e.id).cloned();
                    html! {
                        <ModelCard key={e.id.clone()} entry={e.clone()} status={status}
                            progress={state.progress.get(&e.id).copied()} stored={stored}
                            adapter={state.adapter.clone()}
                            context={util::context_for(e, state.context_choice)} />
                    }
                }) }
            </div>
            <AddModel />
        </section>
    }
}

#[derive(Properties, PartialEq)]
struct CardProps {
    entry: CatalogEntry,
    status: ModelStatus,
    progress: Option<ProgressInfo>,
    stored: Option<StoredModel>,
    adapter: Option<AdapterSummary>,
    context: u32,
}

#[function_component(ModelCard)]
fn model_card(props: &CardProps) -> Html {
    let ctx = use_context::<Ctx>().expect("Ctx");
    let e = &props.entry;
    let id = e.id.clone();
    let fit = util::fit(e, props.adapter.as_ref(), props.stored.as_ref());
    let size = e.size.or(props.stored.as_ref().map(|s| s.size).filter(|&s| s > 0));
    let act = |action: Action| {
        let d = ctx.dispatch.clone();
        Callback::from(move |_: MouseEvent| d.dispatch(action.clone()))
    };
    let delete = {
        let d = ctx.dispatch.clone();
        let (id, name) = (id.clone(), e.name.clone());
        Callback::from(move |_: MouseEvent| {
            if web::confirm(&format!("Delete {name} from this browser's storage?")) {
                d.dispatch(Action::DeleteModel(id.clone()));
            }
        })
    };
    let tid = |what: &str| format!("{what}-{id}");

    let progress = props.progress.map(|p| progress_bar(&id, &p));
    let actions = match props.status {
        ModelStatus::None => html! {
            <button type="button" class="btn primary" data-testid={tid("download")}
                onclick={act(Action::Download(e.clone()))}>
                { match size { Some(s) => format!("Download · {}", util::bytes(s)), None => "Download".into() } }
            </button>
        },
        ModelStatus::Downloading => html! {
            <button type="button" class="btn" data-testid={tid("cancel")} onclick={act(Action::Cancel(id.clone()))}>
                { "Cancel" }
            </button>
        },
        ModelStatus::Paused => html! { <>
            <button type="button" class="btn primary" data-testid={tid("resume")}
                onclick={act(Action::Download(e.clone()))}>{ "Resume" }</button>
            <button type="button" class="btn ghost danger" data-testid={tid("delete")} onclick={delete}>{ "Delete" }</button>
        </> },
        ModelStatus::Stored => html! { <>
            <button type="button" class="btn primary" data-testid={tid("load")} onclick={act(Action::Load(id.clone()))}>
                { format!("Load · {} ctx", props.context) }
            </button>
            <button type="button" class="btn ghost danger" data-testid={tid("delete")} onclick={delete}>{ "Delete" }</button>
        </> },
        ModelStatus::Loading => html! {
            <span class="status-text"><span class="spinner small" aria-hidden="true"></span>{ "Loading onto the GPU…" }</span>
        },
        ModelStatus::Loaded => html! { <>
            <span class="badge ok">{ "Loaded" }</span>
            <button type="button" class="btn primary" onclick={act(Action::Navigate(super::state::Page::Chat))}>
                { "Chat" }
            </button>
        </> },
    };
    // A paused download shows how far it got; Stored tells us even without a Paused event.
    let paused_note = match (props.status, &props.stored) {
        (ModelStatus::Paused, Some(s)) if props.progress.is_none() => {
            let p = ProgressInfo { phase: Phase::Downloading, done: s.stored, total: s.size, bytes_per_sec: 0.0 };
            Some(progress_bar(&id, &p))
        }
        _ => None,
    };
    let show_progress = matches!(props.status, ModelStatus::Downloading | ModelStatus::Loading | ModelStatus::Paused);
    let unverified_note = match &props.stored {
        Some(s) if s.complete && e.sha256.is_some() => {
            "The stored file's sha256 is not the one the catalog publishes.".to_string()
        }
        _ if e.notes.is_empty() => "Size and checksum were not checked against a published source.".to_string(),
        _ => e.notes.clone(),
    };
    let license = if e.license_url.is_empty() {
        html! { <span>{ &e.license }</span> }
    } else {
        html! { <a href={e.license_url.clone()} target="_blank" rel="noopener noreferrer">{ &e.license }</a> }
    };
    html! {
        <article class={classes!("card", "model-card", format!("state-{}", props.status.name()))}
            data-testid={tid("model-card")} data-state={props.status.name()} aria-label={e.name.clone()}>
            <div class="card-head">
                <h2 class="card-title">{ &e.name }</h2>
                if !util::verified(e, props.stored.as_ref()) {
                    <span class="badge warn" data-testid={tid("unverified")} title={unverified_note} tabindex="0">{ "unverified" }</span>
                }
            </div>
            if !e.summary.is_empty() {
                <p class="model-summary" data-testid={tid("summary")}>
                    { &e.summary }
                    if !e.languages.is_empty() { <span class="muted">{ format!(" Languages: {}.", e.languages) }</span> }
                </p>
            }
            <dl class="facts">
                if !e.params.is_empty() { <div><dt>{ "Params" }</dt><dd>{ &e.params }</dd></div> }
                <div><dt>{ "Quant" }</dt><dd>{ &e.quant }</dd></div>
                <div><dt>{ "Size" }</dt><dd>{ size.map(util::bytes).unwrap_or_else(|| "unknown".into()) }</dd></div>
                <div><dt>{ "Context" }</dt><dd>{ format!("{} max", compact_tokens(e.context_length)) }</dd></div>
                <div><dt>{ "License" }</dt><dd title={e.license.clone()}>{ license }</dd></div>
            </dl>
            <p class={classes!("fit", fit.level.class())} data-testid={tid("fit")} data-fit={fit.level.label()}
                title={fit.reason.clone()}>
                <span class="fit-dot" aria-hidden="true"></span>
                <span class="fit-text">
                    <strong>{ capitalise(fit.level.label()) }</strong>
                    <span class="fit-reason">{ &fit.reason }</span>
                </span>
                if fit.level == FitLevel::TooLarge { <span class="sr-only">{ " (you can still try)" }</span> }
            </p>
            if !e.license_notice.is_empty() {
                <p class="license-notice muted" data-testid={tid("license-notice")}>{ &e.license_notice }</p>
            }
            if show_progress { { progress.or(paused_note).unwrap_or_default() } }
            <div class="card-actions">{ actions }</div>
        </article>
    }
}

/// "8k", "128k", "1000".
fn compact_tokens(n: u32) -> String {
    if n >= 1024 && n.is_multiple_of(1024) {
        format!("{}k", n / 1024)
    } else {
        n.to_string()
    }
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

pub(super) fn progress_bar(id: &str, p: &ProgressInfo) -> Html {
    let pct = if p.total > 0 { (p.done as f64 / p.total as f64 * 100.0).clamp(0.0, 100.0) } else { 0.0 };
    let label = match p.phase {
        Phase::Downloading => "Downloading",
        Phase::Verifying => "Verifying",
        Phase::Loading => "Loading",
    };
    let mut detail =
        format!("{} / {}", util::bytes(p.done), if p.total > 0 { util::bytes(p.total) } else { "?".into() });
    if p.bytes_per_sec > 0.0 {
        detail.push_str(&format!(" · {:.1} MB/s", p.bytes_per_sec / 1e6));
        if p.total > p.done {
            detail.push_str(&format!(" · {} left", util::duration((p.total - p.done) as f64 / p.bytes_per_sec)));
        }
    } else if p.phase == Phase::Downloading && p.done < p.total {
        detail.push_str(" · paused");
    }
    html! {
        <div class="progress-wrap">
            <div class="progress" role="progressbar" aria-label={format!("{label} {id}")}
                aria-valuemin="0" aria-valuemax="100" aria-valuenow={format!("{pct:.0}")}
                data-testid={format!("progress-{id}")} data-done={p.done.to_string()} data-total={p.total.to_string()}
                data-phase={label.to_lowercase()}>
                <div class="progress-bar" style={format!("width: {pct:.1}%")}></div>
            </div>
            <div class="progress-text"><span>{ format!("{label} · {pct:.0}%") }</span><span class="muted">{ detail }</span></div>
        </div>
    }
}

/// Add a model the catalog does not list: a GGUF URL, or a local .gguf file.
#[function_component(AddModel)]
fn add_model() -> Html {
    let ctx = use_context::<Ctx>().expect("Ctx");
    let url = use_state(String::new);
    let error = use_state(|| None::<String>);
    let on_input = {
        let url = url.clone();
        Callback::from(move |e: InputEvent| url.set(e.target_unchecked_into::<web_sys::HtmlInputElement>().value()))
    };
    let add = {
        let (url, error, d) = (url.clone(), error.clone(), ctx.dispatch.clone());
        Callback::from(move |e: SubmitEvent| {
            e.prevent_default();
            let u = url.trim().to_string();
            let ok = u.starts_with("https://") || u.starts_with("http://");
            let name = util::url_file_name(&u);
            if !ok || name.is_empty() {
                error.set(Some("Enter an http(s) URL that ends in a .gguf file name.".into()));
                return;
            }
            error.set(None);
            let entry = util::custom_entry(&u, &name, &format!("Added from {u}: size and checksum unknown."));
            d.dispatch(Action::AddCustom { entry, download: true });
            url.set(String::new());
        })
    };
    let on_file = {
        let (d, bridge) = (ctx.dispatch.clone(), ctx.bridge.clone());
        Callback::from(move |e: Event| {
            let input: web_sys::HtmlInputElement = e.target_unchecked_into();
            let Some(file) = input.files().and_then(|f| f.get(0)) else { return };
            let name = file.name();
            let mut entry = util::custom_entry("", &name, "Imported from a local file.");
            entry.size = Some(file.size() as u64);
            let id = entry.id.clone();
            d.dispatch(Action::AddCustom { entry, download: false });
            if let Some(b) = bridge.borrow().as_ref() {
                b.send_file(&ToWorker::ImportFile { id, name }, &file);
            }
            input.set_value("");
        })
    };
    html! {
        <section class="card add-model" aria-labelledby="add-title">
            <h2 id="add-title" class="card-title">{ "Add your own model" }</h2>
            <p class="muted small">
                { "Any GGUF of a Llama-family model (Q4_0, Q4_1, Q8_0, Q4_K, Q6_K, F16, F32). Custom models are not checksum-verified." }
            </p>
            <form class="row" onsubmit={add}>
                <label class="sr-only" for="custom-url">{ "GGUF URL" }</label>
                <input id="custom-url" type="url" class="input grow" data-testid="custom-url"
                    placeholder="https://huggingface.co/…/model.Q4_K_M.gguf" value={(*url).clone()} oninput={on_input}
                    aria-label="GGUF URL" autocomplete="off" spellcheck="false" />
                <button type="submit" class="btn" data-testid="custom-url-add">{ "Add URL" }</button>
            </form>
            if let Some(err) = (*error).clone() { <p class="field-error" role="alert">{ err }</p> }
            <div class="row file-row">
                <label class="btn ghost file-label">
                    <input type="file" accept=".gguf" data-testid="local-file" class="file-input"
                        aria-label="Open a local .gguf file" onchange={on_file} />
                    { "Open a local .gguf file…" }
                </label>
                <span class="muted small">{ "It is copied into this browser's storage; nothing is uploaded." }</span>
            </div>
        </section>
    }
}
