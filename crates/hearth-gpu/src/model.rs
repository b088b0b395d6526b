//! The Llama forward pass on the GPU, reading like the CPU reference
//! (`hearth_model::Model::forward`): embed → per layer {RMSNorm → Q/K/V → RoPE → KV write →
//! causal GQA → Wo → residual → RMSNorm → SwiGLU FFN → residual} → final RMSNorm → logits.
//! Fused into six dispatches a layer: each RMSNorm into the matmul after it, Q/K/V (and gate
//! and up) stacked into one matmul, the SwiGLU and the residual adds into matmul epilogues,
//! RoPE with the cache write (`ops::matmul::Fuse`, `weights::Proj`). Decode attention on GPUs
//! adds a seventh, the split-K merge, once the cache holds more than `attention::SPLIT`
//! positions.
//!
//! Everything is allocated and bound at load; recording a step only chooses dispatch grids
//! for its `n` tokens. Activations are f32, the KV cache f16.

use hearth_gguf::{GgufIndex, TensorSource};
use hearth_model::ops::Rope as RopeSpec;
use hearth_model::Config;

use crate::binds::{Binds, MatPart, Ops};
use crate::buffers::{kv_cache, Activations, KvLayer};
use crate::ops::{Kernel, Pass, Profile};
use crate::step::{SlotParams, Step, StepBuffer};
use crate::weights::GpuWeights;
use crate::{Gpu, GpuError, MemoryPlan};

pub struct GpuModel {
    pub config: Config,
    pub(crate) rope: RopeSpec,
    pub(crate) ops: Ops,
    /// Weights (read through `binds`, and by [`GpuModel::all_logits`]).
    weights: GpuWeights,
    pub(crate) act: Activations,
    /// The KV cache: read only through `binds`, held here with the model.
    #[allow(dead_code)]
    kv: Vec<KvLayer>,
    pub(crate) step: StepBuffer,
    pub(crate) binds: Binds,
    /// Tokens per prefill batch.
    pub batch: usize,
    /// Positions the KV cache holds.
    pub context: usize,
    /// The device's workgroups per dispatch dimension.
    max_groups: u32,
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
        let plan = MemoryPlan::new(&config, index, context, &gpu.limits);
        plan.check(&gpu.limits)?;
        let batch = plan.batch;
        // The cache layout packs two f16 per word; the attention kernel says so if not.
        if config.kv_dim() % 2 != 0 {
            return Err(GpuError::Unsupported {
                what: format!("key/value width n_kv_heads · head_dim = {}", config.kv_dim()),
                why: "the f16 KV cache packs two values per word, so it must be even".into(),
            });
        }

