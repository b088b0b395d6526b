//! Prompt in, text out: prefill, then sample and decode one token at a time until an
//! end-of-generation token, a stop string, the token budget or the context runs out.

use hearth_tokenizer::{StreamDecoder, Tokenizer};
use web_time::Instant;

use crate::{Engine, ModelError, Sampler, SamplingParams};

#[derive(Debug, Clone)]
pub struct GenerateParams {
    pub max_tokens: usize,
    pub sampling: SamplingParams,
    /// Generation stops before the first occurrence of any of these; it is not returned.
    pub stop: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// The model produced an end-of-generation token (EOS, EOT, `<|im_end|>`, ...).
    EndOfGeneration,
    StopString,
    MaxTokens,
    ContextFull,
}

impl StopReason {
    pub fn as_str(self) -> &'static str {
        match self {
            StopReason::EndOfGeneration => "eos",
            StopReason::StopString => "stop_string",
            StopReason::MaxTokens => "max_tokens",
            StopReason::ContextFull => "context_full",
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct Timings {
    pub prompt_tokens: usize,
    pub prompt_seconds: f64,
    pub generated_tokens: usize,
    pub generate_seconds: f64,
}

impl Timings {
    pub fn prompt_tokens_per_second(&self) -> f64 {
        self.prompt_tokens as f64 / self.prompt_seconds.max(1e-9)
    }

    pub fn generate_tokens_per_second(&self) -> f64 {
        self.generated_tokens as f64 / self.generate_seconds.max(1e-9)
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

/// Runs `new_tokens` after what the engine's cache already holds and generates. `history`
/// is every token the cache holds (for the repetition penalty). `on_text` receives the text
/// as it becomes final: complete UTF-8, and never the start of a possible stop string.
pub fn generate(
    engine: &mut dyn Engine,
    tokenizer: &Tokenizer,
    history: &[u32],
    new_tokens: &[u32],
    params: &GenerateParams,
    on_text: &mut dyn FnMut(&str),
) -> Result<Generation, ModelError> {
    let mut sampler = Sampler::new(params.sampling.clone());
    let mut all: Vec<u32> = history.iter().chain(new_tokens).copied().collect();
    let mut timings = Timings { prompt_tokens: new_tokens.len(), ..Default::default() };

    let mut tokens = Vec::new();
    let mut decoder = StreamDecoder::new(tokenizer);
    let mut text = TextSink::new(&params.stop);
    if params.max_tokens == 0 {
        engine.forward(new_tokens, crate::Logits::Last)?;
        return Ok(Generation { tokens, text: String::new(), stop_reason: StopReason::MaxTokens, timings });
    }
    let t0 = Instant::now();
    let mut next = engine.forward_and_sample(new_tokens, &mut sampler, &all)?;
    timings.prompt_seconds = t0.elapsed().as_secs_f64();

    let t1 = Instant::now();
    let stop_reason = loop {
        if tokenizer.is_end_of_generation(next) {
            break StopReason::EndOfGeneration;
        }
        tokens.push(next);
        all.push(next);
        if text.push(&decoder.push(next), on_text) {
            break StopReason::StopString;
        }
        if tokens.len() >= params.max_tokens {
            break StopReason::MaxTokens;
        }
        if engine.cache_len() >= engine.cache_capacity() {
            break StopReason::ContextFull;
        }
        next = engine.forward_and_sample(&[next], &mut sampler, &all)?;
    };
    if stop_reason != StopReason::StopString && !text.push(&decoder.finish(), on_text) {
        text.flush(on_text);
    }
    timings.generated_tokens = tokens.len();
    timings.generate_seconds = t1.elapsed().as_secs_f64();
    Ok(Generation { tokens, text: text.text, stop_reason, timings })
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
