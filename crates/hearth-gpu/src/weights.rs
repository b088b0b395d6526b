//! Weights on the device, uploaded one tensor at a time in their file dtype. A matrix larger
//! than one storage binding is split by rows into several buffers; norms and RoPE factors are
//! tiny and dequantized to f32 on the host.
//!
//! Matrices that read the same input are then stacked by rows into one buffer where they can
//! be, so that one dispatch reads them: [W_q; W_k; W_v] and [W_gate; W_up] ([`Proj`]).

use hearth_gguf::{GgufIndex, TensorInfo, TensorSource, TensorType};
use hearth_model::{Config, Layer, LlamaWeights, ModelError, WeightLoader};
use std::ops::Range;

use crate::ops::matmul::{upload_weights, Fuse};
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

/// Matrices that one input feeds, in order.
pub enum Proj {
    /// Stacked by rows in one buffer (one part), read by one dispatch.
    Stacked(GpuMatrix),
    /// As loaded, one dispatch each: their formats differ (Q4_K_M files carry Q6_K `attn_v`
    /// in some layers), or together they pass one binding, or a matrix's bytes are not whole
    /// words (they could not be copied next to each other).
    Separate(Vec<GpuMatrix>),
}

/// Per-layer weights: matrices in device buffers, norms as (dim) f32 buffers.
pub struct GpuLayer {
    pub attn_norm: wgpu::Buffer,
    /// [W_q; W_k; W_v]
    pub qkv: Proj,
    /// [b_q; b_k; b_v] f32, added by the RoPE kernel (Qwen2)
    pub qkv_bias: Option<wgpu::Buffer>,
    /// [g_q; g_k] f32, the per-head norms the RoPE kernel applies (Qwen3)
    pub qk_norm: Option<wgpu::Buffer>,
    pub wo: GpuMatrix,
    /// Norm weights of the attention block's output before the residual add (Gemma 3)
    pub post_attn_norm: Option<wgpu::Buffer>,
    pub ffn_norm: wgpu::Buffer,
    /// [W_gate; W_up]
    pub gate_up: Proj,
    pub w_down: GpuMatrix,
    /// Norm weights of the FFN's output before the residual add (Gemma 3)
    pub post_ffn_norm: Option<wgpu::Buffer>,
}

impl GpuLayer {
    /// How Wo and W_down store: added to x in their epilogue, or (with a post-norm, which
    /// needs the whole row first) stored for the norm + add kernel.
    pub fn residual_fuse(post_norm: &Option<wgpu::Buffer>) -> Fuse {
        if post_norm.is_some() {
            Fuse::NONE
        } else {
            Fuse::ADD
        }
    }
}

/// The model's weights on the device (shapes as in `hearth_model::LlamaWeights`), plus the
/// RoPE factors as a buffer.
pub struct GpuWeights {
    pub token_embd: std::sync::Arc<GpuMatrix>,
    pub layers: Vec<GpuLayer>,
    pub output_norm: wgpu::Buffer,
    pub output: std::sync::Arc<GpuMatrix>,
    pub rope_freq_factors: Option<Vec<f32>>,
    pub rope_freqs: Option<wgpu::Buffer>, // (n_rot / 2) f32
    /// The gate/up matmul's fusion when they are stacked: SwiGLU or GeGLU.
    pub gate_fuse: Fuse,
}

/// How many rows of a matrix go in one buffer (all of them when they fit the binding limit
/// `max_part`, else a multiple of `row_align`), or why none can.
pub(crate) fn rows_per_part(
    name: &str,
    rows: usize,
    row_bytes: u64,
    max_part: u64,
    row_align: usize,
) -> Result<usize, GpuError> {
    if row_bytes > max_part {
        return Err(GpuError::TooLarge {
            what: format!("one row of tensor {name:?}"),
            needed: row_bytes,
            allowed: max_part,
        });
    }
    let per_part = (max_part / row_bytes) as usize;
    let per_part = if per_part >= rows { rows } else { per_part / row_align * row_align };
    if per_part == 0 {
        return Err(GpuError::TooLarge {
            what: format!("{row_align} rows of tensor {name:?} (a binding must hold whole aligned rows)"),
            needed: row_bytes * row_align as u64,
            allowed: max_part,
        });
    }
    Ok(per_part)
}

/// The largest part of a weight matrix, in bytes, and the row alignment of parts, for `limits`.
pub(crate) fn part_limits(limits: &wgpu::Limits) -> (u64, usize) {
    let max_part = limits.max_storage_buffer_binding_size.min(limits.max_buffer_size) / 4 * 4;
    let row_align = (limits.min_storage_buffer_offset_alignment as usize / 4).max(1);
    (max_part, row_align)
}

