//! Chat templates: a GGUF's `tokenizer.chat_template` (Jinja2 source) rendered the way Hugging
//! Face transformers renders it, so the prompt text is byte-identical to what the model was
//! trained and evaluated with.
//!
//! transformers renders with `ImmutableSandboxedEnvironment(trim_blocks=True,
//! lstrip_blocks=True, extensions=[AssistantTracker, loopcontrols])` plus three helpers
//! (`raise_exception`, an overridden `tojson`, `strftime_now`) and passes `messages`, `tools=None`,
//! `documents=None`, `add_generation_prompt` and the special tokens. MiniJinja is close to Jinja2
//! (and, like the sandbox, gives templates no way to mutate values or reach the host); the shims
//! below cover the places where templates in the wild can tell the difference.
//!
//! Known differences, all cases where transformers fails or emits garbage and we render:
//! iterating `none` (e.g. a tool-use template's `for tool in tools` without tools) is empty here
//! but a TypeError in Python; `map(...)`/`select(...)` give lists, which `tojson` accepts, where
//! Python has unserializable generators; `"x"|safe + y` does not HTML-escape `y` as Python's
//! `Markup.__add__` does; and `dict.items` written as an attribute (`spec.items`) reads the key
//! "items" rather than Python's bound method.

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use minijinja::value::{from_args, Object, ObjectRepr, Rest, Serde, ValueKind};
use minijinja::{AutoEscape, Environment, Error, ErrorKind, State, Value};
use serde::{Deserialize, Serialize};

/// A civil (time-zone-less) date and time, what the templates' `strftime_now` formats.
pub use jiff::civil::DateTime;
pub use strftime::strftime;

mod python;
mod strftime;
mod tojson;

use python::*;
use tojson::*;

/// Name the template is registered under in its environment (shows up in error locations).
const TEMPLATE_NAME: &str = "chat_template";

/// One chat message as the templates see it (`message.role`, `message['content']`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub role: String,
    pub content: String,
}

impl Message {
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Message { role: role.into(), content: content.into() }
    }
    pub fn system(content: impl Into<String>) -> Self {
        Self::new("system", content)
    }
    pub fn user(content: impl Into<String>) -> Self {
        Self::new("user", content)
    }
    pub fn assistant(content: impl Into<String>) -> Self {
        Self::new("assistant", content)
    }
}

/// Why a chat template could not be compiled or rendered.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TemplateError {
    /// The template source is not valid Jinja (for MiniJinja).
    #[error(
        "chat template is not valid Jinja{}: {message}; fix or replace the template \
         (e.g. use a built-in fallback with ChatTemplate::fallback)",
        at_line(*.line)
    )]
    Syntax { message: String, line: Option<usize> },
    /// The template failed while rendering (type error, unknown filter, bad argument...).
    #[error(
        "chat template failed to render{}: {message}; the template may rely on a Jinja2 \
         feature Hearth does not emulate, or expects message fields this conversation lacks",
        at_line(*.line)
    )]
    Render { message: String, line: Option<usize> },
    /// The template itself rejected the conversation with `raise_exception(msg)`.
    #[error(
        "the model's chat template rejected this conversation: {0}; reshape the messages \
         to what the template accepts (e.g. merge the system prompt into the first user \
         message, or alternate user/assistant turns)"
    )]
    Raised(String),
    /// The template ran past a limit that bounds its time and memory ([`Limits`]): a hostile
    /// or broken template (e.g. nested loops over huge ranges).
    #[error("chat template {0}; the template is broken or hostile: replace it (e.g. with a built-in fallback)")]
    Limit(String),
    /// The extra context passed to [`ChatTemplate::render_with`] is not a map of variables.
    #[error("extra chat template context must be a map of variable names to values, got {0}")]
    Context(String),
}

fn at_line(line: Option<usize>) -> String {
    line.map(|l| format!(" (line {l})")).unwrap_or_default()
}

/// Built-in templates for GGUFs that carry no `tokenizer.chat_template`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fallback {
    /// Llama-2-chat: `<s>[INST] <<SYS>>\n{system}\n<</SYS>>\n\n{user} [/INST] {assistant} </s>`.
    Llama2,
    /// ChatML: `<|im_start|>{role}\n{content}<|im_end|>\n`.
    ChatMl,
    /// Llama-3: `<|begin_of_text|><|start_header_id|>{role}<|end_header_id|>\n\n{content}<|eot_id|>`.
    Llama3,
    /// Gemma: `<start_of_turn>{user|model}\n{content}<end_of_turn>\n`, system joined to the
    /// first user turn (llama.cpp's built-in "gemma").
    Gemma,
}

