//! The chat view: conversation list, messages (markdown for replies), composer, settings,
//! and the numbers from the last reply.
//!
//! Rendering cost: while a reply streams, `App` re-renders on every token. Each finished
//! message is a `MessageView` with plain, comparable props, so Yew skips it; only the
//! streaming message's markdown is rebuilt.

use std::rc::Rc;

use wasm_bindgen::JsCast;
use yew::prelude::*;

use super::state::{Action, Conversation, Settings, State};
use super::{web, Ctx};
use crate::markdown;
use crate::protocol::{GenStats, Role, Sampling, MAX_STOP};

#[derive(Properties, PartialEq)]
pub struct ChatProps {
    pub state: UseReducerHandle<State>,
}

#[function_component(ChatView)]
pub fn chat_view(ChatProps { state }: &ChatProps) -> Html {
    let ctx = use_context::<Ctx>().expect("Ctx");
    let drawer_open = use_state(|| false);
    let settings_open = use_state(|| false);
    let conv = state.conversation().cloned();
    let generating = state.generation.as_ref().filter(|g| Some(&g.conversation) == state.current.as_ref());
    let busy = state.generation.is_some();
    let summaries: Vec<Summary> = state
        .conversations
        .iter()
        .map(|c| Summary { id: c.id.clone(), title: c.title.clone(), updated: c.updated })
        .collect();
    let loaded = state.loaded.clone();
    let can_regenerate = !busy && conv.as_ref().is_some_and(|c| !c.messages.is_empty());

    let toggle_drawer = {
        let open = drawer_open.clone();
        Callback::from(move |_: MouseEvent| open.set(!*open))
    };
    let close_drawer = {
        let open = drawer_open.clone();
        Callback::from(move |_: ()| open.set(false))
    };
    let toggle_settings = {
        let open = settings_open.clone();
        Callback::from(move |_: MouseEvent| open.set(!*open))
    };
    let close_settings = {
        let open = settings_open.clone();
        Callback::from(move |_: MouseEvent| open.set(false))
    };
    let title = conv.as_ref().map(|c| c.title.clone()).unwrap_or_else(|| "New chat".into());
    let model_line = loaded.as_ref().map(|l| format!("{} · {} ctx", l.name, l.context)).unwrap_or_default();
    let load_title = loaded
        .as_ref()
        .map(|l| {
            format!(
                "Loaded in {:.1} s · {} of weights · wasm memory {}{}",
                l.load_ms / 1000.0,
                super::util::bytes(l.bytes),
                super::util::bytes(l.wasm_memory),
                if l.has_template { "" } else { " · no chat template in the file: a generic one is used" }
            )
        })
        .unwrap_or_default();
    let to_models = {
        let d = ctx.dispatch.clone();
        Callback::from(move |_: MouseEvent| d.dispatch(Action::Navigate(super::state::Page::Models)))
    };

    html! {
        <div class={classes!("chat-layout", drawer_open.then_some("drawer-open"), settings_open.then_some("settings-open"))}>
            <Sidebar conversations={Rc::new(summaries)} current={state.current.clone()} on_pick={close_drawer} />
            <div class="drawer-scrim" aria-hidden="true" onclick={toggle_drawer.clone()}></div>
            <section class="chat-main" aria-label="Chat">
                <div class="chat-head">
                    <button type="button" class="icon-btn drawer-btn" aria-label="Conversations"
                        aria-expanded={drawer_open.to_string()} onclick={toggle_drawer}>
                        <span aria-hidden="true">{ "☰" }</span>
                    </button>
                    <div class="chat-title">
                        <h1>{ title }</h1>
                        <button type="button" class="model-chip" title={load_title} onclick={to_models}
                            aria-label={format!("Model: {model_line}. Change model")}>{ model_line }</button>
                    </div>
                    <button type="button" class={classes!("btn", "ghost", settings_open.then_some("active"))}
                        data-testid="settings-toggle" aria-expanded={settings_open.to_string()}
                        aria-controls="settings-panel" onclick={toggle_settings}>
                        <span aria-hidden="true">{ "⚙ " }</span>{ "Settings" }
                    </button>
                </div>
                <MessageList conversation={conv.clone()}
                    streaming={generating.map(|g| AttrValue::from(g.text.clone()))} busy={busy} />
                <div class="composer-area">
                    <Composer generating={busy} stopping={state.generation.as_ref().is_some_and(|g| g.stopping)}
                        can_regenerate={can_regenerate} />
                    if let Some(stats) = &state.stats { <Stats stats={stats.clone()} /> }
                    else { <p class="hint muted small">{ "Enter to send · Shift+Enter for a new line · Runs entirely on your device" }</p> }
                </div>
            </section>
            if *settings_open {
                <SettingsPanel settings={state.settings.clone()} on_close={close_settings}
                    can_think={state.loaded.as_ref().is_some_and(|l| l.can_think)} />
            }
        </div>
    }
}

