//! The UI's state and its reducer. `apply` is pure apart from the outbox: side effects
//! (messages to the worker, IndexedDB writes, timers) are queued there as [`Effect`]s and run
//! by the `App` component after each render. Tests read the outbox instead.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::rc::Rc;

use serde::{Deserialize, Serialize};
use yew::Reducible;

use super::util;
use crate::protocol::{
    AdapterSummary, CatalogEntry, ChatMessage, ErrorKind, FromWorker, GenStats, LoadedInfo, Phase, Role, Sampling,
    StoredModel, ToWorker, MAX_STOP, MAX_STOP_LEN,
};

/// One conversation, as stored in IndexedDB (`hearth-chats` / `conversations`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Conversation {
    pub id: String,
    pub title: String,
    /// Milliseconds since the epoch.
    pub created: f64,
    pub updated: f64,
    pub messages: Vec<ChatMessage>,
    /// The model it was last continued with.
    pub model: String,
    /// Token ids of each assistant reply, parallel to `messages` (None for user messages and
    /// for replies from before the ids were kept).
    #[serde(default)]
    pub tokens: Vec<Option<Vec<u32>>>,
    /// Indices of replies cut short because the engine worker died.
    #[serde(default)]
    pub interrupted: Vec<usize>,
}

impl Conversation {
    fn truncate(&mut self, len: usize) {
        self.messages.truncate(len);
        self.tokens.truncate(len);
        self.interrupted.retain(|&i| i < len);
    }
    fn push(&mut self, message: ChatMessage, tokens: Option<Vec<u32>>) {
        self.tokens.resize(self.messages.len(), None);
        self.messages.push(message);
        self.tokens.push(tokens);
    }
    pub fn is_interrupted(&self, index: usize) -> bool {
        self.interrupted.contains(&index)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Page {
    Models,
    Storage,
    Chat,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Boot {
    /// Waiting for the worker and the GPU.
    Booting,
    /// The GPU could not be opened; the message says why.
    NoWebGpu(String),
    /// The native engine (`hearth serve --api-key`) wants its key; `true` after a wrong one.
    NeedsApiKey(bool),
    Ready,
}

#[derive(Debug, Clone, PartialEq)]
pub enum CatalogState {
    Loading,
    Ready(Rc<Vec<CatalogEntry>>),
    Failed(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Theme {
    Dark,
    Light,
}

impl Theme {
    pub fn name(self) -> &'static str {
        match self {
            Theme::Dark => "dark",
            Theme::Light => "light",
        }
    }
}

/// What a model card shows; also its `data-state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelStatus {
    None,
    Downloading,
    Paused,
    Stored,
    Loading,
    Loaded,
}

impl ModelStatus {
    pub fn name(self) -> &'static str {
        match self {
            ModelStatus::None => "none",
            ModelStatus::Downloading => "downloading",
            ModelStatus::Paused => "paused",
            ModelStatus::Stored => "stored",
            ModelStatus::Loading => "loading",
            ModelStatus::Loaded => "loaded",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProgressInfo {
    pub phase: Phase,
    pub done: u64,
    pub total: u64,
    pub bytes_per_sec: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Banner {
    pub seq: u64,
    pub kind: ErrorKind,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Notice {
    pub seq: u64,
    pub message: String,
}

/// A reply in progress.
#[derive(Debug, Clone, PartialEq)]
pub struct Generation {
    pub conversation: String,
    pub text: String,
    pub stopping: bool,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Settings {
    pub system_prompt: String,
    pub sampling: Sampling,
    /// Stop strings as typed: one per line.
    pub stop_text: String,
    /// The Think switch is off (models whose template has one think by default).
    pub no_thinking: bool,
}

impl Settings {
    /// The stop strings to send: the non-empty lines, as typed (spaces count), at most
    /// [`MAX_STOP`] of at most [`MAX_STOP_LEN`] bytes (longer ones are left out).
    pub fn stop_strings(&self) -> Vec<String> {
        self.stop_text
            .split('\n')
            .map(|l| l.strip_suffix('\r').unwrap_or(l))
            .filter(|l| !l.is_empty() && l.len() <= MAX_STOP_LEN)
            .take(MAX_STOP)
            .map(str::to_string)
            .collect()
    }
}

/// Side effects the reducer asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    Send(ToWorker),
    SaveConversation(Conversation),
    DeleteConversation(String),
    /// Dismiss the notice with this seq after a few seconds.
    ExpireNotice(u64),
    /// Replace the engine worker (it died): terminate it, start a fresh one.
    RestartWorker,
}

#[derive(Debug, Clone)]
pub struct State {
    pub boot: Boot,
    pub adapter: Option<AdapterSummary>,
    pub catalog: CatalogState,
    /// Entries added this session from a URL or a file.
    pub custom: Vec<CatalogEntry>,
    pub stored: Rc<Vec<StoredModel>>,
    pub quota: Option<u64>,
    pub usage: Option<u64>,
    pub persisted: bool,
    /// The engine could not open any storage (`ErrorKind::NoStorage`): nothing can be
    /// downloaded until a store is listed (the widget's Storage Access store, say).
    pub no_storage: bool,
    pub progress: HashMap<String, ProgressInfo>,
    /// Downloads under way (requested or reporting progress).
    pub downloading: HashSet<String>,
    pub loading: Option<String>,
    pub loaded: Option<LoadedInfo>,
    pub page: Page,
    pub context_choice: Option<u32>,
    pub conversations: Vec<Rc<Conversation>>,
    pub current: Option<String>,
    pub generation: Option<Generation>,
    pub stats: Option<GenStats>,
    pub settings: Rc<Settings>,
    pub banners: Vec<Banner>,
    pub notices: Vec<Notice>,
    pub theme: Theme,
    seq: u64,
    pub outbox: Rc<RefCell<Vec<Effect>>>,
}

impl Default for State {
    fn default() -> Self {
        State {
            boot: Boot::Booting,
            adapter: None,
            catalog: CatalogState::Loading,
            custom: Vec::new(),
            stored: Rc::default(),
            quota: None,
            usage: None,
            persisted: false,
            no_storage: false,
            progress: HashMap::new(),
            downloading: HashSet::new(),
            loading: None,
            loaded: None,
            page: Page::Models,
            context_choice: None,
            conversations: Vec::new(),
            current: None,
            generation: None,
            stats: None,
            settings: Rc::default(),
            banners: Vec::new(),
            notices: Vec::new(),
            theme: Theme::Dark,
            seq: 0,
            outbox: Rc::default(),
        }
    }
}

#[derive(Debug, Clone)]
pub enum Action {
    Worker(FromWorker),
    /// The worker could not even be started.
    WorkerFailed(String),
    /// The engine worker died (why): see `bridge::WorkerBridge::spawn`.
    WorkerDied(String),
    Catalog(Result<Vec<CatalogEntry>, String>),
    History(Vec<Conversation>),
    SetTheme(Theme),
    Navigate(Page),
    Download(CatalogEntry),
    /// A custom entry (URL or file); a URL one also starts downloading.
    AddCustom {
        entry: CatalogEntry,
        download: bool,
    },
    Cancel(String),
    DeleteModel(String),
    Load(String),
    SetContext(Option<u32>),
    NewChat,
    SelectChat(String),
    DeleteChat(String),
    /// Send a user message; `now` is the time in ms (kept out of the reducer for tests).
    Send {
        text: String,
        now: f64,
    },
    Stop,
    Regenerate {
        now: f64,
    },
    /// Replace user message `index` with `text`, drop everything after it, and reply again.
    EditResend {
        index: usize,
        text: String,
        now: f64,
    },
    SetSystemPrompt(String),
    SetStopText(String),
    /// The Think switch: on = the model reasons before answering (where its template can).
    SetThinking(bool),
    /// The key the person typed for `hearth serve`.
    SubmitApiKey(String),
    SetSampling(Sampling),
    /// Parse one sampling field's text into the current settings (ignored if it does not parse).
    EditSampling(fn(&mut Sampling, &str) -> bool, String),
    DismissBanner(u64),
    DismissNotice(u64),
    Notify(String),
}

/// States compare by identity: every action makes a new one, so "same allocation" is
/// "unchanged", and components taking the whole state re-render exactly when it changed.
impl PartialEq for State {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::eq(self, other)
    }
}

impl Reducible for State {
    type Action = Action;
    fn reduce(self: Rc<Self>, action: Action) -> Rc<Self> {
        let mut next = (*self).clone();
        next.apply(action);
        Rc::new(next)
    }
}

impl State {
    pub fn with_theme(theme: Theme) -> Self {
        State { theme, ..State::default() }
    }

    fn effect(&self, e: Effect) {
        self.outbox.borrow_mut().push(e);
    }

    fn send(&self, msg: ToWorker) {
        self.effect(Effect::Send(msg));
    }

    pub fn take_effects(&self) -> Vec<Effect> {
        std::mem::take(&mut *self.outbox.borrow_mut())
    }

    /// `data-app-state` on the root.
    pub fn app_state(&self) -> &'static str {
        match (&self.boot, &self.loading, &self.loaded) {
            (Boot::NoWebGpu(_), _, _) => "no-webgpu",
            (Boot::NeedsApiKey(_), _, _) => "needs-api-key",
            (Boot::Booting, _, _) => "booting",
            (_, Some(_), _) => "loading",
            (_, None, Some(_)) => "chat",
            _ => "ready",
        }
    }

    /// Catalog, then custom entries, then stored models neither lists (from earlier sessions).
    pub fn entries(&self) -> Vec<CatalogEntry> {
        let mut out: Vec<CatalogEntry> = match &self.catalog {
            CatalogState::Ready(c) => c.as_ref().clone(),
            _ => Vec::new(),
        };
        for e in &self.custom {
            if !out.iter().any(|o| o.id == e.id) {
                out.push(e.clone());
            }
        }
        for s in self.stored.iter() {
            if !out.iter().any(|o| o.id == s.id) {
                let mut e = util::custom_entry(&s.url, &s.name, "Stored earlier from a URL or a file.");
                e.id = s.id.clone();
                e.name = s.name.strip_suffix(".gguf").unwrap_or(&s.name).to_string();
                e.size = Some(s.size);
                e.verified = s.verified;
                out.push(e);
            }
        }
        out
    }

    pub fn entry(&self, id: &str) -> Option<CatalogEntry> {
        self.entries().into_iter().find(|e| e.id == id)
    }

    pub fn status(&self, id: &str) -> ModelStatus {
        if self.loaded.as_ref().is_some_and(|l| l.id == id) {
            return ModelStatus::Loaded;
        }
        if self.loading.as_deref() == Some(id) {
            return ModelStatus::Loading;
        }
        if self.downloading.contains(id) {
            return ModelStatus::Downloading;
        }
        match self.stored.iter().find(|s| s.id == id) {
            Some(s) if s.complete => ModelStatus::Stored,
            Some(_) => ModelStatus::Paused,
            None => ModelStatus::None,
        }
    }

    pub fn conversation(&self) -> Option<&Rc<Conversation>> {
        let id = self.current.as_ref()?;
        self.conversations.iter().find(|c| &c.id == id)
    }

    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    fn banner(&mut self, kind: ErrorKind, message: String) {
        let seq = self.next_seq();
        // One banner per kind: a repeated error replaces the older one.
        self.banners.retain(|b| b.kind != kind);
        self.banners.push(Banner { seq, kind, message });
        if self.banners.len() > 3 {
            self.banners.remove(0);
        }
    }

    fn notify(&mut self, message: String) {
        let seq = self.next_seq();
        // A repeated notice (a retry loop) replaces the older copy instead of stacking.
        self.notices.retain(|n| n.message != message);
        self.notices.push(Notice { seq, message });
        if self.notices.len() > 3 {
            self.notices.remove(0);
        }
        self.effect(Effect::ExpireNotice(seq));
    }

    pub fn apply(&mut self, action: Action) {
        match action {
            Action::Worker(ev) => self.on_worker(ev),
            Action::WorkerFailed(msg) => {
                self.boot = Boot::Ready;
                self.banner(ErrorKind::Other, msg);
            }
            Action::WorkerDied(why) => {
                // What the old worker held is gone: its model, its downloads (they resume from
                // storage), the reply it was writing (kept as far as it got, marked).
                self.interrupt_generation();
                self.loaded = None;
                self.loading = None;
                self.downloading.clear();
                self.progress.clear();
                self.boot = Boot::Booting;
                self.effect(Effect::RestartWorker);
                self.banner(ErrorKind::EngineRestarted, format!("The engine stopped ({why})."));
            }
            Action::Catalog(Ok(models)) => self.catalog = CatalogState::Ready(Rc::new(models)),
            Action::Catalog(Err(e)) => self.catalog = CatalogState::Failed(e),
            Action::History(mut convs) => {
                convs.sort_by(|a, b| b.updated.total_cmp(&a.updated));
                // Anything made in this session before the history arrived wins.
                for c in convs {
                    if !self.conversations.iter().any(|o| o.id == c.id) {
                        self.conversations.push(Rc::new(c));
                    }
                }
            }
            Action::SetTheme(t) => self.theme = t,
            Action::Navigate(p) => self.page = p,
            Action::Download(entry) => {
                self.downloading.insert(entry.id.clone());
                self.send(ToWorker::Download { entry: Box::new(entry) });
            }
            Action::AddCustom { entry, download } => {
                self.custom.retain(|e| e.id != entry.id);
                self.custom.push(entry.clone());
                self.downloading.insert(entry.id.clone());
                if download {
                    self.send(ToWorker::Download { entry: Box::new(entry) });
                }
            }
            Action::Cancel(id) => self.send(ToWorker::Cancel { id }),
            Action::DeleteModel(id) => {
                self.downloading.remove(&id);
                self.progress.remove(&id);
                self.custom.retain(|e| e.id != id);
                self.send(ToWorker::Delete { id });
            }
            Action::Load(id) => {
                let Some(entry) = self.entry(&id) else { return };
                let context = util::context_for(&entry, self.context_choice);
                self.loading = Some(id.clone());
                self.progress.remove(&id);
                self.send(ToWorker::Load { id, context });
            }
            Action::SetContext(c) => self.context_choice = c,
            Action::NewChat => {
                self.current = None;
                self.stats = None;
                self.page = Page::Chat;
            }
            Action::SelectChat(id) => {
                if self.current.as_ref() != Some(&id) {
                    self.stats = None;
                }
                self.current = Some(id);
                self.page = Page::Chat;
            }
            Action::DeleteChat(id) => {
                self.conversations.retain(|c| c.id != id);
                if self.current.as_ref() == Some(&id) {
                    self.current = None;
                    self.stats = None;
                }
                self.effect(Effect::DeleteConversation(id));
            }
            Action::Send { text, now } => {
                let text = text.trim().to_string();
                if text.is_empty() || self.generation.is_some() || self.loaded.is_none() {
                    return;
                }
                let id = match self.conversation() {
                    Some(c) => c.id.clone(),
                    None => {
                        let id = format!("c{}-{}", now as u64, self.next_seq());
                        let conv = Conversation {
                            id: id.clone(),
                            title: util::title_from(&text),
                            created: now,
                            updated: now,
                            messages: Vec::new(),
                            model: String::new(),
                            tokens: Vec::new(),
                            interrupted: Vec::new(),
                        };
                        self.conversations.insert(0, Rc::new(conv));
                        self.current = Some(id.clone());
                        id
                    }
                };
                self.edit_current(now, |c| c.push(ChatMessage { role: Role::User, content: text }, None));
                self.generate(id);
            }
            Action::Stop => {
                if let Some(g) = &mut self.generation {
                    g.stopping = true;
                    self.send(ToWorker::Stop);
                }
            }
            Action::Regenerate { now } => {
                let Some(conv) = self.conversation() else { return };
                if self.generation.is_some() || self.loaded.is_none() {
                    return;
                }
                let id = conv.id.clone();
                let len = conv.messages.len();
                let last_is_reply = conv.messages.last().is_some_and(|m| m.role == Role::Assistant);
                if last_is_reply {
                    self.edit_current(now, |c| c.truncate(len - 1));
                }
                if self.conversation().is_some_and(|c| c.messages.last().is_some_and(|m| m.role == Role::User)) {
                    self.generate(id);
                }
            }
            Action::EditResend { index, text, now } => {
                let text = text.trim().to_string();
                let Some(conv) = self.conversation() else { return };
                if text.is_empty() || self.generation.is_some() || self.loaded.is_none() {
                    return;
                }
                if conv.messages.get(index).is_none_or(|m| m.role != Role::User) {
                    return;
                }
                let id = conv.id.clone();
                self.edit_current(now, |c| {
                    c.truncate(index);
                    c.push(ChatMessage { role: Role::User, content: text.clone() }, None);
                    if index == 0 {
                        c.title = util::title_from(&text);
                    }
                });
                self.generate(id);
            }
            Action::SetSystemPrompt(s) => Rc::make_mut(&mut self.settings).system_prompt = s,
            Action::SetStopText(s) => Rc::make_mut(&mut self.settings).stop_text = s,
            Action::SetThinking(on) => Rc::make_mut(&mut self.settings).no_thinking = !on,
            Action::SubmitApiKey(key) => {
                self.boot = Boot::Booting;
                self.send(ToWorker::ApiKey { key: key.trim().to_string() });
            }
            Action::SetSampling(s) => Rc::make_mut(&mut self.settings).sampling = s,
            Action::EditSampling(set, text) => {
                let mut next = self.settings.sampling;
                if set(&mut next, &text) {
                    Rc::make_mut(&mut self.settings).sampling = next;
                }
            }
            Action::DismissBanner(seq) => self.banners.retain(|b| b.seq != seq),
            Action::DismissNotice(seq) => self.notices.retain(|n| n.seq != seq),
            Action::Notify(m) => self.notify(m),
        }
    }

    /// Changes the current conversation, stamps it, and saves it.
    fn edit_current(&mut self, now: f64, f: impl FnOnce(&mut Conversation)) {
        let model = self.loaded.as_ref().map(|l| l.id.clone());
        let Some(id) = self.current.clone() else { return };
        let Some(pos) = self.conversations.iter().position(|c| c.id == id) else { return };
        let mut conv = self.conversations.remove(pos);
        {
            let c = Rc::make_mut(&mut conv);
            f(c);
            c.updated = now;
            if let Some(m) = model {
                c.model = m;
            }
        }
        self.effect(Effect::SaveConversation((*conv).clone()));
        // Most recent first.
        self.conversations.insert(0, conv);
    }

    /// Asks for a reply to conversation `id`: the system prompt (if any), then every message.
    fn generate(&mut self, id: String) {
        let Some(conv) = self.conversations.iter().find(|c| c.id == id) else { return };
        let mut messages = Vec::with_capacity(conv.messages.len() + 1);
        let system = self.settings.system_prompt.trim();
        if !system.is_empty() {
            messages.push(ChatMessage { role: Role::System, content: system.to_string() });
        }
        messages.extend(conv.messages.iter().cloned());
        self.stats = None;
        self.generation = Some(Generation { conversation: id, text: String::new(), stopping: false });
        let think = self.loaded.as_ref().filter(|l| l.can_think).map(|_| !self.settings.no_thinking);
        self.send(ToWorker::Generate {
            messages,
            sampling: self.settings.sampling,
            stop: self.settings.stop_strings(),
            think,
        });
    }

    /// Ends the reply in progress: its text joins the conversation (if there is any text).
    /// Ends the reply in progress as far as it got, marked as interrupted.
    fn interrupt_generation(&mut self) {
        let Some(g) = &self.generation else { return };
        let (conversation, kept) = (g.conversation.clone(), !g.text.is_empty());
        let now = self.conversation().map(|c| c.updated).unwrap_or(0.0);
        self.finish_generation(None, now);
        if !kept {
            return;
        }
        if let Some(pos) = self.conversations.iter().position(|c| c.id == conversation) {
            let conv = Rc::make_mut(&mut self.conversations[pos]);
            conv.interrupted.push(conv.messages.len() - 1);
            let saved = conv.clone();
            self.effect(Effect::SaveConversation(saved));
        }
    }

    fn finish_generation(&mut self, tokens: Option<Vec<u32>>, now: f64) {
        let Some(g) = self.generation.take() else { return };
        if g.text.is_empty() && tokens.as_ref().is_none_or(|t| t.is_empty()) {
            return;
        }
        let Some(pos) = self.conversations.iter().position(|c| c.id == g.conversation) else { return };
        let conv = Rc::make_mut(&mut self.conversations[pos]);
        conv.push(ChatMessage { role: Role::Assistant, content: g.text }, tokens);
        if now > conv.updated {
            conv.updated = now;
        }
        let saved = conv.clone();
        self.effect(Effect::SaveConversation(saved));
    }

    fn on_worker(&mut self, ev: FromWorker) {
        match ev {
            FromWorker::Booted => self.send(ToWorker::Init),
            FromWorker::Ready { adapter, error } => match adapter {
                Some(a) => {
                    self.adapter = Some(a);
                    self.boot = Boot::Ready;
                    // A device-lost banner stays until dismissed: the model has to be loaded again.
                }
                None => {
                    self.boot =
                        Boot::NoWebGpu(error.unwrap_or_else(|| "This browser did not offer a WebGPU adapter.".into()))
                }
            },
            FromWorker::Stored { models, quota, usage, persisted } => {
                self.no_storage = false;
                for m in &models {
                    if m.complete {
                        self.downloading.remove(&m.id);
                    }
                }
                self.stored = Rc::new(models);
                self.quota = quota;
                self.usage = usage;
                self.persisted = persisted;
            }
            FromWorker::Progress { id, phase, done, total, bytes_per_sec } => {
                if phase == Phase::Downloading {
                    self.downloading.insert(id.clone());
                }
                if phase == Phase::Loading && self.loading.is_none() {
                    self.loading = Some(id.clone());
                }
                self.progress.insert(id, ProgressInfo { phase, done, total, bytes_per_sec });
            }
            FromWorker::Downloaded { id } => {
                self.downloading.remove(&id);
                self.progress.remove(&id);
                let name = self.entry(&id).map(|e| e.name).unwrap_or(id);
                self.notify(format!("{name} is downloaded and checked."));
                self.send(ToWorker::ListStored);
            }
            FromWorker::Paused { id, stored, total } => {
                self.downloading.remove(&id);
                self.progress
                    .insert(id, ProgressInfo { phase: Phase::Downloading, done: stored, total, bytes_per_sec: 0.0 });
                self.send(ToWorker::ListStored);
            }
            FromWorker::Loaded { info } => {
                self.progress.remove(&info.id);
                self.loading = None;
                self.loaded = Some(info);
                self.page = Page::Chat;
            }
            FromWorker::Token { text } => {
                if let Some(g) = &mut self.generation {
                    g.text.push_str(&text);
                }
            }
            FromWorker::Done { stats } => {
                let tokens = Some(stats.tokens.clone());
                // The reducer has no clock; the reply keeps the conversation's time order.
                let now = self.conversation().map(|c| c.updated).unwrap_or(0.0);
                self.finish_generation(tokens, now);
                if stats.truncated {
                    self.notify("Older messages were dropped to fit the context.".into());
                }
                self.stats = Some(stats);
            }
            FromWorker::Error { kind, message, id } => self.on_error(kind, message, id),
            FromWorker::Notice { message } => self.notify(message),
            // The bridge answers these itself (heartbeat, restart); never forwarded.
            FromWorker::Pong { .. } => {}
            FromWorker::NeedsApiKey { wrong } => self.boot = Boot::NeedsApiKey(wrong),
            // The JS API's answers: the app sends no `Chat` requests.
            FromWorker::ChatChunk { .. }
            | FromWorker::ChatCompletion { .. }
            | FromWorker::ChatError { .. }
            | FromWorker::ChatEnded { .. } => {}
            FromWorker::Panicked { message } => self.apply(Action::WorkerDied(message)),
            // Answered by the page's store before the reducer (`app::start_worker`).
            FromWorker::StoreCall { .. } => {}
        }
    }

    fn on_error(&mut self, kind: ErrorKind, message: String, id: Option<String>) {
        if let Some(id) = &id {
            self.downloading.remove(id);
            if self.loading.as_ref() == Some(id) {
                self.loading = None;
            }
        }
        match kind {
            ErrorKind::NoWebGpu => {
                self.boot = Boot::NoWebGpu(message.clone());
            }
            ErrorKind::DeviceLost => {
                self.loaded = None;
                self.loading = None;
                self.finish_generation(None, 0.0);
                // The worker re-opens the device itself and answers with `Ready`.
                self.page = Page::Models;
            }
            ErrorKind::OutOfMemory | ErrorKind::BadModel | ErrorKind::Corrupt => {
                if id.is_none() {
                    self.loading = None;
                }
                self.finish_generation(None, 0.0);
            }
            ErrorKind::NoStorage => self.no_storage = true,
            ErrorKind::Network | ErrorKind::Quota => {
                if let Some(id) = &id {
                    self.progress.remove(id);
                }
                self.send(ToWorker::ListStored);
            }
            ErrorKind::ContextFull | ErrorKind::EngineRestarted | ErrorKind::Other => self.finish_generation(None, 0.0),
        }
        self.banner(kind, message);
    }
}

/// What the banner says for an error kind; the worker's message follows as detail.
pub fn error_advice(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::NoWebGpu => {
            "This browser has no WebGPU. Try a recent Chrome/Edge, or run Hearth natively with the `hearth` \
             command-line tool (see README)."
        }
        ErrorKind::DeviceLost => "The GPU was reset; Hearth re-opened it. Load the model again.",
        ErrorKind::OutOfMemory => "Out of GPU memory: choose a smaller model or a shorter context.",
        ErrorKind::Quota => "Browser storage is full: delete a model on the Storage page.",
        ErrorKind::NoStorage => {
            "This browser lets this page store nothing, so models cannot be downloaded or kept. In an embedded \
             chat, open Hearth in its own tab; otherwise leave private browsing or allow site data."
        }
        ErrorKind::Network => "The download stopped; press Resume.",
        ErrorKind::Corrupt => "The stored model did not match its checksum: delete it and download it again.",
        ErrorKind::BadModel => "This file is not a model Hearth can run (a GGUF of a supported architecture).",
        ErrorKind::ContextFull => {
            "The conversation no longer fits the context: start a new chat or load a longer context."
        }
        ErrorKind::EngineRestarted => {
            "Hearth restarted its engine: load the model again. A reply it was writing is kept as far as it got."
        }
        ErrorKind::Other => "Something went wrong.",
    }
}

pub fn kind_name(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::NoWebGpu => "no_web_gpu",
        ErrorKind::DeviceLost => "device_lost",
        ErrorKind::OutOfMemory => "out_of_memory",
        ErrorKind::Quota => "quota",
        ErrorKind::NoStorage => "no_storage",
        ErrorKind::Network => "network",
        ErrorKind::Corrupt => "corrupt",
        ErrorKind::BadModel => "bad_model",
        ErrorKind::ContextFull => "context_full",
        ErrorKind::EngineRestarted => "engine_restarted",
        ErrorKind::Other => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loaded_state() -> State {
        let mut s = State::default();
        s.apply(Action::Worker(FromWorker::Ready {
            adapter: Some(AdapterSummary {
                name: "google swiftshader".into(),
                max_buffer_size: 1 << 30,
                max_storage_binding: 1 << 30,
                shader_f16: false,
                strategy: "reduce".into(),
                software: true,
                native: false,
            }),
            error: None,
        }));
        s.apply(Action::Worker(FromWorker::Loaded {
            info: LoadedInfo {
                id: "m".into(),
                name: "M".into(),
                context: 2048,
                load_ms: 1.0,
                bytes: 1,
                read_ms: 1.0,
                wasm_memory: 1,
                has_template: true,
                pipelines: 1,
                can_think: false,
            },
        }));
        s.take_effects();
        s
    }

    fn stats(tokens: Vec<u32>) -> GenStats {
        GenStats {
            prompt_tokens: 10,
            prefilled: 10,
            new_tokens: tokens.len() as u32,
            first_token_ms: 5.0,
            decode_tok_s: 100.0,
            prefill_tok_s: 400.0,
            context_used: 20,
            context_max: 2048,
            stop_reason: "eos".into(),
            truncated: false,
            tokens,
        }
    }

    fn generate_messages(effects: &[Effect]) -> Vec<ChatMessage> {
        effects
            .iter()
            .find_map(|e| match e {
                Effect::Send(ToWorker::Generate { messages, .. }) => Some(messages.clone()),
                _ => None,
            })
            .expect("a Generate was sent")
    }

    #[test]
    fn boot_sends_init_and_states_follow() {
        let mut s = State::default();
        assert_eq!(s.app_state(), "booting");
        s.apply(Action::Worker(FromWorker::Booted));
        assert_eq!(s.take_effects(), vec![Effect::Send(ToWorker::Init)]);
        s.apply(Action::Worker(FromWorker::Ready { adapter: None, error: Some("no adapter".into()) }));
        assert_eq!(s.app_state(), "no-webgpu");
        let s = loaded_state();
        assert_eq!(s.app_state(), "chat");
        assert_eq!(s.page, Page::Chat);
    }

    #[test]
    fn a_server_that_wants_its_key_gets_a_form_and_then_the_key() {
        let mut s = State::default();
        s.apply(Action::Worker(FromWorker::NeedsApiKey { wrong: false }));
        assert_eq!((s.boot.clone(), s.app_state()), (Boot::NeedsApiKey(false), "needs-api-key"));
        s.apply(Action::SubmitApiKey(" s3cret ".into()));
        assert_eq!(s.take_effects(), vec![Effect::Send(ToWorker::ApiKey { key: "s3cret".into() })]);
        assert_eq!(s.boot, Boot::Booting);
        s.apply(Action::Worker(FromWorker::NeedsApiKey { wrong: true }));
        assert_eq!(s.boot, Boot::NeedsApiKey(true));
    }

    #[test]
    fn stop_strings_from_the_settings_go_with_each_reply() {
        let mut s = loaded_state();
        let long = "x".repeat(MAX_STOP_LEN + 1);
        s.apply(Action::SetStopText(format!("END\r\n\n a b \n{long}\n1\n2\n3")));
        s.apply(Action::Send { text: "Hello".into(), now: 1000.0 });
        let sent = s.take_effects().into_iter().find_map(|e| match e {
            Effect::Send(ToWorker::Generate { stop, .. }) => Some(stop),
            _ => None,
        });
        assert_eq!(sent, Some(vec!["END".to_string(), " a b ".into(), "1".into(), "2".into()]));
        crate::protocol::check_stop(&sent.unwrap()).unwrap();
    }

    /// The Think switch goes with each reply only for a model whose template has one: on by
    /// default (such models think unless told not to), off once switched off.
    #[test]
    fn the_think_switch_goes_with_replies_of_models_that_have_one() {
        let think_sent = |s: &mut State| {
            s.apply(Action::Send { text: "Hello".into(), now: 1000.0 });
            let sent = s.take_effects().into_iter().find_map(|e| match e {
                Effect::Send(ToWorker::Generate { think, .. }) => Some(think),
                _ => None,
            });
            s.apply(Action::Worker(FromWorker::Done { stats: stats(vec![1]) }));
            s.take_effects();
            sent.expect("a Generate")
        };
        let mut s = loaded_state();
        assert_eq!(think_sent(&mut s), None, "no switch: the template's default");
        if let Some(info) = s.loaded.as_mut() {
            info.can_think = true;
        }
        assert_eq!(think_sent(&mut s), Some(true));
        s.apply(Action::SetThinking(false));
        assert_eq!(think_sent(&mut s), Some(false));
        s.apply(Action::SetThinking(true));
        assert_eq!(think_sent(&mut s), Some(true));
    }

    #[test]
    fn send_stream_done_saves_reply_with_tokens() {
        let mut s = loaded_state();
        Rc::make_mut(&mut s.settings).system_prompt = "Be brief.".into();
        s.apply(Action::Send { text: "  Hello there ".into(), now: 1000.0 });
        let effects = s.take_effects();
        let msgs = generate_messages(&effects);
        assert_eq!(msgs.len(), 2);
        assert_eq!(msgs[0].role, Role::System);
        assert_eq!(msgs[1].content, "Hello there");
        assert_eq!(s.conversation().map(|c| c.title.as_str()), Some("Hello there"));
        // No second send while generating.
        s.apply(Action::Send { text: "again".into(), now: 1001.0 });
        assert!(s.take_effects().is_empty());
        s.apply(Action::Worker(FromWorker::Token { text: "Hi".into() }));
        s.apply(Action::Worker(FromWorker::Token { text: "!".into() }));
        assert_eq!(s.generation.as_ref().map(|g| g.text.as_str()), Some("Hi!"));
        s.apply(Action::Worker(FromWorker::Done { stats: stats(vec![7, 8]) }));
        assert!(s.generation.is_none());
        let conv = s.conversation().unwrap();
        assert_eq!(conv.messages.len(), 2);
        assert_eq!(conv.messages[1].content, "Hi!");
        assert_eq!(conv.tokens[1], Some(vec![7, 8]));
        assert!(matches!(s.take_effects().as_slice(), [Effect::SaveConversation(c)] if c.messages.len() == 2));
    }

    #[test]
    fn regenerate_and_edit_truncate() {
        let mut s = loaded_state();
        s.apply(Action::Send { text: "one".into(), now: 1.0 });
        s.apply(Action::Worker(FromWorker::Token { text: "A".into() }));
        s.apply(Action::Worker(FromWorker::Done { stats: stats(vec![1]) }));
        s.apply(Action::Send { text: "two".into(), now: 2.0 });
        s.apply(Action::Worker(FromWorker::Token { text: "B".into() }));
        s.apply(Action::Worker(FromWorker::Done { stats: stats(vec![2]) }));
        s.take_effects();

        s.apply(Action::Regenerate { now: 3.0 });
        let msgs = generate_messages(&s.take_effects());
        assert_eq!(msgs.iter().map(|m| m.content.as_str()).collect::<Vec<_>>(), ["one", "A", "two"]);
        s.apply(Action::Worker(FromWorker::Token { text: "C".into() }));
        s.apply(Action::Worker(FromWorker::Done { stats: stats(vec![3]) }));

        s.apply(Action::EditResend { index: 0, text: "uno".into(), now: 4.0 });
        let msgs = generate_messages(&s.take_effects());
        assert_eq!(msgs.len(), 1);
        assert_eq!(msgs[0].content, "uno");
        let conv = s.conversation().unwrap();
        assert_eq!(conv.messages.len(), 1);
        assert_eq!(conv.title, "uno");
        // Editing a reply is refused.
        s.apply(Action::Worker(FromWorker::Done { stats: stats(vec![4]) }));
        s.apply(Action::EditResend { index: 1, text: "x".into(), now: 5.0 });
        assert!(s.generation.is_none());
    }

    #[test]
    fn a_dead_worker_is_replaced_and_its_partial_reply_kept_marked() {
        let mut s = loaded_state();
        s.apply(Action::Send { text: "q".into(), now: 1.0 });
        s.apply(Action::Worker(FromWorker::Token { text: "half a".into() }));
        s.apply(Action::Download(util::custom_entry("https://x/a.gguf", "a.gguf", "")));
        s.take_effects();
        s.apply(Action::WorkerDied("it stopped answering for 30 s".into()));
        let conv = s.conversation().unwrap();
        assert_eq!(conv.messages[1].content, "half a");
        assert!(conv.is_interrupted(1) && !conv.is_interrupted(0));
        assert!(s.generation.is_none(), "the composer is free again");
        assert!(s.loaded.is_none() && s.loading.is_none() && s.downloading.is_empty());
        assert_eq!(s.app_state(), "booting");
        let effects = s.take_effects();
        assert!(effects.contains(&Effect::RestartWorker));
        assert!(effects.iter().any(|e| matches!(e, Effect::SaveConversation(c) if c.is_interrupted(1))));
        assert_eq!(s.banners.last().map(|b| b.kind), Some(ErrorKind::EngineRestarted));
        // The fresh worker boots, and the page asks it to open the GPU and storage again.
        s.apply(Action::Worker(FromWorker::Booted));
        assert_eq!(s.take_effects(), vec![Effect::Send(ToWorker::Init)]);
        // A panic report is the same death.
        let mut s = loaded_state();
        s.apply(Action::Send { text: "q".into(), now: 1.0 });
        s.take_effects();
        s.apply(Action::Worker(FromWorker::Panicked { message: "boom".into() }));
        assert_eq!(s.conversation().unwrap().messages.len(), 1, "an empty reply is not kept");
        assert!(s.take_effects().contains(&Effect::RestartWorker));
    }

    #[test]
    fn stop_keeps_partial_reply() {
        let mut s = loaded_state();
        s.apply(Action::Send { text: "q".into(), now: 1.0 });
        s.apply(Action::Worker(FromWorker::Token { text: "partial".into() }));
        s.take_effects();
        s.apply(Action::Stop);
        assert_eq!(s.take_effects(), vec![Effect::Send(ToWorker::Stop)]);
        let mut st = stats(vec![9]);
        st.stop_reason = "interrupted".into();
        s.apply(Action::Worker(FromWorker::Done { stats: st }));
        assert_eq!(s.conversation().unwrap().messages[1].content, "partial");
    }

    #[test]
    fn model_status_follows_events() {
        let mut s = loaded_state();
        let entry = util::custom_entry("https://x/y/a.gguf", "a.gguf", "");
        let id = entry.id.clone();
        s.apply(Action::AddCustom { entry: entry.clone(), download: true });
        assert_eq!(s.status(&id), ModelStatus::Downloading);
        assert!(matches!(s.take_effects().as_slice(), [Effect::Send(ToWorker::Download { .. })]));
        s.apply(Action::Worker(FromWorker::Paused { id: id.clone(), stored: 10, total: 100 }));
        let partial = StoredModel {
            id: id.clone(),
            name: "a.gguf".into(),
            url: entry.url.clone(),
            size: 100,
            stored: 10,
            complete: false,
            sha256: None,
            verified: false,
            plan: None,
            shared: false,
        };
        s.apply(Action::Worker(FromWorker::Stored {
            models: vec![partial.clone()],
            quota: None,
            usage: None,
            persisted: false,
        }));
        assert_eq!(s.status(&id), ModelStatus::Paused);
        s.apply(Action::Worker(FromWorker::Downloaded { id: id.clone() }));
        s.apply(Action::Worker(FromWorker::Stored {
            models: vec![StoredModel { stored: 100, complete: true, ..partial }],
            quota: None,
            usage: None,
            persisted: false,
        }));
        assert_eq!(s.status(&id), ModelStatus::Stored);
        s.apply(Action::SetContext(Some(4096)));
        s.apply(Action::Load(id.clone()));
        assert_eq!(s.status(&id), ModelStatus::Loading);
        assert_eq!(s.app_state(), "loading");
        assert!(s.take_effects().iter().any(|e| matches!(e, Effect::Send(ToWorker::Load { context: 4096, .. }))));
        s.apply(Action::Worker(FromWorker::Error { kind: ErrorKind::OutOfMemory, message: "oom".into(), id: None }));
        assert_eq!(s.status(&id), ModelStatus::Stored);
        assert_eq!(s.banners.len(), 1);
    }

    #[test]
    fn no_storage_lasts_until_a_store_lists_its_models() {
        let mut s = loaded_state();
        s.apply(Action::Worker(FromWorker::Error { kind: ErrorKind::NoStorage, message: "denied".into(), id: None }));
        assert!(s.no_storage);
        assert_eq!(s.banners.last().map(|b| b.kind), Some(ErrorKind::NoStorage));
        s.apply(Action::Worker(FromWorker::Stored { models: vec![], quota: None, usage: None, persisted: false }));
        assert!(!s.no_storage);
    }

    #[test]
    fn device_lost_forgets_the_model_and_leaves_reinit_to_the_worker() {
        let mut s = loaded_state();
        s.apply(Action::Worker(FromWorker::Error { kind: ErrorKind::DeviceLost, message: "lost".into(), id: None }));
        assert!(s.loaded.is_none());
        assert!(s.page == Page::Models);
        assert!(!s.take_effects().contains(&Effect::Send(ToWorker::Init)));
    }
}
