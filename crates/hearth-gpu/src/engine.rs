//! [`GpuEngine`]: the GPU model behind `hearth_model::Engine`, so generation, chat and
//! perplexity drive it as they drive the CPU reference.
//!
//! A step (one decoded token, or a prefill batch of up to `batch` tokens) is one
//! `write_buffer` of parameters and ids, one command encoder and one submit. Decoding reads
//! back only the sampled id (4 bytes) when the device can sample as asked.
//!
//! The engine is async at its core ([`GpuEngine::forward_async`],
//! [`GpuEngine::forward_and_sample_async`]): in the browser a readback is a promise. The
//! synchronous `Engine` trait, for the CLI and native tests, blocks on the same futures.

use std::sync::Arc;

use hearth_gguf::{GgufIndex, TensorSource};
#[cfg(not(target_arch = "wasm32"))]
use hearth_model::{Config, Engine, EngineStats};
use hearth_model::{Logits, ModelError, Sampler};

use crate::buffers::read_mapped;
use crate::model::{GpuModel, Head};
use crate::ops::sample;
use crate::step::Step;
use crate::{Gpu, GpuError};

/// Work done by the last `forward` / `forward_and_sample` call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StepStats {
    pub tokens: usize,
    pub dispatches: usize,
    pub submits: usize,
    /// Bytes read back from the device.
    pub readback_bytes: usize,
    /// Bytes of weight matrices bound to the matmul dispatches (each matrix, or each part of
    /// a split one, counted once per dispatch that reads it).
    pub weight_bytes: u64,
}

pub struct GpuEngine {
    gpu: Arc<Gpu>,
    pub model: GpuModel,
    /// Positions filled in the KV cache.
    len: usize,
    stats: StepStats,
    /// The last call that decoded a single token.
    decode_stats: StepStats,
}

impl GpuEngine {
    /// See [`GpuModel::load`].
    pub async fn load_async<S: TensorSource + ?Sized>(
        gpu: Arc<Gpu>,
        index: &GgufIndex,
        src: &S,
        context: usize,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<Self, GpuError> {
        let model = GpuModel::load(&gpu, index, src, context, progress).await?;
        Ok(GpuEngine { gpu, model, len: 0, stats: StepStats::default(), decode_stats: StepStats::default() })
    }

    /// [`GpuEngine::load_async`], blocking (native only).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn load<S: TensorSource + ?Sized>(
        gpu: Arc<Gpu>,
        index: &GgufIndex,
        src: &S,
        context: usize,
    ) -> Result<Self, GpuError> {
        pollster::block_on(Self::load_async(gpu, index, src, context, &mut |_, _| {}))
    }

    /// Dispatches, submits and readback of the last call (per token when it decoded one).
    pub fn last_call(&self) -> StepStats {
        self.stats
    }

    pub fn gpu(&self) -> &Gpu {
        &self.gpu
    }

    /// Checks a batch before anything is uploaded: the errors the CPU reference gives.
    fn check(&self, tokens: &[u32]) -> Result<(), ModelError> {
        if tokens.is_empty() {
            return Err(ModelError::EmptyInput);
        }
        let needed = self.len + tokens.len();
        if needed > self.model.context {
            return Err(ModelError::ContextFull { needed, max: self.model.context });
        }
        let n_vocab = self.model.config.vocab_size;
        if let Some(&id) = tokens.iter().find(|&&t| t as usize >= n_vocab) {
            return Err(ModelError::BadToken { id, n_vocab });
        }
        Ok(())
    }

    /// Runs `tokens` in batches; the last gets `head`, earlier ones none (or, for All, their
    /// logits too). Returns the logits read back, if any, and leaves a sampled id in
    /// `sampled` for Argmax / Sample.
    async fn run(&mut self, tokens: &[u32], head: Head, sample: Option<sample::Params>) -> Result<Vec<f32>, GpuError> {
        let vocab = self.model.config.vocab_size;
        let mut logits = Vec::new();
        self.stats = StepStats { tokens: tokens.len(), ..StepStats::default() };
        let batches = tokens.chunks(self.model.batch);
        let n_batches = batches.len();
        for (i, batch) in batches.enumerate() {
            let head = match head {
                Head::All => Head::All,
                _ if i + 1 == n_batches => head,
                _ => Head::None,
            };
            let (n, start) = (batch.len(), self.len);
            let step = Step { n, start, rope: &self.model.rope, sample };
            self.model.step.write(&self.gpu, &step, batch);
            let mut enc = self.gpu.device.create_command_encoder(&Default::default());
            let (dispatches, weight_bytes) = self.model.record(&mut enc, &step, head);
            self.stats.dispatches += dispatches;
            self.stats.weight_bytes += weight_bytes;
            let a = &self.model.act;
            let bytes = match head {
                Head::All => 4 * (n * vocab) as u64,
                Head::Last => 4 * vocab as u64,
                Head::None | Head::Argmax | Head::Sample => 0,
            };
            if bytes > 0 {
                enc.copy_buffer_to_buffer(&a.logits, 0, &a.logits_readback, 0, Some(bytes));
            }
            if matches!(head, Head::Argmax | Head::Sample) {
                enc.copy_buffer_to_buffer(&a.sampled, 0, &a.token_readback, 0, Some(8));
            }
            self.gpu.queue.submit([enc.finish()]);
            self.stats.submits += 1;
            self.len += n;
            if bytes > 0 {
                let back = read_mapped(&self.gpu, &a.logits_readback, bytes).await?;
                logits.extend(bytemuck::cast_slice::<u8, f32>(&back));
                self.stats.readback_bytes += bytes as usize;
            }
        }
        Ok(logits)
    }

