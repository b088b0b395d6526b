//! A model loaded on the GPU and the conversation in its KV cache: each turn is
//! `hearth_model::chat::Conversation::reply`, the chat turn every front end runs, awaited here
//! and streamed to the page.

use std::cell::Cell;
use std::sync::Arc;

use hearth_gpu::{Gpu, GpuEngine, GpuError};
use hearth_model::chat::{ChatFormat, Conversation, Overflow, Turn, TurnError};
use hearth_model::{Config, GenerateParams, ModelError};
use hearth_tokenizer::template::{DateTime, Message};
use hearth_tokenizer::Tokenizer;

use super::source::StoredSource;
use super::{now_ms, post};
use crate::protocol::{ChatMessage, ErrorKind, FromWorker, GenStats, LoadedInfo, Phase, Sampling};
use crate::store::{ModelMeta, Store};

pub struct Session {
    engine: GpuEngine,
    conversation: Conversation,
    pub info: LoadedInfo,
}

/// Why a load failed.
pub enum LoadError {
    /// Stored chunk `n` failed its check: re-fetch it and try again.
    Corrupt(usize),
    Failed(ErrorKind, String),
}

fn gpu_error_kind(e: &GpuError) -> ErrorKind {
    match e {
        GpuError::TooLarge { .. } | GpuError::OutOfMemory(_) => ErrorKind::OutOfMemory,
        GpuError::DeviceLost(_) => ErrorKind::DeviceLost,
        GpuError::Model(_) | GpuError::Unsupported { .. } | GpuError::TooManyWorkgroups { .. } => ErrorKind::BadModel,
        _ => ErrorKind::Other,
    }
}

/// The browser's local date and time, for templates that print today's date.
fn local_now() -> DateTime {
    let d = js_sys::Date::new_0();
    DateTime::new(
        d.get_full_year() as i16,
        (d.get_month() + 1) as i8,
        d.get_date() as i8,
        d.get_hours() as i8,
        d.get_minutes() as i8,
        d.get_seconds() as i8,
        0,
    )
    .unwrap_or_default()
}

impl Session {
    /// Reads a verified model from storage onto the GPU, tensor by tensor.
    pub async fn load(gpu: Arc<Gpu>, store: &Store, meta: &ModelMeta, context: u32) -> Result<Session, LoadError> {
        let t0 = now_ms();
        let source = StoredSource::new(store, meta);
        let corrupt_or = |kind: ErrorKind, message: String| match source.corrupt_chunk() {
            Some(n) => LoadError::Corrupt(n),
            None => LoadError::Failed(kind, message),
        };
        let index = source
            .index()
            .await
            .map_err(|e| corrupt_or(ErrorKind::BadModel, format!("{} is not a usable GGUF model: {e}", meta.name)))?;
        let bad = |e: String| LoadError::Failed(ErrorKind::BadModel, format!("{}: {e}", meta.name));
        let config = Config::from_gguf(&index).map_err(|e| bad(e.to_string()))?;
        let tokenizer = Tokenizer::from_gguf(&index).map_err(|e| bad(format!("reading the tokenizer: {e}")))?;
        let mut format = ChatFormat::from_gguf(&index, &tokenizer)
            .map_err(|e| bad(format!("the chat template does not compile: {e}")))?;
        format.template = format.template.with_clock(local_now);
        let context = (context as usize).clamp(16, config.max_context.max(16));

        let mut last = 0.0;
        let id = meta.id.clone();
        let mut progress = |done: u64, total: u64| {
            let now = now_ms();
            if now - last > 100.0 || done == total {
                last = now;
                let secs = ((now - t0) / 1000.0).max(1e-3);
                let bytes_per_sec = done as f64 / secs;
                post(&FromWorker::Progress { id: id.clone(), phase: Phase::Loading, done, total, bytes_per_sec });
            }
        };
        let pipelines_before = gpu.pipelines_built();
        let engine = GpuEngine::load_async(gpu, &index, &source, context, &mut progress)
            .await
            .map_err(|e| corrupt_or(gpu_error_kind(&e), e.to_string()))?;
        let info = LoadedInfo {
            id: meta.id.clone(),
            name: meta.name.clone(),
            context: context as u32,
            load_ms: now_ms() - t0,
            bytes: source.bytes_read.get(),
            read_ms: source.read_ms.get(),
            wasm_memory: wasm_memory_bytes(),
            has_template: index.get("tokenizer.chat_template").is_some(),
            pipelines: (engine.gpu().pipelines_built() - pipelines_before) as u32,
            can_think: format.can_think(),
        };
        Ok(Session { engine, conversation: Conversation::new(format, tokenizer), info })
    }

