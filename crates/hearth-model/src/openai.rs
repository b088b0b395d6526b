//! OpenAI's chat-completions request and response shapes, one module for every front end
//! (the browser's `createEngine`, `hearth serve`). Requests are read field by field into three
//! explicit lists, so that nothing is ignored silently:
//!
//! - [`HONOURED`]: what Hearth does as OpenAI documents it (plus llama.cpp's sampler names);
//! - [`IGNORED`]: accepted and ignored, because they only mean something on OpenAI's servers;
//! - everything else is refused with an [`ApiError`] that names the field (`n > 1`,
//!   `logprobs`, `tools`, a `response_format` other than text, non-zero penalties, unknown
//!   fields), as OpenAI itself answers an unrecognized argument.
//!
//! Responses are built with the same field names and units as OpenAI's (`created` in Unix
//! seconds, `chatcmpl-` ids, `usage.prompt_tokens_details.cached_tokens`); the stream's first
//! delta carries the role, its last an empty delta with the finish reason, and with
//! `stream_options.include_usage` a final chunk has empty `choices` and the usage.

use serde::Serialize;
use serde_json::{Map, Value};

use hearth_tokenizer::template::Message as TemplateMessage;

use crate::chat::{Overflow, Turn, TurnError};
use crate::{GenerateParams, ModelError, SamplingParams, StopReason};

/// OpenAI's sampling defaults (temperature 1, top_p 1, nothing else), for front ends with no
/// defaults of their own (the JS API; `hearth serve` takes its command line's).
pub fn default_sampling(seed: u64) -> SamplingParams {
    SamplingParams {
        temperature: 1.0,
        top_k: 0,
        top_p: 1.0,
        min_p: 0.0,
        repeat_penalty: 1.0,
        seed,
        ..Default::default()
    }
}

/// Request fields Hearth honours.
pub const HONOURED: &[&str] = &[
    "chat_template_kwargs",
    "model",
    "messages",
    "stream",
    "stream_options",
    "max_completion_tokens",
    "max_tokens",
    "temperature",
    "top_p",
    "seed",
    "stop",
    "n",
    "frequency_penalty",
    "presence_penalty",
    "response_format",
    // llama.cpp's sampler names, as Hearth's CLI has them.
    "top_k",
    "min_p",
    "repeat_penalty",
    "repetition_penalty",
    // Hearth's own extensions, in one object: see [`Extensions`].
    "hearth",
];

/// Request fields accepted and ignored: they configure OpenAI's servers, not a model.
pub const IGNORED: &[&str] =
    &["user", "metadata", "store", "service_tier", "safety_identifier", "prompt_cache_key", "prompt_cache_retention"];

/// Most stop strings a request may give (OpenAI's limit).
pub const MAX_STOP: usize = 4;
/// Longest stop string, in bytes (each is searched for in the text after every token).
pub const MAX_STOP_LEN: usize = 256;

/// A chat message: `developer` arrives as `system`; content parts are joined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub role: Role,
    pub content: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    Assistant,
}

impl Role {
    /// The role's name in chat templates and OpenAI's API.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }
}

/// A request, read and checked.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatRequest {
    pub model: Option<String>,
    pub messages: Vec<Message>,
    pub stream: bool,
    /// `stream_options.include_usage`.
    pub include_usage: bool,
    /// `max_completion_tokens`, or its deprecated alias `max_tokens`.
    pub max_tokens: Option<u32>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub seed: Option<u64>,
    pub stop: Vec<String>,
    pub top_k: Option<u32>,
    pub min_p: Option<f32>,
    pub repeat_penalty: Option<f32>,
    /// The `hearth` object; `None` when the request has none (then the response has none).
    pub hearth: Option<Extensions>,
    /// `chat_template_kwargs.enable_thinking`, as llama.cpp's server and vLLM take it: the
    /// thinking switch of templates that have one (Qwen3, SmolLM3); `None`: their default.
    pub thinking: Option<bool>,
}

/// Hearth's request extensions, under a `hearth` key so that they never collide with
/// OpenAI's fields: `{"hearth": {"overflow": "drop_oldest", "tokens": true}}`. A request
/// that has the key gets a `hearth` object in its response (the final chunk, when
/// streaming): the generated token ids when `tokens` is set, the messages dropped, and
/// timings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Extensions {
    /// Drop the oldest exchanges when the conversation does not fit (the chat UI), instead
    /// of `context_length_exceeded`.
    pub drop_oldest: bool,
    /// Return the generated token ids.
    pub tokens: bool,
}

