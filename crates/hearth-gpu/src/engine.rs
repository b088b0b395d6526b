//! [`GpuEngine`]: the GPU model behind `hearth_model::Engine`, so generation, chat and
//! perplexity drive it as they drive the CPU reference.
//!
//! A step (one decoded token, or a prefill batch of up to `batch` tokens) is one
//! `write_buffer` of parameters and ids, one command encoder and one submit. Decoding reads
//! back only the sampled id (4 bytes) when the device can sample as asked.
//!
//! Decode can be pipelined ([`GpuEngine::submit`], [`GpuEngine::read_sampled_async`],
//! [`GpuEngine::cancel`]): the next step runs on the token the previous one sampled, read
//! where it was sampled, before the host has seen it (see `hearth_model::generate_async`).
//!
//! The engine is async at its core ([`GpuEngine::forward_async`],
//! [`GpuEngine::forward_and_sample_async`]): in the browser a readback is a promise. The
//! synchronous `Engine` trait, for the CLI and native tests, blocks on the same futures.

use std::collections::VecDeque;
use std::sync::Arc;

use hearth_gguf::{GgufIndex, TensorSource};
#[cfg(not(target_arch = "wasm32"))]
use hearth_model::{Config, Engine, EngineStats, Pipelined};
use hearth_model::{Feed, Logits, ModelError, Sampler, SamplingParams, Steps};

use crate::buffers::read_mapped;
use crate::model::{GpuModel, Head};
use crate::ops::{sample, Profile};
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
    /// Positions filled in the KV cache, including those of steps in flight.
    len: usize,
    stats: StepStats,
    /// The last call that decoded a single token.
    decode_stats: StepStats,
    /// Pipelined steps submitted and not yet read, oldest first.
    in_flight: VecDeque<InFlight>,
    /// Whether `sampled` holds the token of the newest step, so a step can run on it.
    sampled_ready: bool,
    submitted_ahead: u64,
}

/// A pipelined step whose token is not read yet.
struct InFlight {
    /// Which `token_readback` buffer its token is copied to.
    readback: usize,
    index: wgpu::SubmissionIndex,
    /// The cache length before it.
    before: usize,
    stats: StepStats,
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
        Ok(GpuEngine {
            gpu,
            model,
            len: 0,
            stats: StepStats::default(),
            decode_stats: StepStats::default(),
            in_flight: VecDeque::new(),
            sampled_ready: false,
            submitted_ahead: 0,
        })
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
        if !self.in_flight.is_empty() {
            return Err(ModelError::Backend("a pipelined step is still in flight: read or cancel it first".into()));
        }
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

    /// Records and submits one batch: `tokens`, or with `tokens` empty the one token the
    /// previous step left in `sampled` (copied into the ids on the device). The logits of
    /// `head` go to `logits_readback`; a sampled id to `token_readback[readback]`.
    fn submit_batch(
        &mut self,
        tokens: &[u32],
        head: Head,
        sample: Option<sample::Params>,
        readback: usize,
    ) -> Result<wgpu::SubmissionIndex, GpuError> {
        let a = &self.model.act;
        let (n, start) = (tokens.len().max(1), self.len);
        let step = Step { n, start, rope: &self.model.rope, sample };
        self.model.step.write(&self.gpu, &step, tokens);
        let mut enc = self.gpu.device.create_command_encoder(&Default::default());
        if tokens.is_empty() {
            enc.copy_buffer_to_buffer(&a.sampled, 0, self.model.step.ids().buffer, 0, Some(4));
        }
        let (dispatches, weight_bytes) = self.model.record(&mut enc, &step, head, None)?;
        self.stats.dispatches += dispatches;
        self.stats.weight_bytes += weight_bytes;
        let bytes = self.logit_bytes(n, head);
        if bytes > 0 {
            enc.copy_buffer_to_buffer(&a.logits, 0, &a.logits_readback, 0, Some(bytes));
        }
        if matches!(head, Head::Argmax | Head::Sample) {
            enc.copy_buffer_to_buffer(&a.sampled, 0, &a.token_readback[readback], 0, Some(8));
        }
        let index = self.gpu.queue.submit([enc.finish()]);
        self.stats.submits += 1;
        self.len += n;
        self.sampled_ready = matches!(head, Head::Argmax | Head::Sample);
        Ok(index)
    }

