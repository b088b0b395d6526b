//! The generation loop's pipelined path against its sequential path, on the CPU: a plain
//! reference engine that "pipelines" (each submitted step runs at once, its token is queued
//! until read, a cancelled step's positions are dropped) must end every generation with the
//! tokens, text, stop reason and cache length of sequential decode: at max tokens, at a stop
//! string, at a full context, and on the chat turn after a stop. The GPU engine's own
//! pipelining is checked against its sequential decode in hearth-gpu's tiny-model tests.

use std::collections::VecDeque;
use std::path::PathBuf;

use hearth_gguf::read_index;
use hearth_model::{
    generate, CpuEngine, Engine, EngineStats, Feed, GenerateParams, Generation, Logits, Model, ModelError, Pipelined,
    Sampler, SamplingParams, StopReason,
};
use hearth_tokenizer::Tokenizer;

/// The CPU reference behind the pipelined calls.
struct Queued {
    cpu: CpuEngine,
    /// Tokens sampled and not yet read, with the cache length before their step.
    in_flight: VecDeque<(u32, usize)>,
    last: Option<u32>,
    /// Steps submitted while another's token was unread.
    ahead: usize,
}

impl Engine for Queued {
    fn config(&self) -> &hearth_model::Config {
        self.cpu.config()
    }
    fn cache_len(&self) -> usize {
        self.cpu.cache_len()
    }
    fn cache_capacity(&self) -> usize {
        self.cpu.cache_capacity()
    }
    fn truncate_cache(&mut self, len: usize) {
        self.in_flight.clear();
        self.cpu.truncate_cache(len)
    }
    fn forward(&mut self, tokens: &[u32], which: Logits) -> Result<Vec<f32>, ModelError> {
        assert!(self.in_flight.is_empty(), "a sequential call with steps in flight");
        self.last = None;
        self.cpu.forward(tokens, which)
    }
    fn stats(&self) -> EngineStats {
        EngineStats::default()
    }
    fn pipelined(&mut self) -> Option<&mut dyn Pipelined> {
        Some(self)
    }
}

impl Pipelined for Queued {
    fn pipelines(&self, params: &SamplingParams) -> bool {
        params.repeat_penalty == 1.0
    }
    fn submit(&mut self, feed: Feed<'_>, sampler: &mut Sampler) -> Result<(), ModelError> {
        assert!(self.in_flight.len() < 2, "at most two steps in flight");
        let tokens = match feed {
            Feed::Tokens(t) => t.to_vec(),
            Feed::Sampled => vec![self.last.expect("a sampled token to feed")],
        };
        self.ahead += usize::from(!self.in_flight.is_empty());
        let before = self.cpu.cache_len();
        let logits = self.cpu.forward(&tokens, Logits::Last)?;
        let id = sampler.sample(&logits, &[]);
        self.last = Some(id);
        self.in_flight.push_back((id, before));
        Ok(())
    }
    fn read_sampled(&mut self) -> Result<u32, ModelError> {
        Ok(self.in_flight.pop_front().expect("a step in flight").0)
    }
    fn cancel(&mut self) {
        let (_, before) = self.in_flight.pop_back().expect("a step to cancel");
        self.cpu.truncate_cache(before);
        self.last = None;
    }
}

fn engine(context: usize) -> (Queued, Tokenizer) {
    let path = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tiny_gqa3_hd10_tied.gguf"));
    let bytes = std::fs::read(path).unwrap();
    let index = read_index(&bytes).unwrap();
    let tokenizer = Tokenizer::from_gguf(&index).unwrap();
    let cpu = CpuEngine::new(Model::load(&index, &bytes).unwrap(), context);
    (Queued { cpu, in_flight: VecDeque::new(), last: None, ahead: 0 }, tokenizer)
}

fn run(e: &mut Queued, t: &Tokenizer, history: &[u32], prompt: &[u32], p: &GenerateParams) -> (Generation, usize) {
    let g = generate(e, Some(t), history, prompt, p, &mut |_| {}).unwrap();
    assert!(e.in_flight.is_empty(), "a step left in flight");
    (g, e.cache_len())
}