impl ChatRequest {
    /// The chat turn this request asks for: its messages as the template takes them, the
    /// generation settings (`base` under the request's own, no token limit but the context
    /// unless it sets one), and what to do when the conversation does not fit.
    pub fn turn(&self, base: &SamplingParams, seed: u64) -> (Vec<TemplateMessage>, GenerateParams, Overflow) {
        let messages = self.messages.iter().map(|m| TemplateMessage::new(m.role.as_str(), m.content.clone())).collect();
        let params = GenerateParams {
            max_tokens: self.max_tokens.map_or(usize::MAX, |n| n as usize),
            sampling: self.sampling(base, seed),
            stop: self.stop.clone(),
            sequential: false,
        };
        let overflow = match self.hearth {
            Some(ext) if ext.drop_oldest => Overflow::DropOldest,
            _ => Overflow::Refuse,
        };
        (messages, params, overflow)
    }

    /// The sampler for this request, from `base` (the front end's defaults) with the
    /// request's values over it; `seed` where the request gives none.
    pub fn sampling(&self, base: &SamplingParams, seed: u64) -> SamplingParams {
        SamplingParams {
            temperature: self.temperature.unwrap_or(base.temperature),
            top_k: self.top_k.map_or(base.top_k, |k| k as usize),
            top_p: self.top_p.unwrap_or(base.top_p),
            min_p: self.min_p.unwrap_or(base.min_p),
            repeat_penalty: self.repeat_penalty.unwrap_or(base.repeat_penalty),
            seed: self.seed.unwrap_or(seed),
            ..base.clone()
        }
    }
}

/// What an API error is about, as OpenAI's `code` says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    UnsupportedParameter,
    InvalidValue,
    ContextLengthExceeded,
    ModelNotFound,
    ModelNotLoaded,
    NoWebgpu,
    DeviceLost,
    OutOfMemory,
    /// `hearth serve`: a missing or wrong `Authorization: Bearer` key.
    InvalidApiKey,
    /// `hearth serve`: a `Host` that is not the server's (a DNS-rebinding page).
    InvalidHost,
    /// `hearth serve`: a body that is not `application/json`, or too large.
    InvalidBody,
    /// `hearth serve`: the request queue is full.
    QueueFull,
    /// A failure in the engine that is none of the above.
    EngineError,
}

impl ErrorCode {
    /// OpenAI's `type` for this code.
    pub fn kind(self) -> &'static str {
        match self {
            ErrorCode::UnsupportedParameter
            | ErrorCode::InvalidValue
            | ErrorCode::ContextLengthExceeded
            | ErrorCode::ModelNotFound
            | ErrorCode::ModelNotLoaded
            | ErrorCode::InvalidHost
            | ErrorCode::InvalidBody => "invalid_request_error",
            ErrorCode::InvalidApiKey => "authentication_error",
            ErrorCode::NoWebgpu
            | ErrorCode::DeviceLost
            | ErrorCode::OutOfMemory
            | ErrorCode::QueueFull
            | ErrorCode::EngineError => "server_error",
        }
    }

    /// The HTTP status `hearth serve` answers with.
    pub fn status(self) -> u16 {
        match self {
            ErrorCode::UnsupportedParameter
            | ErrorCode::InvalidValue
            | ErrorCode::ContextLengthExceeded
            | ErrorCode::InvalidBody => 400,
            ErrorCode::InvalidApiKey => 401,
            ErrorCode::InvalidHost => 403,
            ErrorCode::ModelNotFound => 404,
            ErrorCode::ModelNotLoaded | ErrorCode::NoWebgpu | ErrorCode::DeviceLost | ErrorCode::QueueFull => 503,
            ErrorCode::OutOfMemory => 507,
            ErrorCode::EngineError => 500,
        }
    }
}

/// An error shaped like OpenAI's: `{"error": {"message", "type", "param", "code"}}`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    pub message: String,
    pub code: ErrorCode,
    /// The request field it is about, as a path (`messages[2].content`).
    pub param: Option<String>,
}

impl ApiError {
    pub fn new(code: ErrorCode, param: Option<&str>, message: impl Into<String>) -> Self {
        ApiError { message: message.into(), code, param: param.map(str::to_string) }
    }

