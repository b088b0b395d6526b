//! Grouped-query attention over an f16 KV cache (`shaders/attention.wgsl`). CPU reference:
//! `hearth_model::ops::attention`. A batch's K and V rows are appended to the cache by the
//! RoPE kernel (`ops::rope`) just before.
//!
//! Cache layout, per layer and for K and V alike: (positions, n_kv_heads, head_dim) f16,
//! row-major, two f16 per u32 word (element 2w in the low half of word w), so one position is
//! `n_kv_heads · head_dim / 2` words and head_dim must be even.
//!
//! Two kernels ([`Strategy`]): Reduce (`attention.wgsl`: a workgroup per token and head batch,
//! scores and softmax in workgroup memory) on GPUs, and Tile (`attention_tile.wgsl`: a thread
//! per token and KV head, state in registers) on CPU-backed adapters. A decode step on Reduce
//! uses a third, split-K kernel (`attention_split.wgsl`, flash-decoding): [`SPLIT`] positions
//! per workgroup, so a long context spreads over many workgroups instead of one per KV head,
//! with coalesced K and V loads and parallel max and sum; past [`SPLIT`] positions a small
//! merge dispatch combines the splits (7 dispatches per layer there, 6 below). It needs
//! head_dim to be a multiple of 8; other shapes decode with `attention.wgsl`. Measured on lavapipe
//! (SmolLM2, 512-token prefill): 31.5 tok/s with Reduce, 82.3 with Tile, 81.4 with attention
//! skipped altogether. Tile needs head_dim to be a multiple of 8; other shapes use Reduce
//! everywhere.

use std::fmt::Write;

use super::{bind_group, Kernel, Pass, Strategy};
use crate::step::{SlotParams, Step};
use crate::{Gpu, GpuError};

pub const SOURCE: &str = include_str!("../../../../shaders/attention.wgsl");
/// The Tile kernel's template ([`tile_source`] fills it in).
pub const TILE_SOURCE: &str = include_str!("../../../../shaders/attention_tile.wgsl");
/// Threads per Tile workgroup (one SIMD width on lavapipe).
pub const TILE_WORKGROUP: u32 = 8;

/// The split-K decode kernel and its merge.
pub const SPLIT_SOURCE: &str = include_str!("../../../../shaders/attention_split.wgsl");
/// Cache positions per split-K workgroup: at position 4096 a 7B model's 32 heads make 512
/// workgroups, 2-4 per SM on large GPUs (`../shared/design/gpu-speed.md`, P4), and a chat
/// shorter than this decodes with 6 dispatches per layer. Not tuned on a GPU yet.
pub const SPLIT: u32 = 256;

/// Elements of the split-K partials for `n_heads` heads of `head_dim` at `context`
/// positions: per split and head, the unnormalised output, its max and its sum.
pub fn split_partials(n_heads: usize, head_dim: usize, context: usize) -> u64 {
    context.div_ceil(SPLIT as usize) as u64 * n_heads as u64 * (head_dim as u64 + 2)
}

/// Threads per attention workgroup.
pub const WORKGROUP: u32 = 64;
/// Cache positions per step of the online softmax.
pub const CHUNK: u32 = 64;
/// At most this many query heads share one workgroup (and so one read of their KV head).
pub const MAX_HEADS_PER_WORKGROUP: u32 = 8;
/// Workgroup memory used, at most: WebGPU's guaranteed minimum.
const WORKGROUP_STORAGE: u32 = 16384;

/// The WGSL `Params` struct of `attention.wgsl`, field for field.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    pub n_tokens: u32,
    pub n_heads: u32,
    pub n_kv_heads: u32,
    /// Position of the batch's first token; the cache holds positions `0..start + n_tokens`.
    pub start: u32,
    /// Scores are q·k times this (1/√head_dim).
    pub scale: f32,
    /// 0, or a sliding layer's window: each token sees only its last `window` positions.
    pub window: u32,
    pub _pad: [u32; 2],
}

impl Params {
    /// Scale 1/√head_dim (as the CPU reference computes it) and no window.
    pub fn new(n_tokens: u32, n_heads: u32, n_kv_heads: u32, head_dim: u32, start: u32) -> Self {
        let scale = 1.0 / (head_dim as f32).sqrt();
        Params { n_tokens, n_heads, n_kv_heads, start, scale, window: 0, _pad: [0; 2] }
    }