#[derive(Clone, PartialEq)]
struct Summary {
    id: String,
    title: String,
    updated: f64,
}

#[derive(Properties, PartialEq)]
struct SidebarProps {
    conversations: Rc<Vec<Summary>>,
    current: Option<String>,
    on_pick: Callback<()>,
}

#[function_component(Sidebar)]
fn sidebar(props: &SidebarProps) -> Html {
    let ctx = use_context::<Ctx>().expect("Ctx");
    let new_chat = {
        let (d, pick) = (ctx.dispatch.clone(), props.on_pick.clone());
        Callback::from(move |_: MouseEvent| {
            d.dispatch(Action::NewChat);
            pick.emit(());
        })
    };
    html! {
        <aside class="sidebar" aria-label="Conversations">
            <button type="button" class="btn primary block" data-testid="new-chat" onclick={new_chat}>
                <span aria-hidden="true">{ "+ " }</span>{ "New chat" }
            </button>
            if props.conversations.is_empty() {
                <p class="muted small sidebar-empty">{ "Your conversations appear here. They are saved in this browser only." }</p>
            }
            <ul class="conv-list">
                { for props.conversations.iter().map(|c| {
                    let active = props.current.as_ref() == Some(&c.id);
                    let select = {
                        let (d, id, pick) = (ctx.dispatch.clone(), c.id.clone(), props.on_pick.clone());
                        Callback::from(move |_: MouseEvent| { d.dispatch(Action::SelectChat(id.clone())); pick.emit(()); })
                    };
                    let delete = {
                        let (d, id, title) = (ctx.dispatch.clone(), c.id.clone(), c.title.clone());
                        Callback::from(move |e: MouseEvent| {
                            e.stop_propagation();
                            if web::confirm(&format!("Delete the conversation \"{title}\"?")) {
                                d.dispatch(Action::DeleteChat(id.clone()));
                            }
                        })
                    };
                    let when = js_date(c.updated);
                    html! {
                        <li key={c.id.clone()} class={classes!("conv", active.then_some("active"))}>
                            <button type="button" class="conv-select" aria-current={if active { "true" } else { "false" }}
                                data-testid="conversation" onclick={select} title={when}>
                                { if c.title.is_empty() { "Untitled" } else { c.title.as_str() } }
                            </button>
                            <button type="button" class="icon-btn conv-delete" data-testid="delete-chat"
                                aria-label={format!("Delete conversation {}", c.title)} onclick={delete}>
                                <span aria-hidden="true">{ "✕" }</span>
                            </button>
                        </li>
                    }
                }) }
            </ul>
        </aside>
    }
}

fn js_date(ms: f64) -> String {
    if cfg!(target_arch = "wasm32") {
        String::from(js_sys::Date::new(&ms.into()).to_locale_string("default", &wasm_bindgen::JsValue::UNDEFINED))
    } else {
        String::new()
    }
}

#[derive(Properties, PartialEq)]
pub(super) struct ListProps {
    pub conversation: Option<Rc<Conversation>>,
    pub streaming: Option<AttrValue>,
    pub busy: bool,
    /// The embedded widget's empty chat: the host's greeting instead of the suggestions.
    #[prop_or_default]
    pub greeting: Option<AttrValue>,
    #[prop_or_default]
    pub embedded: bool,
}

const SUGGESTIONS: [&str; 3] = [
    "Explain how a transformer generates text, in three short paragraphs.",
    "Write a haiku about a campfire.",
    "Give me a Rust function that reverses the words in a sentence.",
];