    /// Bytes of logits a batch of `n` with `head` reads back.
    fn logit_bytes(&self, n: usize, head: Head) -> u64 {
        let vocab = self.model.config.vocab_size;
        match head {
            Head::All => 4 * (n * vocab) as u64,
            Head::Last => 4 * vocab as u64,
            Head::None | Head::Argmax | Head::Sample => 0,
        }
    }

    /// Submits `tokens` in batches; the last gets `head`, earlier ones none (or, for All,
    /// their logits too). Returns the submission of the last batch.
    fn submit_batches(
        &mut self,
        tokens: &[u32],
        head: Head,
        sample: Option<sample::Params>,
        readback: usize,
    ) -> Result<wgpu::SubmissionIndex, GpuError> {
        let n_batches = tokens.len().div_ceil(self.model.batch);
        let mut index = None;
        for (i, batch) in tokens.chunks(self.model.batch).enumerate() {
            let head = if i + 1 == n_batches || head == Head::All { head } else { Head::None };
            index = Some(self.submit_batch(batch, head, sample, readback)?);
        }
        Ok(index.expect("tokens are checked to be non-empty"))
    }

    /// Runs `tokens`, reading back the logits `head` asks for, and leaves a sampled id in
    /// `token_readback[0]` for Argmax / Sample.
    async fn run(&mut self, tokens: &[u32], head: Head, sample: Option<sample::Params>) -> Result<Vec<f32>, GpuError> {
        let mut logits = Vec::new();
        self.stats = StepStats { tokens: tokens.len(), ..StepStats::default() };
        // Each batch overwrites the logits: those of every position come back batch by batch.
        let part = if head == Head::All { self.model.batch } else { tokens.len() };
        for part in tokens.chunks(part) {
            let index = self.submit_batches(part, head, sample, 0)?;
            let bytes = self.logit_bytes(part.len(), head);
            if bytes > 0 {
                let back = read_mapped(&self.gpu, &self.model.act.logits_readback, bytes, Some(index)).await?;
                // By value: a Vec<u8> need not be aligned for f32.
                logits.extend(back.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])));
                self.stats.readback_bytes += bytes as usize;
            }
        }
        Ok(logits)
    }

    async fn read_token(&mut self, readback: usize, after: Option<wgpu::SubmissionIndex>) -> Result<u32, GpuError> {
        let back = read_mapped(&self.gpu, &self.model.act.token_readback[readback], 4, after).await?;
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
        if head == Head::All {
            self.model.all_logits(&self.gpu).await.map_err(backend)?;
        }
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
        let (head, params) = self.device_head(sampler);
        let out = match self.run(tokens, head, params).await {
            Ok(_) => self.read_token(0, None).await,
            Err(e) => Err(e),
        };
        if out.is_ok() {
            self.stats.readback_bytes += 4;
        }
        self.finish(before, out)
    }

    /// How the device picks the next token for `sampler` (which must pass
    /// `sample::Params::supports`): argmax, or sampling with the sampler's next draw.
    fn device_head(&self, sampler: &mut Sampler) -> (Head, Option<sample::Params>) {
        let p = sampler.params();
        if p.temperature <= 0.0 {
            return (Head::Argmax, None);
        }
        let s = sample::Params::sample(self.model.config.vocab_size as u32, p, 0.0);
        (Head::Sample, Some(sample::Params { u: sampler.next_uniform(), ..s }))
    }

    /// Whether decode can be pipelined with `params`: the device samples them.
    pub fn pipelines(&self, params: &SamplingParams) -> bool {
        sample::Params::supports(params)
    }

    /// Submits a step on `feed` that samples on the device, without waiting: its token is
    /// read by [`GpuEngine::read_sampled_async`], and a [`Feed::Sampled`] step may follow at
    /// once, reading that token where it was sampled. At most two steps are in flight, each
    /// with its own readback buffer; the step parameters need no second buffer, since
    /// `queue.write_buffer` is ordered after the submits before it.
    pub fn submit(&mut self, feed: Feed<'_>, sampler: &mut Sampler) -> Result<(), ModelError> {
        if !self.pipelines(sampler.params()) {
            return Err(ModelError::Backend("a repetition penalty samples on the host: decode sequentially".into()));
        }
        if self.in_flight.len() >= 2 {
            return Err(ModelError::Backend("two steps are already in flight: read one first".into()));
        }
        let tokens = match feed {
            Feed::Tokens(tokens) => {
                self.check(tokens)?;
                tokens
            }
            Feed::Sampled if !self.sampled_ready => {
                return Err(ModelError::Backend("no sampled token to feed: the last step did not sample".into()));
            }
            Feed::Sampled if self.len >= self.model.context => {
                return Err(ModelError::ContextFull { needed: self.len + 1, max: self.model.context });
            }
            Feed::Sampled => &[],
        };
        let (head, params) = self.device_head(sampler);
        // The buffer the step in flight (if any) does not use.
        let readback = self.in_flight.front().map_or(0, |f| 1 - f.readback);
        if !self.in_flight.is_empty() {
            self.submitted_ahead += 1;
        }
        let before = self.len;
        self.stats = StepStats { tokens: tokens.len().max(1), ..StepStats::default() };
        let submitted = match tokens {
            [] => self.submit_batch(&[], head, params, readback),
            _ => self.submit_batches(tokens, head, params, readback),
        };
        let index = match submitted {
            Ok(index) => index,
            Err(e) => {
                self.len = before;
                return Err(backend(e));
            }
        };
        self.in_flight.push_back(InFlight { readback, index, before, stats: self.stats });
        Ok(())
    }

    /// Waits for the oldest step in flight and returns the token it sampled. On failure
    /// every step in flight is dropped and the cache rolls back to before them.
    pub async fn read_sampled_async(&mut self) -> Result<u32, ModelError> {
        let Some(step) = self.in_flight.pop_front() else {
            return Err(ModelError::Backend("no step in flight to read".into()));
        };
        match self.read_token(step.readback, Some(step.index)).await {
            Ok(id) => {
                self.stats = StepStats { readback_bytes: 4, ..step.stats };
                if self.stats.tokens == 1 {
                    self.decode_stats = self.stats;
                }
                Ok(id)
            }
            Err(e) => {
                self.len = step.before;
                self.in_flight.clear();
                self.sampled_ready = false;
                Err(backend(e))
            }
        }
    }

    /// Drops the newest step in flight and the positions it filled (its token is never
    /// read; what it wrote past the cache's end is overwritten before it is read).
    pub fn cancel(&mut self) {
        if let Some(step) = self.in_flight.pop_back() {
            self.len = step.before;
            self.sampled_ready = false;
        }
    }

    /// GPU time per kernel family of a greedy decode step on `token` at the cache's end,
    /// averaged over `steps` steps, in the order the families run; the cache is left as it
    /// was. `None` where the device has no timestamps inside passes (open it with
    /// `GpuOptions::timestamps`).
    pub async fn profile_decode_async(
        &mut self,
        token: u32,
        steps: usize,
    ) -> Result<Option<Vec<(&'static str, f64)>>, ModelError> {
        let needed = wgpu::Features::TIMESTAMP_QUERY | wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES;
        if !self.gpu.device.features().contains(needed) {
            return Ok(None);
        }
        self.check(&[token])?;
        let (before, period) = (self.len, f64::from(self.gpu.queue.get_timestamp_period()) * 1e-9);
        let mut totals: Vec<(&'static str, f64)> = Vec::new();
        for _ in 0..steps.max(1) {
            let mut profile = Profile::new(&self.gpu.device);
            let step = Step { n: 1, start: self.len, rope: &self.model.rope, sample: None };
            self.model.step.write(&self.gpu, &step, &[token]);
            let mut enc = self.gpu.device.create_command_encoder(&Default::default());
            self.model.record(&mut enc, &step, Head::Argmax, Some(&mut profile)).map_err(backend)?;
            let n = profile.spans.len() as u64;
            let usage = wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC;
            let desc = wgpu::BufferDescriptor { label: Some("profile"), size: 8 * n, usage, mapped_at_creation: false };
            let resolved = self.gpu.device.create_buffer(&desc);
            let usage = wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST;
            let staging = self.gpu.device.create_buffer(&wgpu::BufferDescriptor { usage, ..desc });
            enc.resolve_query_set(&profile.queries, 0..n as u32, &resolved, 0);
            enc.copy_buffer_to_buffer(&resolved, 0, &staging, 0, Some(8 * n));
            let index = self.gpu.queue.submit([enc.finish()]);
            let bytes = read_mapped(&self.gpu, &staging, 8 * n, Some(index)).await.map_err(backend)?;
            let ticks: Vec<u64> = bytes.chunks_exact(8).map(|b| u64::from_le_bytes(b.try_into().unwrap())).collect();
            for (i, family) in profile.spans.iter().enumerate().take(ticks.len().saturating_sub(1)) {
                let secs = ticks[i + 1].saturating_sub(ticks[i]) as f64 * period;
                match totals.iter_mut().find(|(f, _)| f == family) {
                    Some((_, t)) => *t += secs,
                    None => totals.push((family, secs)),
                }
            }
        }
        self.len = before;
        self.sampled_ready = false;
        let steps = steps.max(1) as f64;
        Ok(Some(totals.into_iter().map(|(f, t)| (f, t / steps)).collect()))
    }

    /// Steps submitted while an earlier step's token was still unread: the pipelining at
    /// work, counted since load.
    pub fn submitted_ahead(&self) -> u64 {
        self.submitted_ahead
    }

    /// Positions filled in the KV cache.
    pub fn cache_len(&self) -> usize {
        self.len
    }

    /// Forgets positions from `len` on (a chat turn keeps the prefix it shares). Positions
    /// past `len` are overwritten before attention reads them again.
    pub fn truncate_cache(&mut self, len: usize) {
        if len < self.len {
            self.len = len;
            self.sampled_ready = false;
        }
        self.in_flight.clear();
    }
}

