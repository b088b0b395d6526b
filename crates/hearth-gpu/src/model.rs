//! The Llama forward pass on the GPU, reading like the CPU reference
//! (`hearth_model::Model::forward`): embed → per layer {RMSNorm → Q/K/V → RoPE → KV write →
//! causal GQA → Wo → residual → RMSNorm → SwiGLU FFN → residual} → final RMSNorm → logits.
//!
//! Everything is allocated and bound at load; recording a step only chooses dispatch grids
//! for its `n` tokens. Activations are f32, the KV cache f16.

use hearth_gguf::{GgufIndex, TensorSource};
use hearth_model::ops::Rope as RopeSpec;
use hearth_model::Config;

use crate::binds::{max_dispatches, Binds, MatPart, Ops};
use crate::buffers::{kv_cache, Activations, KvLayer};
use crate::ops::{attention, rope, sample};
use crate::step::StepBuffer;
use crate::weights::GpuWeights;
use crate::{Gpu, GpuError, MemoryPlan};

/// Most tokens per prefill batch (and rows of logits per readback).
pub const MAX_BATCH: usize = 64;

pub struct GpuModel {
    pub config: Config,
    pub(crate) rope: RopeSpec,
    pub(crate) ops: Ops,
    /// Weights and KV cache: read only through `binds`, held here with the model.
    #[allow(dead_code)]
    weights: GpuWeights,
    pub(crate) act: Activations,
    #[allow(dead_code)]
    kv: Vec<KvLayer>,
    pub(crate) step: StepBuffer,
    pub(crate) binds: Binds,
    /// Tokens per prefill batch.
    pub batch: usize,
    /// Positions the KV cache holds.
    pub context: usize,
}

/// What a step computes after the layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Head {
    /// Nothing: a prefill batch before the last.
    None,
    /// Logits of the last position (row 0 of `logits`).
    Last,
    /// Logits of every position of the batch.
    All,
    /// Logits of the last position, then the next token into `sampled` by argmax (greedy).
    Argmax,
    /// Logits of the last position, then the next token into `sampled` by the device
    /// sampler (temperature, top-k, top-p, min-p).
    Sample,
}

/// A compute pass that counts its dispatches (for `hearth bench`).
pub(crate) struct Pass<'a> {
    pub pass: wgpu::ComputePass<'a>,
    pub dispatches: usize,
}