    /// The first cache position the last token of the step attends to.
    fn first(&self) -> u32 {
        let n_pos = self.start + self.n_tokens;
        if self.window != 0 && n_pos > self.window {
            n_pos - self.window
        } else {
            0
        }
    }
}

/// What a step's attention covers: every token of the batch, over the cache up to it (its
/// last `window` positions on a sliding layer).
#[derive(Debug, Clone, PartialEq)]
pub struct Slot {
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    pub scale: f32,
    pub window: Option<usize>,
}

impl SlotParams for Slot {
    type Params = Params;
    fn params(&self, step: &Step) -> Params {
        let (n, start) = (step.n as u32, step.start as u32);
        let window = self.window.map_or(0, |w| w as u32);
        let base = Params::new(n, self.n_heads as u32, self.n_kv_heads as u32, self.head_dim as u32, start);
        Params { scale: self.scale, window, ..base }
    }
}

/// `attention_tile.wgsl` for `group` query heads per KV head of `head_dim` (a multiple of 8):
/// the `{{...}}` lines written out over heads and 4-element slices.
pub fn tile_source(group: u32, head_dim: u32) -> String {
    let (vecs, words) = (head_dim / 4, head_dim / 8);
    let (mut declare, mut position, mut store) = (String::new(), String::new(), String::new());
    for g in 0..group {
        for j in 0..vecs {
            let _ = writeln!(declare, "    let q_{g}_{j} = q[qbase + {}u];", g * vecs + j);
            let _ = writeln!(declare, "    var acc_{g}_{j} = vec4<f32>(0.0);");
            let _ = writeln!(store, "    out[qbase + {}u] = acc_{g}_{j} / l_{g};", g * vecs + j);
        }
        let _ = writeln!(declare, "    var m_{g} = F32_LOWEST;\n    var l_{g} = 0.0;");
    }
    let unpack = |out: &mut String, name: &str, cache: &str| {
        for j in 0..words {
            let _ = writeln!(out, "        let {name}w_{j} = {cache}[kb + {j}u];");
            let _ = writeln!(out, "        let {name}_{} = lo4({name}w_{j});", 2 * j);
            let _ = writeln!(out, "        let {name}_{} = hi4({name}w_{j});", 2 * j + 1);
        }
    };
    unpack(&mut position, "k", "k_cache");
    for g in 0..group {
        let dot: Vec<String> = (0..vecs).map(|j| format!("dot(q_{g}_{j}, k_{j})")).collect();
        let _ = writeln!(position, "        let s_{g} = ({}) * p.scale;", dot.join(" + "));
        let _ = writeln!(position, "        let mn_{g} = max(m_{g}, s_{g});");
        let _ = writeln!(position, "        let a_{g} = exp(m_{g} - mn_{g});");
        let _ = writeln!(position, "        let e_{g} = exp(s_{g} - mn_{g});");
        let _ = writeln!(position, "        l_{g} = l_{g} * a_{g} + e_{g};\n        m_{g} = mn_{g};");
    }
    unpack(&mut position, "v", "v_cache");
    for g in 0..group {
        for j in 0..vecs {
            let _ = writeln!(position, "        acc_{g}_{j} = acc_{g}_{j} * a_{g} + e_{g} * v_{j};");
        }
    }
    let header =
        format!("const WG: u32 = {TILE_WORKGROUP}u;\nconst G: u32 = {group}u;\nconst HD: u32 = {head_dim}u;\n");
    header + &super::fill_template(TILE_SOURCE, &[("DECLARE", &declare), ("POSITION", &position), ("STORE", &store)])
}

/// The most query heads per workgroup, at most `heads` and at least 1, whose workgroup memory
/// (`bytes` for g heads) fits `limit`.
fn heads_that_fit(heads: u32, limit: u32, bytes: impl Fn(u32) -> u32) -> u32 {
    (1..=heads).rev().find(|&g| bytes(g) <= limit).unwrap_or(1)
}

