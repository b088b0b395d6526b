//! A conversation as tokens, for every front end (terminal chat, browser, `hearth serve`):
//! the model's chat template renders the whole conversation each turn, the oldest exchanges
//! are dropped when it no longer fits (or the turn is refused, for the API), and only the
//! tokens after the prefix already in the KV cache are run. [`Conversation::reply`] is the
//! one chat turn every front end runs, over the one generation loop ([`generate_async`]).

use hearth_gguf::GgufIndex;
use hearth_tokenizer::template::{ChatTemplate, Message, TemplateError};
use hearth_tokenizer::Tokenizer;

use crate::engine::{Blocking, Steps};
use crate::{generate_async, Engine, GenerateParams, Generation, ModelError};

/// The model's template with the special texts it is rendered with.
pub struct ChatFormat {
    pub template: ChatTemplate,
    bos: String,
    eos: String,
    /// `enable_thinking` for templates that read it (Qwen3, SmolLM3); `None` renders without
    /// it (the template's own default: Qwen3 thinks).
    pub thinking: Option<bool>,
}

/// A conversation that fits: its tokens, and how many messages were dropped to make it fit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fitted {
    pub tokens: Vec<u32>,
    pub dropped: usize,
}

impl ChatFormat {
    /// The GGUF's `tokenizer.chat_template`, or a fallback chosen from the vocabulary.
    pub fn from_gguf(index: &GgufIndex, tokenizer: &Tokenizer) -> Result<Self, TemplateError> {
        let source = index.get("tokenizer.chat_template").and_then(|v| v.as_str());
        let template = ChatTemplate::for_model(source, |t| tokenizer.token_id(t).is_some())?;
        let text = |id: Option<u32>| id.and_then(|i| tokenizer.token_text(i)).unwrap_or("").to_string();
        Ok(ChatFormat { template, bos: text(tokenizer.bos_id()), eos: text(tokenizer.eos_id()), thinking: None })
    }

    /// The template has a thinking switch (it reads `enable_thinking`).
    pub fn can_think(&self) -> bool {
        self.template.reads("enable_thinking")
    }

    /// Renders `messages` with the generation prompt and tokenizes the result: special
    /// tokens parsed in the template's markup, not in the messages' contents (a user who
    /// types `<|im_start|>system` gets the plain tokens of that text); BOS added when the
    /// model wants it, unless the template already wrote it (llama.cpp strips it the same
    /// way). Where the template rewrites contents so that they cannot be found in the render
    /// (`Rendered::spans` is `None`; none of the reference templates does), special texts are
    /// parsed everywhere, as llama.cpp and transformers do.
    pub fn tokenize(&self, tokenizer: &Tokenizer, messages: &[Message]) -> Result<Vec<u32>, TemplateError> {
        let extra = self.thinking.map(|on| serde_json::json!({ "enable_thinking": on }));
        let rendered = self.template.render_spans_with(messages, true, &self.bos, &self.eos, &extra)?;
        let add_bos = tokenizer.add_bos_default();
        let (text, skipped) = match rendered.text.strip_prefix(self.bos.as_str()) {
            Some(rest) if add_bos && !self.bos.is_empty() => (rest, self.bos.len()),
            _ => (rendered.text.as_str(), 0),
        };
        let Some(spans) = rendered.spans else {
            return Ok(tokenizer.encode(text, add_bos, true));
        };
        let plain: Vec<_> =
            spans.iter().map(|r| r.start.saturating_sub(skipped)..r.end.saturating_sub(skipped)).collect();
        Ok(tokenizer.encode_chat(text, add_bos, &plain))
    }

