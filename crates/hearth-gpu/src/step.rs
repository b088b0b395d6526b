//! The step buffer: every dispatch's parameters and the step's token ids in ONE buffer,
//! refreshed by one `queue.write_buffer` per step (a decoded token or a prefill batch).
//!
//! Layout: `[ids: (batch) u32, padded][slot 0][slot 1]…`, each slot `align` bytes
//! (`min_uniform_buffer_offset_alignment`). A slot holds one op's parameter struct, bound as
//! a uniform at a fixed offset, so bind groups are built once at load. Dispatches with the
//! same parameters (the Q matmul of every layer, say) share a slot: a slot is named by a
//! [`Slot`], which says how to fill it from the step's shape. The ids are bound read-only as
//! storage for the embedding (uniform and read-only storage may share a buffer).

use hearth_gguf::TensorType;

use crate::ops::{attention, elementwise, embedding, matmul, rmsnorm, rope, sample};
use crate::Gpu;

/// Which tokens of the batch an op covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rows {
    /// All `n` tokens of the step.
    Batch,
    /// One: the last token's row, copied aside for the logits.
    One,
}

/// What fills a slot, given the step.
#[derive(Debug, Clone, PartialEq)]
pub enum Slot {
    /// Rows `start..end` of an embedding table (one slot per part of a split table).
    Embed {
        rows: (usize, usize),
        dim: usize,
        ty: TensorType,
    },
    Norm {
        dim: usize,
        eps: f32,
        rows: Rows,
    },
    /// One matmul part: `rows` output rows of a (·, cols) weight; y rows are `y_stride` apart.
    MatMul {
        ty: TensorType,
        rows: usize,
        cols: usize,
        y_stride: usize,
        tokens: Rows,
    },
    Rope {
        n_heads: usize,
    },
    KvWrite {
        kv_dim: usize,
    },
    Attention {
        n_heads: usize,
        n_kv_heads: usize,
        head_dim: usize,
    },
    /// Element-wise op over `width` columns of every token.
    Elementwise {
        width: usize,
    },
    Argmax {
        vocab: usize,
    },
    Sample {
        vocab: usize,
    },
}

/// The shape of one step: `n` tokens at positions `start..start + n`.
#[derive(Debug, Clone, Copy)]
pub struct Step<'a> {
    pub n: usize,
    pub start: usize,
    pub rope: &'a hearth_model::ops::Rope,
    /// Device sampling parameters, when this step samples (temperature > 0).
    pub sample: Option<sample::Params>,
}

pub struct StepBuffer {
    pub buffer: wgpu::Buffer,
    slots: Vec<Slot>,
    max_slots: usize,
    align: u64,
    /// Byte offset of slot 0, past the ids.
    slots_offset: u64,
    /// Host copy, rewritten each step and written with one `write_buffer`.
    staging: Vec<u8>,
}

impl StepBuffer {
    /// Room for `max_slots` slots (at most one per dispatch; equal ones are shared, so fewer
    /// are used) and the ids of up to `batch` tokens. Slots are added while bind groups are
    /// built, so the buffer must exist first.
    pub fn new(gpu: &Gpu, max_slots: usize, batch: usize) -> Self {
        let align = u64::from(gpu.limits.min_uniform_buffer_offset_alignment)
            .max(u64::from(gpu.limits.min_storage_buffer_offset_alignment))
            .max(64);
        let slots_offset = (4 * batch as u64).div_ceil(align) * align;
        let size = slots_offset + max_slots as u64 * align;
        let buffer = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("step params + ids"),
            size,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        StepBuffer { buffer, slots: Vec::new(), max_slots, align, slots_offset, staging: vec![0; size as usize] }
    }

    /// The index of `slot`, sharing an equal slot if there is one.
    pub fn slot(&mut self, slot: Slot) -> usize {
        match self.slots.iter().position(|s| *s == slot) {
            Some(i) => i,
            None => {
                // The bound is computed from the same model shape as the dispatches.
                assert!(self.slots.len() < self.max_slots, "more parameter slots than dispatches");
                self.slots.push(slot);
                self.slots.len() - 1
            }
        }
    }

