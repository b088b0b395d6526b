//! What generation, chat and perplexity need from a backend, so the same loop drives the
//! CPU reference and the GPU engine.
//!
//! Two faces: [`Engine`], synchronous and object-safe (the CLI, native tests, perplexity),
//! and [`Steps`], the async calls the one generation loop makes (`generate_async`), which
//! the GPU engine implements directly for the browser and [`Blocking`] provides over any
//! `Engine`.

use crate::{Config, KvCache, Logits, Model, ModelError, Sampler, SamplingParams};

/// Work done per decoded token, for `hearth bench`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct EngineStats {
    /// Kernel launches per decoded token (0 where the backend has none).
    pub dispatches_per_token: f64,
    /// Queue submits per decoded token.
    pub submits_per_token: f64,
    /// Compute pipelines built at load (0 where the backend has none).
    pub pipelines: usize,
}

pub trait Engine {
    fn config(&self) -> &Config;
    /// Positions held in the KV cache.
    fn cache_len(&self) -> usize;
    /// Most positions the cache holds.
    fn cache_capacity(&self) -> usize;
    /// Forgets positions from `len` on (a chat turn keeps the prefix it shares).
    fn truncate_cache(&mut self, len: usize);
    /// Runs `tokens` at positions `cache_len()..` and returns logits (vocab per selected
    /// position, position-major).
    fn forward(&mut self, tokens: &[u32], which: Logits) -> Result<Vec<f32>, ModelError>;
    /// Counters from the last decoded token.
    fn stats(&self) -> EngineStats {
        EngineStats::default()
    }
    /// Bytes of K and V that one cached position holds over all layers: what attention reads
    /// per position for each decoded token. The CPU reference caches f32.
    fn kv_bytes_per_position(&self) -> u64 {
        let c = self.config();
        2 * c.n_layers as u64 * c.kv_dim() as u64 * 4
    }
    /// Runs `tokens` and picks the next token. By default the last logits are read back and
    /// sampled on the CPU; a GPU engine samples on the device and reads back 4 bytes.
    fn forward_and_sample(
        &mut self,
        tokens: &[u32],
        sampler: &mut Sampler,
        history: &[u32],
    ) -> Result<u32, ModelError> {
        let logits = self.forward(tokens, Logits::Last)?;
        Ok(sampler.sample(&logits, history))
    }
    /// GPU seconds per kernel family of a decode step on `token` at the cache's end (mean of
    /// `steps`), where the backend can time its kernels; the cache is left as it was.
    fn profile(&mut self, _token: u32, _steps: usize) -> Result<Option<Vec<(String, f64)>>, ModelError> {
        Ok(None)
    }
    /// The pipelined decode calls, where the backend has them (a GPU that samples on the
    /// device).
    fn pipelined(&mut self) -> Option<&mut dyn Pipelined> {
        None
    }
}

/// What a pipelined step runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feed<'a> {
    /// These tokens (a prompt).
    Tokens(&'a [u32]),
    /// The one token the previous step sampled, read where it was sampled: the host has not
    /// seen it yet.
    Sampled,
}