#[function_component(MessageList)]
pub(super) fn message_list(props: &ListProps) -> Html {
    let ctx = use_context::<Ctx>().expect("Ctx");
    let log = use_node_ref();
    // Follow the reply while the reader is at the bottom; stop following if they scroll up.
    let stick = use_mut_ref(|| true);
    let count = props.conversation.as_ref().map_or(0, |c| c.messages.len());
    let stream_len = props.streaming.as_ref().map_or(0, |s| s.len());
    let conv_id = props.conversation.as_ref().map(|c| c.id.clone());
    {
        let (log, stick) = (log.clone(), stick.clone());
        use_effect_with((conv_id.clone(), count, stream_len, props.streaming.is_some()), move |(_, _, len, _)| {
            if let Some(el) = log.cast::<web_sys::Element>() {
                if *stick.borrow() || *len == 0 {
                    el.set_scroll_top(el.scroll_height());
                    *stick.borrow_mut() = true;
                }
            }
        });
    }
    let on_scroll = {
        let (log, stick) = (log.clone(), stick.clone());
        Callback::from(move |_: Event| {
            if let Some(el) = log.cast::<web_sys::Element>() {
                *stick.borrow_mut() = el.scroll_height() - el.scroll_top() - el.client_height() < 80;
            }
        })
    };
    let empty = count == 0 && props.streaming.is_none();
    let messages = props.conversation.as_ref().map(|c| {
        c.messages
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let tokens = c
                    .tokens
                    .get(i)
                    .cloned()
                    .flatten()
                    .map(|t| AttrValue::from(t.iter().map(u32::to_string).collect::<Vec<_>>().join(",")));
                html! {
                    <MessageView key={i} index={i} role={m.role} content={AttrValue::from(m.content.clone())}
                        tokens={tokens} streaming={false} editable={m.role == Role::User && !props.busy}
                        interrupted={c.is_interrupted(i)} />
                }
            })
            .collect::<Html>()
    });
    html! {
        <div class="messages" role="log" aria-live="polite" aria-label="Messages" ref={log} onscroll={on_scroll}>
            <div class="messages-inner">
                if empty && props.embedded {
                    <div class="empty-chat compact" data-testid="embed-greeting">
                        <p>{ props.greeting.clone().unwrap_or_else(|| AttrValue::from("Ask me anything. Replies are written on your device.")) }</p>
                    </div>
                } else if empty {
                    <div class="empty-chat">
                        <img src="icon.svg" alt="" width="48" height="48" />
                        <h2>{ "What's on your mind?" }</h2>
                        <p class="muted">{ "Replies are generated on your GPU. Nothing leaves this device." }</p>
                        <div class="suggestions">
                            { for SUGGESTIONS.iter().map(|s| {
                                let d = ctx.dispatch.clone();
                                let text = s.to_string();
                                html! {
                                    <button type="button" class="suggestion" disabled={props.busy}
                                        onclick={Callback::from(move |_: MouseEvent| d.dispatch(Action::Send { text: text.clone(), now: web::now_ms() }))}>
                                        { *s }
                                    </button>
                                }
                            }) }
                        </div>
                    </div>
                }
                { messages.unwrap_or_default() }
                if let Some(text) = &props.streaming {
                    <MessageView key="streaming" index={count} role={Role::Assistant} content={text.clone()}
                        tokens={None::<AttrValue>} streaming={true} editable={false} interrupted={false} />
                }
            </div>
        </div>
    }
}

#[derive(Properties, PartialEq)]
struct MessageProps {
    index: usize,
    role: Role,
    content: AttrValue,
    /// Reply token ids, comma-joined, once the reply is done.
    tokens: Option<AttrValue>,
    streaming: bool,
    editable: bool,
    /// Cut short because the engine worker died.
    interrupted: bool,
}

/// A message's content split for display: the answer (what Copy takes) and, for a reply that
/// thinks aloud, its reasoning.
struct Rendered {
    answer: AttrValue,
    answer_html: Html,
    thinking: Option<Html>,
    /// The reasoning is over (`</think>` came).
    thought: bool,
}

