//! The storage page: what is stored in this browser, how much room is left, and deleting.

use yew::prelude::*;

use super::state::{Action, State};
use super::{util, web, Ctx};

#[derive(Properties, PartialEq)]
pub struct StorageProps {
    pub state: UseReducerHandle<State>,
}

#[function_component(StoragePage)]
pub fn storage_page(StorageProps { state }: &StorageProps) -> Html {
    let ctx = use_context::<Ctx>().expect("Ctx");
    let usage = match (state.usage, state.quota) {
        (Some(u), Some(q)) if q > 0 => {
            let pct = (u as f64 / q as f64 * 100.0).clamp(0.0, 100.0);
            html! {
                <div class="usage" data-testid="storage-usage" data-usage={u.to_string()} data-quota={q.to_string()}>
                    <div class="usage-line">
                        <span>{ format!("{} used of {}", util::bytes(u), util::bytes(q)) }</span>
                        <span class="muted">{ format!("{pct:.1}%") }</span>
                    </div>
                    <div class="progress" role="progressbar" aria-label="Browser storage used" aria-valuemin="0"
                        aria-valuemax="100" aria-valuenow={format!("{pct:.0}")}>
                        <div class={classes!("progress-bar", (pct > 90.0).then_some("danger"))}
                            style={format!("width: {pct:.1}%")}></div>
                    </div>
                </div>
            }
        }
        _ => html! {
            <div class="usage" data-testid="storage-usage">
                <span class="muted">{ "This browser does not report its storage quota." }</span>
            </div>
        },
    };
    let persisted = if state.persisted {
        html! { <p class="small"><span class="badge ok">{ "persistent" }</span>{ " The browser will not evict these models to free space." }</p> }
    } else {
        html! { <p class="small"><span class="badge warn">{ "best effort" }</span>{ " The browser may evict stored models when the disk runs low; you would download them again." }</p> }
    };
    let rows = state.stored.iter().map(|m| {
        let (id, name, d) = (m.id.clone(), m.name.clone(), ctx.dispatch.clone());
        let delete = Callback::from(move |_: MouseEvent| {
            if web::confirm(&format!("Delete {name} from this browser's storage?")) {
                d.dispatch(Action::DeleteModel(id.clone()));
            }
        });
        let status = if m.complete {
            html! { <span class="badge ok">{ "complete" }</span> }
        } else {
            let pct = if m.size > 0 { m.stored as f64 / m.size as f64 * 100.0 } else { 0.0 };
            html! { <span class="badge">{ format!("partial · {pct:.0}%") }</span> }
        };
        let sha = m.sha256.as_deref().map(|s| s.chars().take(12).collect::<String>());
        let verified = state.entry(&m.id).is_some_and(|e| util::verified(&e, Some(m)));
        html! {
            <tr data-testid={format!("storage-row-{}", m.id)} key={m.id.clone()}>
                <th scope="row">
                    <div class="cell-title">{ &m.name }</div>
                    <div class="muted small mono">{ &m.id }</div>
                </th>
                <td>{ if m.complete { util::bytes(m.size) } else { format!("{} / {}", util::bytes(m.stored), util::bytes(m.size)) } }</td>
                <td>{ status }</td>
                <td>
                    if verified { <span class="badge ok">{ "verified" }</span> }
                    else { <span class="badge warn" title="Its sha256 does not equal a checksum the catalog publishes">{ "unverified" }</span> }
                </td>
                <td class="mono" title={m.sha256.clone().unwrap_or_default()}>{ sha.map(|s| format!("{s}…")).unwrap_or_else(|| "—".into()) }</td>
                <td class="actions">
                    <button type="button" class="btn ghost danger small" data-testid={format!("storage-delete-{}", m.id)}
                        aria-label={format!("Delete {}", m.name)} onclick={delete}>{ "Delete" }</button>
                </td>
            </tr>
        }
    });
    html! {
        <section class="page storage-page" aria-labelledby="storage-title">
            <div class="page-head">
                <div>
                    <h1 id="storage-title">{ "Storage" }</h1>
                    <p class="muted">{ "Models are kept in this browser (IndexedDB) so they load offline. Conversations are stored separately." }</p>
                </div>
            </div>
            <div class="card">
                { usage }
                { persisted }
            </div>
            if state.stored.is_empty() {
                <div class="card empty">
                    <p>{ "No models are stored yet." }</p>
                    <button type="button" class="btn primary" onclick={
                        let d = ctx.dispatch.clone();
                        Callback::from(move |_: MouseEvent| d.dispatch(Action::Navigate(super::state::Page::Models)))
                    }>{ "Choose a model" }</button>
                </div>
            } else {
                <div class="card table-card">
                    <table class="table">
                        <thead><tr>
                            <th scope="col">{ "Model" }</th><th scope="col">{ "Size" }</th><th scope="col">{ "State" }</th>
                            <th scope="col">{ "Checksum" }</th><th scope="col">{ "sha256" }</th><th scope="col"><span class="sr-only">{ "Actions" }</span></th>
                        </tr></thead>
                        <tbody>{ for rows }</tbody>
                    </table>
                </div>
            }
        </section>
    }
}