/// Whether matrices of these (type, row bytes, rows, parts) are stacked into one buffer by
/// [`stack`], and its bytes if so.
pub(crate) fn stacked_bytes(mats: &[(TensorType, usize, u64, usize)], max_part: u64) -> Option<u64> {
    let first = mats.first()?;
    let total = mats.iter().map(|m| m.2).fold(0, u64::saturating_add);
    let same = mats.iter().all(|m| m.0 == first.0 && m.1 == first.1 && m.3 == 1 && m.2.is_multiple_of(4));
    (same && total <= max_part).then_some(total.max(4))
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
        let per_part = rows_per_part(name, rows, row_bytes, self.max_part, self.row_align)?;
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

    /// Zero-padded to whole vec4: the fused norm reads them so.
    fn vector(&self, name: &str, mut values: Vec<f32>) -> Result<wgpu::Buffer, GpuError> {
        values.resize(values.len().div_ceil(4) * 4, 0.0);
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
        let (max_part, row_align) = part_limits(&gpu.limits);
        let up = Uploader { gpu, max_part, row_align };
        let llama = LlamaWeights::load_with(config, index, src, &up, progress).await?;
        let rope_freqs = llama.rope_freq_factors.as_ref().map(|f| gpu.upload("rope_freqs", f));
        // Stacked layer by layer: the copies live beside the originals for one layer only.
        let layers = llama
            .layers
            .into_iter()
            .map(|l: Layer<GpuMatrix, wgpu::Buffer>| GpuLayer {
                attn_norm: l.attn_norm,
                qkv: stack(gpu, max_part, "attn_qkv", vec![l.wq, l.wk, l.wv]),
                qkv_bias: l.qkv_bias,
                qk_norm: l.qk_norm,
                wo: l.wo,
                post_attn_norm: l.post_attn_norm,
                ffn_norm: l.ffn_norm,
                gate_up: stack(gpu, max_part, "ffn_gate_up", vec![l.w_gate, l.w_up]),
                w_down: l.w_down,
                post_ffn_norm: l.post_ffn_norm,
            })
            .collect();
        Ok(GpuWeights {
            token_embd: llama.token_embd,
            layers,
            output_norm: llama.output_norm,
            output: llama.output,
            rope_freq_factors: llama.rope_freq_factors,
            rope_freqs,
            gate_fuse: Fuse::norm_gated(config.ffn_act),
        })
    }

    /// Each weight type the matmuls read, with the (row length, fusion) pairs it comes in
    /// (a model with Q6_K `ffn_down` in some layers has Q6_K rows of ffn_dim added to the
    /// residual, say) and the fusions prefill batches pass through: the layers', not the
    /// output's, whose logits a step needs for one position only (those of every position
    /// are built on first use, `GpuModel::all_logits`). The forward pass (`binds.rs`) fuses
    /// exactly so.
    pub fn matmul_shapes(&self) -> Vec<MatmulShapes> {
        let mut uses = vec![(&*self.output, Fuse::NORM, false)];
        for l in &self.layers {
            let mut layer = l.qkv.fused(Fuse::NORM, Fuse::NORM);
            let (wo, down) = (GpuLayer::residual_fuse(&l.post_attn_norm), GpuLayer::residual_fuse(&l.post_ffn_norm));
            layer.extend([(&l.wo, wo), (&l.w_down, down)]);
            layer.extend(l.gate_up.fused(self.gate_fuse, Fuse::NORM));
            uses.extend(layer.into_iter().map(|(m, fuse)| (m, fuse, true)));
        }
        let mut out: Vec<MatmulShapes> = Vec::new();
        for (m, fuse, batched) in uses {
            let i = match out.iter().position(|s| s.ty == m.ty) {
                Some(i) => i,
                None => {
                    out.push(MatmulShapes { ty: m.ty, shapes: Vec::new(), batched: Vec::new() });
                    out.len() - 1
                }
            };
            let s = &mut out[i];
            if !s.shapes.contains(&(m.cols, fuse)) {
                s.shapes.push((m.cols, fuse));
            }
            if batched && !s.batched.contains(&fuse) {
                s.batched.push(fuse);
            }
        }
        out
    }
}

/// How a model reads matrices of one weight format (see [`GpuWeights::matmul_shapes`]).
#[derive(Debug, Clone, PartialEq)]
pub struct MatmulShapes {
    pub ty: TensorType,
    /// (row length, fusion)
    pub shapes: Vec<(usize, Fuse)>,
    /// The fusions prefill batches pass through.
    pub batched: Vec<Fuse>,
}

impl Proj {
    /// Its matrices, each with the fusion it is read with: `stacked` for a stacked one,
    /// `separate` for each of separate ones.
    pub fn fused(&self, stacked: Fuse, separate: Fuse) -> Vec<(&GpuMatrix, Fuse)> {
        match self {
            Proj::Stacked(m) => vec![(m, stacked)],
            Proj::Separate(ms) => ms.iter().map(|m| (m, separate)).collect(),
        }
    }
}

/// `mats` stacked by rows into one buffer by device-side copies (no second host copy of the
/// weights), or left as they are where they cannot be (see [`Proj::Separate`]).
fn stack(gpu: &Gpu, max_part: u64, label: &str, mats: Vec<GpuMatrix>) -> Proj {
    let bytes = |m: &GpuMatrix| m.ty.bytes_for(m.cols as u64).unwrap_or(u64::MAX).saturating_mul(m.rows as u64);
    let first = &mats[0];
    let shapes: Vec<_> = mats.iter().map(|m| (m.ty, m.cols, bytes(m), m.parts.len())).collect();
    let Some(total) = stacked_bytes(&shapes, max_part) else {
        return Proj::Separate(mats);
    };
    let buffer = gpu.create_buffer(&wgpu::BufferDescriptor {
        label: Some(label),
        size: total,
        usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let mut enc = gpu.device.create_command_encoder(&Default::default());
    let mut at = 0;
    for m in &mats {
        enc.copy_buffer_to_buffer(&m.parts[0].buffer, 0, &buffer, at, Some(bytes(m)));
        at += bytes(m);
    }
    gpu.queue.submit([enc.finish()]);
    // The per-matrix buffers go when `mats` does (wgpu frees them after the copies).
    gpu.release(mats.iter().map(|m| m.parts[0].buffer.size()).sum());
    let rows = mats.iter().map(|m| m.rows).sum();
    Proj::Stacked(GpuMatrix { ty: first.ty, rows, cols: first.cols, parts: vec![Part { rows: 0..rows, buffer }] })
}