/// Pipelined decode: a step is submitted before the previous step's token is read back, so
/// the device never waits for the host between tokens. At most two steps are in flight.
pub trait Pipelined {
    /// Whether steps can sample with `params` where they run (a repetition penalty needs
    /// the history on the host, so decode then stays sequential).
    fn pipelines(&self, params: &SamplingParams) -> bool;
    /// Submits a step on `feed` that samples its next token, without waiting. The cache
    /// grows by the step's tokens at once.
    fn submit(&mut self, feed: Feed<'_>, sampler: &mut Sampler) -> Result<(), ModelError>;
    /// Waits for the oldest step in flight and returns the token it sampled.
    fn read_sampled(&mut self) -> Result<u32, ModelError>;
    /// Drops the newest step in flight and the positions it filled: the token it ran on was
    /// a stop, so it should not have run.
    fn cancel(&mut self);
}

/// The calls the generation loop makes, async so that the browser's engine awaits its
/// readbacks while the sync front ends block ([`Blocking`]). Single-threaded: a browser
/// engine is not `Send`, so the futures need not be either.
#[allow(async_fn_in_trait)]
pub trait Steps {
    fn cache_len(&self) -> usize;
    fn cache_capacity(&self) -> usize;
    /// [`Engine::truncate_cache`].
    fn truncate_cache(&mut self, len: usize);
    /// Runs `tokens` and discards the logits (a prompt with nothing to generate).
    async fn prefill(&mut self, tokens: &[u32]) -> Result<(), ModelError>;
    /// Runs `tokens` and picks the next token, waiting for it.
    async fn forward_and_sample(
        &mut self,
        tokens: &[u32],
        sampler: &mut Sampler,
        history: &[u32],
    ) -> Result<u32, ModelError>;
    /// [`Pipelined::pipelines`]; false where the backend cannot pipeline.
    fn pipelines(&mut self, params: &SamplingParams) -> bool;
    /// [`Pipelined::submit`].
    fn submit(&mut self, feed: Feed<'_>, sampler: &mut Sampler) -> Result<(), ModelError>;
    /// [`Pipelined::read_sampled`].
    async fn read_sampled(&mut self) -> Result<u32, ModelError>;
    /// [`Pipelined::cancel`].
    fn cancel(&mut self);
}

/// Any [`Engine`] as [`Steps`]: each call blocks, so each future is ready when first polled.
pub struct Blocking<'a>(pub &'a mut dyn Engine);

impl Blocking<'_> {
    fn pipe(&mut self) -> Result<&mut dyn Pipelined, ModelError> {
        self.0.pipelined().ok_or_else(|| ModelError::Backend("this backend does not pipeline decode".into()))
    }
}

impl Steps for Blocking<'_> {
    fn cache_len(&self) -> usize {
        self.0.cache_len()
    }
    fn cache_capacity(&self) -> usize {
        self.0.cache_capacity()
    }
    fn truncate_cache(&mut self, len: usize) {
        self.0.truncate_cache(len)
    }
    async fn prefill(&mut self, tokens: &[u32]) -> Result<(), ModelError> {
        self.0.forward(tokens, Logits::Last).map(drop)
    }
    async fn forward_and_sample(
        &mut self,
        tokens: &[u32],
        sampler: &mut Sampler,
        history: &[u32],
    ) -> Result<u32, ModelError> {
        self.0.forward_and_sample(tokens, sampler, history)
    }
    fn pipelines(&mut self, params: &SamplingParams) -> bool {
        self.0.pipelined().is_some_and(|p| p.pipelines(params))
    }
    fn submit(&mut self, feed: Feed<'_>, sampler: &mut Sampler) -> Result<(), ModelError> {
        self.pipe()?.submit(feed, sampler)
    }
    async fn read_sampled(&mut self) -> Result<u32, ModelError> {
        self.pipe()?.read_sampled()
    }
    fn cancel(&mut self) {
        if let Some(p) = self.0.pipelined() {
            p.cancel();
        }
    }
}

/// The f32 CPU reference as an [`Engine`].
pub struct CpuEngine {
    pub model: Model,
    pub cache: KvCache,
}

impl CpuEngine {
    pub fn new(model: Model, context: usize) -> Self {
        let cache = model.new_cache(context);
        CpuEngine { model, cache }
    }
}

impl Engine for CpuEngine {
    fn config(&self) -> &Config {
        &self.model.config
    }
    fn cache_len(&self) -> usize {
        self.cache.len()
    }
    fn cache_capacity(&self) -> usize {
        self.cache.capacity()
    }
    fn truncate_cache(&mut self, len: usize) {
        self.cache.truncate(len);
    }
    fn forward(&mut self, tokens: &[u32], which: Logits) -> Result<Vec<f32>, ModelError> {
        self.model.forward(&mut self.cache, tokens, which)
    }
}
