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

use std::fmt::{self, Write as _};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use minijinja::value::{from_args, Kwargs, Object, ObjectRepr, Rest, Serde, ValueKind, ValueOrKwargs};
use minijinja::{AutoEscape, Environment, Error, ErrorKind, State, Value};
use serde::{Deserialize, Serialize};

/// A civil (time-zone-less) date and time, what the templates' `strftime_now` formats.
pub use jiff::civil::DateTime;

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
}

impl Fallback {
    /// The Jinja source of the built-in template.
    pub fn source(self) -> &'static str {
        match self {
            Fallback::Llama2 => include_str!("templates/llama2.jinja"),
            Fallback::ChatMl => include_str!("templates/chatml.jinja"),
            Fallback::Llama3 => include_str!("templates/llama3.jinja"),
        }
    }
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
        template.render(ctx).map_err(|e| render_error(&e))
    }
}

/// The environment transformers builds, recreated in MiniJinja.
fn hf_environment() -> Environment<'static> {
    let mut env = Environment::new();
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

// ---------------------------------------------------------------------------------------------
// Python-flavoured value printing

/// Jinja2 prints `str(value)`; MiniJinja would print `true`, `none`, `["a"]`. Strings and
/// undefined values go through MiniJinja's own formatter unchanged.
fn python_formatter(out: &mut minijinja::Output, state: &mut State, value: &Value) -> Result<(), Error> {
    match value.kind() {
        ValueKind::String | ValueKind::Undefined | ValueKind::Plain | ValueKind::Invalid => {
            minijinja::escape_formatter(out, state, value)
        }
        _ => {
            let mut s = String::new();
            py_str(&mut s, value)?;
            out.write_str(&s).map_err(Error::from)
        }
    }
}

/// Jinja2's `string` filter is `str(value)`.
fn string_filter(value: &Value) -> Result<Value, Error> {
    match value.kind() {
        ValueKind::String => Ok(value.clone()),
        ValueKind::Undefined => Ok(Value::from("")),
        _ => {
            let mut s = String::new();
            py_str(&mut s, value)?;
            Ok(Value::from(s))
        }
    }
}

/// Python's `str(value)`.
fn py_str(out: &mut String, value: &Value) -> Result<(), Error> {
    match value.kind() {
        ValueKind::String => out.push_str(value.as_str().unwrap_or_default()),
        ValueKind::Undefined => {}
        _ => py_repr(out, value, 0)?,
    }
    Ok(())
}

/// Python's `repr(value)`, as used for the items of printed lists and dicts.
fn py_repr(out: &mut String, value: &Value, depth: usize) -> Result<(), Error> {
    if depth > 512 {
        return Err(Error::new(ErrorKind::InvalidOperation, "value nested too deeply to print"));
    }
    match value.kind() {
        ValueKind::Undefined => {}
        ValueKind::None => out.push_str("None"),
        ValueKind::Bool => out.push_str(if value.is_true() { "True" } else { "False" }),
        ValueKind::Number => push_py_number(out, value),
        ValueKind::String => py_repr_str(out, value.as_str().unwrap_or_default()),
        ValueKind::Seq | ValueKind::Iterable => {
            // Pairs from `items()`/`dictsort` are tuples in Python: `('a', 1)`, `('a',)`.
            let (open, close) = if value.is_tuple() { ('(', ")") } else { ('[', "]") };
            out.push(open);
            let mut n = 0;
            for item in value.try_iter()? {
                if n > 0 {
                    out.push_str(", ");
                }
                py_repr(out, &item, depth + 1)?;
                n += 1;
            }
            out.push_str(if open == '(' && n == 1 { ",)" } else { close });
        }
        ValueKind::Map => {
            out.push('{');
            for (i, key) in value.try_iter()?.enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                py_repr(out, &key, depth + 1)?;
                out.push_str(": ");
                py_repr(out, &value.get_item(&key)?, depth + 1)?;
            }
            out.push('}');
        }
        _ => {
            let _ = write!(out, "{value}");
        }
    }
    Ok(())
}