    fn unsupported(param: &str, why: &str) -> Self {
        Self::new(ErrorCode::UnsupportedParameter, Some(param), format!("'{param}' is not supported: {why}"))
    }

    fn invalid(param: &str, why: &str) -> Self {
        Self::new(ErrorCode::InvalidValue, Some(param), format!("invalid value for '{param}': {why}"))
    }

    /// The JSON body: `{"error": {...}}`.
    pub fn body(&self) -> Value {
        serde_json::json!({ "error": {
            "message": self.message, "type": self.code.kind(), "param": self.param, "code": self.code,
        }})
    }
}

/// Reads a request body. Every field is in [`HONOURED`] or [`IGNORED`] or refused by name.
pub fn parse_request(body: &Value) -> Result<ChatRequest, ApiError> {
    let Some(obj) = body.as_object() else {
        return Err(ApiError::new(ErrorCode::InvalidValue, None, "the request body must be a JSON object"));
    };
    if let Some(key) = obj.keys().find(|k| !HONOURED.contains(&k.as_str()) && !IGNORED.contains(&k.as_str())) {
        return Err(ApiError::unsupported(key, "Hearth does not implement it"));
    }
    let field = |k: &str| obj.get(k).filter(|v| !v.is_null());
    let model = match field("model") {
        None => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(ApiError::invalid("model", "expected a string")),
    };
    let stream = bool_field(obj, "stream")?.unwrap_or(false);
    let include_usage = match field("stream_options") {
        None => false,
        Some(_) if !stream => return Err(ApiError::invalid("stream_options", "only allowed when 'stream' is true")),
        Some(Value::Object(o)) => {
            if let Some(k) = o.keys().find(|k| !matches!(k.as_str(), "include_usage" | "include_obfuscation")) {
                return Err(ApiError::unsupported(&format!("stream_options.{k}"), "Hearth does not implement it"));
            }
            bool_field(o, "include_usage")
                .map_err(|_| ApiError::invalid("stream_options.include_usage", "expected a boolean"))?
                .unwrap_or(false)
        }
        Some(_) => return Err(ApiError::invalid("stream_options", "expected an object")),
    };
    let max_completion = int_field(obj, "max_completion_tokens", 1)?;
    let max_tokens = int_field(obj, "max_tokens", 1)?;
    if let (Some(a), Some(b)) = (max_completion, max_tokens) {
        if a != b {
            return Err(ApiError::invalid("max_tokens", "differs from 'max_completion_tokens' (give one)"));
        }
    }
    if let Some(n) = number_field(obj, "n")? {
        if n != 1.0 {
            return Err(ApiError::unsupported("n", "Hearth generates one choice per request"));
        }
    }
    for penalty in ["frequency_penalty", "presence_penalty"] {
        if number_field(obj, penalty)?.is_some_and(|p| p != 0.0) {
            return Err(ApiError::unsupported(penalty, "only 0 for now (repeat_penalty is available)"));
        }
    }
    match field("response_format") {
        None => {}
        Some(Value::Object(o)) if o.len() == 1 && o.get("type") == Some(&Value::from("text")) => {}
        Some(_) => return Err(ApiError::unsupported("response_format", "only {\"type\": \"text\"}")),
    }
    let temperature = number_field(obj, "temperature")?;
    if temperature.is_some_and(|t| !(0.0..=2.0).contains(&t)) {
        return Err(ApiError::invalid("temperature", "must be between 0 and 2"));
    }
    let top_p = number_field(obj, "top_p")?;
    if top_p.is_some_and(|p| !(p > 0.0 && p <= 1.0)) {
        return Err(ApiError::invalid("top_p", "must be greater than 0 and at most 1"));
    }
    let min_p = number_field(obj, "min_p")?;
    if min_p.is_some_and(|p| !(0.0..=1.0).contains(&p)) {
        return Err(ApiError::invalid("min_p", "must be between 0 and 1"));
    }
    let repeat = match (number_field(obj, "repeat_penalty")?, number_field(obj, "repetition_penalty")?) {
        (Some(a), Some(b)) if a != b => {
            return Err(ApiError::invalid("repetition_penalty", "differs from 'repeat_penalty' (give one)"))
        }
        (a, b) => a.or(b),
    };
    // Finite as the f32 the sampler takes, not only as the f64 JSON gives.
    if repeat.is_some_and(|r| !(r > 0.0 && (r as f32).is_finite())) {
        // Name the spelling the request used.
        let key = if obj.contains_key("repeat_penalty") { "repeat_penalty" } else { "repetition_penalty" };
        return Err(ApiError::invalid(key, "must be greater than 0"));
    }
    let seed = match field("seed") {
        None => None,
        Some(v) => Some(
            v.as_u64()
                .or_else(|| v.as_i64().map(|i| i as u64))
                .filter(|s| *s <= 1 << 53)
                .ok_or_else(|| ApiError::invalid("seed", "expected an integer of at most 2^53"))?,
        ),
    };
    let stop = match field("stop") {
        None => Vec::new(),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => {
            if items.len() > MAX_STOP {
                return Err(ApiError::invalid("stop", &format!("at most {MAX_STOP} sequences")));
            }
            items
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    v.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| ApiError::invalid(&format!("stop[{i}]"), "expected a string"))
                })
                .collect::<Result<_, _>>()?
        }
        Some(_) => return Err(ApiError::invalid("stop", "expected a string or an array of strings")),
    };
    if let Some(i) = stop.iter().position(|s| s.is_empty() || s.len() > MAX_STOP_LEN) {
        return Err(ApiError::invalid(&format!("stop[{i}]"), &format!("must be 1 to {MAX_STOP_LEN} bytes")));
    }
    Ok(ChatRequest {
        model,
        messages: messages(field("messages"))?,
        stream,
        include_usage,
        max_tokens: max_completion.or(max_tokens),
        temperature: temperature.map(|t| t as f32),
        top_p: top_p.map(|p| p as f32),
        seed,
        stop,
        top_k: int_field(obj, "top_k", 0)?,
        min_p: min_p.map(|p| p as f32),
        repeat_penalty: repeat.map(|r| r as f32),
        hearth: extensions(field("hearth"))?,
        thinking: template_kwargs(field("chat_template_kwargs"))?,
    })
}