enum Layout {
    /// `attention.wgsl`, with this many query heads per workgroup (G in the shader).
    Reduce { heads_per_workgroup: u32 },
    /// `attention_tile.wgsl`: one thread per (token, KV head).
    Tile,
}

/// The split-K decode pipelines.
struct Split {
    main: wgpu::ComputePipeline,
    merge: wgpu::ComputePipeline,
    heads_per_workgroup: u32,
}

/// Attention for one model shape: head_dim and the heads per workgroup (or thread) are
/// compiled in.
pub struct Attention {
    pipeline: wgpu::ComputePipeline,
    head_dim: u32,
    kernel: Layout,
    /// Decode on Reduce, where head_dim allows it.
    split: Option<Split>,
    /// Workgroups per dispatch dimension (the device limit; lowered by tests).
    max_groups: u32,
}

/// The bind groups of one layer's attention: the prefill (and Tile) kernel's, and the
/// split-K kernel's and its merge's where there is one.
pub struct Binds {
    main: wgpu::BindGroup,
    split: Option<(wgpu::BindGroup, wgpu::BindGroup)>,
}

impl Attention {
    /// For a model with `head_dim` and `group` = n_heads / n_kv_heads query heads per KV head,
    /// with the kernel that suits this adapter.
    pub fn new(gpu: &Gpu, head_dim: u32, group: u32) -> Result<Self, GpuError> {
        Self::with_strategy(gpu, head_dim, group, gpu.strategy())
    }

    /// As [`Attention::new`] with the given strategy (Reduce where Tile cannot take the shape).
    pub fn with_strategy(gpu: &Gpu, head_dim: u32, group: u32, strategy: Strategy) -> Result<Self, GpuError> {
        if strategy == Strategy::Reduce || head_dim == 0 || !head_dim.is_multiple_of(8) || group == 0 {
            return Self::with_heads_per_workgroup(gpu, head_dim, group.min(MAX_HEADS_PER_WORKGROUP));
        }
        let pipeline = gpu.compute_pipeline("attention (tile)", &tile_source(group, head_dim), "main", &[])?;
        let max_groups = gpu.limits.max_compute_workgroups_per_dimension;
        Ok(Attention { pipeline, head_dim, kernel: Layout::Tile, split: None, max_groups })
    }

    /// As [`Attention::new`] with at most `heads` query heads per workgroup (tests use it to
    /// split a group across workgroups).
    pub fn with_heads_per_workgroup(gpu: &Gpu, head_dim: u32, heads: u32) -> Result<Self, GpuError> {
        if head_dim == 0 || !head_dim.is_multiple_of(2) || heads == 0 {
            return Err(GpuError::Unsupported {
                what: format!("head size {head_dim} ({heads} heads per workgroup)"),
                why: "attention needs an even, positive head size and at least one head per workgroup".into(),
            });
        }
        // q_sh, o_sh: G·HD each; s_sh: G·CHUNK; m, l, a: G each (f32).
        let limit = gpu.limits.max_compute_workgroup_storage_size.min(WORKGROUP_STORAGE);
        let g = heads_that_fit(heads, limit, |g| 4 * g * (2 * head_dim + CHUNK + 3));
        let constants = [
            ("WG", f64::from(WORKGROUP)),
            ("CHUNK", f64::from(CHUNK)),
            ("G", f64::from(g)),
            ("HD", f64::from(head_dim)),
        ];
        let pipeline = gpu.compute_pipeline("attention", SOURCE, "main", &constants)?;
        let max_groups = gpu.limits.max_compute_workgroups_per_dimension;
        let split = Self::split(gpu, head_dim, heads.min(MAX_HEADS_PER_WORKGROUP), limit)?;
        Ok(Attention { pipeline, head_dim, kernel: Layout::Reduce { heads_per_workgroup: g }, split, max_groups })
    }

