//! The chat UI on the native engine: when `hearth serve --ui` serves this app it marks the page
//! (`<meta name="hearth-engine" content="native">`), and the UI talks to the server's OpenAI
//! API instead of starting a worker. This bridge answers the same [`ToWorker`] requests with
//! the same [`FromWorker`] events: the model is the one the server loaded, replies stream
//! over Server-Sent Events, and the `hearth` extension (drop the oldest turns instead of
//! refusing, timings, token ids) fills what the worker's `Done` carries. Stop aborts the
//! request; the server stops generating when its client goes.

use std::cell::RefCell;
use std::rc::Rc;

use serde_json::{json, Value};
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;

use crate::protocol::{AdapterSummary, ChatMessage, ErrorKind, FromWorker, GenStats, LoadedInfo, Sampling, ToWorker};

/// Whether the page was served by `hearth serve`.
pub fn is_native_page() -> bool {
    web_sys::window()
        .and_then(|w| w.document())
        .and_then(|d| d.query_selector(r#"meta[name="hearth-engine"][content="native"]"#).ok().flatten())
        .is_some()
}

/// Where the API key typed for `hearth serve --api-key` is kept: this tab's session only.
const KEY_ITEM: &str = "hearth-api-key";

fn session_storage() -> Option<web_sys::Storage> {
    web_sys::window()?.session_storage().ok().flatten()
}

pub struct NativeBridge {
    on_event: Rc<dyn Fn(FromWorker)>,
    key: Rc<RefCell<Option<String>>>,
    /// The served model's id and context, once known.
    model: Rc<RefCell<Option<(String, u32)>>>,
    /// The reply in progress, to stop.
    abort: Rc<RefCell<Option<web_sys::AbortController>>>,
}

impl NativeBridge {
    pub fn new(on_event: impl Fn(FromWorker) + 'static) -> Self {
        let key = session_storage().and_then(|s| s.get_item(KEY_ITEM).ok().flatten());
        NativeBridge {
            on_event: Rc::new(on_event),
            key: Rc::new(RefCell::new(key)),
            model: Rc::default(),
            abort: Rc::default(),
        }
    }

    pub fn send(&self, msg: &ToWorker) {
        let emit = self.on_event.clone();
        match msg.clone() {
            ToWorker::Init => {
                let (model, key) = (self.model.clone(), self.key.borrow().clone());
                wasm_bindgen_futures::spawn_local(async move { init(&*emit, &model, key).await });
            }
            ToWorker::ApiKey { key } => {
                if let Some(s) = session_storage() {
                    let _ = s.set_item(KEY_ITEM, &key);
                }
                *self.key.borrow_mut() = Some(key.clone());
                let model = self.model.clone();
                wasm_bindgen_futures::spawn_local(async move { init(&*emit, &model, Some(key)).await });
            }
            ToWorker::ListStored => emit(stored()),
            ToWorker::Generate { messages, sampling, stop, think } => {
                let Some((model, context)) = self.model.borrow().clone() else {
                    return emit(error(ErrorKind::Other, "the server's model is not known yet".into()));
                };
                let abort = web_sys::AbortController::new().ok();
                *self.abort.borrow_mut() = abort.clone();
                let key = self.key.borrow().clone();
                wasm_bindgen_futures::spawn_local(async move {
                    let body = request(&model, &messages, &sampling, &stop, think);
                    match generate(&*emit, body, context, abort.as_ref(), key.as_deref()).await {
                        Ok(stats) => emit(FromWorker::Done { stats }),
                        Err((kind, message)) => emit(error(kind, message)),
                    }
                });
            }
            ToWorker::Stop => {
                if let Some(a) = self.abort.borrow_mut().take() {
                    a.abort();
                }
            }
            ToWorker::Ping { seq } => emit(FromWorker::Pong { seq }),
            _ => emit(error(
                ErrorKind::Other,
                "not available on the native engine: it runs the model hearth serve was started with".into(),
            )),
        }
    }
}

fn error(kind: ErrorKind, message: String) -> FromWorker {
    FromWorker::Error { kind, message, id: None }
}

fn stored() -> FromWorker {
    FromWorker::Stored { models: Vec::new(), quota: None, usage: None, persisted: true }
}

async fn init(emit: &dyn Fn(FromWorker), model: &RefCell<Option<(String, u32)>>, key: Option<String>) {
    let listed = match fetch_json("v1/models", None, None, key.as_deref()).await {
        Ok(v) => v,
        Err(Refused { status: 401, .. }) => return emit(FromWorker::NeedsApiKey { wrong: key.is_some() }),
        Err(Refused { failure: (_, message), .. }) => {
            let error = Some(format!("The native engine (hearth serve) did not answer: {message}"));
            return emit(FromWorker::Ready { adapter: None, error });
        }
    };
    let first = &listed["data"][0];
    let id = first["id"].as_str().unwrap_or("model").to_string();
    let context = first["hearth"]["context"].as_u64().unwrap_or(0) as u32;
    let can_think = first["hearth"]["can_think"].as_bool().unwrap_or(false);
    *model.borrow_mut() = Some((id.clone(), context));
    let adapter = AdapterSummary {
        name: "native engine (hearth serve)".into(),
        max_buffer_size: 0,
        max_storage_binding: 0,
        shader_f16: false,
        strategy: "native".into(),
        software: false,
        native: true,
    };
    emit(FromWorker::Ready { adapter: Some(adapter), error: None });
    emit(stored());
    let info = LoadedInfo {
        id: id.clone(),
        name: id,
        context,
        load_ms: 0.0,
        bytes: 0,
        read_ms: 0.0,
        wasm_memory: 0,
        has_template: true,
        pipelines: 0,
        can_think,
    };
    emit(FromWorker::Loaded { info });
}

/// The chat request: the UI's settings, and the `hearth` extension for what the UI shows.
fn request(model: &str, messages: &[ChatMessage], s: &Sampling, stop: &[String], think: Option<bool>) -> Value {
    let messages: Vec<Value> =
        messages.iter().map(|m| json!({ "role": m.role.as_str(), "content": m.content })).collect();
    let mut body = json!({
        "model": model, "messages": messages, "stream": true,
        "stream_options": { "include_usage": true },
        "temperature": s.temperature, "top_k": s.top_k, "top_p": s.top_p, "min_p": s.min_p,
        "repeat_penalty": s.repeat_penalty, "max_tokens": s.max_tokens,
        "hearth": { "overflow": "drop_oldest", "tokens": true },
    });
    if let Some(seed) = s.seed {
        body["seed"] = json!(seed);
    }
    if !stop.is_empty() {
        body["stop"] = json!(stop);
    }
    if let Some(on) = think {
        body["chat_template_kwargs"] = json!({ "enable_thinking": on });
    }
    body
}

type Failure = (ErrorKind, String);

/// A request that failed, with the HTTP status where there was an answer (0 where not).
struct Refused {
    status: u16,
    failure: Failure,
}

impl From<Refused> for Failure {
    fn from(r: Refused) -> Failure {
        r.failure
    }
}

impl From<Failure> for Refused {
    fn from(failure: Failure) -> Refused {
        Refused { status: 0, failure }
    }
}

/// POSTs (with a body) or GETs `path`, with the API key if there is one; the response when
/// it is OK, else the API's error.
async fn fetch(
    path: &str,
    body: Option<&Value>,
    abort: Option<&web_sys::AbortController>,
    key: Option<&str>,
) -> Result<web_sys::Response, Refused> {
    let window = web_sys::window().ok_or((ErrorKind::Other, "no window".to_string()))?;
    let init = web_sys::RequestInit::new();
    let headers = web_sys::Headers::new().map_err(js)?;
    if let Some(key) = key {
        headers.set("Authorization", &format!("Bearer {key}")).map_err(js)?;
    }
    if let Some(body) = body {
        init.set_method("POST");
        headers.set("Content-Type", "application/json").map_err(js)?;
        init.set_body(&body.to_string().into());
    }
    init.set_headers(&headers);
    if let Some(a) = abort {
        init.set_signal(Some(&a.signal()));
    }
    let resp = JsFuture::from(window.fetch_with_str_and_init(path, &init)).await.map_err(js)?;
    let resp: web_sys::Response = resp.dyn_into().map_err(js)?;
    if resp.ok() {
        return Ok(resp);
    }
    let status = resp.status();
    let text = match resp.text() {
        Ok(p) => JsFuture::from(p).await.ok().and_then(|t| t.as_string()).unwrap_or_default(),
        Err(_) => String::new(),
    };
    Err(Refused { status, failure: api_error(status, serde_json::from_str(&text).unwrap_or(Value::Null)) })
}

async fn fetch_json(
    path: &str,
    body: Option<&Value>,
    abort: Option<&web_sys::AbortController>,
    key: Option<&str>,
) -> Result<Value, Refused> {
    let resp = fetch(path, body, abort, key).await?;
    let text = JsFuture::from(resp.text().map_err(js)?).await.map_err(js)?.as_string().unwrap_or_default();
    serde_json::from_str(&text)
        .map_err(|e| Refused::from((ErrorKind::Other, format!("the server's answer is not JSON: {e}"))))
}

fn js(e: impl std::fmt::Debug) -> Failure {
    (ErrorKind::Other, format!("the native engine could not be reached: {e:?}"))
}

/// An OpenAI-shaped error body as the UI's error.
fn api_error(status: u16, body: Value) -> Failure {
    let e = &body["error"];
    let message = e["message"].as_str().map(str::to_string).unwrap_or_else(|| format!("HTTP {status}"));
    let kind = match e["code"].as_str() {
        Some("context_length_exceeded") => ErrorKind::ContextFull,
        Some("device_lost") => ErrorKind::DeviceLost,
        Some("out_of_memory") => ErrorKind::OutOfMemory,
        _ => ErrorKind::Other,
    };
    let message = match e["code"].as_str() {
        Some("invalid_api_key") => "hearth serve refused this tab's API key: reload the page to enter it again".into(),
        _ => message,
    };
    (kind, message)
}

/// Streams one reply: `Token`s as the deltas come, then its numbers.
async fn generate(
    emit: &dyn Fn(FromWorker),
    body: Value,
    context: u32,
    abort: Option<&web_sys::AbortController>,
    key: Option<&str>,
) -> Result<GenStats, Failure> {
    let t0 = js_sys::Date::now();
    let stopped = || abort.is_some_and(|a| a.signal().aborted());
    // Stop before the first token (the server answers once it has one): nothing was said.
    let resp = match fetch("v1/chat/completions", Some(&body), abort, key).await {
        Err(_) if stopped() => return Ok(Reply::default().interrupted(context, t0)),
        other => other?,
    };
    let stream = resp.body().ok_or((ErrorKind::Other, "the reply has no body".to_string()))?;
    let reader: web_sys::ReadableStreamDefaultReader = stream.get_reader().unchecked_into();
    let mut events = SseEvents::default();
    let mut reply = Reply::default();
    loop {
        let result = match JsFuture::from(reader.read()).await {
            Ok(r) => r,
            // Stopped: the reply so far stands.
            Err(_) if stopped() => return Ok(reply.interrupted(context, t0)),
            Err(e) => return Err(js(e)),
        };
        let done = js_sys::Reflect::get(&result, &"done".into()).ok().and_then(|v| v.as_bool()).unwrap_or(true);
        if done {
            break;
        }
        let value = js_sys::Reflect::get(&result, &"value".into()).map_err(js)?;
        for data in events.push(&js_sys::Uint8Array::new(&value).to_vec()) {
            if data == "[DONE]" {
                continue;
            }
            let chunk: Value = serde_json::from_str(&data)
                .map_err(|e| (ErrorKind::Other, format!("the server sent a chunk that is not JSON: {e}")))?;
            if !chunk["error"].is_null() {
                return Err(api_error(500, chunk));
            }
            if let Some(text) = chunk["choices"][0]["delta"]["content"].as_str().filter(|t| !t.is_empty()) {
                reply.pieces += 1;
                emit(FromWorker::Token { text: text.to_string() });
            }
            if !chunk["hearth"].is_null() {
                reply.hearth = chunk["hearth"].clone();
            }
            if !chunk["usage"].is_null() {
                reply.usage = chunk["usage"].clone();
            }
        }
    }
    Ok(reply.stats(context))
}

/// What the stream said about the reply.
#[derive(Default)]
struct Reply {
    pieces: u32,
    hearth: Value,
    usage: Value,
}

impl Reply {
    fn stats(&self, context: u32) -> GenStats {
        let (h, u, t) = (&self.hearth, &self.usage, &self.hearth["timings"]);
        let n = |v: &Value| v.as_u64().unwrap_or(0) as u32;
        let f = |v: &Value| v.as_f64().unwrap_or(0.0);
        let prompt = n(&u["prompt_tokens"]);
        let tokens: Vec<u32> = h["tokens"].as_array().map(|a| a.iter().map(n).collect()).unwrap_or_default();
        GenStats {
            prompt_tokens: prompt,
            prefilled: prompt.saturating_sub(n(&u["prompt_tokens_details"]["cached_tokens"])),
            new_tokens: n(&u["completion_tokens"]),
            first_token_ms: f(&t["prompt_ms"]),
            decode_tok_s: f(&t["predicted_per_second"]),
            prefill_tok_s: f(&t["prompt_per_second"]),
            // The prompt and every generated token but the last are in the server's cache.
            context_used: (prompt + tokens.len() as u32).saturating_sub(1).min(context),
            context_max: context,
            stop_reason: h["stop_reason"].as_str().unwrap_or("eos").to_string(),
            truncated: n(&h["dropped"]) > 0,
            tokens,
        }
    }

    fn interrupted(&self, context: u32, t0: f64) -> GenStats {
        let mut stats = self.stats(context);
        stats.stop_reason = "interrupted".into();
        stats.new_tokens = self.pieces;
        stats.first_token_ms = js_sys::Date::now() - t0;
        stats
    }
}

/// Server-Sent Events from bytes as they arrive: the `data` of each complete event.
#[derive(Default)]
struct SseEvents {
    buf: Vec<u8>,
}

impl SseEvents {
    fn push(&mut self, bytes: &[u8]) -> Vec<String> {
        self.buf.extend_from_slice(bytes);
        let mut out = Vec::new();
        while let Some(end) = self.buf.windows(2).position(|w| w == b"\n\n") {
            let event: Vec<u8> = self.buf.drain(..end + 2).collect();
            let text = String::from_utf8_lossy(&event);
            let data: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("data:")).map(str::trim_start).collect();
            if !data.is_empty() {
                out.push(data.join("\n"));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::SseEvents;

    #[test]
    fn sse_events_survive_any_split() {
        let stream = "data: {\"a\":1}\n\n: comment\n\ndata: é\n\ndata: [DONE]\n\n".as_bytes();
        for cut in 0..stream.len() {
            let mut sse = SseEvents::default();
            let mut got = sse.push(&stream[..cut]);
            got.extend(sse.push(&stream[cut..]));
            assert_eq!(got, ["{\"a\":1}", "é", "[DONE]"], "cut at {cut}");
        }
    }
}