fn push_py_number(out: &mut String, value: &Value) {
    if value.is_integer() {
        let _ = write!(out, "{value}");
    } else {
        match f64::try_from(value.clone()) {
            Ok(f) => out.push_str(&py_float_repr(f)),
            Err(_) => {
                let _ = write!(out, "{value}");
            }
        }
    }
}

/// Python's `repr(float)`: shortest round-trip digits, scientific notation outside 1e-4..1e16.
fn py_float_repr(f: f64) -> String {
    if f.is_nan() {
        return "nan".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "inf" } else { "-inf" }.into();
    }
    // `{:e}` gives the shortest round-trip digits: "-1.2345e-5".
    let sci = format!("{f:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => ("-", m),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let mut s = String::from(sign);
    if (-4..16).contains(&exp) {
        if exp < 0 {
            s.push_str("0.");
            s.extend(std::iter::repeat_n('0', (-exp - 1) as usize));
            s.push_str(&digits);
        } else {
            let int_len = exp as usize + 1;
            if digits.len() <= int_len {
                s.push_str(&digits);
                s.extend(std::iter::repeat_n('0', int_len - digits.len()));
                s.push_str(".0");
            } else {
                s.push_str(&digits[..int_len]);
                s.push('.');
                s.push_str(&digits[int_len..]);
            }
        }
    } else {
        s.push_str(&digits[..1]);
        if digits.len() > 1 {
            s.push('.');
            s.push_str(&digits[1..]);
        }
        let _ = write!(s, "e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs());
    }
    s
}

/// Python's `repr(str)`: single quotes unless the text has `'` and no `"`.
fn py_repr_str(out: &mut String, s: &str) {
    let quote = if s.contains('\'') && !s.contains('"') { '"' } else { '\'' };
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if !py_is_printable(c) => {
                let code = c as u32;
                let _ = if code < 0x100 {
                    write!(out, "\\x{code:02x}")
                } else if code < 0x10000 {
                    write!(out, "\\u{code:04x}")
                } else {
                    write!(out, "\\U{code:08x}")
                };
            }
            c => out.push(c),
        }
    }
    out.push(quote);
}

/// An approximation of Python's `str.isprintable` (no Unicode tables here): control, format and
/// separator characters other than the ASCII space are not printable.
fn py_is_printable(c: char) -> bool {
    !matches!(c as u32,
        0..=0x1f | 0x7f..=0xa0 | 0xad | 0x1680 | 0x180e | 0x2000..=0x200f | 0x2028..=0x202f
        | 0x205f..=0x2064 | 0x2066..=0x206f | 0x3000 | 0xfeff | 0xfff9..=0xfffb
        | 0xe000..=0xf8ff | 0xf0000..=0x10ffff)
}

// ---------------------------------------------------------------------------------------------
// Python string semantics

/// Python's `str.isspace()`: Unicode whitespace plus the ASCII separators 0x1c..=0x1f, which
/// Rust's `char::is_whitespace` leaves out.
fn py_is_space(c: char) -> bool {
    c.is_whitespace() || ('\x1c'..='\x1f').contains(&c)
}

#[derive(Clone, Copy)]
enum Strip {
    Both,
    Start,
    End,
}

fn py_strip(s: &str, chars: Option<&str>, side: Strip) -> String {
    let matches = |c: char| match chars {
        Some(set) => set.contains(c),
        None => py_is_space(c),
    };
    match side {
        Strip::Both => s.trim_matches(matches),
        Strip::Start => s.trim_start_matches(matches),
        Strip::End => s.trim_end_matches(matches),
    }
    .to_string()
}