/// A GPU error as the model's error: a lost device stays typed (front ends re-open the device
/// on it, without reading messages).
fn backend(e: GpuError) -> ModelError {
    match e {
        GpuError::DeviceLost(why) => ModelError::DeviceLost(why),
        other => ModelError::Backend(other.to_string()),
    }
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
        EngineStats {
            dispatches_per_token: s.dispatches as f64,
            submits_per_token: s.submits as f64,
            pipelines: self.gpu.pipelines_built(),
        }
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

    fn pipelined(&mut self) -> Option<&mut dyn Pipelined> {
        Some(self)
    }

    fn profile(&mut self, token: u32, steps: usize) -> Result<Option<Vec<(String, f64)>>, ModelError> {
        let profile = pollster::block_on(self.profile_decode_async(token, steps))?;
        Ok(profile.map(|p| p.into_iter().map(|(f, t)| (f.to_string(), t)).collect()))
    }
}

#[cfg(not(target_arch = "wasm32"))]
impl Pipelined for GpuEngine {
    fn pipelines(&self, params: &SamplingParams) -> bool {
        GpuEngine::pipelines(self, params)
    }

    fn submit(&mut self, feed: Feed<'_>, sampler: &mut Sampler) -> Result<(), ModelError> {
        GpuEngine::submit(self, feed, sampler)
    }