    /// Streams a reply to `messages` (`Token` events) and returns its numbers. `stop` is set
    /// by a `Stop` message, seen between tokens.
    pub async fn generate(
        &mut self,
        messages: &[ChatMessage],
        sampling: &Sampling,
        stop_strings: &[String],
        think: Option<bool>,
        stop: &Cell<bool>,
    ) -> Result<GenStats, (ErrorKind, String)> {
        let format = &mut self.conversation.format;
        format.thinking = think.filter(|_| format.can_think());
        crate::protocol::check_stop(stop_strings)
            .map_err(|e| (ErrorKind::Other, format!("stop strings refused: {e}")))?;
        let seed = sampling.seed.unwrap_or_else(|| (js_sys::Math::random() * u32::MAX as f64) as u64);
        let params =
            sampling.params(seed).map_err(|e| (ErrorKind::Other, format!("sampling settings refused: {e}")))?;
        let msgs: Vec<Message> = messages.iter().map(|m| Message::new(m.role.as_str(), m.content.clone())).collect();
        let capacity = self.engine.model.context;
        let params = GenerateParams {
            max_tokens: sampling.max_tokens as usize,
            sampling: params,
            stop: stop_strings.to_vec(),
            sequential: false,
        };
        let mut on_text = |text: &str| post(&FromWorker::Token { text: text.to_string() });
        let turn = self
            .chat(&msgs, &params, Overflow::DropOldest, &mut on_text, &|| stop.get())
            .await
            .map_err(|e| match e {
                TurnError::TooLong { .. } => (
                    ErrorKind::ContextFull,
                    format!(
                        "That message is too long for a context of {capacity} tokens. Shorten it, or reload the model with a longer context."
                    ),
                ),
                TurnError::Model(ModelError::DeviceLost(why)) => (ErrorKind::DeviceLost, why),
                other => (ErrorKind::Other, other.to_string()),
            })?;
        let (prompt_tokens, prefilled, truncated) =
            (turn.prompt_tokens as u32, (turn.prompt_tokens - turn.cached_tokens) as u32, turn.dropped > 0);
        let g = turn.generation;
        let t = &g.timings;
        let first_token_ms = t.prompt_seconds * 1000.0;
        Ok(GenStats {
            prompt_tokens,
            prefilled,
            new_tokens: g.tokens.len() as u32,
            first_token_ms,
            decode_tok_s: t.generate_tokens_per_second(),
            prefill_tok_s: t.prompt_tokens_per_second(),
            context_used: self.engine.cache_len() as u32,
            context_max: capacity as u32,
            // The engine's own words, as the CLI prints them.
            stop_reason: g.stop_reason.as_str().into(),
            truncated,
            tokens: g.tokens,
        })
    }

    /// A chat turn on this model: the chat UI's (above), and the JS API's, with a request's
    /// messages and settings as `hearth serve` runs them.
    pub async fn chat(
        &mut self,
        messages: &[Message],
        params: &GenerateParams,
        overflow: Overflow,
        on_text: &mut dyn FnMut(&str),
        interrupted: &dyn Fn() -> bool,
    ) -> Result<Turn, TurnError> {
        self.conversation.reply(&mut self.engine, messages, params, overflow, on_text, interrupted).await
    }
}

/// The wasm linear memory's size: it only grows, so after a load it is the load's peak.
pub fn wasm_memory_bytes() -> u64 {
    use wasm_bindgen::JsCast;
    wasm_bindgen::memory()
        .dyn_into::<js_sys::WebAssembly::Memory>()
        .map(|m| m.buffer().unchecked_into::<js_sys::ArrayBuffer>().byte_length() as u64)
        .unwrap_or(0)
}
