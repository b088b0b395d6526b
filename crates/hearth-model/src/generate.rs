//! Prompt in, text out: prefill, then sample and decode one token at a time until an
//! end-of-generation token, a stop string, the token budget or the context runs out.

use hearth_tokenizer::{StreamDecoder, Tokenizer};
use web_time::Instant;

use crate::engine::{Blocking, Feed, Steps};
use crate::{Engine, ModelError, Sampler, SamplingParams};

#[derive(Debug, Clone)]
pub struct GenerateParams {
    pub max_tokens: usize,
    pub sampling: SamplingParams,
    /// Generation stops before the first occurrence of any of these; it is not returned.
    pub stop: Vec<String>,
    /// Decode one step at a time even where the engine can pipeline (for comparisons).
    pub sequential: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// The model produced an end-of-generation token (EOS, EOT, `<|im_end|>`, ...).
    EndOfGeneration,
    StopString,
    MaxTokens,
    ContextFull,
    /// The caller asked to stop (the browser's Stop button).
    Interrupted,
}

impl StopReason {
    pub fn as_str(self) -> &'static str {
        match self {
            StopReason::EndOfGeneration => "eos",
            StopReason::StopString => "stop_string",
            StopReason::MaxTokens => "max_tokens",
            StopReason::ContextFull => "context_full",
            StopReason::Interrupted => "interrupted",
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct Timings {
    pub prompt_tokens: usize,
    /// Until the first generated token was known: the prompt's step and its sampling.
    pub prompt_seconds: f64,
    pub generated_tokens: usize,
    /// From the first generated token to the end.
    pub generate_seconds: f64,
}

impl Timings {
    pub fn prompt_tokens_per_second(&self) -> f64 {
        self.prompt_tokens as f64 / self.prompt_seconds.max(1e-9)
    }

    /// Decode steps per second: the first token came from the prompt's step, each later one
    /// from a step of its own.
    pub fn generate_tokens_per_second(&self) -> f64 {
        self.generated_tokens.saturating_sub(1) as f64 / self.generate_seconds.max(1e-9)
    }
}

#[derive(Debug, Clone)]
pub struct Generation {
    /// Sampled tokens, without the end-of-generation token.
    pub tokens: Vec<u32>,
    pub text: String,
    pub stop_reason: StopReason,
    pub timings: Timings,
}

/// [`generate_async`] for a synchronous engine (the CLI, native tests): blocks.
pub fn generate(
    engine: &mut dyn Engine,
    tokenizer: Option<&Tokenizer>,
    history: &[u32],
    new_tokens: &[u32],
    params: &GenerateParams,
    on_text: &mut dyn FnMut(&str),
) -> Result<Generation, ModelError> {
    let mut steps = Blocking(engine);
    pollster::block_on(generate_async(&mut steps, tokenizer, history, new_tokens, params, on_text, &|| false))
}

/// Runs `new_tokens` after what the engine's cache already holds and generates: the one
/// generation loop of every front end. `history` is every token the cache holds (for the
/// repetition penalty). `on_text` receives the text as it becomes final: complete UTF-8,
/// and never the start of a possible stop string. `interrupted` is asked after each token.
/// Without a tokenizer (benchmarks of models that have none) there is no text and no
/// end-of-generation token.
///
/// Where the engine can sample on the device, decode is pipelined: the step that feeds
/// token t is submitted before t is read back, and cancelled if t ends the generation, so
/// the cache ends exactly as after a sequential decode.
pub async fn generate_async<E: Steps + ?Sized>(
    engine: &mut E,
    tokenizer: Option<&Tokenizer>,
    history: &[u32],
    new_tokens: &[u32],
    params: &GenerateParams,
    on_text: &mut dyn FnMut(&str),
    interrupted: &dyn Fn() -> bool,
) -> Result<Generation, ModelError> {
    let mut timings = Timings { prompt_tokens: new_tokens.len(), ..Default::default() };
    if params.max_tokens == 0 {
        engine.prefill(new_tokens).await?;
        let (tokens, text) = (Vec::new(), String::new());
        return Ok(Generation { tokens, text, stop_reason: StopReason::MaxTokens, timings });
    }
    let mut sampler = Sampler::new(params.sampling.clone());
    let mut out = Output {
        tokenizer,
        decoder: tokenizer.map(StreamDecoder::new),
        text: TextSink::new(&params.stop),
        all: history.iter().chain(new_tokens).copied().collect(),
        tokens: Vec::new(),
        max_tokens: params.max_tokens,
    };
    let t0 = Instant::now();
    let mut t1 = t0;
    let pipelined = !params.sequential && engine.pipelines(sampler.params());
    let stop_reason = if pipelined {
        engine.submit(Feed::Tokens(new_tokens), &mut sampler)?;
        loop {
            // Feed the token being read to the next step before it is read, unless no step
            // can follow it.
            let ahead = out.tokens.len() + 1 < params.max_tokens && engine.cache_len() < engine.cache_capacity();
            if ahead {
                engine.submit(Feed::Sampled, &mut sampler)?;
            }
            let next = engine.read_sampled().await?;
            if out.tokens.is_empty() {
                (timings.prompt_seconds, t1) = (t0.elapsed().as_secs_f64(), Instant::now());
            }
            let stop = out.accept(next, on_text).or_else(|| interrupted().then_some(StopReason::Interrupted));
            match stop {
                Some(reason) => {
                    if ahead {
                        engine.cancel();
                    }
                    break reason;
                }
                // Not stopped and not at max_tokens: the cache is full.
                None if !ahead => break StopReason::ContextFull,
                None => {}
            }
        }
    } else {
        let mut next = engine.forward_and_sample(new_tokens, &mut sampler, &out.all).await?;
        (timings.prompt_seconds, t1) = (t0.elapsed().as_secs_f64(), Instant::now());
        loop {
            if let Some(reason) = out.accept(next, on_text) {
                break reason;
            }
            if interrupted() {
                break StopReason::Interrupted;
            }
            if engine.cache_len() >= engine.cache_capacity() {
                break StopReason::ContextFull;
            }
            next = engine.forward_and_sample(&[next], &mut sampler, &out.all).await?;
        }
    };
    out.finish(stop_reason, on_text);
    timings.generated_tokens = out.tokens.len();
    timings.generate_seconds = t1.elapsed().as_secs_f64();
    Ok(Generation { tokens: out.tokens, text: out.text.text, stop_reason, timings })
}

/// The tokens generated so far and their text: decides, token by token, whether the
/// generation ends.
struct Output<'a> {
    tokenizer: Option<&'a Tokenizer>,
    decoder: Option<StreamDecoder<'a>>,
    text: TextSink<'a>,
    /// Every token of the sequence: history, prompt, generated.
    all: Vec<u32>,
    tokens: Vec<u32>,
    max_tokens: usize,
}

impl Output<'_> {
    /// Takes the sampled `id`; returns why generation ends with it, if it does.
    fn accept(&mut self, id: u32, on_text: &mut dyn FnMut(&str)) -> Option<StopReason> {
        if self.tokenizer.is_some_and(|t| t.is_end_of_generation(id)) {
            return Some(StopReason::EndOfGeneration);
        }
        self.tokens.push(id);
        self.all.push(id);
        if let Some(d) = &mut self.decoder {
            if self.text.push(&d.push(id), on_text) {
                return Some(StopReason::StopString);
            }
        }
        (self.tokens.len() >= self.max_tokens).then_some(StopReason::MaxTokens)
    }