    fn read_sampled(&mut self) -> Result<u32, ModelError> {
        pollster::block_on(self.read_sampled_async())
    }

    fn cancel(&mut self) {
        GpuEngine::cancel(self)
    }
}

/// The generation loop's calls, awaited (the browser) or blocked on (through `Engine`).
impl Steps for GpuEngine {
    fn cache_len(&self) -> usize {
        self.len
    }

    fn cache_capacity(&self) -> usize {
        self.model.context
    }

    fn truncate_cache(&mut self, len: usize) {
        GpuEngine::truncate_cache(self, len)
    }

    async fn prefill(&mut self, tokens: &[u32]) -> Result<(), ModelError> {
        self.forward_async(tokens, Logits::Last).await.map(drop)
    }

    async fn forward_and_sample(
        &mut self,
        tokens: &[u32],
        sampler: &mut Sampler,
        history: &[u32],
    ) -> Result<u32, ModelError> {
        self.forward_and_sample_async(tokens, sampler, history).await
    }

    fn pipelines(&mut self, params: &SamplingParams) -> bool {
        GpuEngine::pipelines(self, params)
    }

    fn submit(&mut self, feed: Feed<'_>, sampler: &mut Sampler) -> Result<(), ModelError> {
        GpuEngine::submit(self, feed, sampler)
    }

    async fn read_sampled(&mut self) -> Result<u32, ModelError> {
        self.read_sampled_async().await
    }

    fn cancel(&mut self) {
        GpuEngine::cancel(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lost_device_stays_typed() {
        assert!(matches!(backend(GpuError::DeviceLost("reset".into())), ModelError::DeviceLost(w) if w == "reset"));
        assert!(matches!(backend(GpuError::Readback("lost in thought".into())), ModelError::Backend(_)));
    }
}
