//! Weights on the device, uploaded one tensor at a time in their file dtype. A matrix larger
//! than one storage binding is split by rows into several buffers; norms and RoPE factors are
//! tiny and dequantized to f32 on the host.

use std::ops::Range;
use std::sync::Arc;

use hearth_gguf::{dequantize, read_tensor, GgufIndex, ReadAt, TensorInfo, TensorType};
use hearth_model::{Config, ModelError};

use crate::ops::matmul::upload_weights;
use crate::{Gpu, GpuError};

/// A (rows × cols) weight, row-major in its GGUF block layout (ggml dims `[cols, rows]`).
pub struct GpuMatrix {
    pub ty: TensorType,
    pub rows: usize,
    pub cols: usize,
    /// Consecutive row ranges, each in its own buffer (one part unless the matrix passes the
    /// binding limit). Every part but the last has a multiple of `row_align` rows, so that a
    /// matmul writing it can bind y at its first row.
    pub parts: Vec<Part>,
}

pub struct Part {
    pub rows: Range<usize>,
    pub buffer: wgpu::Buffer, // (rows.len(), row_bytes) raw GGUF bytes, padded to words
}

/// Per-layer weights; matrix shapes as in `hearth_model::LayerWeights`.
pub struct GpuLayer {
    pub attn_norm: wgpu::Buffer, // (dim) f32
    pub wq: GpuMatrix,           // (n_heads · head_dim) × dim
    pub wk: GpuMatrix,           // (n_kv_heads · head_dim) × dim
    pub wv: GpuMatrix,           // (n_kv_heads · head_dim) × dim
    pub wo: GpuMatrix,           // dim × (n_heads · head_dim)
    pub ffn_norm: wgpu::Buffer,  // (dim) f32
    pub w_gate: GpuMatrix,       // ffn_dim × dim
    pub w_up: GpuMatrix,         // ffn_dim × dim
    pub w_down: GpuMatrix,       // dim × ffn_dim
}

pub struct GpuWeights {
    pub token_embd: Arc<GpuMatrix>, // vocab × dim
    pub layers: Vec<GpuLayer>,
    pub output_norm: wgpu::Buffer, // (dim) f32
    pub output: Arc<GpuMatrix>,    // vocab × dim; the embedding's buffers when tied
    /// θ divisors per rotated pair (n_rot / 2), as in `hearth_model::Weights`.
    pub rope_freq_factors: Option<Vec<f32>>,
    pub rope_freqs: Option<wgpu::Buffer>, // (n_rot / 2) f32
}

struct Uploader<'a, R: ?Sized> {
    gpu: &'a Gpu,
    index: &'a GgufIndex,
    src: &'a R,
    /// Largest part in bytes: the binding limit (and the buffer limit), in whole words.
    max_part: u64,
    /// Rows per part are a multiple of this: the storage offset alignment in f32s.
    row_align: usize,
}

fn info<'i>(index: &'i GgufIndex, name: &str) -> Result<&'i TensorInfo, ModelError> {
    index.tensor(name).ok_or_else(|| ModelError::MissingTensor(name.to_string()))
}

/// GGUF may drop trailing 1s; compare with them removed (as the CPU loader does).
fn check_shape(info: &TensorInfo, expected: &[u64]) -> Result<(), ModelError> {
    let trim = |d: &[u64]| {
        let mut v = d.to_vec();
        while v.len() > 1 && v.last() == Some(&1) {
            v.pop();
        }
        v
    };
    if trim(&info.dims) != trim(expected) {
        return Err(ModelError::BadShape {
            tensor: info.name.clone(),
            expected: expected.to_vec(),
            found: info.dims.clone(),
        });
    }
    Ok(())
}

