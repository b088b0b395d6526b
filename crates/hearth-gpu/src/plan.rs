//! GPU memory needed by a model, computed from its index before anything is uploaded, and
//! checked against the adapter's limits so that a model that cannot fit fails up front with
//! advice instead of halfway through an upload.
//!
//! The plan is the engine's own arithmetic: the weight buffers as `weights.rs` splits and
//! stacks them, the activations and readbacks of `buffers.rs` at the batch the engine picks
//! for this adapter, the KV cache, the step buffer. After a load, [`MemoryPlan::total`]
//! equals [`crate::Gpu::allocated`] (tested on SmolLM2 and a synthetic Llama-2-7B).
//!
//! WebGPU exposes no total-memory figure, only per-buffer limits, so the check is per
//! buffer; the total is reported for the user to judge (`hearth info`, the browser's "fits").

use hearth_gguf::{GgufIndex, TensorType};
use hearth_model::Config;

use crate::buffers::{kv_words, storage_bytes, ActivationSizes};
use crate::ops::matmul::weight_buffer_bytes;
use crate::step::StepBuffer;
use crate::weights::{part_limits, rows_per_part, stacked_bytes};
use crate::GpuError;

/// Bytes per cached key or value element: f16, two packed per u32.
pub const KV_BYTES: u64 = 2;

/// Most tokens per prefill batch (and rows of logits per readback).
pub const MAX_BATCH: usize = 64;

/// The prefill batch the engine uses on an adapter with `limits`: as many tokens as the
/// widest activation row allows in one binding, at most [`MAX_BATCH`].
pub(crate) fn batch_size(limits: &wgpu::Limits, c: &Config) -> usize {
    let limit = limits.max_storage_buffer_binding_size.min(limits.max_buffer_size);
    let widest = 4 * c.vocab_size.max(c.ffn_dim).max(c.q_dim()).max(c.dim) as u64;
    ((limit / widest) as usize).clamp(1, MAX_BATCH)
}

#[derive(Debug, Clone, PartialEq)]
pub struct MemoryPlan {
    /// Every weight buffer as uploaded: matrices split into parts under the binding limit
    /// (each padded to whole words), Q/K/V and gate/up stacked where they can be, norms
    /// padded to whole vec4, RoPE frequency factors.
    pub weights: u64,
    /// The largest single tensor (name, bytes): split by rows across bindings when it passes
    /// the binding limit.
    pub largest_tensor: (String, u64),
    /// Largest row of any tensor, in bytes: a split never cuts a row.
    pub largest_row: u64,
    /// Keys and values for `context` positions, all layers.
    pub kv_cache: u64,
    /// One layer's keys (or values): the largest KV buffer.
    pub kv_per_layer: u64,
    /// Scratch for a prefill batch of `batch` tokens: activations, the logits of every
    /// position of a batch, attention partials, and the readback buffers.
    pub activations: u64,
    /// The largest activation buffer (name, bytes).
    pub largest_activation: (&'static str, u64),
    /// Every dispatch's parameters and the batch's token ids.
    pub step: u64,
    /// The kernels' own buffers (RoPE's unit factors, argmax partials).
    pub ops: u64,
    pub context: usize,
    /// The prefill batch the engine uses on this adapter.
    pub batch: usize,
}

/// One weight matrix as the loader uploads it.
struct PlannedMatrix {
    ty: TensorType,
    cols: usize,
    /// All rows' bytes.
    bytes: u64,
    /// Bytes of each part's buffer.
    parts: Vec<u64>,
}

impl MemoryPlan {
    /// The plan for `config` (read from `index`) with a KV cache of `context` positions, on
    /// an adapter with `limits`.
    pub fn new(config: &Config, index: &GgufIndex, context: usize, limits: &wgpu::Limits) -> Self {
        let batch = batch_size(limits, config);
        let largest = index.tensors.iter().max_by_key(|t| t.n_bytes);
        let largest_tensor = largest.map_or((String::new(), 0), |t| (t.name.clone(), t.n_bytes));
        let largest_row =
            index.tensors.iter().filter_map(|t| t.ty.bytes_for(*t.dims.first().unwrap_or(&1))).max().unwrap_or(0);

        let (max_part, row_align) = part_limits(limits);
        let matrix = |name: &str, rows: usize| -> Option<PlannedMatrix> {
            let t = index.tensor(name)?;
            let cols = *t.dims.first()? as usize;
            let row_bytes = t.ty.bytes_for(cols as u64)?;
            // A matrix the loader refuses costs nothing; `check` says why it cannot load.
            let per_part = rows_per_part(name, rows, row_bytes, max_part, row_align).unwrap_or(rows.max(1));
            let parts = (0..rows)
                .step_by(per_part)
                .map(|r0| weight_buffer_bytes(((r0 + per_part).min(rows) - r0) as u64 * row_bytes))
                .collect();
            Some(PlannedMatrix { ty: t.ty, cols, bytes: row_bytes.saturating_mul(rows as u64), parts })
        };
        let separate = |ms: &[PlannedMatrix]| ms.iter().flat_map(|m| &m.parts).sum::<u64>();
        // One matrix on its own (a missing one costs nothing).
        let single = |m: Option<PlannedMatrix>| m.map_or(0, |m| m.parts.iter().sum::<u64>());
        // Stacked into one buffer where `weights::stack` stacks them.
        let projection = |ms: Vec<PlannedMatrix>| {
            let shapes: Vec<_> = ms.iter().map(|m| (m.ty, m.cols, m.bytes, m.parts.len())).collect();
            stacked_bytes(&shapes, max_part).unwrap_or_else(|| separate(&ms))
        };
        // f32, zero-padded to whole vec4.
        let vector = |len: usize| 4 * (len.div_ceil(4) * 4) as u64;
        let (dim, q, kv, ffn) = (config.dim, config.q_dim(), config.kv_dim(), config.ffn_dim);
        let mut weights = single(matrix("token_embd.weight", config.vocab_size));
        for i in 0..config.n_layers {
            let m = |s: &str, rows| matrix(&format!("blk.{i}.{s}.weight"), rows);
            weights += 2 * vector(dim); // attn_norm, ffn_norm
            let has = |s: &str| index.tensor(&format!("blk.{i}.{s}")).is_some();
            if ["attn_q.bias", "attn_k.bias", "attn_v.bias"].iter().any(|s| has(s)) {
                weights += vector(q + 2 * kv);
            }
            if config.qk_norm {
                weights += vector(2 * config.head_dim);
            }
            if config.post_norms {
                weights += 2 * vector(dim); // post_attention_norm, post_ffw_norm
            }
            weights += projection([m("attn_q", q), m("attn_k", kv), m("attn_v", kv)].into_iter().flatten().collect());
            weights += single(m("attn_output", dim));
            weights += projection([m("ffn_gate", ffn), m("ffn_up", ffn)].into_iter().flatten().collect());
            weights += single(m("ffn_down", dim));
        }
        weights += vector(dim); // output_norm
                                // Tied models read the embedding's own buffer.
        weights += single(matrix("output.weight", config.vocab_size));
        if index.tensor("rope_freqs.weight").is_some() || config.rope.llama3.is_some() {
            weights += 4 * (config.rope.n_rot / 2) as u64;
        }

        let kv_per_layer = storage_bytes(kv_words(config, context));
        let kv_cache = 2 * config.n_layers as u64 * kv_per_layer;
        let sizes = ActivationSizes::new(config, batch, context);
        let activations = sizes.bytes().sum();
        let names =
            sizes.storage.iter().map(|&(n, _)| n).chain(["logits readback", "token readback", "token readback"]);
        let largest_activation = names.zip(sizes.bytes()).max_by_key(|&(_, b)| b).unwrap_or(("", 0));
        let step = StepBuffer::first_chunk_bytes(limits, batch);
        let ops = crate::ops::rope::OWN_BYTES + crate::ops::sample::OWN_BYTES;
        MemoryPlan {
            weights,
            largest_tensor,
            largest_row,
            kv_cache,
            kv_per_layer,
            activations,
            largest_activation,
            step,
            ops,
            context,
            batch,
        }
    }