    /// Hands out the text held back, unless a stop string already cut it.
    fn finish(&mut self, reason: StopReason, on_text: &mut dyn FnMut(&str)) {
        if reason == StopReason::StopString {
            return;
        }
        let rest = self.decoder.as_mut().map(|d| d.finish()).unwrap_or_default();
        if !self.text.push(&rest, on_text) {
            self.text.flush(on_text);
        }
    }
}

/// Accumulates generated text, cuts it at the first stop string, and hands out only text
/// that can no longer turn into a stop string.
struct TextSink<'a> {
    stops: &'a [String],
    text: String,
    emitted: usize,
}

impl<'a> TextSink<'a> {
    fn new(stops: &'a [String]) -> Self {
        TextSink { stops, text: String::new(), emitted: 0 }
    }

    /// Appends `piece`; returns true when a stop string was found (the text is cut there).
    fn push(&mut self, piece: &str, on_text: &mut dyn FnMut(&str)) -> bool {
        self.text.push_str(piece);
        let earliest = self.stops.iter().filter(|s| !s.is_empty()).filter_map(|s| self.text.find(s.as_str())).min();
        if let Some(at) = earliest {
            self.text.truncate(at);
            self.flush(on_text);
            return true;
        }
        // Hold back the longest tail that is a prefix of some stop string.
        let held = self
            .text
            .char_indices()
            .map(|(i, _)| i)
            .filter(|&i| i >= self.emitted)
            .find(|&i| self.stops.iter().any(|s| s.len() > self.text.len() - i && s.starts_with(&self.text[i..])))
            .unwrap_or(self.text.len());
        if held > self.emitted {
            on_text(&self.text[self.emitted..held]);
            self.emitted = held;
        }
        false
    }

    fn flush(&mut self, on_text: &mut dyn FnMut(&str)) {
        if self.text.len() > self.emitted {
            on_text(&self.text[self.emitted..]);
            self.emitted = self.text.len();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::TextSink;

    #[test]
    fn stop_strings_cut_and_hold_back() {
        let stops = vec!["</end>".to_string()];
        let mut sink = TextSink::new(&stops);
        let mut out = String::new();
        assert!(!sink.push("Hello </e", &mut |s| out.push_str(s)));
        assert!(sink.push("nd> more", &mut |s| out.push_str(s)));
        assert_eq!(sink.text, "Hello ");
        assert_eq!(out, "Hello ");
    }

    #[test]
    fn held_back_prefix_is_released_when_it_diverges() {
        let stops = vec!["STOP".to_string()];
        let mut sink = TextSink::new(&stops);
        let mut out = String::new();
        assert!(!sink.push("a ST", &mut |s| out.push_str(s)));
        assert!(!sink.push("ar é", &mut |s| out.push_str(s)));
        sink.flush(&mut |s| out.push_str(s));
        assert_eq!(out, "a STar é");
    }
}