    /// The split-K decode kernel for up to `heads` query heads per workgroup, within `limit`
    /// bytes of workgroup memory; None where head_dim is not a multiple of 8 (or over 512).
    fn split(gpu: &Gpu, head_dim: u32, heads: u32, limit: u32) -> Result<Option<Split>, GpuError> {
        if !head_dim.is_multiple_of(8) || head_dim > 8 * WORKGROUP {
            return Ok(None);
        }
        // q_sh: G·HD; dot_sh: G·WG; s_sh: G·SPLIT; max_sh, sum_sh: G·8 (f32).
        let g = heads_that_fit(heads, limit, |g| 4 * g * (head_dim + WORKGROUP + SPLIT + 16));
        let constants = [
            ("WG", f64::from(WORKGROUP)),
            ("G", f64::from(g)),
            ("HD", f64::from(head_dim)),
            ("SPLIT", f64::from(SPLIT)),
        ];
        let main = gpu.compute_pipeline("attention (split-K)", SPLIT_SOURCE, "main", &constants)?;
        let merge = gpu.compute_pipeline("attention (merge)", SPLIT_SOURCE, "merge", &constants)?;
        Ok(Some(Split { main, merge, heads_per_workgroup: g }))
    }

    /// q, out: (n_tokens, n_heads, head_dim) f32; k_cache, v_cache: one layer's cache holding
    /// positions `0..start + n_tokens` (layout in the module docs); part: scratch of
    /// [`split_partials`] f32 for the cache's context (unused without a split-K kernel).
    #[allow(clippy::too_many_arguments)]
    pub fn bind(
        &self,
        gpu: &Gpu,
        params: wgpu::BufferBinding,
        q: wgpu::BufferBinding,
        k_cache: wgpu::BufferBinding,
        v_cache: wgpu::BufferBinding,
        out: wgpu::BufferBinding,
        part: wgpu::BufferBinding,
    ) -> Binds {
        let entries =
            [(0, params.clone()), (1, q.clone()), (2, k_cache.clone()), (3, v_cache.clone()), (4, out.clone())];
        let main = bind_group(gpu, "attention", &self.pipeline, &entries);
        let split = self.split.as_ref().map(|s| {
            let main_entries =
                [(0, params.clone()), (1, q), (2, k_cache), (3, v_cache), (4, out.clone()), (5, part.clone())];
            let split = bind_group(gpu, "attention (split-K)", &s.main, &main_entries);
            let merge = bind_group(gpu, "attention (merge)", &s.merge, &[(0, params), (4, out), (5, part)]);
            (split, merge)
        });
        Binds { main, split }
    }

    pub fn head_dim(&self) -> u32 {
        self.head_dim
    }
}

impl Kernel for Attention {
    type Params = Params;
    type Bind = Binds;