/// `chat_template_kwargs`: only `enable_thinking` (a boolean) is taken; any other variable is
/// refused by name rather than passed to the template unchecked.
fn template_kwargs(value: Option<&Value>) -> Result<Option<bool>, ApiError> {
    let Some(value) = value else { return Ok(None) };
    let Value::Object(o) = value else {
        return Err(ApiError::invalid("chat_template_kwargs", "expected an object"));
    };
    if let Some(k) = o.keys().find(|k| k.as_str() != "enable_thinking") {
        return Err(ApiError::unsupported(&format!("chat_template_kwargs.{k}"), "only enable_thinking is taken"));
    }
    bool_field(o, "enable_thinking")
        .map_err(|_| ApiError::invalid("chat_template_kwargs.enable_thinking", "expected a boolean"))
}

fn extensions(value: Option<&Value>) -> Result<Option<Extensions>, ApiError> {
    let Some(value) = value else { return Ok(None) };
    let Some(obj) = value.as_object() else {
        return Err(ApiError::invalid("hearth", "expected an object"));
    };
    if let Some(k) = obj.keys().find(|k| !matches!(k.as_str(), "overflow" | "tokens")) {
        return Err(ApiError::unsupported(&format!("hearth.{k}"), "not one of Hearth's extensions (overflow, tokens)"));
    }
    let drop_oldest = match obj.get("overflow") {
        None | Some(Value::Null) => false,
        Some(v) if v == "drop_oldest" => true,
        Some(v) if v == "refuse" => false,
        Some(_) => return Err(ApiError::invalid("hearth.overflow", "expected \"drop_oldest\" or \"refuse\"")),
    };
    let tokens = bool_field(obj, "tokens").map_err(|_| ApiError::invalid("hearth.tokens", "expected a boolean"))?;
    Ok(Some(Extensions { drop_oldest, tokens: tokens.unwrap_or(false) }))
}

fn bool_field(obj: &Map<String, Value>, key: &str) -> Result<Option<bool>, ApiError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(ApiError::invalid(key, "expected a boolean")),
    }
}

fn number_field(obj: &Map<String, Value>, key: &str) -> Result<Option<f64>, ApiError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => {
            v.as_f64().filter(|f| f.is_finite()).map(Some).ok_or_else(|| ApiError::invalid(key, "expected a number"))
        }
    }
}