/// Jinja2's `map('filter', *args, **kwargs)` passes keyword arguments on to the filter (as in
/// `map('tojson', indent=2)`); MiniJinja's drops them, so that case is handled here.
fn map_filter(state: &mut State, value: Value, args: Rest<ValueOrKwargs>) -> Result<Value, Error> {
    let args = args.into_values();
    let filter = match (args.first(), args.last()) {
        (Some(first), Some(last)) if last.is_kwargs() && !first.is_kwargs() => first.as_str(),
        _ => None,
    };
    let Some(filter) = filter else {
        let args = Rest(args.into_iter().map(ValueOrKwargs::from).collect());
        return minijinja::filters::map(state, value, args).map(Value::from);
    };
    let mut out = Vec::new();
    if !value.is_undefined() {
        for item in value.try_iter()? {
            let mut call = Vec::with_capacity(args.len());
            call.push(item);
            call.extend(args[1..].iter().cloned());
            out.push(state.apply_filter(filter, &call)?);
        }
    }
    Ok(Value::from(out))
}

/// Jinja2's `indent(s, width=4, first=False, blank=False)`, including its quirk of keeping a
/// trailing newline (`'{\n'|indent(4, first=true)` is `'    {\n'`; MiniJinja drops it).
fn indent_filter(value: &Value, args: Rest<ValueOrKwargs>) -> Result<Value, Error> {
    let args = args.into_values();
    let (width, first, blank, kwargs): (Option<Value>, Option<Value>, Option<Value>, Kwargs) = from_args(&args)?;
    let pick = |positional: Option<Value>, name: &str| -> Result<Option<Value>, Error> {
        Ok(kwargs.get::<Option<Value>>(name)?.or(positional))
    };
    let indention = match pick(width, "width")? {
        None => "    ".to_string(),
        Some(w) => match (w.as_str(), w.as_i64()) {
            (Some(s), _) => s.to_string(),
            (None, Some(n)) => " ".repeat(n.clamp(0, 1024) as usize),
            _ => {
                return Err(Error::new(
                    ErrorKind::InvalidOperation,
                    format!("indent width must be an int or a string, not {}", w.kind()),
                ))
            }
        },
    };
    let first = pick(first, "first")?.is_some_and(|v| v.is_true());
    let blank = pick(blank, "blank")?.is_some_and(|v| v.is_true());
    kwargs.assert_all_used()?;

    let mut s = String::new();
    py_str(&mut s, value)?;
    s.push('\n');
    let lines = py_splitlines(&s, false);
    let mut rv = String::new();
    for (i, line) in lines.iter().enumerate() {
        if i > 0 {
            rv.push('\n');
            if blank || !line.is_empty() {
                rv.push_str(&indention);
            }
        }
        rv.push_str(line);
    }
    if first {
        rv.insert_str(0, &indention);
    }
    Ok(Value::from(rv))
}

/// Python's `str.splitlines(keepends)`: splits on \n, \r\n, \r, \v, \f, \x1c-\x1e, \x85,
/// U+2028 and U+2029; no empty last line for a trailing separator.
fn py_splitlines(s: &str, keepends: bool) -> Vec<&str> {
    let mut lines = Vec::new();
    let mut start = 0;
    let mut chars = s.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        let is_break =
            matches!(c, '\n' | '\r' | '\x0b' | '\x0c' | '\x1c' | '\x1d' | '\x1e' | '\u{85}' | '\u{2028}' | '\u{2029}');
        if !is_break {
            continue;
        }
        let mut end = i + c.len_utf8();
        if c == '\r' {
            if let Some(&(j, '\n')) = chars.peek() {
                chars.next();
                end = j + 1;
            }
        }
        lines.push(&s[start..if keepends { end } else { i }]);
        start = end;
    }
    if start < s.len() {
        lines.push(&s[start..]);
    }
    lines
}

/// Jinja2's `iterable` test is Python's `iter(value)` succeeding: true for strings, lists,
/// dicts and undefined, false for none, numbers and booleans (MiniJinja iterates none as
/// empty). Templates guard with `tools is iterable and tools | length > 0`.
fn is_iterable(value: &Value) -> bool {
    match value.kind() {
        ValueKind::None | ValueKind::Bool | ValueKind::Number => false,
        ValueKind::Plain => value.try_iter().is_ok(),
        _ => true,
    }
}

/// Jinja2's `wordcount`: the number of `\w+` runs.
fn wordcount(value: &Value) -> Result<usize, Error> {
    let mut s = String::new();
    py_str(&mut s, value)?;
    let is_word = |c: char| c.is_alphanumeric() || c == '_';
    Ok(s.split(|c: char| !is_word(c)).filter(|w| !w.is_empty()).count())
}