#[function_component(MessageView)]
fn message_view(props: &MessageProps) -> Html {
    let ctx = use_context::<Ctx>().expect("Ctx");
    let editing = use_state(|| None::<String>);
    let is_user = props.role == Role::User;
    // A reply that opens with <think>…</think> shows its reasoning folded away, apart from
    // the answer; Copy takes the answer only. Split and rendered once per content.
    let rendered = {
        let content = props.content.clone();
        use_memo((content, is_user), |(c, user)| {
            if *user {
                return Rendered { answer: c.clone(), answer_html: Html::default(), thinking: None, thought: false };
            }
            let reply = markdown::split_thinking(c);
            // Safe to insert unchecked: markdown::to_html escapes all raw HTML in the model's
            // output and builds its own tags only from escaped values.
            let md = |text: &str| Html::from_html_unchecked(AttrValue::from(markdown::to_html(text)));
            Rendered {
                answer: AttrValue::from(reply.answer.to_string()),
                answer_html: md(reply.answer),
                thinking: reply.thinking.filter(|t| !t.is_empty()).map(md),
                thought: reply.thought,
            }
        })
    };
    let answer = rendered.answer.clone();
    let copy_message = {
        let content = answer.clone();
        let d = ctx.dispatch.clone();
        Callback::from(move |_: MouseEvent| {
            web::copy(&content);
            d.dispatch(Action::Notify("Copied to the clipboard.".into()));
        })
    };
    // Copy buttons inside rendered markdown: one delegated handler.
    let on_body_click = {
        let d = ctx.dispatch.clone();
        Callback::from(move |e: MouseEvent| {
            let Some(target) = e.target().and_then(|t| t.dyn_into::<web_sys::Element>().ok()) else { return };
            let Ok(Some(button)) = target.closest(".copy-code") else { return };
            let code = button
                .closest(".code-block")
                .ok()
                .flatten()
                .and_then(|b| b.query_selector("code").ok().flatten())
                .and_then(|c| c.text_content());
            if let Some(code) = code {
                web::copy(&code);
                d.dispatch(Action::Notify("Code copied to the clipboard.".into()));
            }
        })
    };
    let role = if is_user { "user" } else { "assistant" };
    let state = match (props.streaming, props.interrupted) {
        (true, _) => "streaming",
        (false, true) => "interrupted",
        (false, false) => "done",
    };

    if let Some(draft) = (*editing).clone() {
        let on_input = {
            let editing = editing.clone();
            Callback::from(move |e: InputEvent| {
                editing.set(Some(e.target_unchecked_into::<web_sys::HtmlTextAreaElement>().value()))
            })
        };
        let resend = {
            let (d, editing, index, draft) = (ctx.dispatch.clone(), editing.clone(), props.index, draft.clone());
            Callback::from(move |_: MouseEvent| {
                d.dispatch(Action::EditResend { index, text: draft.clone(), now: web::now_ms() });
                editing.set(None);
            })
        };
        let cancel = {
            let editing = editing.clone();
            Callback::from(move |_: MouseEvent| editing.set(None))
        };
        return html! {
            <div class="message user editing" data-testid="message" data-role={role} data-state={state}>
                <div class="bubble edit-box">
                    <label class="sr-only" for={format!("edit-{}", props.index)}>{ "Edit message" }</label>
                    <textarea id={format!("edit-{}", props.index)} class="input" data-testid="edit-input"
                        rows="3" value={draft.clone()} oninput={on_input} />
                    <div class="row end">
                        <button type="button" class="btn ghost" onclick={cancel}>{ "Cancel" }</button>
                        <button type="button" class="btn primary" data-testid="edit-send" disabled={draft.trim().is_empty()}
                            onclick={resend}>{ "Send" }</button>
                    </div>
                    <p class="muted small">{ "Sending replaces this message and everything after it." }</p>
                </div>
            </div>
        };
    }

    let start_edit = {
        let (editing, content) = (editing.clone(), props.content.clone());
        Callback::from(move |_: MouseEvent| editing.set(Some(content.to_string())))
    };
    html! {
        <div class={classes!("message", role, props.streaming.then_some("streaming"))} data-testid="message"
            data-role={role} data-state={state} data-tokens={props.tokens.clone()}>
            if !is_user { <div class="avatar" aria-hidden="true"><img src="icon.svg" alt="" width="22" height="22" /></div> }
            <div class="message-body">
                <div class="bubble">
                    if is_user {
                        <div class="user-text">{ props.content.clone() }</div>
                    } else {
                        if let Some(thinking) = rendered.thinking.clone() {
                            <details class="thinking" data-testid="thinking">
                                <summary>{ if rendered.thought { "Thought it through" } else { "Thinking…" } }</summary>
                                <div class="md">{ thinking }</div>
                            </details>
                        }
                        <div class="md" onclick={on_body_click}>
                            { rendered.answer_html.clone() }
                            if props.streaming && answer.is_empty() && rendered.thinking.is_none() {
                                <span class="typing" aria-label="Thinking"><span></span><span></span><span></span></span>
                            }
                            if props.streaming && !answer.is_empty() { <span class="caret" aria-hidden="true"></span> }
                        </div>
                    }
                </div>
                if props.interrupted {
                    <p class="muted small interrupted-note" data-testid="interrupted">
                        { "Interrupted: the engine stopped while writing this reply." }
                    </p>
                }
                if !props.streaming {
                    <div class="message-tools">
                        <button type="button" class="tool" data-testid="copy-message" aria-label="Copy message" onclick={copy_message}>
                            { "Copy" }
                        </button>
                        if props.editable {
                            <button type="button" class="tool" data-testid="edit-message" aria-label="Edit and resend" onclick={start_edit}>
                                { "Edit" }
                            </button>
                        }
                    </div>
                }
            </div>
        </div>
    }
}