impl<R: ReadAt + ?Sized> Uploader<'_, R> {
    fn matrix(&self, name: &str, rows: usize, cols: usize) -> Result<GpuMatrix, GpuError> {
        let info = info(self.index, name)?;
        check_shape(info, &[cols as u64, rows as u64])?;
        if crate::ops::matmul::quant_snippet(info.ty).is_none() {
            return Err(ModelError::UnsupportedTensorType { tensor: name.to_string(), ty: info.ty }.into());
        }
        let row_bytes = info.ty.bytes_for(cols as u64).unwrap_or(u64::MAX);
        if row_bytes > self.max_part {
            return Err(GpuError::TooLarge {
                what: format!("one row of tensor {name:?}"),
                needed: row_bytes,
                allowed: self.max_part,
            });
        }
        let per_part = (self.max_part / row_bytes) as usize;
        let per_part = if per_part >= rows { rows } else { per_part / self.row_align * self.row_align };
        if per_part == 0 {
            return Err(GpuError::TooLarge {
                what: format!("{} rows of tensor {name:?} (a binding must hold whole aligned rows)", self.row_align),
                needed: row_bytes * self.row_align as u64,
                allowed: self.max_part,
            });
        }
        let bytes = read_tensor(self.src, info).map_err(ModelError::from)?;
        let rb = row_bytes as usize;
        let parts = (0..rows)
            .step_by(per_part)
            .map(|r0| {
                let rows = r0..(r0 + per_part).min(rows);
                let buffer = upload_weights(self.gpu, name, &bytes[rows.start * rb..rows.end * rb]);
                Part { rows, buffer }
            })
            .collect();
        Ok(GpuMatrix { ty: info.ty, rows, cols, parts })
    }

    fn vector_f32(&self, name: &str, len: usize) -> Result<Vec<f32>, GpuError> {
        let info = info(self.index, name)?;
        check_shape(info, &[len as u64])?;
        let bytes = read_tensor(self.src, info).map_err(ModelError::from)?;
        let mut out = vec![0f32; len];
        dequantize(info.ty, &bytes, &mut out)
            .map_err(|_| ModelError::UnsupportedTensorType { tensor: name.to_string(), ty: info.ty })?;
        Ok(out)
    }

    fn vector(&self, name: &str, len: usize) -> Result<wgpu::Buffer, GpuError> {
        Ok(self.gpu.upload(name, &self.vector_f32(name, len)?))
    }
}

impl GpuWeights {
    /// Uploads every tensor the config calls for, one at a time, checking names and shapes.
    pub fn load<R: ReadAt + ?Sized>(gpu: &Gpu, config: &Config, index: &GgufIndex, src: &R) -> Result<Self, GpuError> {
        let limits = &gpu.limits;
        let max_part = limits.max_storage_buffer_binding_size.min(limits.max_buffer_size) / 4 * 4;
        let row_align = (limits.min_storage_buffer_offset_alignment as usize / 4).max(1);
        let up = Uploader { gpu, index, src, max_part, row_align };
        let (dim, q, kv, ffn) = (config.dim, config.q_dim(), config.kv_dim(), config.ffn_dim);

        let token_embd = Arc::new(up.matrix("token_embd.weight", config.vocab_size, dim)?);
        let mut layers = Vec::with_capacity(config.n_layers);
        for i in 0..config.n_layers {
            let name = |s: &str| format!("blk.{i}.{s}.weight");
            layers.push(GpuLayer {
                attn_norm: up.vector(&name("attn_norm"), dim)?,
                wq: up.matrix(&name("attn_q"), q, dim)?,
                wk: up.matrix(&name("attn_k"), kv, dim)?,
                wv: up.matrix(&name("attn_v"), kv, dim)?,
                wo: up.matrix(&name("attn_output"), dim, q)?,
                ffn_norm: up.vector(&name("ffn_norm"), dim)?,
                w_gate: up.matrix(&name("ffn_gate"), ffn, dim)?,
                w_up: up.matrix(&name("ffn_up"), ffn, dim)?,
                w_down: up.matrix(&name("ffn_down"), dim, ffn)?,
            });
        }
        let output_norm = up.vector("output_norm.weight", dim)?;
        let output = match index.tensor("output.weight") {
            Some(_) => Arc::new(up.matrix("output.weight", config.vocab_size, dim)?),
            None => token_embd.clone(), // tied: the embedding's buffers
        };
        let rope = &config.rope;
        let rope_freq_factors = match index.tensor("rope_freqs.weight") {
            Some(_) => Some(up.vector_f32("rope_freqs.weight", rope.n_rot / 2)?),
            None => rope.llama3.map(|s| s.freq_factors(rope.freq_base, rope.n_rot)),
        };
        let rope_freqs = rope_freq_factors.as_ref().map(|f| gpu.upload("rope_freqs", f));
        Ok(GpuWeights { token_embd, layers, output_norm, output, rope_freq_factors, rope_freqs })
    }

    /// Every weight type a matmul reads.
    pub fn matmul_types(&self) -> Vec<TensorType> {
        let mut types = vec![self.output.ty];
        for l in &self.layers {
            types.extend([l.wq.ty, l.wk.ty, l.wv.ty, l.wo.ty, l.w_gate.ty, l.w_up.ty, l.w_down.ty]);
        }
        types.sort_by_key(|t| t.id());
        types.dedup();
        types
    }
}
