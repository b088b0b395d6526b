//! The step buffer: every dispatch's parameters and the step's token ids, refreshed by one
//! `queue.write_buffer` per step (a decoded token or a prefill batch) and per chunk of slots.
//!
//! Layout of chunk 0: `[ids: (batch) u32, padded][slot 0][slot 1]…`; later chunks hold slots
//! only. Each slot is `align` bytes (`min_uniform_buffer_offset_alignment`) and holds one op's
//! parameter struct, bound as a uniform at a fixed offset, so bind groups are built once at
//! load. Dispatches with the same parameters (the Q matmul of every layer, say) share a slot.
//!
//! The ops own their parameters: each op module defines a slot type ([`SlotParams`]) that
//! says how its parameter struct follows from the step's shape. This module only stores
//! slots and writes their bytes; it names no op. The ids are bound read-only as storage for
//! the embedding (uniform and read-only storage may share a buffer).

use std::any::Any;
use std::fmt::Debug;

use crate::Gpu;

/// Which tokens of the batch an op covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rows {
    /// All `n` tokens of the step.
    Batch,
    /// One: the last token's row, copied aside for the logits.
    One,
}

impl Rows {
    /// How many tokens that is in `step`.
    pub fn of(self, step: &Step) -> u32 {
        match self {
            Rows::Batch => step.n as u32,
            Rows::One => 1,
        }
    }
}

/// The shape of one step: `n` tokens at positions `start..start + n`.
#[derive(Debug, Clone, Copy)]
pub struct Step<'a> {
    pub n: usize,
    pub start: usize,
    pub rope: &'a hearth_model::ops::Rope,
    /// Device sampling parameters, when this step samples (temperature > 0).
    pub sample: Option<crate::ops::sample::Params>,
}

/// What an op stores in a slot: the step-independent part of its parameters (shapes, which
/// rows), from which [`SlotParams::params`] builds the struct its shader reads for a step.
/// Equal slots share one place in the buffer.
pub trait SlotParams: Any + Debug + PartialEq + Clone {
    /// The WGSL `Params` struct, field for field.
    type Params: bytemuck::Pod;
    fn params(&self, step: &Step) -> Self::Params;
}

/// Object-safe form of [`SlotParams`], for the buffer's list.
trait AnySlot: Debug {
    fn as_any(&self) -> &dyn Any;
    fn size(&self) -> usize;
    fn write(&self, step: &Step, out: &mut [u8]);
}

impl<T: SlotParams> AnySlot for T {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn size(&self) -> usize {
        std::mem::size_of::<T::Params>()
    }

    fn write(&self, step: &Step, out: &mut [u8]) {
        let p = self.params(step);
        out[..self.size()].copy_from_slice(bytemuck::bytes_of(&p));
    }
}

/// A bind group with the slot its parameters come from, so that the op can size its grid
/// from the same parameters its shader reads.
pub struct Bound<S, B = wgpu::BindGroup> {
    pub bind: B,
    pub slot: S,
}

impl<S: SlotParams, B> Bound<S, B> {
    pub fn params(&self, step: &Step) -> S::Params {
        self.slot.params(step)
    }
}

/// The largest parameter struct a slot holds (RoPE's is 80 bytes): every slot is at least
/// this long, whatever the adapter's offset alignment (lavapipe's is 16).
const MAX_PARAMS_BYTES: u64 = 128;

/// Slots per chunk: enough that a Llama model's distinct parameters fit in one (SmolLM2 uses
/// about 20), so a step is one write.
const CHUNK_SLOTS: usize = 64;

pub struct StepBuffer {
    chunks: Vec<wgpu::Buffer>,
    slots: Vec<Box<dyn AnySlot>>,
    align: u64,
    /// Byte offset of slot 0 in chunk 0, past the ids.
    slots_offset: u64,
    /// Host copy of one chunk, rewritten each step.
    staging: Vec<u8>,
}

impl StepBuffer {
    /// Room for the ids of up to `batch` tokens; slots are added while bind groups are built
    /// (a new chunk when one is full).
    pub fn new(gpu: &Gpu, batch: usize) -> Self {
        let (align, slots_offset) = Self::layout(&gpu.limits, batch);
        let mut b = StepBuffer { chunks: Vec::new(), slots: Vec::new(), align, slots_offset, staging: Vec::new() };
        b.add_chunk(gpu);
        b
    }

    /// (slot size, offset of slot 0) for `limits` and a batch of `batch` ids.
    fn layout(limits: &wgpu::Limits, batch: usize) -> (u64, u64) {
        let align = u64::from(limits.min_uniform_buffer_offset_alignment)
            .max(u64::from(limits.min_storage_buffer_offset_alignment))
            .max(MAX_PARAMS_BYTES);
        (align, (4 * batch as u64).div_ceil(align) * align)
    }

    /// Bytes of the first chunk: the ids and [`CHUNK_SLOTS`] slots. A model with more distinct
    /// parameter sets than that (none of the Llama shapes comes near: SmolLM2 has about 20)
    /// adds a chunk of `CHUNK_SLOTS` slots at a time.
    pub fn first_chunk_bytes(limits: &wgpu::Limits, batch: usize) -> u64 {
        let (align, slots_offset) = Self::layout(limits, batch);
        slots_offset + CHUNK_SLOTS as u64 * align
    }