#[derive(Properties, PartialEq)]
pub(super) struct ComposerProps {
    pub generating: bool,
    pub stopping: bool,
    pub can_regenerate: bool,
}

#[function_component(Composer)]
pub(super) fn composer(props: &ComposerProps) -> Html {
    let ctx = use_context::<Ctx>().expect("Ctx");
    let text = use_state(String::new);
    let input = use_node_ref();
    let send = {
        let (text, d, generating, input) = (text.clone(), ctx.dispatch.clone(), props.generating, input.clone());
        Callback::from(move |_: ()| {
            if generating || text.trim().is_empty() {
                return;
            }
            d.dispatch(Action::Send { text: (*text).clone(), now: web::now_ms() });
            text.set(String::new());
            if let Some(el) = input.cast::<web_sys::HtmlTextAreaElement>() {
                el.set_value("");
                let _ = el.focus();
            }
        })
    };
    let on_input = {
        let text = text.clone();
        Callback::from(move |e: InputEvent| text.set(e.target_unchecked_into::<web_sys::HtmlTextAreaElement>().value()))
    };
    let on_key = {
        let send = send.clone();
        Callback::from(move |e: KeyboardEvent| {
            if e.key() == "Enter" && !e.shift_key() && !e.is_composing() {
                e.prevent_default();
                send.emit(());
            }
        })
    };
    let on_submit = {
        let send = send.clone();
        Callback::from(move |e: SubmitEvent| {
            e.prevent_default();
            send.emit(());
        })
    };
    let stop = {
        let d = ctx.dispatch.clone();
        Callback::from(move |_: MouseEvent| d.dispatch(Action::Stop))
    };
    let regenerate = {
        let d = ctx.dispatch.clone();
        Callback::from(move |_: MouseEvent| d.dispatch(Action::Regenerate { now: web::now_ms() }))
    };
    let rows = text.lines().count().clamp(1, 8).to_string();
    html! {
        <form class="composer" onsubmit={on_submit} aria-label="Send a message">
            if props.can_regenerate {
                <button type="button" class="btn ghost small regenerate" data-testid="regenerate" onclick={regenerate}
                    title="Replace the last reply with a new one">
                    <span aria-hidden="true">{ "↻ " }</span>{ "Regenerate" }
                </button>
            }
            <div class="composer-box">
                <label class="sr-only" for="composer">{ "Message" }</label>
                <textarea id="composer" ref={input} data-testid="composer" class="composer-input" rows={rows}
                    placeholder="Message Hearth…" value={(*text).clone()} oninput={on_input} onkeydown={on_key}
                    aria-label="Message" />
                if props.generating {
                    <button type="button" class="send stop" data-testid="stop" aria-label="Stop generating"
                        disabled={props.stopping} onclick={stop}>
                        <span class="stop-square" aria-hidden="true"></span>
                    </button>
                } else {
                    <button type="submit" class="send" data-testid="send" aria-label="Send"
                        disabled={text.trim().is_empty()}>
                        <span aria-hidden="true">{ "↑" }</span>
                    </button>
                }
            </div>
        </form>
    }
}