#[test]
fn pipelined_generation_ends_as_sequential_generation_does() {
    let prompt = [1, 258, 257, 260, 102, 47];
    let sampled = SamplingParams { temperature: 1.5, top_k: 0, top_p: 1.0, min_p: 0.0, seed: 7, ..Default::default() };
    for sampling in [SamplingParams::greedy(), sampled] {
        let params = |sequential, max_tokens, stop: &[String]| GenerateParams {
            max_tokens,
            sampling: sampling.clone(),
            stop: stop.to_vec(),
            sequential,
        };
        // Max tokens (20), and a context that fills first (6 + 11 positions).
        for (context, max_tokens, reason) in [(64, 20, StopReason::MaxTokens), (17, 20, StopReason::ContextFull)] {
            let (mut e, t) = engine(context);
            let (want, want_len) = run(&mut e, &t, &[], &prompt, &params(true, max_tokens, &[]));
            assert_eq!((want.stop_reason, e.ahead), (reason, 0));
            e.truncate_cache(0);
            let (got, got_len) = run(&mut e, &t, &[], &prompt, &params(false, max_tokens, &[]));
            assert_eq!((&got.tokens, &got.text, got.stop_reason), (&want.tokens, &want.text, want.stop_reason));
            assert_eq!(got_len, want_len, "cache length at {reason:?}");
            assert_eq!(e.ahead, want.tokens.len() - 1, "every step but the last submitted ahead");
        }

        // A stop string at the first new character from a third of the text on, then the
        // next turn on what the cache kept.
        let (mut e, t) = engine(64);
        let (full, _) = run(&mut e, &t, &[], &prompt, &params(true, 20, &[]));
        let text = &full.text;
        let stop = text
            .char_indices()
            .find(|&(i, c)| i >= text.len() / 3 && !text[..i].contains(c))
            .map(|(_, c)| c.to_string())
            .unwrap_or_else(|| panic!("no new character in the second part of {text:?}"));
        let mut turns = Vec::new();
        for sequential in [true, false] {
            e.truncate_cache(0);
            let (first, len) = run(&mut e, &t, &[], &prompt, &params(sequential, 20, std::slice::from_ref(&stop)));
            assert_eq!(first.stop_reason, StopReason::StopString);
            assert!((1..19).contains(&first.tokens.len()), "the stop is mid-way: {first:?}");
            let kept: Vec<u32> = prompt.iter().chain(&first.tokens).copied().take(len).collect();
            let (second, len2) = run(&mut e, &t, &kept, &prompt[1..3], &params(sequential, 8, &[]));
            turns.push((first.tokens, first.text, len, second.tokens, len2));
        }
        assert_eq!(turns[1], turns[0], "pipelined against sequential, stop {stop:?}");
    }
}

/// The chat turn every front end runs: a second turn that reuses the cached prefix ends with
/// the tokens of the same conversation run from an empty cache; a prompt too long is
/// refused (the API) or loses its oldest exchange (the chat UI).
#[test]
fn chat_turns_reuse_the_cache_as_a_fresh_run_would() {
    use hearth_model::chat::{ChatFormat, Conversation, Overflow, TurnError};
    use hearth_tokenizer::template::Message;

    let path = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tiny_gqa3_hd10_tied.gguf"));
    let bytes = std::fs::read(path).unwrap();
    let index = read_index(&bytes).unwrap();
    let conversation_of = || {
        let tokenizer = Tokenizer::from_gguf(&index).unwrap();
        Conversation::new(ChatFormat::from_gguf(&index, &tokenizer).unwrap(), tokenizer)
    };
    let params =
        GenerateParams { max_tokens: 12, sampling: SamplingParams::greedy(), stop: Vec::new(), sequential: false };
    let mut conversation = vec![Message::system("be brief"), Message::user("hello there")];

    for sequential in [false, true] {
        let params = GenerateParams { sequential, ..params.clone() };
        let (mut e, _) = engine(400);
        let mut chat = conversation_of();
        let first =
            chat.reply_blocking(&mut e, &conversation, &params, Overflow::Refuse, &mut |_| {}, &|| false).unwrap();
        assert_eq!((first.cached_tokens, first.dropped), (0, 0));
        let mut messages = conversation.clone();
        messages.push(Message::assistant(first.generation.text.clone()));
        messages.push(Message::user("and again"));
        let second = chat.reply_blocking(&mut e, &messages, &params, Overflow::Refuse, &mut |_| {}, &|| false).unwrap();
        assert!(second.cached_tokens > first.prompt_tokens / 2, "little reused: {second:?}");

        let (mut fresh_engine, _) = engine(400);
        let fresh = conversation_of()
            .reply_blocking(&mut fresh_engine, &messages, &params, Overflow::Refuse, &mut |_| {}, &|| false)
            .unwrap();
        assert_eq!(fresh.cached_tokens, 0);
        assert_eq!(fresh.prompt_tokens, second.prompt_tokens);
        assert_eq!(fresh.generation.tokens, second.generation.tokens, "sequential: {sequential}");
        assert_eq!(fresh_engine.cache_len(), e.cache_len());
        if sequential {
            conversation = messages;
        }
    }

    // A context the whole conversation does not fit.
    let (mut e, t) = engine(400);
    let long: Vec<Message> = conversation.iter().cycle().take(4 * conversation.len()).cloned().collect();
    let all = conversation_of().format.tokenize(&t, &long).unwrap().len();
    let (mut small, _) = engine(all - 3);
    let mut chat = conversation_of();
    match chat.reply_blocking(&mut small, &long, &params, Overflow::Refuse, &mut |_| {}, &|| false) {
        Err(TurnError::TooLong { prompt_tokens, capacity }) => {
            assert_eq!((prompt_tokens, capacity), (Some(all), all - 3))
        }
        other => panic!("expected TooLong, got {other:?}"),
    }
    assert_eq!(small.cache_len(), 0, "a refused turn runs nothing");
    let dropped =
        chat.reply_blocking(&mut small, &long, &params, Overflow::DropOldest, &mut |_| {}, &|| false).unwrap();
    assert!(dropped.dropped >= 2 && dropped.prompt_tokens < all, "{dropped:?}");
    let alone = chat.reply_blocking(&mut e, &long[..1], &params, Overflow::Refuse, &mut |_| {}, &|| false).unwrap();
    assert_eq!(alone.cached_tokens, 0, "another engine's cache is not this one's");
}