/// An integer field of at least `min` (`max_tokens` from 1, `top_k` from 0 = off).
fn int_field(obj: &Map<String, Value>, key: &str, min: u64) -> Result<Option<u32>, ApiError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match v.as_u64() {
            Some(n) if n >= min && n <= u64::from(u32::MAX) => Ok(Some(n as u32)),
            _ => Err(ApiError::invalid(key, &format!("expected an integer of at least {min}"))),
        },
    }
}

fn messages(value: Option<&Value>) -> Result<Vec<Message>, ApiError> {
    let Some(Value::Array(items)) = value else {
        return Err(ApiError::invalid("messages", "expected a non-empty array of messages"));
    };
    if items.is_empty() {
        return Err(ApiError::invalid("messages", "expected a non-empty array of messages"));
    }
    items.iter().enumerate().map(|(i, m)| message(i, m)).collect()
}

fn message(i: usize, m: &Value) -> Result<Message, ApiError> {
    let at = |k: &str| format!("messages[{i}].{k}");
    let Some(obj) = m.as_object() else {
        return Err(ApiError::invalid(&format!("messages[{i}]"), "expected an object"));
    };
    let role = match obj.get("role").and_then(Value::as_str) {
        Some("system" | "developer") => Role::System,
        Some("user") => Role::User,
        Some("assistant") => Role::Assistant,
        Some(r @ ("tool" | "function")) => {
            return Err(ApiError::unsupported(
                &at("role"),
                &format!("'{r}' messages need tools, which Hearth does not implement"),
            ))
        }
        _ => return Err(ApiError::invalid(&at("role"), "expected system, developer, user or assistant")),
    };
    if let Some(k) = obj.keys().find(|k| !matches!(k.as_str(), "role" | "content" | "name")) {
        return Err(ApiError::unsupported(&at(k), "Hearth does not implement it"));
    }
    let content = match obj.get("content") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => {
            let mut text = String::new();
            for (j, part) in parts.iter().enumerate() {
                let here = format!("messages[{i}].content[{j}]");
                match part.get("type").and_then(Value::as_str) {
                    Some("text") => match part.get("text").and_then(Value::as_str) {
                        Some(t) => text.push_str(t),
                        None => return Err(ApiError::invalid(&format!("{here}.text"), "expected a string")),
                    },
                    Some(other) => {
                        return Err(ApiError::unsupported(
                            &format!("{here}.type"),
                            &format!("'{other}' parts (only text)"),
                        ))
                    }
                    None => return Err(ApiError::invalid(&format!("{here}.type"), "expected a part type")),
                }
            }
            text
        }
        _ => return Err(ApiError::invalid(&at("content"), "expected a string or an array of text parts")),
    };
    Ok(Message { role, content })
}

/// Why generation ended, as OpenAI says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// The end-of-sequence token or a stop string.
    Stop,
    /// `max_tokens`, or a full context.
    Length,
}

impl From<StopReason> for FinishReason {
    fn from(reason: StopReason) -> Self {
        match reason {
            StopReason::MaxTokens | StopReason::ContextFull => FinishReason::Length,
            // An interrupted request has no reader left; say what it did say.
            StopReason::EndOfGeneration | StopReason::StopString | StopReason::Interrupted => FinishReason::Stop,
        }
    }
}

impl From<&TurnError> for ApiError {
    fn from(e: &TurnError) -> Self {
        match e {
            TurnError::TooLong { .. } => {
                ApiError::new(ErrorCode::ContextLengthExceeded, Some("messages"), e.to_string())
            }
            TurnError::Template(_) => ApiError::new(ErrorCode::InvalidValue, Some("messages"), e.to_string()),
            TurnError::Model(ModelError::DeviceLost(_)) => ApiError::new(ErrorCode::DeviceLost, None, e.to_string()),
            TurnError::Model(_) => ApiError::new(ErrorCode::EngineError, None, e.to_string()),
        }
    }
}

impl Usage {
    /// A turn's usage: the whole prompt, its cached prefix, the tokens generated.
    pub fn of(turn: &Turn) -> Self {
        Usage::new(turn.prompt_tokens as u32, turn.cached_tokens as u32, turn.generation.tokens.len() as u32)
    }
}