impl Fallback {
    /// The Jinja source of the built-in template.
    pub fn source(self) -> &'static str {
        match self {
            Fallback::Llama2 => include_str!("templates/llama2.jinja"),
            Fallback::ChatMl => include_str!("templates/chatml.jinja"),
            Fallback::Llama3 => include_str!("templates/llama3.jinja"),
            Fallback::Gemma => include_str!("templates/gemma.jinja"),
        }
    }
}

/// What a template may use, so that a hostile one (nested loops over huge ranges, strings
/// repeated without end) fails in a fraction of a second instead of hanging the CLI or the
/// browser worker. Real chat templates are a few KiB and render a 600-message conversation
/// in under 1% of this fuel (between 10,000 and 50,000 instructions for each reference
/// template; `tests/templates.rs` renders them all). Not bounded: memory inside one
/// instruction chain, e.g. a string doubled by `~` twenty times (MiniJinja caps repetition
/// with `*` at 100 MB, not concatenation).
pub struct Limits;

impl Limits {
    /// Largest template source, in bytes (the largest known chat templates are ~20 KiB).
    pub const SOURCE_BYTES: usize = 1 << 20;
    /// MiniJinja instructions per render (its `fuel`).
    pub const FUEL: u64 = 5_000_000;
    /// Largest rendered prompt, in bytes: far past any context window's worth of text.
    pub const OUTPUT_BYTES: usize = 16 << 20;
}

type Clock = Arc<dyn Fn() -> DateTime + Send + Sync>;

/// A compiled chat template, ready to render conversations. Cheap to clone.
#[derive(Clone)]
pub struct ChatTemplate {
    env: Environment<'static>,
    source: Arc<str>,
}

impl fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChatTemplate").field("source", &self.source).finish_non_exhaustive()
    }
}

impl ChatTemplate {
    /// Compiles a template (Jinja2 source, as stored in `tokenizer.chat_template`).
    pub fn new(source: &str) -> Result<Self, TemplateError> {
        if source.len() > Limits::SOURCE_BYTES {
            return Err(TemplateError::Limit(format!(
                "is {} bytes, more than the {} Hearth accepts",
                source.len(),
                Limits::SOURCE_BYTES
            )));
        }
        let mut env = hf_environment();
        env.add_template_owned(TEMPLATE_NAME, strip_generation_tags(source))
            .map_err(|e| TemplateError::Syntax { message: error_message(&e), line: e.line() })?;
        Ok(ChatTemplate { env, source: source.into() })
    }

    /// One of the built-in templates, for GGUFs with no template of their own.
    pub fn fallback(kind: Fallback) -> Self {
        match Self::new(kind.source()) {
            Ok(t) => t,
            // Unreachable in practice (the sources are fixed and tested); degrade to a
            // template-less environment whose `render` reports the problem instead of panicking.
            Err(_) => ChatTemplate { env: hf_environment(), source: kind.source().into() },
        }
    }

    /// The GGUF's own template when it has a non-empty one, otherwise a built-in chosen from the
    /// vocabulary: Llama-3 if `<|start_header_id|>` is a token, ChatML if `<|im_start|>` is,
    /// Llama-2 `[INST]` otherwise.
    pub fn for_model(gguf_template: Option<&str>, has_token: impl Fn(&str) -> bool) -> Result<Self, TemplateError> {
        if let Some(src) = gguf_template.filter(|s| !s.trim().is_empty()) {
            return Self::new(src);
        }
        let kind = if has_token("<|start_header_id|>") {
            Fallback::Llama3
        } else if has_token("<|im_start|>") {
            Fallback::ChatMl
        } else if has_token("<start_of_turn>") {
            Fallback::Gemma
        } else {
            Fallback::Llama2
        };
        Ok(Self::fallback(kind))
    }

    /// The Jinja source this template was compiled from.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Replaces the clock behind `strftime_now` (by default the local date and time), e.g. to
    /// make renders reproducible.
    pub fn with_clock(mut self, now: impl Fn() -> DateTime + Send + Sync + 'static) -> Self {
        set_clock(&mut self.env, Arc::new(now));
        self
    }

    /// Pins `strftime_now` to a fixed date and time.
    pub fn with_fixed_time(self, now: DateTime) -> Self {
        self.with_clock(move || now)
    }

    /// Renders a conversation. `bos_token`/`eos_token` are the vocabulary's special-token texts
    /// (templates decide themselves whether to emit them).
    pub fn render(
        &self,
        messages: &[Message],
        add_generation_prompt: bool,
        bos_token: &str,
        eos_token: &str,
    ) -> Result<String, TemplateError> {
        self.render_with(messages, add_generation_prompt, bos_token, eos_token, ())
    }

