//! Embedding lookup from a (vocab × dim) matrix in its GGUF block layout
//! (`shaders/embedding.wgsl` with one `shaders/quant/*.wgsl` format, as for
//! [`matmul`](super::matmul)). CPU reference: `hearth_model::Matrix::row_into`.

use hearth_gguf::TensorType;

use super::matmul::source_for;
use super::{bind_group, Kernel, Pass};
use crate::step::{SlotParams, Step};
use crate::{Gpu, GpuError};

pub const SOURCE: &str = include_str!("../../../../shaders/embedding.wgsl");

/// Threads per workgroup (one workgroup per token): 64 threads × 32 weights cover dim 2048
/// in one pass.
pub const WORKGROUP: u32 = 64;

/// The WGSL `Params` struct, field for field.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    /// Rows of the table in the bound `w`.
    pub n_rows: u32,
    /// The embedding width (`cols`, the name the format snippets read).
    pub cols: u32,
    pub n_tokens: u32,
    pub row_bytes: u32,
    /// The table row that the bound `w` starts with.
    pub row_start: u32,
    /// Every value times this (Gemma 3: √dim; else 1).
    pub scale: f32,
    pub _pad: [u32; 2],
}

/// What a step gathers: the batch's tokens whose rows lie in table rows `rows` (the part of a
/// split table one binding holds), of width `dim`.
#[derive(Debug, Clone, PartialEq)]
pub struct Slot {
    pub rows: std::ops::Range<usize>,
    pub dim: usize,
    pub ty: TensorType,
    /// Every value times this (`Config::embed_scale`, else 1).
    pub scale: f32,
}

impl SlotParams for Slot {
    type Params = Params;
    /// Sizes were checked when the table was loaded ([`Embedding::params`]), so the casts
    /// cannot truncate.
    fn params(&self, step: &Step) -> Params {
        Params {
            n_rows: self.rows.len() as u32,
            cols: self.dim as u32,
            n_tokens: step.n as u32,
            row_bytes: self.ty.bytes_for(self.dim as u64).unwrap_or(0) as u32,
            row_start: self.rows.start as u32,
            scale: self.scale,
            _pad: [0; 2],
        }
    }
}

pub struct Embedding {
    pub ty: TensorType,
    pipeline: wgpu::ComputePipeline,
    /// Workgroups per dispatch dimension (the device limit; lowered by tests).
    max_groups: u32,
}

impl Embedding {
    pub fn new(gpu: &Gpu, ty: TensorType) -> Result<Self, GpuError> {
        let source = source_for("embedding", SOURCE, ty)?;
        let pipeline =
            gpu.compute_pipeline(&format!("embedding {ty}"), &source, "main", &[("WG", f64::from(WORKGROUP))])?;
        Ok(Embedding { ty, pipeline, max_groups: gpu.limits.max_compute_workgroups_per_dimension })
    }

    /// Parameters for gathering `n_tokens` rows from table rows `rows` (all of a vocab × dim
    /// table of this op's type, or the part of it in one binding when it is split by rows:
    /// then one dispatch per part, each filling the tokens whose rows it holds). Fails if
    /// `dim` is not a whole number of blocks or the part exceeds the kernel's 32-bit byte
    /// addressing. Token ids must be below the vocabulary size: the host checks them.
    pub fn params(&self, rows: std::ops::Range<usize>, dim: usize, n_tokens: usize) -> Result<Params, GpuError> {
        let too_large = |needed: u64| GpuError::TooLarge {
            what: format!("rows {rows:?} of a {} embedding table of width {dim}", self.ty),
            needed,
            allowed: u64::from(u32::MAX),
        };
        let row_bytes = self.ty.bytes_for(dim as u64).ok_or_else(|| too_large(u64::MAX))?;
        let total = row_bytes.saturating_mul(rows.len() as u64);
        if rows.is_empty()
            || total > u64::from(u32::MAX)
            || rows.end > u32::MAX as usize
            || n_tokens > u32::MAX as usize
        {
            return Err(too_large(total));
        }
        Ok(Params {
            n_rows: rows.len() as u32,
            cols: dim as u32,
            n_tokens: n_tokens as u32,
            row_bytes: row_bytes as u32,
            row_start: rows.start as u32,
            scale: 1.0,
            _pad: [0; 2],
        })
    }

    /// `w` raw GGUF bytes ([`upload_weights`](super::matmul::upload_weights)), `ids`
    /// (n_tokens) u32, `y` (n_tokens × dim) f32.
    pub fn bind(
        &self,
        gpu: &Gpu,
        params: wgpu::BufferBinding,
        w: wgpu::BufferBinding,
        ids: wgpu::BufferBinding,
        y: wgpu::BufferBinding,
    ) -> wgpu::BindGroup {
        bind_group(gpu, "embedding", &self.pipeline, &[(0, params), (1, w), (2, ids), (3, y)])
    }
}

impl Kernel for Embedding {
    type Params = Params;
    type Bind = wgpu::BindGroup;