/// Jinja2's `trim(value, chars=None)` is `str(value).strip(chars)`.
fn trim_filter(value: &Value, chars: Option<String>) -> Result<Value, Error> {
    let mut s = String::new();
    py_str(&mut s, value)?;
    Ok(Value::from(py_strip(&s, chars.as_deref(), Strip::Both)))
}

/// Python methods on values: `strip`/`lstrip`/`rstrip` with Python's whitespace and
/// `splitlines` with Python's line breaks; everything else from minijinja-contrib's pycompat.
fn unknown_method(state: &mut State, value: &Value, method: &str, args: &[Value]) -> Result<Value, Error> {
    if let (Some(s), Some(side)) = (
        value.as_str(),
        match method {
            "strip" => Some(Strip::Both),
            "lstrip" => Some(Strip::Start),
            "rstrip" => Some(Strip::End),
            _ => None,
        },
    ) {
        let chars = match args {
            [] => None,
            [v] if v.is_none() => None,
            [v] => Some(v.as_str().ok_or_else(|| {
                Error::new(ErrorKind::InvalidOperation, format!("{method} arg must be None or str, not {}", v.kind()))
            })?),
            _ => return Err(Error::new(ErrorKind::TooManyArguments, format!("{method} takes at most 1 argument"))),
        };
        return Ok(Value::from(py_strip(s, chars, side)));
    }
    if let (Some(s), "splitlines") = (value.as_str(), method) {
        let (keepends,): (Option<bool>,) = from_args(args)?;
        let lines = py_splitlines(s, keepends.unwrap_or(false));
        return Ok(lines.into_iter().map(Value::from).collect());
    }
    minijinja_contrib::pycompat::unknown_method_callback(state, value, method, args)
}

// ---------------------------------------------------------------------------------------------
// tojson

/// transformers overrides Jinja2's `tojson` (which HTML-escapes) with
/// `json.dumps(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False)`;
/// MiniJinja's own is compact and HTML-escaped, so Python's output is reproduced here:
/// `", "`/`": "` separators without indent, `","` + newlines with it, floats as Python writes
/// them, non-ASCII kept unless `ensure_ascii`.
fn tojson(value: &Value, args: Rest<ValueOrKwargs>) -> Result<Value, Error> {
    let args = args.into_values();
    let (ensure_ascii, indent, separators, sort_keys, kwargs): (
        Option<Value>,
        Option<Value>,
        Option<Value>,
        Option<Value>,
        Kwargs,
    ) = from_args(&args)?;
    let pick = |positional: Option<Value>, name: &str| -> Result<Option<Value>, Error> {
        match kwargs.get::<Option<Value>>(name)? {
            Some(v) => Ok(Some(v)),
            None => Ok(positional),
        }
    };
    let ensure_ascii = pick(ensure_ascii, "ensure_ascii")?.is_some_and(|v| v.is_true());
    let sort_keys = pick(sort_keys, "sort_keys")?.is_some_and(|v| v.is_true());
    let indent = match pick(indent, "indent")? {
        None => None,
        Some(v) if v.is_none() => None,
        Some(v) => Some(if let Some(s) = v.as_str() {
            s.to_string()
        } else if let Some(n) = v.as_i64() {
            " ".repeat(n.clamp(0, 1024) as usize)
        } else if v.kind() == ValueKind::Bool {
            " ".repeat(usize::from(v.is_true()))
        } else {
            return Err(Error::new(
                ErrorKind::InvalidOperation,
                format!("tojson indent must be an int or a string, not {}", v.kind()),
            ));
        }),
    };
    let (item_sep, key_sep) = match pick(separators, "separators")? {
        Some(v) if !v.is_none() => {
            let parts: Vec<Value> = v.try_iter()?.collect();
            match parts.as_slice() {
                [a, b] => match (a.as_str(), b.as_str()) {
                    (Some(a), Some(b)) => (a.to_string(), b.to_string()),
                    _ => return Err(bad_separators()),
                },
                _ => return Err(bad_separators()),
            }
        }
        _ if indent.is_some() => (",".to_string(), ": ".to_string()),
        _ => (", ".to_string(), ": ".to_string()),
    };
    kwargs.assert_all_used()?;
    let mut writer = JsonWriter { out: String::new(), ensure_ascii, sort_keys, indent, item_sep, key_sep };
    writer.value(value, 0)?;
    Ok(Value::from(writer.out))
}