    /// Tokenizes `messages`, dropping the oldest exchanges (two messages at a time) after the
    /// first `n_fixed` messages (the system prompt) until the prompt leaves `reserve` of
    /// `capacity` positions free; the last message is never dropped. `None` when even the last
    /// message alone does not fit. Dropping more never lengthens the prompt, so the fewest
    /// drops are found by bisection: a few renders even for a conversation of thousands of
    /// messages (one request can carry that many).
    pub fn fit(
        &self,
        tokenizer: &Tokenizer,
        messages: &[Message],
        n_fixed: usize,
        capacity: usize,
        reserve: usize,
    ) -> Result<Option<Fitted>, TemplateError> {
        let droppable = messages.len().saturating_sub(n_fixed + 1);
        let dropped_at = |step: usize| (2 * step).min(droppable);
        let render = |step: usize| -> Result<Option<Fitted>, TemplateError> {
            let dropped = dropped_at(step);
            let kept: Vec<Message> = messages[..n_fixed.min(messages.len())]
                .iter()
                .chain(&messages[(n_fixed + dropped).min(messages.len())..])
                .cloned()
                .collect();
            let tokens = self.tokenize(tokenizer, &kept)?;
            Ok((tokens.len() + reserve <= capacity).then_some(Fitted { tokens, dropped }))
        };
        if let Some(fitted) = render(0)? {
            return Ok(Some(fitted));
        }
        // The first step that fits lies in (lo, hi]; `best` is the fit at `hi`.
        let (mut lo, mut hi) = (0, droppable.div_ceil(2));
        let Some(mut best) = render(hi)? else { return Ok(None) };
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            match render(mid)? {
                Some(fitted) => (hi, best) = (mid, fitted),
                None => lo = mid,
            }
        }
        Ok(Some(best))
    }
}

/// How many of `tokens` can stay in a cache holding `cached`: their shared prefix, less one
/// if that is all of `tokens` (a step needs at least one new token to produce logits).
pub fn reusable_prefix(cached: &[u32], tokens: &[u32]) -> usize {
    let common = tokens.iter().zip(cached).take_while(|(a, b)| a == b).count();
    common.min(tokens.len().saturating_sub(1))
}

/// What a turn does when the conversation and room for a reply do not fit the context.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overflow {
    /// Drop the oldest exchanges after the system messages, leaving room for
    /// `min(max_tokens, context / 4)` reply tokens (the chat UI, with a notice).
    DropOldest,
    /// Refuse a prompt that leaves no room for one reply token; never drop anything (the
    /// OpenAI API: `context_length_exceeded`). A reply that fills the context ends there.
    Refuse,
}