    /// Renders a conversation as [`ChatTemplate::render`] does, and says where in the text
    /// the messages' contents are, so that special-token texts typed into a message are
    /// tokenized as plain text (only the template's own markup is parsed for them).
    ///
    /// The spans come from a second render with each content replaced by a marker: the
    /// rendered text must then be the marker render with each marker replaced by its content,
    /// as written or trimmed (templates often `| trim` it). `spans` is `None` where the two
    /// renders cannot be aligned (a template that rewrites contents in another way).
    pub fn render_spans(
        &self,
        messages: &[Message],
        add_generation_prompt: bool,
        bos_token: &str,
        eos_token: &str,
    ) -> Result<Rendered, TemplateError> {
        self.render_spans_with(messages, add_generation_prompt, bos_token, eos_token, &())
    }

    /// [`ChatTemplate::render_spans`] with extra template variables, as
    /// [`ChatTemplate::render_with`] takes them.
    pub fn render_spans_with<E: Serialize>(
        &self,
        messages: &[Message],
        add_generation_prompt: bool,
        bos_token: &str,
        eos_token: &str,
        extra: &E,
    ) -> Result<Rendered, TemplateError> {
        let text = self.render_with(messages, add_generation_prompt, bos_token, eos_token, extra)?;
        let marked: Vec<Message> =
            messages.iter().enumerate().map(|(i, m)| Message::new(m.role.clone(), marker(i))).collect();
        let spans = match self.render_with(&marked, add_generation_prompt, bos_token, eos_token, extra) {
            Ok(with_markers) => align(&text, &with_markers, messages),
            Err(_) => None,
        };
        Ok(Rendered { text, spans })
    }

    /// Whether the template reads the variable `name` from its context (say `enable_thinking`,
    /// for templates with a thinking switch: Qwen3, SmolLM3).
    pub fn reads(&self, name: &str) -> bool {
        self.env.get_template(TEMPLATE_NAME).is_ok_and(|t| t.undeclared_variables(false).contains(name))
    }

    /// Renders with richer messages (anything serializable, e.g. with `tool_calls`) and extra
    /// template variables (`tools`, `documents`, `date_string`, `enable_thinking`, ...): `extra`
    /// must serialize to a map (or to `()`/none for nothing). `tools` and `documents` default to
    /// none, as in transformers; the four named arguments take precedence over `extra`.
    /// Maps keep their key order (JSON objects need serde_json's `preserve_order` for that).
    pub fn render_with<M: Serialize, E: Serialize>(
        &self,
        messages: &[M],
        add_generation_prompt: bool,
        bos_token: &str,
        eos_token: &str,
        extra: E,
    ) -> Result<String, TemplateError> {
        let mut vars: Vec<(Value, Value)> = vec![
            // transformers always passes these two, as None unless given.
            (Value::from("tools"), Value::from(())),
            (Value::from("documents"), Value::from(())),
        ];
        let extra = Value::from(Serde(&extra));
        match extra.kind() {
            ValueKind::Undefined | ValueKind::None => {}
            ValueKind::Map => {
                let keys = extra.try_iter().map_err(|e| render_error(&e))?;
                for key in keys {
                    let value = extra.get_item(&key).map_err(|e| render_error(&e))?;
                    vars.push((key, value));
                }
            }
            kind => return Err(TemplateError::Context(kind.to_string())),
        }
        vars.push((Value::from("messages"), Value::from(Serde(messages))));
        vars.push((Value::from("add_generation_prompt"), Value::from(add_generation_prompt)));
        vars.push((Value::from("bos_token"), Value::from(bos_token)));
        vars.push((Value::from("eos_token"), Value::from(eos_token)));
        let ctx = Value::from_pairs(vars);

        let template = self.env.get_template(TEMPLATE_NAME).map_err(|e| render_error(&e))?;
        let mut out = Capped { bytes: Vec::new(), full: false };
        match template.render_captured_to(ctx, &mut out) {
            _ if out.full => {
                Err(TemplateError::Limit(format!("rendered more than {} bytes of prompt", Limits::OUTPUT_BYTES)))
            }
            Err(e) => Err(render_error(&e)),
            Ok(_) => {
                String::from_utf8(out.bytes).map_err(|e| TemplateError::Render { message: e.to_string(), line: None })
            }
        }
    }
}

/// A rendered conversation (see [`ChatTemplate::render_spans`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub text: String,
    /// Byte ranges of `text` that are message contents, in order; `None` if unknown.
    pub spans: Option<Vec<std::ops::Range<usize>>>,
}