#[derive(Properties, PartialEq)]
pub(super) struct StatsProps {
    pub stats: GenStats,
}

#[function_component(Stats)]
pub(super) fn stats(StatsProps { stats: s }: &StatsProps) -> Html {
    let reason = match s.stop_reason.as_str() {
        "max_tokens" => Some("stopped at the token limit"),
        "interrupted" => Some("stopped"),
        "context_full" => Some("the context is full"),
        "stop_string" => Some("stopped at a stop string"),
        _ => None,
    };
    html! {
        <div class="stats" data-testid="stats" data-decode-tok-s={format!("{:.2}", s.decode_tok_s)}
            data-first-token-ms={format!("{:.1}", s.first_token_ms)} data-context-used={s.context_used.to_string()}
            data-context-max={s.context_max.to_string()} data-stop-reason={s.stop_reason.clone()}>
            <span title={format!("{} new tokens", s.new_tokens)}>{ format!("{:.1} tok/s", s.decode_tok_s) }</span>
            <span title={format!("prefilled {} of {} prompt tokens at {:.0} tok/s", s.prefilled, s.prompt_tokens, s.prefill_tok_s)}>
                { format!("first token {:.0} ms", s.first_token_ms) }
            </span>
            <span>{ format!("context {} / {}", s.context_used, s.context_max) }</span>
            if let Some(r) = reason { <span>{ r }</span> }
            if s.truncated { <span class="warn-text" role="note">{ "older messages were dropped to fit the context" }</span> }
        </div>
    }
}

#[derive(Properties, PartialEq)]
pub(super) struct SettingsProps {
    pub settings: Rc<Settings>,
    pub on_close: Callback<MouseEvent>,
    /// In the embedded widget the system prompt is the host's, shown apart: not editable here.
    #[prop_or_default]
    pub embedded: bool,
    /// The loaded model's template has a thinking switch: show the Think switch.
    #[prop_or_default]
    pub can_think: bool,
}