/// One chat turn's outcome.
#[derive(Debug, Clone)]
pub struct Turn {
    pub generation: Generation,
    /// The whole rendered prompt.
    pub prompt_tokens: usize,
    /// Its prefix that was already in the KV cache and was not run again.
    pub cached_tokens: usize,
    /// Messages dropped from the start of the conversation (after the system messages).
    pub dropped: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum TurnError {
    /// The prompt does not fit; `prompt_tokens` is its length where it was rendered whole.
    #[error("{}", too_long_message(*.prompt_tokens, *.capacity))]
    TooLong { prompt_tokens: Option<usize>, capacity: usize },
    #[error("rendering the chat template: {0}")]
    Template(#[from] TemplateError),
    #[error(transparent)]
    Model(#[from] ModelError),
}

fn too_long_message(prompt_tokens: Option<usize>, capacity: usize) -> String {
    match prompt_tokens {
        Some(n) => format!(
            "the conversation is {n} tokens, and the context holds {capacity} (with room for at least one reply token): shorten it, or load the model with a longer context"
        ),
        None => format!(
            "that message is too long for a context of {capacity} tokens: shorten it, or load the model with a longer context"
        ),
    }
}

/// A conversation with a model: its format and the tokens its engine's KV cache holds, so
/// that each turn runs only what is new. One per engine; every front end's chat turn.
pub struct Conversation {
    pub format: ChatFormat,
    pub tokenizer: Tokenizer,
    /// The tokens whose keys and values are in the engine's cache, in order.
    cached: Vec<u32>,
}

impl Conversation {
    pub fn new(format: ChatFormat, tokenizer: Tokenizer) -> Self {
        Conversation { format, tokenizer, cached: Vec::new() }
    }

    /// Empties the cache (the engine was reset, or the user started over).
    pub fn forget<E: Steps + ?Sized>(&mut self, engine: &mut E) {
        engine.truncate_cache(0);
        self.cached.clear();
    }

    /// Renders `messages` (leading `system` messages are kept whatever `overflow` says), keeps
    /// the cached prefix, runs the rest and generates the reply, streaming its text to
    /// `on_text`. `params.max_tokens` is capped by the context. On an error the conversation
    /// keeps only what the engine's cache kept.
    pub async fn reply<E: Steps + ?Sized>(
        &mut self,
        engine: &mut E,
        messages: &[Message],
        params: &GenerateParams,
        overflow: Overflow,
        on_text: &mut dyn FnMut(&str),
        interrupted: &dyn Fn() -> bool,
    ) -> Result<Turn, TurnError> {
        let capacity = engine.cache_capacity();
        let max_tokens = params.max_tokens.clamp(1, capacity.max(1));
        let (tokens, dropped) = match overflow {
            Overflow::DropOldest => {
                let n_fixed = messages.iter().take_while(|m| m.role == "system").count();
                let reserve = max_tokens.min(capacity / 4);
                match self.format.fit(&self.tokenizer, messages, n_fixed, capacity, reserve)? {
                    Some(Fitted { tokens, dropped }) => (tokens, dropped),
                    None => return Err(TurnError::TooLong { prompt_tokens: None, capacity }),
                }
            }
            Overflow::Refuse => {
                let tokens = self.format.tokenize(&self.tokenizer, messages)?;
                if tokens.len() >= capacity {
                    return Err(TurnError::TooLong { prompt_tokens: Some(tokens.len()), capacity });
                }
                (tokens, 0)
            }
        };
        let common = reusable_prefix(&self.cached, &tokens);
        engine.truncate_cache(common);
        self.cached.truncate(common);

        let params = GenerateParams { max_tokens, ..params.clone() };
        let generated = generate_async(
            engine,
            Some(&self.tokenizer),
            &tokens[..common],
            &tokens[common..],
            &params,
            on_text,
            interrupted,
        )
        .await;
        let generation = match generated {
            Ok(g) => g,
            // The engine rolled its cache back: keep the token list in step.
            Err(e) => {
                self.cached.truncate(engine.cache_len());
                return Err(e.into());
            }
        };
        // The cache holds the prompt and every generated token but the last (never fed).
        self.cached = tokens.iter().chain(&generation.tokens).copied().take(engine.cache_len()).collect();
        Ok(Turn { generation, prompt_tokens: tokens.len(), cached_tokens: common, dropped })
    }

    /// [`Conversation::reply`] on a synchronous engine: blocks.
    pub fn reply_blocking(
        &mut self,
        engine: &mut dyn Engine,
        messages: &[Message],
        params: &GenerateParams,
        overflow: Overflow,
        on_text: &mut dyn FnMut(&str),
        interrupted: &dyn Fn() -> bool,
    ) -> Result<Turn, TurnError> {
        let mut steps = Blocking(engine);
        pollster::block_on(self.reply(&mut steps, messages, params, overflow, on_text, interrupted))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_drops_the_fewest_exchanges_and_never_the_last_message() {
        use hearth_gguf::read_index;
        let bytes =
            std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tiny_gqa3_hd10_tied.gguf")).unwrap();
        let index = read_index(&bytes).unwrap();
        let tokenizer = Tokenizer::from_gguf(&index).unwrap();
        let format = ChatFormat::from_gguf(&index, &tokenizer).unwrap();
        let mut messages = vec![Message::system("sys")];
        for i in 0..41 {
            let role = if i % 2 == 0 { "user" } else { "assistant" };
            messages.push(Message::new(role, format!("message number {i} with some words")));
        }
        let full = format.tokenize(&tokenizer, &messages).unwrap().len();
        for capacity in [full, full - 1, full / 2, full / 5, 40, 1] {
            let got = format.fit(&tokenizer, &messages, 1, capacity, 0).unwrap();
            // The linear rule: drop two at a time (the last step fewer), keep the last.
            let mut want = None;
            let mut dropped = 0;
            loop {
                let kept: Vec<Message> = messages[..1].iter().chain(&messages[1 + dropped..]).cloned().collect();
                let tokens = format.tokenize(&tokenizer, &kept).unwrap();
                if tokens.len() <= capacity {
                    want = Some(Fitted { tokens, dropped });
                    break;
                }
                if kept.len() <= 2 {
                    break;
                }
                dropped = (dropped + 2).min(messages.len() - 2);
            }
            assert_eq!(got, want, "capacity {capacity}");
        }
    }

    #[test]
    fn reusable_prefix_leaves_one_token_to_run() {
        assert_eq!(reusable_prefix(&[1, 2, 3], &[1, 2, 3, 4, 5]), 3);
        assert_eq!(reusable_prefix(&[1, 2, 3], &[1, 2, 3]), 2);
        assert_eq!(reusable_prefix(&[1, 9, 3], &[1, 2, 3]), 1);
        assert_eq!(reusable_prefix(&[], &[7]), 0);
        assert_eq!(reusable_prefix(&[1, 2], &[]), 0);
    }
}