/// Private-use characters around a message number: no template writes them itself.
const MARK_OPEN: char = '\u{F8F0}';
const MARK_CLOSE: char = '\u{F8F1}';

fn marker(i: usize) -> String {
    format!("{MARK_OPEN}{i}{MARK_CLOSE}")
}

/// Where the contents are in `text`, given the same render with markers for contents.
fn align(text: &str, with_markers: &str, messages: &[Message]) -> Option<Vec<std::ops::Range<usize>>> {
    // The marker render as (template text, message number after it) pieces.
    let mut pieces: Vec<(&str, Option<usize>)> = Vec::new();
    let mut rest = with_markers;
    while let Some(open) = rest.find(MARK_OPEN) {
        let after = &rest[open + MARK_OPEN.len_utf8()..];
        let close = after.find(MARK_CLOSE)?;
        let i: usize = after[..close].parse().ok()?;
        pieces.push((&rest[..open], Some(i)));
        rest = &after[close + MARK_CLOSE.len_utf8()..];
    }
    pieces.push((rest, None));
    let (mut at, mut spans) = (0, Vec::new());
    for (k, &(template, message)) in pieces.iter().enumerate() {
        if !text[at..].starts_with(template) {
            return None;
        }
        at += template.len();
        let Some(i) = message else { continue };
        let content = &messages.get(i)?.content;
        let next = pieces.get(k + 1).map_or("", |p| p.0);
        let fits = |c: &str| text[at..].starts_with(c) && text[at + c.len()..].starts_with(next);
        let forms = [content.as_str(), content.trim(), content.trim_start(), content.trim_end()];
        let c = forms.into_iter().find(|c| fits(c))?;
        spans.push(at..at + c.len());
        at += c.len();
    }
    (at == text.len()).then_some(spans)
}

/// The rendered prompt, refusing to grow past [`Limits::OUTPUT_BYTES`].
struct Capped {
    bytes: Vec<u8>,
    full: bool,
}

impl std::io::Write for Capped {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.bytes.len() + buf.len() > Limits::OUTPUT_BYTES {
            self.full = true;
            return Err(std::io::Error::other("the prompt is too long"));
        }
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The environment transformers builds, recreated in MiniJinja.
fn hf_environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_fuel(Some(Limits::FUEL));
    // trim_blocks/lstrip_blocks as in transformers; keep_trailing_newline stays off (Jinja2's
    // default), so one trailing newline of the source is dropped.
    // (Building the default delimiters cannot fail; if it somehow did, keep MiniJinja's.)
    if let Ok(syntax) = minijinja::syntax::SyntaxConfig::builder().trim_blocks(true).lstrip_blocks(true).build() {
        env.set_syntax(syntax);
    }
    // Chat prompts are plain text: never HTML-escape, whatever the template is named.
    env.set_auto_escape_callback(|_| AutoEscape::None);
    // Jinja2's `{{ x }}` writes `str(x)`: True/None/[...]/{...} in Python spelling.
    env.set_formatter(python_formatter);
    // Python string/dict/list methods (`.strip()`, `.split()`, `.items()`, `.get()`...).
    env.set_unknown_method_callback(unknown_method);
    // Jinja2 filters and globals MiniJinja keeps in its contrib crate (truncate, striptags,
    // cycler, joiner...).
    minijinja_contrib::add_to_environment(&mut env);

    // Jinja2's `cycler(*items)` takes the items as arguments (contrib's takes one list) and has
    // a `current` attribute.
    env.add_function("cycler", cycler);
    env.add_function("raise_exception", raise_exception);
    env.add_filter("tojson", tojson);
    env.add_filter("string", string_filter);
    env.add_filter("trim", trim_filter);
    env.add_filter("map", map_filter);
    env.add_filter("indent", indent_filter);
    env.add_test("iterable", is_iterable);
    env.add_filter("wordcount", wordcount);
    set_clock(&mut env, Arc::new(local_now));
    env
}

fn set_clock(env: &mut Environment<'static>, clock: Clock) {
    env.add_function("strftime_now", move |format: &str| -> String { strftime(format, &clock()) });
}

/// The local date and time (falling back to UTC when the system time zone is unknown), like
/// Python's naive `datetime.now()`.
fn local_now() -> DateTime {
    let secs =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
    let ts = jiff::Timestamp::from_second(secs).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    ts.to_zoned(jiff::tz::TimeZone::system()).datetime()
}

/// Jinja2's `cycler`: `next()` returns the current item and advances, `current` peeks,
/// `reset()` rewinds.
#[derive(Debug)]
struct Cycler {
    items: Vec<Value>,
    pos: AtomicUsize,
}