    async fn read_token(&mut self) -> Result<u32, GpuError> {
        let back = read_mapped(&self.gpu, &self.model.act.token_readback, 4).await?;
        self.stats.readback_bytes += 4;
        Ok(u32::from_le_bytes([back[0], back[1], back[2], back[3]]))
    }

    /// Ends a call: on failure the cache rolls back to `before` (its new positions are not
    /// valid); a call that decoded one token keeps its counters.
    fn finish<T>(&mut self, before: usize, out: Result<T, GpuError>) -> Result<T, ModelError> {
        match out {
            Ok(v) => {
                if self.stats.tokens == 1 {
                    self.decode_stats = self.stats;
                }
                Ok(v)
            }
            Err(e) => {
                self.len = before;
                Err(backend(e))
            }
        }
    }

    /// Runs `tokens` at positions `cache_len()..` and returns logits (vocab per selected
    /// position, position-major).
    pub async fn forward_async(&mut self, tokens: &[u32], which: Logits) -> Result<Vec<f32>, ModelError> {
        self.check(tokens)?;
        let head = match which {
            Logits::Last => Head::Last,
            Logits::All => Head::All,
        };
        let before = self.len;
        let out = self.run(tokens, head, None).await;
        self.finish(before, out)
    }

    /// Runs `tokens` and picks the next token, on the device when it can sample as asked
    /// (4 bytes read back), else from the last logits on the CPU.
    pub async fn forward_and_sample_async(
        &mut self,
        tokens: &[u32],
        sampler: &mut Sampler,
        history: &[u32],
    ) -> Result<u32, ModelError> {
        self.check(tokens)?;
        let p = sampler.params();
        let before = self.len;
        if !sample::Params::supports(p) {
            // The repetition penalty needs the history: sample on the CPU.
            let out = self.run(tokens, Head::Last, None).await;
            let logits = self.finish(before, out)?;
            return Ok(sampler.sample(&logits, history));
        }
        let vocab = self.model.config.vocab_size as u32;
        let (head, params) = if p.temperature <= 0.0 {
            (Head::Argmax, None)
        } else {
            let s = sample::Params::sample(vocab, p, 0.0);
            (Head::Sample, Some(sample::Params { u: sampler.next_uniform(), ..s }))
        };
        let out = match self.run(tokens, head, params).await {
            Ok(_) => self.read_token().await,
            Err(e) => Err(e),
        };
        self.finish(before, out)
    }

    /// Positions filled in the KV cache.
    pub fn cache_len(&self) -> usize {
        self.len
    }

    /// Forgets positions from `len` on (a chat turn keeps the prefix it shares). Positions
    /// past `len` are overwritten before attention reads them again.
    pub fn truncate_cache(&mut self, len: usize) {
        self.len = self.len.min(len);
    }
}

fn backend(e: GpuError) -> ModelError {
    ModelError::Backend(e.to_string())
}

/// The synchronous trait, for the CLI and native tests: blocks on the async core.
#[cfg(not(target_arch = "wasm32"))]
impl Engine for GpuEngine {
    fn config(&self) -> &Config {
        &self.model.config
    }

    fn cache_len(&self) -> usize {
        self.len
    }

    fn cache_capacity(&self) -> usize {
        self.model.context
    }

    fn truncate_cache(&mut self, len: usize) {
        GpuEngine::truncate_cache(self, len)
    }

    fn stats(&self) -> EngineStats {
        let s = self.decode_stats;
        EngineStats { dispatches_per_token: s.dispatches as f64, submits_per_token: s.submits as f64 }
    }

    /// The cache holds f16.
    fn kv_bytes_per_position(&self) -> u64 {
        let c = &self.model.config;
        2 * c.n_layers as u64 * c.kv_dim() as u64 * crate::KV_BYTES
    }

    fn forward(&mut self, tokens: &[u32], which: Logits) -> Result<Vec<f32>, ModelError> {
        pollster::block_on(self.forward_async(tokens, which))
    }

    fn forward_and_sample(
        &mut self,
        tokens: &[u32],
        sampler: &mut Sampler,
        history: &[u32],
    ) -> Result<u32, ModelError> {
        pollster::block_on(self.forward_and_sample_async(tokens, sampler, history))
    }
}
