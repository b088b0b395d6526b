//! GPU memory needed by a model, computed from its index before anything is uploaded, and
//! checked against the adapter's limits so that a model that cannot fit fails up front with
//! advice instead of halfway through an upload.
//!
//! WebGPU exposes no total-memory figure, only per-buffer limits, so the check is per
//! buffer; the total is reported for the user to judge (`hearth info`).

use hearth_gguf::GgufIndex;
use hearth_model::Config;

use crate::GpuError;

/// Bytes per cached key or value element: f16, two packed per u32.
pub const KV_BYTES: u64 = 2;

#[derive(Debug, Clone, PartialEq)]
pub struct MemoryPlan {
    /// All tensors, in their file dtype.
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
    /// Scratch for a prefill batch of `batch` tokens, plus the logits.
    pub activations: u64,
    pub context: usize,
    pub batch: usize,
}

impl MemoryPlan {
    pub fn new(config: &Config, index: &GgufIndex, context: usize, batch: usize) -> Self {
        let weights = index.tensors.iter().map(|t| t.n_bytes).sum();
        let largest = index.tensors.iter().max_by_key(|t| t.n_bytes);
        let largest_tensor = largest.map_or((String::new(), 0), |t| (t.name.clone(), t.n_bytes));
        let largest_row =
            index.tensors.iter().filter_map(|t| t.ty.bytes_for(*t.dims.first().unwrap_or(&1))).max().unwrap_or(0);
        let kv_per_layer = context as u64 * config.kv_dim() as u64 * KV_BYTES;
        let kv_cache = 2 * config.n_layers as u64 * kv_per_layer;
        // In u64: usize is 32 bits on wasm32, and context × heads passes that.
        let [dim, q_dim, kv_dim, ffn_dim] =
            [config.dim, config.q_dim(), config.kv_dim(), config.ffn_dim].map(|d| d as u64);
        let per_token = dim + q_dim * 3 + kv_dim * 2 + ffn_dim * 2;
        let scores = config.n_heads as u64 * context as u64; // one row of attention scores per head
        let partials = crate::ops::attention::split_partials(config.n_heads, config.head_dim, context);
        let activations = 4 * (batch as u64 * (per_token + scores) + config.vocab_size as u64 + partials);
        MemoryPlan { weights, largest_tensor, largest_row, kv_cache, kv_per_layer, activations, context, batch }
    }

    pub fn total(&self) -> u64 {
        self.weights + self.kv_cache + self.activations
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
        if self.activations > buffer {
            return Err(GpuError::TooLarge {
                what: format!("scratch space for a batch of {} tokens at context {}", self.batch, self.context),
                needed: self.activations,
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
        let plan = MemoryPlan::new(&config, &index, 2048, 512);
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
        assert!(MemoryPlan::new(&config, &index, 1024, 64).check(&limits).is_ok());
        let err = MemoryPlan::new(&config, &index, 8192, 64).check(&limits).unwrap_err().to_string();
        assert!(err.contains("KV cache") && err.contains("smaller model or context"), "{err}");
    }
}