#[function_component(SettingsPanel)]
pub(super) fn settings_panel(props: &SettingsProps) -> Html {
    let ctx = use_context::<Ctx>().expect("Ctx");
    let s = props.settings.sampling;
    let system = {
        let d = ctx.dispatch.clone();
        Callback::from(move |e: InputEvent| {
            d.dispatch(Action::SetSystemPrompt(e.target_unchecked_into::<web_sys::HtmlTextAreaElement>().value()))
        })
    };
    let stop = {
        let d = ctx.dispatch.clone();
        Callback::from(move |e: InputEvent| {
            d.dispatch(Action::SetStopText(e.target_unchecked_into::<web_sys::HtmlTextAreaElement>().value()))
        })
    };
    let think = {
        let d = ctx.dispatch.clone();
        Callback::from(move |e: Event| {
            d.dispatch(Action::SetThinking(e.target_unchecked_into::<web_sys::HtmlInputElement>().checked()))
        })
    };
    // Each field edits one member of the sampling settings, parsed from its text.
    let field = |id: &'static str,
                 label: &'static str,
                 value: String,
                 step: &'static str,
                 min: &'static str,
                 max: &'static str,
                 hint: &'static str,
                 set: fn(&mut Sampling, &str) -> bool| {
        let d = ctx.dispatch.clone();
        html! {
            <NumField id={id} label={label} initial={value} step={step} min={min} max={max} hint={hint}
                on_change={Callback::from(move |v: String| d.dispatch(Action::EditSampling(set, v)))} />
        }
    };
    // Bumped by "Reset" to remount the fields with the defaults' text.
    let generation = use_state(|| 0u32);
    let reset = {
        let (d, generation) = (ctx.dispatch.clone(), generation.clone());
        Callback::from(move |_: MouseEvent| {
            d.dispatch(Action::SetSampling(Sampling::default()));
            generation.set(*generation + 1);
        })
    };
    html! {
        <aside class="settings" id="settings-panel" aria-label="Chat settings">
            <div class="settings-head">
                <h2>{ "Settings" }</h2>
                <button type="button" class="icon-btn" aria-label="Close settings" onclick={props.on_close.clone()}>{ "✕" }</button>
            </div>
            if !props.embedded {
                <label class="field">
                    <span>{ "System prompt" }</span>
                    <textarea class="input" data-testid="system-prompt" rows="4" placeholder="You are a helpful assistant."
                        value={props.settings.system_prompt.clone()} oninput={system} />
                    <small class="muted">{ "Sent first with every reply." }</small>
                </label>
            }
            if props.can_think {
                <label class="field inline check">
                    <input type="checkbox" data-testid="think" checked={!props.settings.no_thinking} onchange={think} />
                    <span>{ "Think before answering" }</span>
                </label>
                <small class="muted">{ "This model can reason step by step first (shown folded above its answer): slower, often better." }</small>
            }
            <label class="field">
                <span>{ "Stop strings" }</span>
                <textarea class="input" data-testid="stop-strings" rows="2" placeholder="One per line"
                    value={props.settings.stop_text.clone()} oninput={stop} />
                <small class="muted">{ format!("The reply ends before the first of these (up to {MAX_STOP}, one per line).") }</small>
            </label>
            <h3>{ "Sampling" }</h3>
            <div class="grid2" key={*generation}>
                { field("temperature", "Temperature", s.temperature.to_string(), "0.05", "0", "2", "0 = greedy",
                    |s, v| v.trim().parse::<f32>().ok().filter(|x| (0.0..=5.0).contains(x)).map(|x| s.temperature = x).is_some()) }
                { field("max-tokens", "Max tokens", s.max_tokens.to_string(), "1", "1", "32768", "per reply",
                    |s, v| v.trim().parse::<u32>().ok().filter(|x| *x >= 1).map(|x| s.max_tokens = x).is_some()) }
                { field("top-k", "Top-k", s.top_k.to_string(), "1", "0", "1000", "0 = off",
                    |s, v| v.trim().parse::<u32>().ok().map(|x| s.top_k = x).is_some()) }
                { field("top-p", "Top-p", s.top_p.to_string(), "0.01", "0", "1", "1 = off",
                    |s, v| v.trim().parse::<f32>().ok().filter(|x| (0.0..=1.0).contains(x)).map(|x| s.top_p = x).is_some()) }
                { field("min-p", "Min-p", s.min_p.to_string(), "0.01", "0", "1", "0 = off",
                    |s, v| v.trim().parse::<f32>().ok().filter(|x| (0.0..=1.0).contains(x)).map(|x| s.min_p = x).is_some()) }
                { field("repeat-penalty", "Repeat penalty", s.repeat_penalty.to_string(), "0.05", "0.5", "2", "1 = off",
                    |s, v| v.trim().parse::<f32>().ok().filter(|x| *x > 0.0).map(|x| s.repeat_penalty = x).is_some()) }
                { field("seed", "Seed", s.seed.map(|x| x.to_string()).unwrap_or_default(), "1", "0", "", "empty = random",
                    |s, v| {
                        let v = v.trim();
                        if v.is_empty() { s.seed = None; true } else { v.parse::<u64>().ok().map(|x| s.seed = Some(x)).is_some() }
                    }) }
            </div>
            <button type="button" class="btn ghost small" onclick={reset}>{ "Reset sampling to defaults" }</button>
        </aside>
    }
}

#[derive(Properties, PartialEq)]
struct NumProps {
    id: &'static str,
    label: &'static str,
    initial: String,
    step: &'static str,
    min: &'static str,
    max: &'static str,
    hint: &'static str,
    on_change: Callback<String>,
}

/// A number input that keeps its own text, so a half-typed "0." is not overwritten.
#[function_component(NumField)]
fn num_field(props: &NumProps) -> Html {
    let text = use_state(|| props.initial.clone());
    let on_input = {
        let (text, cb) = (text.clone(), props.on_change.clone());
        Callback::from(move |e: InputEvent| {
            let v = e.target_unchecked_into::<web_sys::HtmlInputElement>().value();
            text.set(v.clone());
            cb.emit(v);
        })
    };
    let input_id = format!("set-{}", props.id);
    html! {
        <label class="field" for={input_id.clone()}>
            <span>{ props.label }</span>
            <input id={input_id} class="input" type="number" inputmode="decimal" data-testid={props.id}
                step={props.step} min={props.min} max={(!props.max.is_empty()).then_some(props.max)}
                value={(*text).clone()} oninput={on_input} placeholder={props.hint} />
            <small class="muted">{ props.hint }</small>
        </label>
    }
}