/// The `hearth` object of a response to a request that had one ([`Extensions`]).
pub fn extension(turn: &Turn, asked: &Extensions) -> Value {
    let t = &turn.generation.timings;
    let mut v = serde_json::json!({
        "dropped": turn.dropped,
        "stop_reason": turn.generation.stop_reason.as_str(),
        "timings": {
            "prompt_tokens": t.prompt_tokens,
            "prompt_ms": t.prompt_seconds * 1e3,
            "prompt_per_second": t.prompt_tokens_per_second(),
            "predicted_tokens": t.generated_tokens,
            "predicted_ms": t.generate_seconds * 1e3,
            "predicted_per_second": t.generate_tokens_per_second(),
        },
    });
    if asked.tokens {
        v["tokens"] = serde_json::json!(turn.generation.tokens);
    }
    v
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Usage {
    /// The whole prompt, reused prefix included.
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    pub total_tokens: u32,
    pub prompt_tokens_details: PromptTokensDetails,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PromptTokensDetails {
    /// The prefix reused from the KV cache.
    pub cached_tokens: u32,
}

impl Usage {
    pub fn new(prompt_tokens: u32, cached_tokens: u32, completion_tokens: u32) -> Self {
        Usage {
            prompt_tokens,
            completion_tokens,
            total_tokens: prompt_tokens + completion_tokens,
            prompt_tokens_details: PromptTokensDetails { cached_tokens },
        }
    }
}

/// What every response and chunk of one request shares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meta {
    /// `chatcmpl-…`, the same in every chunk.
    pub id: String,
    /// Unix seconds.
    pub created: u64,
    pub model: String,
}

impl Meta {
    /// `entropy` makes the id (callers pass random or clock bits).
    pub fn new(entropy: u64, created: u64, model: &str) -> Self {
        Meta { id: format!("chatcmpl-{entropy:016x}"), created, model: model.to_string() }
    }
}

/// A whole reply: `object: "chat.completion"`.
pub fn completion(meta: &Meta, content: &str, finish: FinishReason, usage: &Usage) -> Value {
    serde_json::json!({
        "id": meta.id, "object": "chat.completion", "created": meta.created, "model": meta.model,
        "choices": [{ "index": 0, "message": { "role": "assistant", "content": content },
                      "finish_reason": finish, "logprobs": null }],
        "usage": usage,
    })
}

/// A finished turn as a whole reply, with the `hearth` object when the request had one.
pub fn turn_completion(meta: &Meta, text: &str, turn: &Turn, ext: Option<&Extensions>) -> Value {
    let mut whole = completion(meta, text, FinishReason::from(turn.generation.stop_reason), &Usage::of(turn));
    if let Some(ext) = ext {
        whole["hearth"] = extension(turn, ext);
    }
    whole
}

/// The chunks that end a streamed turn: the finish (with the `hearth` object when the request
/// had one), then the usage when `include_usage` asked for it.
pub fn closing_chunks(meta: &Meta, turn: &Turn, include_usage: bool, ext: Option<&Extensions>) -> Vec<Value> {
    let mut last = chunk(meta, Chunk::Finish(FinishReason::from(turn.generation.stop_reason)));
    if let Some(ext) = ext {
        last["hearth"] = extension(turn, ext);
    }
    let usage = include_usage.then(|| chunk(meta, Chunk::Usage(&Usage::of(turn))));
    std::iter::once(last).chain(usage).collect()
}

/// One streamed piece: `object: "chat.completion.chunk"`.
pub enum Chunk<'a> {
    /// The first: the role, no text.
    Role,
    /// Text.
    Content(&'a str),
    /// The last of the choice: an empty delta with the finish reason.
    Finish(FinishReason),
    /// With `include_usage`, after the finish: no choices, the usage.
    Usage(&'a Usage),
}

pub fn chunk(meta: &Meta, chunk: Chunk) -> Value {
    let choice = |delta: Value, finish: Option<FinishReason>| serde_json::json!([{ "index": 0, "delta": delta, "finish_reason": finish, "logprobs": null }]);
    let (choices, usage) = match chunk {
        Chunk::Role => (choice(serde_json::json!({ "role": "assistant", "content": "" }), None), Value::Null),
        Chunk::Content(text) => (choice(serde_json::json!({ "content": text }), None), Value::Null),
        Chunk::Finish(reason) => (choice(serde_json::json!({}), Some(reason)), Value::Null),
        Chunk::Usage(u) => (serde_json::json!([]), serde_json::to_value(u).unwrap_or(Value::Null)),
    };
    serde_json::json!({
        "id": meta.id, "object": "chat.completion.chunk", "created": meta.created, "model": meta.model,
        "choices": choices, "usage": usage,
    })
}