    fn dispatch(&self, pass: &mut Pass, bind: &wgpu::BindGroup, p: &Params) {
        let (gx, gy) = super::matmul::grid(p.n_tokens, self.max_groups);
        pass.dispatch(&self.pipeline, bind, [gx, gy, 1]);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use hearth_model::Matrix;
    use rand_chacha::rand_core::RngCore;

    use super::*;
    use crate::ops::matmul::{tests::random_weights, upload_weights, FORMATS};
    use crate::testing::{self, Budget, Output};

    /// Gathers `ids` on the GPU and compares with `Matrix::row_into` on the same bytes.
    fn check(op: &Embedding, bytes: &[u8], vocab: usize, dim: usize, ids: &[u32]) {
        let gpu = testing::gpu();
        let m = Matrix::new("token_embd", op.ty, vocab, dim, Arc::from(bytes)).unwrap();
        let mut want = vec![0f32; ids.len() * dim];
        for (row, &id) in want.chunks_exact_mut(dim).zip(ids) {
            m.row_into(id as usize, row);
        }
        let p = op.params(0..vocab, dim, ids.len()).unwrap();
        let params = gpu.uniform("params", &p);
        let wb = upload_weights(gpu, "w", bytes);
        let idb = gpu.upload("ids", ids);
        let out = Output::new(gpu, ids.len() * dim);
        let bind = op.bind(
            gpu,
            params.as_entire_buffer_binding(),
            wb.as_entire_buffer_binding(),
            idb.as_entire_buffer_binding(),
            out.binding(),
        );
        testing::run(gpu, |pass| op.dispatch(pass, &bind, &p));
        let got = out.read(gpu);
        testing::assert_close(&format!("embedding {} {vocab}x{dim}", op.ty), &got, &want, Budget::EMBEDDING);
    }

    #[test]
    fn shader_is_valid_and_params_match() {
        for &ty in FORMATS {
            testing::check_uniform::<Params>(
                &source_for("embedding", SOURCE, ty).unwrap(),
                "Params",
                &[
                    ("n_rows", std::mem::offset_of!(Params, n_rows)),
                    ("cols", std::mem::offset_of!(Params, cols)),
                    ("n_tokens", std::mem::offset_of!(Params, n_tokens)),
                    ("row_bytes", std::mem::offset_of!(Params, row_bytes)),
                    ("row_start", std::mem::offset_of!(Params, row_start)),
                    ("scale", std::mem::offset_of!(Params, scale)),
                ],
            );
        }
    }

    #[test]
    fn gathers_rows_like_the_cpu_at_awkward_shapes() {
        let mut rng = testing::rng(5);
        for &ty in FORMATS {
            let mut op = Embedding::new(testing::gpu(), ty).unwrap();
            let dims: &[usize] = match ty.block_size() {
                1 => &[57, 2115], // 2115 > 64 threads × 32 weights: threads loop
                32 => &[96, 2080],
                _ => &[768, 2304],
            };
            for &dim in dims {
                let vocab = 37;
                let bytes = random_weights(&mut rng, ty, vocab, dim);
                // Repeats, the first and last rows, and a count that is no multiple of anything.
                let mut ids: Vec<u32> = (0..11).map(|_| rng.next_u32() % vocab as u32).collect();
                ids.extend([0, vocab as u32 - 1, 5, 5]);
                check(&op, &bytes, vocab, dim, &ids);
                // Tokens laid out 4 × 4 workgroups (one surplus) past a lowered dispatch limit.
                op.max_groups = 4;
                check(&op, &bytes, vocab, dim, &ids);
                op.max_groups = u32::MAX;
            }
        }
    }

    #[test]
    fn f16_table_of_every_finite_half_is_exact() {
        // Rows of 63 halves (rows start mid-word) holding every f16 bit pattern but Inf/NaN,
        // subnormals and both zeros included.
        let halves: Vec<u16> = (0..=u16::MAX).filter(|h| (h >> 10) & 0x1f != 0x1f).collect();
        let dim = 63;
        let vocab = halves.len().div_ceil(dim);
        let mut bytes: Vec<u8> = halves.iter().flat_map(|h| h.to_le_bytes()).collect();
        bytes.resize(vocab * dim * 2, 0);
        let op = Embedding::new(testing::gpu(), TensorType::F16).unwrap();
        let ids: Vec<u32> = (0..vocab as u32).collect();
        check(&op, &bytes, vocab, dim, &ids);
    }

    #[test]
    fn a_table_split_by_rows_fills_the_output_in_one_dispatch_per_part() {
        // Rows 0..20 and 20..37 of a Q6_K table in two buffers, as for a table beyond the
        // binding limit; tokens from both parts, interleaved.
        let gpu = testing::gpu();
        let (ty, vocab, dim, split) = (TensorType::Q6_K, 37, 768, 20);
        let mut rng = testing::rng(7);
        let bytes = random_weights(&mut rng, ty, vocab, dim);
        let ids = [36u32, 0, 19, 20, 7, 25, 25, 3];
        let m = Matrix::new("token_embd", ty, vocab, dim, Arc::from(bytes.as_slice())).unwrap();
        let mut want = vec![0f32; ids.len() * dim];
        for (row, &id) in want.chunks_exact_mut(dim).zip(&ids) {
            m.row_into(id as usize, row);
        }
        let op = Embedding::new(gpu, ty).unwrap();
        let row_bytes = bytes.len() / vocab;
        let idb = gpu.upload("ids", &ids);
        let out = Output::new(gpu, ids.len() * dim);
        let parts: Vec<_> = [0..split, split..vocab]
            .into_iter()
            .map(|rows| {
                let p = op.params(rows.clone(), dim, ids.len()).unwrap();
                let wb = upload_weights(gpu, "w", &bytes[rows.start * row_bytes..rows.end * row_bytes]);
                (gpu.uniform("params", &p), wb, p)
            })
            .collect();
        let binds: Vec<_> = parts
            .iter()
            .map(|(params, wb, _)| {
                let (p, w, ids) =
                    (params.as_entire_buffer_binding(), wb.as_entire_buffer_binding(), idb.as_entire_buffer_binding());
                op.bind(gpu, p, w, ids, out.binding())
            })
            .collect();
        testing::run(gpu, |pass| binds.iter().zip(&parts).for_each(|(bind, part)| op.dispatch(pass, bind, &part.2)));
        testing::assert_close("embedding Q6_K split in two", &out.read(gpu), &want, Budget::EMBEDDING);
    }
}