    fn chunk_size(&self, chunk: usize) -> u64 {
        let head = if chunk == 0 { self.slots_offset } else { 0 };
        head + CHUNK_SLOTS as u64 * self.align
    }

    fn add_chunk(&mut self, gpu: &Gpu) {
        let size = self.chunk_size(self.chunks.len());
        self.chunks.push(gpu.create_buffer(&wgpu::BufferDescriptor {
            label: Some("step params + ids"),
            size,
            usage: wgpu::BufferUsages::UNIFORM
                | wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_DST
                | wgpu::BufferUsages::COPY_SRC, // read back by tests
            mapped_at_creation: false,
        }));
        self.staging.resize(self.staging.len().max(size as usize), 0);
    }

    /// (chunk, byte offset) of slot `i`.
    fn place(&self, i: usize) -> (usize, u64) {
        let chunk = i / CHUNK_SLOTS;
        let head = if chunk == 0 { self.slots_offset } else { 0 };
        (chunk, head + (i % CHUNK_SLOTS) as u64 * self.align)
    }

    /// Stores `slot` (or finds an equal one) and returns its index for [`StepBuffer::binding`].
    pub fn slot<S: SlotParams>(&mut self, gpu: &Gpu, slot: &S) -> usize {
        // An op's parameters outgrowing the slot would overlap the next one's: a bug in this
        // crate, caught by every model load in the tests, never by input.
        assert!(std::mem::size_of::<S::Params>() as u64 <= MAX_PARAMS_BYTES, "{slot:?}: params outgrow a slot");
        let found = self.slots.iter().position(|s| s.as_any().downcast_ref::<S>() == Some(slot));
        match found {
            Some(i) => i,
            None => {
                if self.slots.len() == self.chunks.len() * CHUNK_SLOTS {
                    self.add_chunk(gpu);
                }
                self.slots.push(Box::new(slot.clone()));
                self.slots.len() - 1
            }
        }
    }

    /// Slot `i` as a uniform binding of its parameter struct's size.
    pub fn binding(&self, i: usize) -> wgpu::BufferBinding<'_> {
        let (chunk, offset) = self.place(i);
        wgpu::BufferBinding {
            buffer: &self.chunks[chunk],
            offset,
            size: std::num::NonZeroU64::new(self.slots[i].size() as u64),
        }
    }

    /// The token ids: (batch) u32, read-only storage.
    pub fn ids(&self) -> wgpu::BufferBinding<'_> {
        wgpu::BufferBinding { buffer: &self.chunks[0], offset: 0, size: std::num::NonZeroU64::new(self.slots_offset) }
    }

    /// Fills every slot for `step` and the ids with `tokens`: one write per chunk in use.
    pub fn write(&mut self, gpu: &Gpu, step: &Step, tokens: &[u32]) {
        for (chunk, buffer) in self.chunks.iter().enumerate() {
            let first = chunk * CHUNK_SLOTS;
            let used = self.slots.len().saturating_sub(first).min(CHUNK_SLOTS);
            if used == 0 && chunk > 0 {
                break;
            }
            let mut end = 0;
            if chunk == 0 {
                self.staging[..4 * tokens.len()].copy_from_slice(bytemuck::cast_slice(tokens));
                end = 4 * tokens.len();
            }
            for i in first..first + used {
                let at = self.place(i).1 as usize;
                let slot = &self.slots[i];
                slot.write(step, &mut self.staging[at..]);
                end = at + slot.size();
            }
            gpu.queue.write_buffer(buffer, 0, &self.staging[..end.div_ceil(4) * 4]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing;

    /// A slot whose parameters are its own number and the step's token count.
    #[derive(Debug, Clone, PartialEq)]
    struct Numbered(u32);

    impl SlotParams for Numbered {
        type Params = [u32; 2];
        fn params(&self, step: &Step) -> [u32; 2] {
            [self.0, step.n as u32]
        }
    }

    #[test]
    fn slots_are_shared_when_equal_and_spill_into_new_chunks() {
        let gpu = testing::gpu();
        let mut buf = StepBuffer::new(gpu, 3);
        let n = 2 * CHUNK_SLOTS + 5;
        let ids: Vec<usize> = (0..n as u32).map(|i| buf.slot(gpu, &Numbered(i))).collect();
        assert_eq!(ids, (0..n).collect::<Vec<_>>());
        assert_eq!(buf.slot(gpu, &Numbered(7)), 7, "an equal slot is shared");
        assert_eq!(buf.chunks.len(), 3);

        let rope = hearth_model::ops::Rope {
            mode: hearth_model::ops::RopeMode::Interleaved,
            head_dim: 2,
            n_rot: 2,
            freq_base: 1e4,
            freq_scale: 1.0,
            freq_factors: None,
        };
        let step = Step { n: 3, start: 0, rope: &rope, sample: None };
        buf.write(gpu, &step, &[11, 12, 13]);
        let chunks: Vec<Vec<u32>> = buf.chunks.iter().map(|c| gpu.read_back(c).unwrap()).collect();
        assert_eq!(&chunks[0][..3], &[11, 12, 13], "the ids");
        for i in 0..n {
            let (chunk, offset) = buf.place(i);
            let at = offset as usize / 4;
            assert_eq!(&chunks[chunk][at..at + 2], &[i as u32, 3], "slot {i}");
        }
    }
}