impl GpuModel {
    /// Reads the config, checks the memory plan against the adapter's limits BEFORE
    /// uploading anything, then uploads the weights one tensor at a time and builds every
    /// pipeline and bind group. `context`: KV cache positions. `progress(done, total)` counts
    /// weight bytes uploaded.
    pub async fn load<S: TensorSource + ?Sized>(
        gpu: &Gpu,
        index: &GgufIndex,
        src: &S,
        context: usize,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<Self, GpuError> {
        let config = Config::from_gguf(index)?;
        let context = context.max(1);
        let batch = batch_size(gpu, &config);
        MemoryPlan::new(&config, index, context, batch).check(&gpu.limits)?;
        // The cache layout packs two f16 per word; the attention kernel says so if not.
        if config.kv_dim() % 2 != 0 {
            return Err(GpuError::Shader {
                kernel: "kv cache write".into(),
                message: format!("n_kv_heads · head_dim = {} must be even", config.kv_dim()),
            });
        }

        // Out-of-memory is reported through an error scope, not a failed call: catch it
        // around everything that allocates.
        let oom = gpu.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let weights = GpuWeights::load(gpu, &config, index, src, progress).await?;
        let rope = RopeSpec::llama(&config, weights.rope_freq_factors.clone());
        let ops = Ops::new(gpu, &config, &weights)?;
        let act = Activations::new(gpu, &config, batch);
        let kv = kv_cache(gpu, &config, context);
        let mut step = StepBuffer::new(gpu, max_dispatches(&weights), batch);
        let binds = Binds::new(gpu, &ops, &mut step, &config, &weights, &act, &kv);
        if let Some(e) = oom.pop().await {
            return Err(GpuError::OutOfMemory(e.to_string()));
        }
        gpu.check_pipelines().await?;
        Ok(GpuModel { config, rope, ops, weights, act, kv, step, binds, batch, context })
    }

    /// Records one step of `n` tokens at positions `start..`: the layers in one compute
    /// pass, then (unless `head` is None) the final norm and logits in a second.
    pub(crate) fn record(&self, enc: &mut wgpu::CommandEncoder, n: usize, start: usize, head: Head) -> usize {
        let mut pass = Pass { pass: enc.begin_compute_pass(&Default::default()), dispatches: 0 };
        self.record_layers(&mut pass, n as u32, start as u32);
        let mut dispatches = pass.dispatches;
        drop(pass);
        if head == Head::None {
            return dispatches;
        }
        let all = head == Head::All;
        if !all {
            // The last position's x, aside, so the head's bindings need no offset per step.
            let row = 4 * self.config.dim as u64;
            enc.copy_buffer_to_buffer(&self.act.x, (n as u64 - 1) * row, &self.act.x_last, 0, Some(row));
        }
        let mut pass = Pass { pass: enc.begin_compute_pass(&Default::default()), dispatches: 0 };
        let (h, rows) = if all { (&self.binds.all, n as u32) } else { (&self.binds.last, 1) };
        pass.norm(&self.ops, &h.norm, rows);
        pass.matmul(&self.ops, &h.output, rows);
        let b = &self.binds;
        match head {
            Head::Argmax => {
                let partials = sample::Params::argmax(self.config.vocab_size as u32).n_partials;
                self.ops.argmax.dispatch(&mut pass.pass, &b.argmax, partials);
                pass.dispatches += 2;
            }
            Head::Sample => {
                self.ops.sample.dispatch(&mut pass.pass, &b.sample);
                pass.dispatches += 1;
            }
            _ => {}
        }
        dispatches += pass.dispatches;
        dispatches
    }

    fn record_layers(&self, pass: &mut Pass, n: u32, start: u32) {
        let (c, ops, b) = (&self.config, &self.ops, &self.binds);
        // x: (n, dim) ← token embeddings, one dispatch per part of the table
        for embed in &b.embed {
            ops.embedding.dispatch(&mut pass.pass, embed, n);
            pass.dispatches += 1;
        }
        let rope_q = rope::Params::new(&self.rope, n, c.n_heads as u32, start);
        let rope_k = rope::Params::new(&self.rope, n, c.n_kv_heads as u32, start);
        let kv_write = attention::KvWriteParams { n_tokens: n, kv_dim: c.kv_dim() as u32, start, _pad: 0 };
        let att = attention::Params::new(n, c.n_heads as u32, c.n_kv_heads as u32, c.head_dim as u32, start);
        for l in &b.layers {
            // Attention block: x += Wo · attention(RoPE(Wq·norm(x)), RoPE(Wk·norm(x)), Wv·norm(x))
            pass.norm(ops, &l.attn_norm, n);
            pass.matmul(ops, &l.q, n);
            pass.matmul(ops, &l.k, n);
            pass.matmul(ops, &l.v, n);
            ops.rope.dispatch(&mut pass.pass, &l.rope_q, &rope_q);
            ops.rope.dispatch(&mut pass.pass, &l.rope_k, &rope_k);
            ops.kv_write.dispatch(&mut pass.pass, &l.kv_write, &kv_write);
            ops.attention.dispatch(&mut pass.pass, &l.attention, &att);
            pass.dispatches += 4;
            pass.matmul(ops, &l.wo, n);
            pass.elementwise(&ops.add, &b.add, n * c.dim as u32);

            // Feed-forward block: x += W_down · (silu(W_gate·norm(x)) ⊙ W_up·norm(x))
            pass.norm(ops, &l.ffn_norm, n);
            pass.matmul(ops, &l.gate, n);
            pass.matmul(ops, &l.up, n);
            pass.elementwise(&ops.swiglu, &b.swiglu, n * c.ffn_dim as u32);
            pass.matmul(ops, &l.down, n);
            pass.elementwise(&ops.add, &b.add, n * c.dim as u32);
        }
    }
}

impl Pass<'_> {
    fn norm(&mut self, ops: &Ops, bind: &wgpu::BindGroup, rows: u32) {
        ops.rmsnorm.dispatch(&mut self.pass, bind, rows);
        self.dispatches += 1;
    }

    fn matmul(&mut self, ops: &Ops, parts: &[MatPart], n: u32) {
        for p in parts {
            let bind = if n <= 1 { &p.decode } else { &p.prefill };
            ops.matmul(p.ty).dispatch(&mut self.pass, bind, p.rows, p.cols, n);
            self.dispatches += 1;
        }
    }

    fn elementwise(&mut self, op: &crate::ops::elementwise::Elementwise, bind: &wgpu::BindGroup, n: u32) {
        op.dispatch(&mut self.pass, bind, n);
        self.dispatches += 1;
    }
}

/// Tokens per prefill batch: [`MAX_BATCH`], fewer when a batch's widest activation (the
/// logits, usually) would pass one binding.
fn batch_size(gpu: &Gpu, c: &Config) -> usize {
    let limit = gpu.limits.max_storage_buffer_binding_size.min(gpu.limits.max_buffer_size);
    let widest = 4 * c.vocab_size.max(c.ffn_dim).max(c.q_dim()).max(c.dim) as u64;
    ((limit / widest) as usize).clamp(1, MAX_BATCH)
}