        // Out-of-memory is reported through an error scope, not a failed call: catch it
        // around everything that allocates.
        let oom = gpu.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let weights = GpuWeights::load(gpu, &config, index, src, progress).await?;
        let rope = RopeSpec::of_model(&config, weights.rope_freq_factors.clone());
        let ops = Ops::new(gpu, &config, &weights)?;
        let act = Activations::new(gpu, &config, batch, context);
        let kv = kv_cache(gpu, &config, context);
        let mut step = StepBuffer::new(gpu, batch);
        let binds = Binds::new(gpu, &ops, &mut step, &config, &weights, &act, &kv, batch);
        if let Some(e) = oom.pop().await {
            return Err(GpuError::OutOfMemory(e.to_string()));
        }
        gpu.check_pipelines().await?;
        let max_groups = gpu.limits.max_compute_workgroups_per_dimension;
        let model = GpuModel { config, rope, ops, weights, act, kv, step, binds, batch, context, max_groups };
        model.check_grids(gpu)?;
        Ok(model)
    }

    /// Builds what the logits of every position need, unless built already: the output
    /// matrix's prefill pipeline and its bindings (not built at load: a chat never uses them).
    pub(crate) async fn all_logits(&mut self, gpu: &Gpu) -> Result<(), GpuError> {
        let (c, w, a) = (&self.config, &self.weights, &self.act);
        self.binds.all_logits(gpu, &mut self.ops, &mut self.step, c, w, a, self.batch)?;
        gpu.check_pipelines().await
    }

    /// Records one step (`step.n` tokens at positions `step.start..`): the layers in one
    /// compute pass, then (unless `head` is None) the final norm and logits in a second.
    /// Returns the dispatches recorded and the weight bytes they read, or the first grid past
    /// the device limit (then the encoder must not be submitted). With `profile`, every
    /// dispatch is timestamped under its kernel family.
    pub(crate) fn record(
        &self,
        enc: &mut wgpu::CommandEncoder,
        step: &Step,
        head: Head,
        mut profile: Option<&mut Profile>,
    ) -> Result<(usize, u64), GpuError> {
        let mut pass = Pass::profiled(enc, profile.as_deref_mut()).limited(self.max_groups);
        self.record_layers(&mut pass, step);
        pass.refused()?;
        let (mut dispatches, mut weight_bytes) = (pass.dispatches(), pass.weight_bytes());
        if head == Head::None {
            pass.finish_profile();
            return Ok((dispatches, weight_bytes));
        }
        drop(pass);
        let all = head == Head::All;
        if !all {
            // The last position's x, aside, so the head's bindings need no offset per step.
            let row = 4 * self.config.dim as u64;
            enc.copy_buffer_to_buffer(&self.act.x, (step.n as u64 - 1) * row, &self.act.x_last, 0, Some(row));
        }
        let mut pass = Pass::profiled(enc, profile).limited(self.max_groups);
        let (ops, b) = (&self.ops, &self.binds);
        let h = match &b.all {
            Some(all_binds) if all => all_binds,
            _ => {
                assert!(!all, "GpuModel::all_logits builds the head for every position before it is used");
                &b.last
            }
        };
        pass.family("norm + output");
        matmul(&mut pass, ops, &h.output, step); // with the final RMSNorm
        pass.family("sampling");
        match head {
            Head::Argmax => pass.run(&ops.argmax, &b.argmax, step),
            Head::Sample => pass.run(&ops.sample, &b.sample, step),
            _ => {}
        }
        pass.refused()?;
        pass.finish_profile();
        dispatches += pass.dispatches();
        weight_bytes += pass.weight_bytes();
        Ok((dispatches, weight_bytes))
    }

    /// Records, and drops unsubmitted, the model's largest steps (a full prefill batch and a
    /// decode step at the end of the cache, each with both sampling heads, which record the
    /// logits' dispatches too), so that a grid past the device limit is refused at load
    /// rather than met in the middle of a chat.
    fn check_grids(&self, gpu: &Gpu) -> Result<(), GpuError> {
        let sample = Some(crate::ops::sample::Params::sample(self.config.vocab_size as u32, &Default::default(), 0.0));
        for n in [1, self.batch.min(self.context)] {
            for head in [Head::Argmax, Head::Sample] {
                let step = Step { n, start: self.context - n, rope: &self.rope, sample };
                let mut enc = gpu.device.create_command_encoder(&Default::default());
                self.record(&mut enc, &step, head, None)?;
            }
        }
        Ok(())
    }

    fn record_layers(&self, pass: &mut Pass, step: &Step) {
        let (ops, b) = (&self.ops, &self.binds);
        // x: (n, dim) ← token embeddings, one dispatch per part of the table
        pass.family("embedding");
        for embed in &b.embed {
            pass.run(&ops.embedding, embed, step);
        }
        for l in &b.layers {
            // Attention block: x += Wo · attention(RoPE(Wq·norm(x)), RoPE(Wk·norm(x)), Wv·norm(x)),
            // the norm inside the projection, RoPE with the KV-cache write, the add inside Wo.
            pass.family("norm + QKV");
            matmul(pass, ops, &l.qkv, step);
            pass.family("RoPE + KV write");
            pass.run(&ops.rope_kv, &l.rope_kv, step);
            pass.family("attention");
            pass.run(&ops.attention, &l.attention, step);
            pass.family("Wo + add");
            matmul(pass, ops, &l.wo, step);
            if let Some(post) = &l.post_attn {
                // Gemma 3: x += RMSNorm(att · W_o)
                pass.family("post-norm + add");
                pass.run(ops.norm_add(), post, step);
            }

            // Feed-forward block: x += W_down · (silu(W_gate·norm(x)) ⊙ W_up·norm(x)), the norm
            // and SwiGLU inside the gate/up projection, the add inside W_down.
            pass.family("norm + gate/up + SwiGLU");
            matmul(pass, ops, &l.gate_up, step);
            if let Some(swiglu) = &l.swiglu {
                pass.run(ops.swiglu(), swiglu, step);
            }
            pass.family("down + add");
            matmul(pass, ops, &l.down, step);
            if let Some(post) = &l.post_ffn {
                pass.family("post-norm + add");
                pass.run(ops.norm_add(), post, step);
            }
        }
    }
}

/// y = x Wᵀ for every part of a (possibly split) weight.
fn matmul(pass: &mut Pass, ops: &Ops, parts: &[MatPart], step: &Step) {
    for part in parts {
        let p = part.slot.params(step);
        // Every part of a matmul that batches pass through has its prefill binding.
        let bind = match &part.prefill {
            Some(prefill) if p.n_tokens > 1 => prefill,
            _ => &part.decode,
        };
        pass.reads_weights(u64::from(p.rows) * u64::from(p.row_bytes));
        ops.matmul(part.slot.ty).dispatch(pass, bind, &p);
    }
}