    /// Slot `i` as a uniform binding of its struct's size.
    pub fn params(&self, i: usize) -> wgpu::BufferBinding<'_> {
        wgpu::BufferBinding {
            buffer: &self.buffer,
            offset: self.slots_offset + i as u64 * self.align,
            size: std::num::NonZeroU64::new(struct_size(&self.slots[i])),
        }
    }

    /// The token ids: (batch) u32, read-only storage.
    pub fn ids(&self) -> wgpu::BufferBinding<'_> {
        wgpu::BufferBinding { buffer: &self.buffer, offset: 0, size: std::num::NonZeroU64::new(self.slots_offset) }
    }

    /// Fills every slot for `step` and the ids with `tokens`, in one write.
    pub fn write(&mut self, gpu: &Gpu, step: &Step, tokens: &[u32]) {
        self.staging[..4 * tokens.len()].copy_from_slice(bytemuck::cast_slice(tokens));
        for (i, slot) in self.slots.iter().enumerate() {
            let at = (self.slots_offset + i as u64 * self.align) as usize;
            let bytes = params(slot, step);
            self.staging[at..at + bytes.len()].copy_from_slice(&bytes);
        }
        let used = (self.slots_offset + self.slots.len() as u64 * self.align) as usize;
        gpu.queue.write_buffer(&self.buffer, 0, &self.staging[..used]);
    }
}

fn struct_size(slot: &Slot) -> u64 {
    use std::mem::size_of;
    (match slot {
        Slot::Embed { .. } => size_of::<embedding::Params>(),
        Slot::Norm { .. } => size_of::<rmsnorm::Params>(),
        Slot::MatMul { .. } => size_of::<matmul::Params>(),
        Slot::Rope { .. } => size_of::<rope::Params>(),
        Slot::KvWrite { .. } => size_of::<attention::KvWriteParams>(),
        Slot::Attention { .. } => size_of::<attention::Params>(),
        Slot::Elementwise { .. } => size_of::<elementwise::Params>(),
        Slot::Argmax { .. } | Slot::Sample { .. } => size_of::<sample::Params>(),
    }) as u64
}

/// The parameter struct's bytes for `slot` in `step`. Sizes were checked at load (matmul and
/// embedding params), so the casts to u32 cannot truncate.
fn params(slot: &Slot, step: &Step) -> Vec<u8> {
    let (n, start) = (step.n as u32, step.start as u32);
    let tokens = |rows: &Rows| match rows {
        Rows::Batch => n,
        Rows::One => 1,
    };
    match slot {
        Slot::Embed { rows, dim, ty } => {
            let p = embedding::Params {
                n_rows: (rows.1 - rows.0) as u32,
                cols: *dim as u32,
                n_tokens: n,
                row_bytes: ty.bytes_for(*dim as u64).unwrap_or(0) as u32,
                row_start: rows.0 as u32,
                _pad: [0; 3],
            };
            bytemuck::bytes_of(&p).to_vec()
        }
        Slot::Norm { dim, eps, rows } => {
            let p = rmsnorm::Params { dim: *dim as u32, n_rows: tokens(rows), eps: *eps, _pad: 0 };
            bytemuck::bytes_of(&p).to_vec()
        }
        Slot::MatMul { ty, rows, cols, y_stride, tokens: t } => {
            let p = matmul::Params {
                rows: *rows as u32,
                cols: *cols as u32,
                n_tokens: tokens(t),
                row_bytes: ty.bytes_for(*cols as u64).unwrap_or(0) as u32,
                y_stride: *y_stride as u32,
                _pad: [0; 3],
            };
            bytemuck::bytes_of(&p).to_vec()
        }
        Slot::Rope { n_heads } => bytemuck::bytes_of(&rope::Params::new(step.rope, n, *n_heads as u32, start)).to_vec(),
        Slot::KvWrite { kv_dim } => {
            let p = attention::KvWriteParams { n_tokens: n, kv_dim: *kv_dim as u32, start, _pad: 0 };
            bytemuck::bytes_of(&p).to_vec()
        }
        Slot::Attention { n_heads, n_kv_heads, head_dim } => {
            let p = attention::Params::new(n, *n_heads as u32, *n_kv_heads as u32, *head_dim as u32, start);
            bytemuck::bytes_of(&p).to_vec()
        }
        Slot::Elementwise { width } => bytemuck::bytes_of(&elementwise::Params::new(n * *width as u32)).to_vec(),
        Slot::Argmax { vocab } => bytemuck::bytes_of(&sample::Params::argmax(*vocab as u32)).to_vec(),
        Slot::Sample { vocab } => {
            let p = step.sample.unwrap_or_else(|| sample::Params::argmax(*vocab as u32));
            bytemuck::bytes_of(&p).to_vec()
        }
    }
}