    /// Decode on Reduce with a split-K kernel: workgroups (n_kv_heads · batches of the group,
    /// splits), then, if there are several splits, the merge (one workgroup per query head).
    /// Otherwise Reduce: workgroups (n_kv_heads · batches of the group, n_tokens); Tile: one
    /// thread per (token, KV head), tokens fastest.
    fn dispatch(&self, pass: &mut Pass, bind: &Binds, params: &Params) {
        if let (Some(split), Some((main, merge)), 1) = (&self.split, &bind.split, params.n_tokens) {
            let group = params.n_heads / params.n_kv_heads;
            let batches = group.div_ceil(split.heads_per_workgroup);
            let splits = (params.start + 1 - params.first()).div_ceil(SPLIT);
            pass.dispatch(&split.main, main, [params.n_kv_heads * batches, splits, 1]);
            if splits > 1 {
                pass.dispatch(&split.merge, merge, [params.n_heads, 1, 1]);
            }
            return;
        }
        let bind = &bind.main;
        let groups = match self.kernel {
            Layout::Reduce { heads_per_workgroup } => {
                let group = params.n_heads / params.n_kv_heads;
                debug_assert_eq!(group * params.n_kv_heads, params.n_heads, "n_kv_heads must divide n_heads");
                let batches = group.div_ceil(heads_per_workgroup);
                [params.n_kv_heads * batches, params.n_tokens, 1]
            }
            Layout::Tile => {
                let threads = params.n_tokens * params.n_kv_heads;
                let (gx, gy) = super::matmul::grid(threads.div_ceil(TILE_WORKGROUP), self.max_groups);
                [gx, gy, 1]
            }
        };
        pass.dispatch(&self.pipeline, bind, groups);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{self, Budget, Output};
    use half::f16;

    /// naga validation of a whole shader that uses pack2x16float/unpack2x16float: core WGSL,
    /// but naga gates them behind `SHADER_FLOAT16_IN_FLOAT32`, which wgpu grants on WebGPU,
    /// Vulkan, Metal and DX12 and which [`testing::check_uniform`] does not grant.
    fn validate_with_f16_packing(source: &str) {
        let module = naga::front::wgsl::parse_str(source).unwrap_or_else(|e| panic!("{}", e.emit_to_string(source)));
        let caps = naga::valid::Capabilities::SHADER_FLOAT16_IN_FLOAT32;
        naga::valid::Validator::new(naga::valid::ValidationFlags::all(), caps)
            .validate(&module)
            .unwrap_or_else(|e| panic!("naga rejects the shader: {e:?}"));
    }

    /// The shader's `struct Params { .. }` alone, for the layout check.
    fn params_struct(source: &str) -> &str {
        let start = source.find("struct Params {").expect("struct Params");
        &source[start..start + source[start..].find("\n}\n").expect("end of struct Params") + 3]
    }

    #[test]
    fn attention_shaders_are_valid_and_params_match() {
        use std::mem::offset_of;
        validate_with_f16_packing(SOURCE);
        validate_with_f16_packing(SPLIT_SOURCE);
        validate_with_f16_packing(super::super::rope::SOURCE);
        for (group, hd) in [(3, 64), (1, 128), (8, 8)] {
            let tile = tile_source(group, hd);
            for mark in ["{{DECLARE}}", "{{POSITION}}", "{{STORE}}"] {
                assert!(!tile.contains(mark), "{mark} was left unfilled");
            }
            validate_with_f16_packing(&tile);
        }
        for source in [SOURCE.to_string(), SPLIT_SOURCE.to_string(), tile_source(3, 64)] {
            testing::check_uniform::<Params>(
                params_struct(&source),
                "Params",
                &[
                    ("n_tokens", offset_of!(Params, n_tokens)),
                    ("n_heads", offset_of!(Params, n_heads)),
                    ("n_kv_heads", offset_of!(Params, n_kv_heads)),
                    ("start", offset_of!(Params, start)),
                    ("scale", offset_of!(Params, scale)),
                    ("window", offset_of!(Params, window)),
                ],
            );
        }
    }

    /// Packs f32 rows into the cache's words, rounding to nearest f16 as the CPU does.
    fn pack(x: &[f32]) -> Vec<u32> {
        x.chunks_exact(2)
            .map(|p| u32::from(f16::from_f32(p[0]).to_bits()) | u32::from(f16::from_f32(p[1]).to_bits()) << 16)
            .collect()
    }

    fn round_f16(x: &[f32]) -> Vec<f32> {
        x.iter().map(|&v| f16::from_f32(v).to_f32()).collect()
    }

    fn nmse(got: &[f32], want: &[f32]) -> f64 {
        let err: f64 = got.iter().zip(want).map(|(&g, &w)| (f64::from(g) - f64::from(w)).powi(2)).sum();
        err / want.iter().map(|&w| f64::from(w).powi(2)).sum::<f64>()
    }

    /// A cache of `capacity` positions holding `rows` (positions × kv_dim) and, past them,
    /// f16 NaNs: a read beyond the visible positions poisons the result.
    fn cache_buffer(gpu: &crate::Gpu, rows: &[f32], kv_dim: usize, capacity: usize) -> wgpu::Buffer {
        let mut words = pack(rows);
        words.resize(capacity * kv_dim / 2, 0x7e00_7e00);
        gpu.upload("cache", &words)
    }

    #[test]
    fn attention_matches_cpu_reference_on_f16_cache() {
        let gpu = testing::gpu();
        let mut rng = testing::rng(7);
        let mut worst_storage = 0f64;
        // (n_heads, n_kv_heads, head_dim, Reduce's heads per workgroup or 0 for Tile):
        // SmolLM2-like, MHA, an awkward head_dim, a group split over workgroups with a partial
        // last batch; for Tile the same shapes and a wide group (8 heads per KV head).
        let cases = [
            (9, 3, 64, 8),
            (4, 4, 64, 8),
            (6, 2, 40, 8),
            (9, 3, 64, 2),
            (9, 3, 64, 0),
            (4, 4, 64, 0),
            (6, 2, 40, 0),
            (16, 2, 32, 0),
        ];
        for (n_heads, n_kv_heads, hd, per_wg) in cases {
            let op = match per_wg {
                0 => Attention::with_strategy(gpu, hd, n_heads / n_kv_heads, Strategy::Tile).unwrap(),
                g => Attention::with_heads_per_workgroup(gpu, hd, (n_heads / n_kv_heads).min(g)).unwrap(),
            };
            let (q_dim, kv_dim) = ((n_heads * hd) as usize, (n_kv_heads * hd) as usize);
            // Split-K decode: one split (1, 17, 256), a second of one position (257), three
            // with a partial last (600). Sliding windows (Gemma 3) shorter than the prefill (5
            // at 17 positions, 13 at 600) and over a split boundary (260 at 600: two splits).
            for len in [1usize, 17, 256, 257, 600] {
                let windows: &[Option<usize>] = match len {
                    17 => &[None, Some(5)],
                    600 => &[None, Some(13), Some(260)],
                    _ => &[None],
                };
                // Decode (one token at the end), short and longer prefills ending at `len`.
                for (&window, n) in windows.iter().flat_map(|w| [1, len.min(5), len.min(40)].map(|n| (w, n))) {
                    let start = len - n;
                    let q = testing::random(&mut rng, n * q_dim, 4.0);
                    let k = testing::random(&mut rng, len * kv_dim, 2.0);
                    let v = testing::random(&mut rng, len * kv_dim, 1.0);
                    let (k16, v16) = (round_f16(&k), round_f16(&v));
                    let mut want = vec![0f32; n * q_dim];
                    let (nh, nkv, hdu) = (n_heads as usize, n_kv_heads as usize, hd as usize);
                    let scale = 1.0 / (hd as f32).sqrt();
                    let shape = hearth_model::ops::AttentionShape {
                        n_heads: nh,
                        n_kv_heads: nkv,
                        head_dim: hdu,
                        scale,
                        window,
                    };
                    hearth_model::ops::attention(&mut want, &q, &k16, &v16, start, shape);
                    let mut want32 = vec![0f32; n * q_dim];
                    hearth_model::ops::attention(&mut want32, &q, &k, &v, start, shape);
                    worst_storage = worst_storage.max(nmse(&want, &want32));

                    let params = Params {
                        window: window.map_or(0, |w| w as u32),
                        ..Params::new(n as u32, n_heads, n_kv_heads, hd, start as u32)
                    };
                    let pb = gpu.uniform("params", &params);
                    let qb = gpu.upload("q", &q);
                    let kb = cache_buffer(gpu, &k, kv_dim, len + 3);
                    let vb = cache_buffer(gpu, &v, kv_dim, len + 3);
                    let out = Output::new(gpu, n * q_dim);
                    let part = gpu.upload("part", &vec![f32::NAN; split_partials(nh, hdu, len + 3) as usize]);
                    let bind = op.bind(
                        gpu,
                        pb.as_entire_buffer_binding(),
                        qb.as_entire_buffer_binding(),
                        kb.as_entire_buffer_binding(),
                        vb.as_entire_buffer_binding(),
                        out.binding(),
                        part.as_entire_buffer_binding(),
                    );
                    testing::run(gpu, |pass| op.dispatch(pass, &bind, &params));
                    let got = out.read(gpu);
                    let label = format!(
                        "attention {n_heads}/{n_kv_heads}x{hd} ({}) len {len} tokens {n} start {start} window {window:?}",
                        match (per_wg, n) {
                            (0, _) => "tile".to_string(),
                            (g, 1) if op.split.is_some() => format!("split-K, G {g}"),
                            (g, _) => format!("G {g}"),
                        }
                    );
                    eprintln!("{label}: NMSE {:.3e}", nmse(&got, &want));
                    testing::assert_close(&label, &got, &want, Budget::ATTENTION);
                }
            }
        }
        eprintln!("f16 K/V storage against f32 K/V (CPU reference both): worst NMSE {worst_storage:.3e}");
        assert!(worst_storage <= Budget::KV_F16.nmse, "f16 storage moved attention by NMSE {worst_storage:.3e}");
    }

    /// As the engine runs a layer: a prefill batch, then a decode step, each rotating Q and K,
    /// appending its K/V rows and attending in the same compute pass.
    #[test]
    fn rope_kv_write_then_attention_prefill_then_decode() {
        use super::super::rope::{Layout, Params as RopeParams, RopeKv, Slot as RopeSlot};
        let gpu = testing::gpu();
        let (n_heads, n_kv_heads, hd) = (6u32, 2u32, 40u32);
        let (q_dim, kv_dim) = ((n_heads * hd) as usize, (n_kv_heads * hd) as usize);
        let spec = hearth_model::ops::Rope {
            mode: hearth_model::ops::RopeMode::Interleaved,
            head_dim: hd as usize,
            n_rot: hd as usize,
            freq_base: 10000.0,
            freq_scale: 1.0,
            freq_factors: None,
        };
        let (write, attn) = (RopeKv::new(gpu).unwrap(), Attention::new(gpu, hd, n_heads / n_kv_heads).unwrap());
        let mut rng = testing::rng(9);
        let capacity = 80;
        let zeros = vec![0u32; capacity * kv_dim / 2];
        let (kc, vc) = (gpu.upload("k cache", &zeros), gpu.upload("v cache", &zeros));
        let (mut k_all, mut v_all) = (Vec::new(), Vec::new());
        for (start, n) in [(0usize, 70usize), (70, 1)] {
            let qkv = testing::random(&mut rng, n * (q_dim + 2 * kv_dim), 2.0);
            let (mut q, mut k, mut v) = (Vec::new(), Vec::new(), Vec::new());
            for (t, row) in qkv.chunks_exact(q_dim + 2 * kv_dim).enumerate() {
                let cs = spec.cos_sin(start + t);
                let (mut qt, mut kt) = (row[..q_dim].to_vec(), row[q_dim..q_dim + kv_dim].to_vec());
                spec.apply(&mut qt, &cs);
                spec.apply(&mut kt, &cs);
                q.extend(qt);
                k.extend(kt);
                v.extend_from_slice(&row[q_dim + kv_dim..]);
            }
            k_all.extend(round_f16(&k));
            v_all.extend(round_f16(&v));
            let mut want = vec![0f32; n * q_dim];
            let (nh, nkv) = (n_heads as usize, n_kv_heads as usize);
            let scale = 1.0 / (hd as f32).sqrt();
            let shape = hearth_model::ops::AttentionShape {
                n_heads: nh,
                n_kv_heads: nkv,
                head_dim: hd as usize,
                scale,
                window: None,
            };
            hearth_model::ops::attention(&mut want, &q, &k_all, &v_all, start, shape);

            let slot = RopeSlot::plain(nh, nkv, Layout::rows(q_dim, kv_dim));
            let wp = RopeParams::new(&spec, &slot, n as u32, start as u32);
            let ap = Params::new(n as u32, n_heads, n_kv_heads, hd, start as u32);
            let (wpb, apb) = (gpu.uniform("rope params", &wp), gpu.uniform("attention params", &ap));
            let src = gpu.upload("qkv", &qkv);
            let q_out = gpu.upload("q", &vec![0f32; n * q_dim]);
            let out = Output::new(gpu, n * q_dim);
            let part =
                gpu.upload("part", &vec![0f32; split_partials(n_heads as usize, hd as usize, capacity) as usize]);
            let wbind = write.bind(
                gpu,
                wpb.as_entire_buffer_binding(),
                src.as_entire_buffer_binding(),
                Default::default(),
                q_out.as_entire_buffer_binding(),
                kc.as_entire_buffer_binding(),
                vc.as_entire_buffer_binding(),
            );
            let abind = attn.bind(
                gpu,
                apb.as_entire_buffer_binding(),
                q_out.as_entire_buffer_binding(),
                kc.as_entire_buffer_binding(),
                vc.as_entire_buffer_binding(),
                out.binding(),
                part.as_entire_buffer_binding(),
            );
            testing::run(gpu, |pass| {
                write.dispatch(pass, &wbind, &wp);
                attn.dispatch(pass, &abind, &ap);
            });
            let got = out.read(gpu);
            let label = format!("rope + write + attention, {n} tokens at {start}");
            testing::assert_close(&label, &got, &want, Budget::ATTENTION);
        }
    }
}