    /// Every buffer the engine keeps, in bytes.
    pub fn total(&self) -> u64 {
        self.weights + self.kv_cache + self.activations + self.step + self.ops
    }

    /// Checks every buffer against the limits; the error says what to shrink.
    pub fn check(&self, limits: &wgpu::Limits) -> Result<(), GpuError> {
        let binding = limits.max_storage_buffer_binding_size;
        let buffer = limits.max_buffer_size;
        if self.largest_row > binding.min(buffer) {
            return Err(GpuError::TooLarge {
                what: format!("one row of tensor {:?}", self.largest_tensor.0),
                needed: self.largest_row,
                allowed: binding.min(buffer),
            });
        }
        if self.kv_per_layer > binding.min(buffer) {
            return Err(GpuError::TooLarge {
                what: format!("the KV cache for a context of {} tokens (per layer)", self.context),
                needed: self.kv_per_layer,
                allowed: binding.min(buffer),
            });
        }
        if self.largest_activation.1 > buffer {
            return Err(GpuError::TooLarge {
                what: format!(
                    "scratch space ({}) for a batch of {} tokens at context {}",
                    self.largest_activation.0, self.batch, self.context
                ),
                needed: self.largest_activation.1,
                allowed: buffer,
            });
        }
        Ok(())
    }
}

/// Bytes as "1.23 GB" for messages.
pub fn human(bytes: u64) -> String {
    let b = bytes as f64;
    if b >= 1e9 {
        format!("{:.2} GB", b / 1e9)
    } else if b >= 1e6 {
        format!("{:.1} MB", b / 1e6)
    } else {
        format!("{:.1} kB", b / 1e3)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn smollm2() -> (Config, GgufIndex) {
        let src = hearth_gguf::FileSource::open(hearth_testdata::model_path()).unwrap();
        let index = hearth_gguf::read_index(&src).unwrap();
        (Config::from_gguf(&index).unwrap(), index)
    }

    #[test]
    fn smollm2_plan_adds_up() {
        let (config, index) = smollm2();
        let plan = MemoryPlan::new(&config, &index, 2048, &wgpu::Limits::default());
        let file_len = std::fs::metadata(hearth_testdata::model_path()).unwrap().len();
        // Weights are the file minus its header and padding.
        assert!(plan.weights < file_len && plan.weights > file_len - index.data_offset - 64 * 1024);
        // 30 layers × 2 (K, V) × 2048 positions × 3 KV heads × 64 × 2 bytes
        assert_eq!(plan.kv_cache, 30 * 2 * 2048 * 192 * 2);
        assert_eq!(plan.largest_tensor.0, "token_embd.weight");
        assert!(plan.check(&wgpu::Limits::default()).is_ok());
    }

    #[test]
    fn a_context_too_large_for_the_limits_is_refused_with_advice() {
        let (config, index) = smollm2();
        let limits = wgpu::Limits { max_storage_buffer_binding_size: 1 << 20, ..wgpu::Limits::default() };
        assert!(MemoryPlan::new(&config, &index, 1024, &limits).check(&limits).is_ok());
        let err = MemoryPlan::new(&config, &index, 8192, &limits).check(&limits).unwrap_err().to_string();
        assert!(err.contains("KV cache") && err.contains("smaller model or context"), "{err}");
    }
}
