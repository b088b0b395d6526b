//! [`GpuEngine`]: the GPU model behind `hearth_model::Engine`, so generation, chat and
//! perplexity drive it as they drive the CPU reference.
//!
//! A step (one decoded token, or a prefill batch of up to `batch` tokens) is one
//! `write_buffer` of parameters and ids, one command encoder and one submit. Decoding reads
//! back only the sampled id (4 bytes) when the device can sample as asked.

use std::sync::Arc;

use hearth_gguf::{GgufIndex, ReadAt};
use hearth_model::{Config, Engine, EngineStats, Logits, ModelError, Sampler};

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
    pub fn load<R: ReadAt + ?Sized>(
        gpu: Arc<Gpu>,
        index: &GgufIndex,
        src: &R,
        context: usize,
    ) -> Result<Self, GpuError> {
        let model = GpuModel::load(&gpu, index, src, context)?;
        Ok(GpuEngine { gpu, model, len: 0, stats: StepStats::default(), decode_stats: StepStats::default() })
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
    fn run(&mut self, tokens: &[u32], head: Head, sample: Option<sample::Params>) -> Result<Vec<f32>, GpuError> {
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
            self.stats.dispatches += self.model.record(&mut enc, n, start, head);
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
                let back = read_mapped(&self.gpu, &a.logits_readback, bytes)?;
                logits.extend(bytemuck::cast_slice::<u8, f32>(&back));
                self.stats.readback_bytes += bytes as usize;
            }
        }
        Ok(logits)
    }

    fn read_token(&mut self) -> Result<u32, GpuError> {
        let back = read_mapped(&self.gpu, &self.model.act.token_readback, 4)?;
        self.stats.readback_bytes += 4;
        Ok(u32::from_le_bytes([back[0], back[1], back[2], back[3]]))
    }

    /// Runs `f`, rolling the cache back when it fails (its positions are not valid), and
    /// keeps its counters when it decoded one token.
    fn guarded<T>(&mut self, f: impl FnOnce(&mut Self) -> Result<T, GpuError>) -> Result<T, ModelError> {
        let before = self.len;
        let out = f(self).map_err(|e| {
            self.len = before;
            backend(e)
        })?;
        if self.stats.tokens == 1 {
            self.decode_stats = self.stats;
        }
        Ok(out)
    }
}

fn backend(e: GpuError) -> ModelError {
    ModelError::Backend(e.to_string())
}

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
        // Positions past `len` are overwritten before attention reads them again.
        self.len = self.len.min(len);
    }

    fn stats(&self) -> EngineStats {
        let s = self.decode_stats;
        EngineStats { dispatches_per_token: s.dispatches as f64, submits_per_token: s.submits as f64 }
    }

    fn forward(&mut self, tokens: &[u32], which: Logits) -> Result<Vec<f32>, ModelError> {
        self.check(tokens)?;
        let head = match which {
            Logits::Last => Head::Last,
            Logits::All => Head::All,
        };
        self.guarded(|e| e.run(tokens, head, None))
    }

    fn forward_and_sample(
        &mut self,
        tokens: &[u32],
        sampler: &mut Sampler,
        history: &[u32],
    ) -> Result<u32, ModelError> {
        self.check(tokens)?;
        let p = sampler.params();
        if !sample::Params::supports(p) {
            // The repetition penalty needs the history: sample on the CPU.
            let logits = self.guarded(|e| e.run(tokens, Head::Last, None))?;
            return Ok(sampler.sample(&logits, history));
        }
        let vocab = self.model.config.vocab_size as u32;
        let (head, params) = if p.temperature <= 0.0 {
            (Head::Argmax, None)
        } else {
            let s = sample::Params::sample(vocab, p, 0.0);
            (Head::Sample, Some(sample::Params { u: sampler.next_uniform(), ..s }))
        };
        self.guarded(|e| {
            e.run(tokens, head, params)?;
            e.read_token()
        })
    }
}