impl Object for Cycler {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Plain
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        match key.as_str()? {
            "current" => self.items.get(self.pos.load(Ordering::Relaxed)).cloned(),
            _ => None,
        }
    }

    fn call_method(self: &Arc<Self>, _state: &mut State<'_, '_>, method: &str, args: &[Value]) -> Result<Value, Error> {
        let () = from_args(args)?;
        let pos = self.pos.load(Ordering::Relaxed);
        match method {
            "next" => {
                self.pos.store((pos + 1) % self.items.len().max(1), Ordering::Relaxed);
                Ok(self.items.get(pos).cloned().unwrap_or_default())
            }
            "reset" => {
                self.pos.store(0, Ordering::Relaxed);
                Ok(Value::from(()))
            }
            _ => Err(Error::from(ErrorKind::UnknownMethod)),
        }
    }
}

fn cycler(items: Rest<Value>) -> Result<Value, Error> {
    if items.is_empty() {
        return Err(Error::new(ErrorKind::InvalidOperation, "cycler: at least one item has to be provided"));
    }
    Ok(Value::from_object(Cycler { items: items.0, pos: AtomicUsize::new(0) }))
}

/// Marks an error as coming from the template's own `raise_exception`, so it can be told apart
/// from engine errors after it has travelled through MiniJinja.
#[derive(Debug)]
struct RaisedByTemplate(String);

impl fmt::Display for RaisedByTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RaisedByTemplate {}

/// transformers' `raise_exception(msg)`: abort rendering with the template's message.
fn raise_exception(message: String) -> Result<Value, Error> {
    Err(Error::new(ErrorKind::InvalidOperation, message.clone()).with_source(RaisedByTemplate(message)))
}

fn render_error(err: &Error) -> TemplateError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = source {
        if let Some(raised) = e.downcast_ref::<RaisedByTemplate>() {
            return TemplateError::Raised(raised.0.clone());
        }
        source = e.source();
    }
    if err.kind() == ErrorKind::OutOfFuel {
        return TemplateError::Limit(format!("ran more than {} instructions", Limits::FUEL));
    }
    if err.kind() == ErrorKind::SyntaxError {
        return TemplateError::Syntax { message: error_message(err), line: err.line() };
    }
    TemplateError::Render { message: error_message(err), line: err.line() }
}

fn error_message(err: &Error) -> String {
    match err.detail() {
        Some(detail) => format!("{}: {detail}", err.kind()),
        None => err.kind().to_string(),
    }
}

/// transformers' `{% generation %}...{% endgeneration %}` (AssistantTracker) only records which
/// output came from the assistant; the text renders unchanged. MiniJinja has no such tag, so
/// rewrite it to an always-true `if` block, which keeps the whitespace control of the tags.
fn strip_generation_tags(source: &str) -> String {
    let mut out = String::with_capacity(source.len());
    let mut rest = source;
    while let Some(pos) = rest.find("{%") {
        out.push_str(&rest[..pos]);
        let tag = &rest[pos..];
        match rewrite_generation_tag(tag) {
            Some((replacement, consumed)) => {
                out.push_str(&replacement);
                rest = &tag[consumed..];
            }
            None => {
                out.push_str("{%");
                rest = &tag[2..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// If `tag` starts with `{% generation %}` or `{% endgeneration %}` (with `-`/`+` modifiers),
/// returns the replacement tag and the number of bytes it replaces.
fn rewrite_generation_tag(tag: &str) -> Option<(String, usize)> {
    let body = &tag[2..];
    let (open_mod, body) = match body.chars().next() {
        Some(c @ ('-' | '+')) => (c.to_string(), &body[1..]),
        _ => (String::new(), body),
    };
    let trimmed = body.trim_start();
    let (keyword, replacement) = if let Some(r) = trimmed.strip_prefix("endgeneration") {
        (r, "endif")
    } else if let Some(r) = trimmed.strip_prefix("generation") {
        (r, "if true")
    } else {
        return None;
    };
    let after = keyword.trim_start();
    if after.len() == keyword.len() && !after.starts_with(['-', '+', '%']) {
        return None; // e.g. `{% generation_foo %}`
    }
    let (close_mod, after) = match after.chars().next() {
        Some(c @ ('-' | '+')) => (c.to_string(), &after[1..]),
        _ => (String::new(), after),
    };
    let after = after.strip_prefix("%}")?;
    let consumed = tag.len() - after.len();
    Some((format!("{{%{open_mod} {replacement} {close_mod}%}}"), consumed))
}
