//! Weights on the device, uploaded one tensor at a time in their file dtype. A matrix larger
//! than one storage binding is split by rows into several buffers; norms and RoPE factors are
//! tiny and dequantized to f32 on the host.

use hearth_gguf::{GgufIndex, TensorInfo, TensorSource, TensorType};
use hearth_model::{Config, Layer, LlamaWeights, ModelError, WeightLoader};
use std::ops::Range;

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

/// Per-layer weights: matrices split into device buffers, norms as (dim) f32 buffers.
pub type GpuLayer = Layer<GpuMatrix, wgpu::Buffer>;

/// The model's weights on the device (shapes as in `hearth_model::LlamaWeights`), plus the
/// RoPE factors as a buffer.
pub struct GpuWeights {
    pub llama: LlamaWeights<GpuMatrix, wgpu::Buffer>,
    pub rope_freqs: Option<wgpu::Buffer>, // (n_rot / 2) f32
}

impl std::ops::Deref for GpuWeights {
    type Target = LlamaWeights<GpuMatrix, wgpu::Buffer>;
    fn deref(&self) -> &Self::Target {
        &self.llama
    }
}

struct Uploader<'a> {
    gpu: &'a Gpu,
    /// Largest part in bytes: the binding limit (and the buffer limit), in whole words.
    max_part: u64,
    /// Rows per part are a multiple of this: the storage offset alignment in f32s.
    row_align: usize,
}

impl WeightLoader for Uploader<'_> {
    type Matrix = GpuMatrix;
    type Vector = wgpu::Buffer;
    type Error = GpuError;

    fn matrix(&self, info: &TensorInfo, rows: usize, cols: usize, bytes: Vec<u8>) -> Result<GpuMatrix, GpuError> {
        let name = info.name.as_str();
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

    fn vector(&self, name: &str, values: Vec<f32>) -> Result<wgpu::Buffer, GpuError> {
        Ok(self.gpu.upload(name, &values))
    }
}

impl GpuWeights {
    /// Uploads every tensor the config calls for, one at a time, checking names and shapes.
    pub async fn load<S: TensorSource + ?Sized>(
        gpu: &Gpu,
        config: &Config,
        index: &GgufIndex,
        src: &S,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<Self, GpuError> {
        let limits = &gpu.limits;
        let max_part = limits.max_storage_buffer_binding_size.min(limits.max_buffer_size) / 4 * 4;
        let row_align = (limits.min_storage_buffer_offset_alignment as usize / 4).max(1);
        let up = Uploader { gpu, max_part, row_align };
        let llama = LlamaWeights::load_with(config, index, src, &up, progress).await?;
        let rope_freqs = llama.rope_freq_factors.as_ref().map(|f| gpu.upload("rope_freqs", f));
        Ok(GpuWeights { llama, rope_freqs })
    }

    /// Every weight type a matmul reads.
    /// Each weight type the matmuls read, with the row lengths it comes in (a model with
    /// Q6_K `ffn_down` in some layers has Q6_K rows of ffn_dim, say).
    pub fn matmul_shapes(&self) -> Vec<(TensorType, Vec<usize>)> {
        let mut shapes = vec![(self.output.ty, self.output.cols)];
        for l in &self.layers {
            shapes.extend([&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down].map(|m| (m.ty, m.cols)));
        }
        shapes.sort_by_key(|&(t, cols)| (t.id(), cols));
        shapes.dedup();
        let mut out: Vec<(TensorType, Vec<usize>)> = Vec::new();
        for (ty, cols) in shapes {
            match out.last_mut() {
                Some((t, c)) if *t == ty => c.push(cols),
                _ => out.push((ty, vec![cols])),
            }
        }
        out
    }
}