fn bad_separators() -> Error {
    Error::new(
        ErrorKind::InvalidOperation,
        "tojson separators must be a pair of strings (item_separator, key_separator)",
    )
}

/// Python's `json.dumps` encoder, over MiniJinja values.
struct JsonWriter {
    out: String,
    ensure_ascii: bool,
    sort_keys: bool,
    indent: Option<String>,
    item_sep: String,
    key_sep: String,
}

impl JsonWriter {
    fn newline(&mut self, level: usize) {
        if let Some(indent) = &self.indent {
            self.out.push('\n');
            for _ in 0..level {
                self.out.push_str(indent);
            }
        }
    }

    fn value(&mut self, value: &Value, level: usize) -> Result<(), Error> {
        if level > 512 {
            return Err(Error::new(ErrorKind::InvalidOperation, "tojson: value nested too deeply"));
        }
        match value.kind() {
            ValueKind::None => self.out.push_str("null"),
            ValueKind::Bool => self.out.push_str(if value.is_true() { "true" } else { "false" }),
            ValueKind::Number => self.number(value),
            ValueKind::String => self.string(value.as_str().unwrap_or_default()),
            ValueKind::Seq => {
                let items: Vec<Value> = value.try_iter()?.collect();
                if items.is_empty() {
                    self.out.push_str("[]");
                    return Ok(());
                }
                self.out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        let sep = self.item_sep.clone();
                        self.out.push_str(&sep);
                    }
                    self.newline(level + 1);
                    self.value(item, level + 1)?;
                }
                self.newline(level);
                self.out.push(']');
            }
            ValueKind::Map => {
                let mut keys: Vec<Value> = value.try_iter()?.collect();
                if keys.is_empty() {
                    self.out.push_str("{}");
                    return Ok(());
                }
                if self.sort_keys {
                    keys.sort();
                }
                self.out.push('{');
                for (i, key) in keys.iter().enumerate() {
                    if i > 0 {
                        let sep = self.item_sep.clone();
                        self.out.push_str(&sep);
                    }
                    self.newline(level + 1);
                    self.key(key)?;
                    let sep = self.key_sep.clone();
                    self.out.push_str(&sep);
                    self.value(&value.get_item(key)?, level + 1)?;
                }
                self.newline(level);
                self.out.push('}');
            }
            kind => {
                return Err(Error::new(
                    ErrorKind::InvalidOperation,
                    format!("tojson: object of type {kind} is not JSON serializable"),
                ))
            }
        }
        Ok(())
    }

    /// Python converts str, int, float, bool and None keys to strings; others are a TypeError.
    fn key(&mut self, key: &Value) -> Result<(), Error> {
        let text = match key.kind() {
            ValueKind::String => key.as_str().unwrap_or_default().to_string(),
            ValueKind::Number => {
                let mut s = String::new();
                self.number_into(&mut s, key);
                s
            }
            ValueKind::Bool => if key.is_true() { "true" } else { "false" }.to_string(),
            ValueKind::None => "null".to_string(),
            kind => {
                return Err(Error::new(
                    ErrorKind::InvalidOperation,
                    format!("tojson: keys must be str, int, float, bool or None, not {kind}"),
                ))
            }
        };
        self.string(&text);
        Ok(())
    }

    fn number(&mut self, value: &Value) {
        let mut s = String::new();
        self.number_into(&mut s, value);
        self.out.push_str(&s);
    }

    fn number_into(&self, out: &mut String, value: &Value) {
        if !value.is_integer() {
            if let Ok(f) = f64::try_from(value.clone()) {
                // json.dumps spells the non-finite floats like JavaScript.
                out.push_str(&if f.is_nan() {
                    "NaN".to_string()
                } else if f.is_infinite() {
                    if f > 0.0 { "Infinity" } else { "-Infinity" }.to_string()
                } else {
                    py_float_repr(f)
                });
                return;
            }
        }
        let _ = write!(out, "{value}");
    }

    fn string(&mut self, s: &str) {
        let out = &mut self.out;
        out.push('"');
        for c in s.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                '\u{08}' => out.push_str("\\b"),
                '\u{0c}' => out.push_str("\\f"),
                c if (c as u32) < 0x20 => {
                    let _ = write!(out, "\\u{:04x}", c as u32);
                }
                c if self.ensure_ascii && !c.is_ascii() => {
                    let mut units = [0u16; 2];
                    for unit in c.encode_utf16(&mut units) {
                        let _ = write!(out, "\\u{unit:04x}");
                    }
                }
                c => out.push(c),
            }
        }
        out.push('"');
    }
}

