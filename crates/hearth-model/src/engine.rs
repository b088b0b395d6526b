//! What generation, chat and perplexity need from a backend, so the same loop drives the
//! CPU reference and the GPU engine.

use crate::{Config, KvCache, Logits, Model, ModelError, Sampler};

/// Work done per decoded token, for `hearth bench`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct EngineStats {
    /// Kernel launches per decoded token (0 where the backend has none).
    pub dispatches_per_token: f64,
    /// Queue submits per decoded token.
    pub submits_per_token: f64,
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