// ---------------------------------------------------------------------------------------------
// strftime

const WEEKDAYS: [&str; 7] = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"];
const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

/// Python's `datetime.now().strftime(format)` on Linux: glibc's `strftime` in the C locale, for
/// a naive datetime (so `%z`/`%Z` are empty), with Python's own `%f`. glibc extensions that
/// templates use are supported: flags `-` `_` `0` `^` `#`, a field width, and the `E`/`O`
/// modifiers (ignored in the C locale). Unknown conversions are copied through.
pub fn strftime(format: &str, t: &DateTime) -> String {
    let mut out = String::new();
    let mut rest = format;
    while let Some(pos) = rest.find('%') {
        out.push_str(&rest[..pos]);
        let spec = &rest[pos..];
        let consumed = conversion(&mut out, spec, t);
        rest = &spec[consumed..];
    }
    out.push_str(rest);
    out
}

enum Field {
    /// A number with its default width and padding character.
    Num(i64, usize, char),
    Text(String),
}

/// Writes one `%...` conversion starting at `spec[0] == '%'`; returns the bytes consumed.
fn conversion(out: &mut String, spec: &str, t: &DateTime) -> usize {
    let bytes = spec.as_bytes();
    let mut i = 1;
    let mut flag = None;
    while i < bytes.len() && matches!(bytes[i], b'-' | b'_' | b'0' | b'^' | b'#') {
        flag = Some(bytes[i]);
        i += 1;
    }
    let width_start = i;
    while i < bytes.len() && bytes[i].is_ascii_digit() {
        i += 1;
    }
    let width: Option<usize> = spec[width_start..i].parse().ok().map(|w: usize| w.min(1024));
    while i < bytes.len() && matches!(bytes[i], b'E' | b'O') {
        i += 1;
    }
    let Some(conv) = spec[i..].chars().next() else {
        out.push_str(spec);
        return spec.len();
    };
    let end = i + conv.len_utf8();
    let plain = end == 2; // no flags, width or modifiers

    let wday = t.weekday().to_sunday_zero_offset() as usize;
    let yday0 = i64::from(t.day_of_year()) - 1;
    let hour12 = match t.hour() % 12 {
        0 => 12,
        h => h,
    };
    let month = (t.month().clamp(1, 12) - 1) as usize;
    let field = match conv {
        'a' => Field::Text(WEEKDAYS[wday % 7][..3].to_string()),
        'A' => Field::Text(WEEKDAYS[wday % 7].to_string()),
        'b' | 'h' => Field::Text(MONTHS[month][..3].to_string()),
        'B' => Field::Text(MONTHS[month].to_string()),
        'c' => Field::Text(strftime("%a %b %e %H:%M:%S %Y", t)),
        'C' => Field::Num(i64::from(t.year()).div_euclid(100), 2, '0'),
        'd' => Field::Num(t.day().into(), 2, '0'),
        'D' | 'x' => Field::Text(strftime("%m/%d/%y", t)),
        'e' => Field::Num(t.day().into(), 2, ' '),
        'F' => Field::Text(strftime("%Y-%m-%d", t)),
        'f' if plain => Field::Text(format!("{:06}", t.subsec_nanosecond() / 1000)),
        'G' => Field::Num(t.iso_week_date().year().into(), 1, '0'),
        'g' => Field::Num(i64::from(t.iso_week_date().year()).rem_euclid(100), 2, '0'),
        'H' => Field::Num(t.hour().into(), 2, '0'),
        'I' => Field::Num(hour12.into(), 2, '0'),
        'j' => Field::Num(yday0 + 1, 3, '0'),
        'k' => Field::Num(t.hour().into(), 2, ' '),
        'l' => Field::Num(hour12.into(), 2, ' '),
        'm' => Field::Num(t.month().into(), 2, '0'),
        'M' => Field::Num(t.minute().into(), 2, '0'),
        'n' => Field::Text("\n".into()),
        'p' => Field::Text(if t.hour() < 12 { "AM" } else { "PM" }.into()),
        'P' => Field::Text(if t.hour() < 12 { "am" } else { "pm" }.into()),
        'r' => Field::Text(strftime("%I:%M:%S %p", t)),
        'R' => Field::Text(strftime("%H:%M", t)),
        's' => Field::Num(epoch_seconds(t), 1, '0'),
        'S' => Field::Num(t.second().into(), 2, '0'),
        't' => Field::Text("\t".into()),
        'T' | 'X' => Field::Text(strftime("%H:%M:%S", t)),
        'u' => Field::Num(if wday == 0 { 7 } else { wday as i64 }, 1, '0'),
        'U' => Field::Num((yday0 + 7 - wday as i64) / 7, 2, '0'),
        'V' => Field::Num(t.iso_week_date().week().into(), 2, '0'),
        'w' => Field::Num(wday as i64, 1, '0'),
        'W' => Field::Num((yday0 + 7 - ((wday as i64 + 6) % 7)) / 7, 2, '0'),
        'y' => Field::Num(i64::from(t.year()).rem_euclid(100), 2, '0'),
        'Y' => Field::Num(t.year().into(), 1, '0'),
        // Python replaces these itself for a naive datetime: no zone, so empty.
        'z' | 'Z' if plain => Field::Text(String::new()),
        '%' => Field::Text("%".into()),
        _ => {
            out.push_str(&spec[..end]);
            return end;
        }
    };

    let text = match field {
        Field::Num(n, default_width, default_pad) => {
            let (w, pad) = match flag {
                Some(b'-') => (width.unwrap_or(1), ' '),
                Some(b'_') => (width.unwrap_or(default_width), ' '),
                Some(b'0') => (width.unwrap_or(default_width), '0'),
                _ => (width.unwrap_or(default_width), default_pad),
            };
            let digits = n.unsigned_abs().to_string();
            let sign = if n < 0 { "-" } else { "" };
            let fill = w.saturating_sub(digits.len() + sign.len());
            let mut s = String::new();
            if pad == '0' {
                s.push_str(sign);
                s.extend(std::iter::repeat_n('0', fill));
            } else {
                s.extend(std::iter::repeat_n(' ', fill));
                s.push_str(sign);
            }
            s.push_str(&digits);
            s
        }
        Field::Text(text) => {
            let text = match flag {
                Some(b'^') => text.to_uppercase(),
                Some(b'#') if conv == 'p' => text.to_lowercase(),
                Some(b'#') if matches!(conv, 'a' | 'A' | 'b' | 'B' | 'h') => text.to_uppercase(),
                _ => text,
            };
            let fill = width.unwrap_or(0).saturating_sub(text.chars().count());
            let pad = if flag == Some(b'0') { '0' } else { ' ' };
            let mut s: String = std::iter::repeat_n(pad, fill).collect();
            s.push_str(&text);
            s
        }
    };
    out.push_str(&text);
    end
}

/// `%s`: seconds since the epoch, reading the naive time as local time like `mktime`.
fn epoch_seconds(t: &DateTime) -> i64 {
    t.to_zoned(jiff::tz::TimeZone::system()).map(|z| z.timestamp().as_second()).unwrap_or(0)
}
