//! Matrix × activations on weights in their GGUF block layout (`shaders/matmul.wgsl` with
//! one `shaders/quant/*.wgsl` format: F32, F16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K,
//! Q6_K). CPU reference: `hearth_model::ops::matmul`.
//!
//! Weights are uploaded as the file's raw bytes ([`upload_weights`]) and dequantized in the
//! kernel, 32 weights at a time, in f32 with ggml's arithmetic. Decode (one token) and
//! prefill (a tile of tokens per workgroup, each dequantized piece applied to all of them)
//! are the same kernel with different `override` constants.
//!
//! Every kernel also comes fused ([`Fuse`], `shaders/fuse.wgsl`): with RMSNorm of x before
//! it, and with its output added into y (the residual) or passed through SwiGLU (W stacked
//! as [W_gate; W_up]), so that a decoder layer is six dispatches. Each combination is its own
//! pipeline, built only for the (format, row length, fusion) the model uses, and for prefill
//! only where batches pass through it (`GpuWeights::matmul_shapes`, [`MatMul::add_prefill`]).
//!
//! Two ways to lay the work on threads ([`Strategy`]), both reading the same raw blocks:
//! - [`Strategy::Reduce`] (`shaders/matmul.wgsl`): the threads of a workgroup split each
//!   row's pieces and sum in workgroup memory, so neighbouring threads read neighbouring
//!   blocks — the layout GPUs coalesce. Decode (one token) uses the GEMV instead
//!   (`shaders/gemv.wgsl`, one pipeline per row length): 8-weight slices on neighbouring
//!   threads, so a warp reads a contiguous run of weight bytes and x in a few 128-byte lines
//!   (the old kernel put neighbouring threads' x loads 128 bytes apart: 32 lines per load,
//!   ~15% of an H100's bandwidth by the study in `../shared/design/gpu-speed.md`); x loaded
//!   once per slice as two vec4 and used for [`GEMV_ROWS`] rows; offsets and minimums folded
//!   out of the per-weight math (`d·(Σq·x − 8·Σx)`). Its speed on a real GPU is unmeasured.
//! - [`Strategy::Tile`] (`shaders/matmul_tile.wgsl`): each thread owns a register tile of rows
//!   × tokens. For CPU-backed adapters (lavapipe, SwiftShader), where every buffer load is a
//!   per-lane gather and only reuse pays. Measured on lavapipe (2 cores, `examples/
//!   kernel_time.rs`): prefill 0.9 → ~20 GFLOP/s, decode 0.3 → ~2.5 GFLOP/s against Reduce.
//!
//! Raw GGUF blocks vs repacking at load (not done). To decide, measure on a real GPU (not
//! lavapipe), per format, for decode shapes (e.g. 2048 × 2048, 8192 × 2048, vocab × 2048)
//! and prefill (n = 64, 512): achieved weight bandwidth (bytes of W / kernel time, against
//! the adapter's peak) and prefill GFLOP/s. Repacking candidates: scales split from quants
//! so both are 4-byte aligned (no straddling reads; Q4_0's 18-byte blocks become 16 B of
//! nibbles + a separate f16 array), K-quant scales pre-expanded to f16/f32, and quants
//! interleaved across the threads of a row so that neighbouring threads read neighbouring
//! words (coalesced). Costs to weigh: load time, a second copy of the layout to keep
//! bit-exact with ggml, and larger buffers where scales are widened. No GPU has been lent
//! to this project yet, so Reduce on raw blocks stands unmeasured there.

use hearth_gguf::TensorType;

pub use super::Strategy;
use super::{bind_group, Kernel, Pass};
use crate::step::{Rows, SlotParams, Step};
use crate::{Gpu, GpuError};

pub const SOURCE: &str = include_str!("../../../../shaders/matmul.wgsl");

/// The decode GEMV for GPUs ([`Strategy::Reduce`], one token): see [`gemv_source`].
pub const GEMV_SOURCE: &str = include_str!("../../../../shaders/gemv.wgsl");

/// The register-tile kernel's template ([`tile_source`] fills it in).
pub const TILE_SOURCE: &str = include_str!("../../../../shaders/matmul_tile.wgsl");

/// What a matmul fuses around y = x Wᵀ: RMSNorm of x, and how y is stored ([`Fuse`]).
pub const FUSE_SOURCE: &str = include_str!("../../../../shaders/fuse.wgsl");

/// Byte readers shared by every format snippet.
pub const QUANT_COMMON: &str = include_str!("../../../../shaders/quant/common.wgsl");

/// The WGSL snippet defining `dequant_piece` for `ty`, or `None` if no kernel reads it yet.
/// Formats are separate sources because WGSL cannot select a block layout otherwise.
pub fn quant_snippet(ty: TensorType) -> Option<&'static str> {
    use TensorType::*;
    Some(match ty {
        F32 => include_str!("../../../../shaders/quant/f32.wgsl"),
        F16 => include_str!("../../../../shaders/quant/f16.wgsl"),
        Q8_0 => include_str!("../../../../shaders/quant/q8_0.wgsl"),
        Q4_0 => include_str!("../../../../shaders/quant/q4_0.wgsl"),
        Q4_1 => include_str!("../../../../shaders/quant/q4_1.wgsl"),
        Q5_0 => include_str!("../../../../shaders/quant/q5_0.wgsl"),
        Q5_1 => include_str!("../../../../shaders/quant/q5_1.wgsl"),
        Q4_K => include_str!("../../../../shaders/quant/q4_k.wgsl"),
        Q5_K => include_str!("../../../../shaders/quant/q5_k.wgsl"),
        Q6_K => include_str!("../../../../shaders/quant/q6_k.wgsl"),
        _ => return None,
    })
}

/// The formats the GPU kernels read.
pub const FORMATS: &[TensorType] = &[
    TensorType::F32,
    TensorType::F16,
    TensorType::Q8_0,
    TensorType::Q4_0,
    TensorType::Q4_1,
    TensorType::Q5_0,
    TensorType::Q5_1,
    TensorType::Q4_K,
    TensorType::Q5_K,
    TensorType::Q6_K,
];

/// How a matmul's output is stored (`shaders/fuse.wgsl`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Epilogue {
    /// y = x Wᵀ.
    Store = 0,
    /// y += x Wᵀ: the residual stream, updated in place.
    Add = 1,
    /// W is [W_gate; W_up] in one buffer: y = silu(x W_gateᵀ) ⊙ x W_upᵀ, rows / 2 wide.
    SwiGlu = 2,
    /// As SwiGlu with GELU (tanh) for silu: Gemma's feed-forward.
    GeGlu = 4,
}

impl Epilogue {
    /// W is [W_gate; W_up] and y is half as wide.
    pub fn gated(self) -> bool {
        matches!(self, Epilogue::SwiGlu | Epilogue::GeGlu)
    }
}

/// What a matmul fuses: `norm` multiplies x by RMSNorm's weights as it loads it and scales
/// each output by 1/rms(x) (the norm weights are bound at binding 4), and the epilogue. Each
/// combination is its own pipeline: the kernels see them as constants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fuse {
    pub norm: bool,
    pub epilogue: Epilogue,
}

impl Fuse {
    /// A plain matmul.
    pub const NONE: Fuse = Fuse { norm: false, epilogue: Epilogue::Store };
    /// RMSNorm(x) Wᵀ: the Q/K/V projections and the logits.
    pub const NORM: Fuse = Fuse { norm: true, epilogue: Epilogue::Store };
    /// x += a Wᵀ: Wo and W_down.
    pub const ADD: Fuse = Fuse { norm: false, epilogue: Epilogue::Add };
    /// silu(RMSNorm(x) W_gateᵀ) ⊙ RMSNorm(x) W_upᵀ: the feed-forward's first half.
    pub const NORM_SWIGLU: Fuse = Fuse { norm: true, epilogue: Epilogue::SwiGlu };
    /// gelu(RMSNorm(x) W_gateᵀ) ⊙ RMSNorm(x) W_upᵀ: Gemma's feed-forward's first half.
    pub const NORM_GEGLU: Fuse = Fuse { norm: true, epilogue: Epilogue::GeGlu };

    /// The gated fusion of a feed-forward whose gate's activation is `act`.
    pub fn norm_gated(act: hearth_model::ops::Activation) -> Fuse {
        match act {
            hearth_model::ops::Activation::Silu => Fuse::NORM_SWIGLU,
            hearth_model::ops::Activation::GeluTanh => Fuse::NORM_GEGLU,
        }
    }

    /// Output columns for a W of `rows` rows.
    pub fn out_rows(self, rows: u32) -> u32 {
        if self.epilogue.gated() {
            rows / 2
        } else {
            rows
        }
    }

    /// The code in `Params::fuse`: bit 0 norm, bits 1.. the epilogue.
    fn code(self) -> u32 {
        u32::from(self.norm) | (self.epilogue as u32) << 1
    }

    fn from_code(code: u32) -> Fuse {
        let epilogue = match code >> 1 {
            1 => Epilogue::Add,
            2 => Epilogue::SwiGlu,
            4 => Epilogue::GeGlu,
            _ => Epilogue::Store,
        };
        Fuse { norm: code & 1 != 0, epilogue }
    }
}

/// The constants `fuse.wgsl` reads and, under norm, the norm weights' binding, as
/// (cols / 4) vec4 (norm vectors are uploaded padded to whole vec4). `None`: RUNTIME, the
/// fusion read from `Params::fuse` (Tile prefill); the norm weights are always bound and
/// used only when the code says so.
fn fuse_header(fuse: Option<Fuse>) -> String {
    let norm_w = "@group(0) @binding(4) var<storage, read> norm_w: array<vec4<f32>>;\n";
    let (norm, epilogue, norm4) = match fuse {
        None => (true, 3, format!("{norm_w}fn norm4(i: u32) -> vec4<f32> {{\n    return select(vec4<f32>(1.0), norm_w[i], norm_on());\n}}\n")),
        Some(f) if f.norm => (true, f.epilogue as u32, format!("{norm_w}fn norm4(i: u32) -> vec4<f32> {{\n    return norm_w[i];\n}}\n")),
        Some(f) => (false, f.epilogue as u32, "fn norm4(i: u32) -> vec4<f32> {\n    return vec4<f32>(1.0);\n}\n".to_string()),
    };
    format!("const NORM: bool = {norm};\nconst EPILOGUE: u32 = {epilogue}u;\n{norm4}")
}

/// `kernel` with `fuse`'s constants and `fuse.wgsl` for weights of type `ty`.
pub(crate) fn fused_source(kernel: &str, ty: TensorType, fuse: Option<Fuse>) -> Result<String, GpuError> {
    Ok(format!(
        "{}{FUSE_SOURCE}
{}",
        fuse_header(fuse),
        source_for("matmul", kernel, ty)?
    ))
}

/// `kernel` (a source using `w`, `p.cols`, `PIECE`, `dequant_piece`) for weights of type `ty`.
pub(crate) fn source_for(op: &str, kernel: &str, ty: TensorType) -> Result<String, GpuError> {
    let snippet = quant_snippet(ty).ok_or_else(|| GpuError::Unsupported {
        what: format!("{ty} weights ({op})"),
        why: format!(
            "no GPU kernel reads them; supported: {}; `--backend cpu` runs more formats",
            FORMATS.iter().map(|t| t.name()).collect::<Vec<_>>().join(", ")
        ),
    })?;
    Ok(format!("{QUANT_COMMON}\n{snippet}\n{kernel}"))
}

/// Bytes of the buffer [`upload_weights`] makes for `len` bytes: whole u32 words, at least one.
pub(crate) fn weight_buffer_bytes(len: u64) -> u64 {
    len.div_ceil(4).max(1) * 4
}

/// A storage buffer holding raw GGUF bytes, zero-padded to whole u32 words.
pub fn upload_weights(gpu: &Gpu, label: &str, bytes: &[u8]) -> wgpu::Buffer {
    // Written in place rather than copied into a padded Vec<u32> and a mapped-at-creation
    // buffer first: in the browser (wasm memory never shrinks) the tensor then exists once,
    // not three times — SmolLM2's load peaked at 125 MB of wasm memory with the copies.
    let size = weight_buffer_bytes(bytes.len() as u64);
    let buffer = gpu.create_buffer(&wgpu::BufferDescriptor {
        label: Some(label),
        size,
        usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let whole = bytes.len() / 4 * 4;
    if whole > 0 {
        gpu.queue.write_buffer(&buffer, 0, &bytes[..whole]);
    }
    if whole < bytes.len() {
        let mut tail = [0u8; 4];
        tail[..bytes.len() - whole].copy_from_slice(&bytes[whole..]);
        gpu.queue.write_buffer(&buffer, whole as u64, &tail);
    }
    buffer
}

/// Threads per workgroup (Reduce).
pub const WORKGROUP: u32 = 256;
/// Rows per workgroup for decode: 64 threads per row, enough for rows of 2048 weights
/// (64 pieces) to keep every thread busy.
pub const DECODE_ROWS: u32 = 4;
/// Rows and tokens per workgroup for prefill. Workgroup memory: WORKGROUP × tile × 4 bytes.
pub const PREFILL_ROWS: u32 = 4;
pub const PREFILL_TILE: u32 = 8;

/// GEMV: rows per workgroup (each thread's 8 x values serve all of them).
pub const GEMV_ROWS: u32 = 4;

/// GEMV threads per workgroup for rows of `cols`: one slice (8 weights) per thread when the
/// row is short, up to 256; at least 32 per row for the reduction.
pub fn gemv_workgroup(cols: usize) -> u32 {
    let slices = (cols / 8).max(1).next_power_of_two() as u32;
    slices.clamp(32 * GEMV_ROWS, 256)
}

/// Whether the GEMV reads rows of `cols` (whole 8-weight slices; every quantized row is).
pub fn gemv_fits(cols: usize) -> bool {
    cols.is_multiple_of(8)
}

/// `gemv.wgsl` for weights of type `ty` with `fuse`, with its rows per workgroup.
pub fn gemv_source(ty: TensorType, fuse: Fuse) -> Result<String, GpuError> {
    Ok(format!("const R: u32 = {GEMV_ROWS}u;\n{}", fused_source(GEMV_SOURCE, ty, Some(fuse))?))
}

/// Tile: threads per workgroup (one SIMD width on lavapipe; more only adds scheduling), and
/// rows × tokens per thread for decode and prefill. Tuned on lavapipe: 16 × 16 is where
/// prefill stopped gaining (8 × 8: ~12, 16 × 16: ~20-26 GFLOP/s).
pub const TILE_WORKGROUP: u32 = 8;
pub const TILE_DECODE_ROWS: u32 = 8;
pub const TILE_PREFILL: (u32, u32) = (16, 16);

/// `matmul_tile.wgsl` for `rows` × `tokens` per thread with `fuse`: the `{{...}}` lines
/// written out. Under SwiGlu the first `rows / 2` rows are gate rows, the rest up rows.
pub fn tile_source(rows: u32, tokens: u32, fuse: Option<Fuse>) -> String {
    use std::fmt::Write;
    // Under RUNTIME (`fuse` None) the tile is laid out for SWIGLU, x is always normalised as
    // loaded (the norm weights are ones when p.fuse says no norm) and both stores are written.
    let norm = fuse.is_none_or(|f| f.norm);
    let swiglu = fuse.is_none_or(|f| f.epilogue.gated());
    let outs = if swiglu { rows / 2 } else { rows };
    let (mut declare, mut load_x, mut body) = (String::new(), String::new(), String::new());
    for r in 0..rows {
        let _ = writeln!(declare, "    let off_{r} = tile_row(out0, {r}u) * p.row_bytes;");
        for t in 0..tokens {
            let _ = writeln!(declare, "    var acc_{r}_{t} = 0.0;");
        }
    }
    let scale = |t: u32| if norm { format!(" * sc_{t}") } else { String::new() };
    // The stores of a tile of `n` outputs; `swiglu`: output o is silu(gate o) · up o.
    let stores = |n: u32, swiglu: bool, indent: &str| {
        let mut out = String::new();
        for t in 0..tokens {
            for o in 0..n {
                let at = format!("(t0 + {t}u) * p.y_stride + out0 + {o}u");
                let value = if swiglu {
                    let (g, u) = (format!("acc_{o}_{t}{}", scale(t)), format!("acc_{}_{t}{}", o + n, scale(t)));
                    format!("y[{at}] = gate_act({g}) * ({u});")
                } else {
                    format!("put({at}, acc_{o}_{t}{});", scale(t))
                };
                let guard = format!("out0 + {o}u <= last_out && t0 + {t}u <= last_token");
                let _ = writeln!(out, "{indent}if ({guard}) {{ {value} }}");
            }
        }
        out
    };
    let mut store = String::new();
    if norm {
        for t in 0..tokens {
            let _ = writeln!(declare, "    var ss_{t} = 0.0;");
            let _ = writeln!(store, "    let sc_{t} = norm_scale(ss_{t});");
        }
    }
    match fuse {
        Some(_) => store += &stores(outs, swiglu, "    "),
        None => {
            let _ = writeln!(store, "    if (gated()) {{");
            store += &stores(outs, true, "        ");
            let _ = writeln!(store, "    }} else {{");
            store += &stores(rows, false, "        ");
            let _ = writeln!(store, "    }}");
        }
    }
    if norm {
        for k in 0..8 {
            let _ = writeln!(load_x, "        let g_{k} = norm4(8u * pc + {k}u);");
        }
    }
    for t in 0..tokens {
        let _ = writeln!(declare, "    let xbase_{t} = min(t0 + {t}u, last_token) * x_row;");
        for k in 0..8 {
            let load = format!("x[xbase_{t} + 8u * pc + {k}u]");
            if norm {
                let _ = writeln!(load_x, "        let xr_{t}_{k} = {load};");
                let _ = writeln!(load_x, "        ss_{t} += dot(xr_{t}_{k}, xr_{t}_{k});");
                let _ = writeln!(load_x, "        let x_{t}_{k} = xr_{t}_{k} * g_{k};");
            } else {
                let _ = writeln!(load_x, "        let x_{t}_{k} = {load};");
            }
        }
    }
    for r in 0..rows {
        let _ = writeln!(body, "        dequant_piece(off_{r}, pc, &wv);");
        for t in 0..tokens {
            let sum: Vec<String> = (0..8).map(|k| format!("dot(wv[{k}], x_{t}_{k})")).collect();
            let _ = writeln!(body, "        acc_{r}_{t} += {};", sum.join(" + "));
        }
    }
    let header = format!(
        "const WG: u32 = {TILE_WORKGROUP}u;\nconst R_TILE: u32 = {rows}u;\nconst OUT_TILE: u32 = {outs}u;\n\
         const T_TILE: u32 = {tokens}u;\n"
    );
    let marks = [("DECLARE", &*declare), ("LOAD_X", &*load_x), ("ROWS", &*body), ("STORE", &*store)];
    header + &super::fill_template(TILE_SOURCE, &marks)
}

/// The WGSL `Params` struct, field for field.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    pub rows: u32,
    pub cols: u32,
    pub n_tokens: u32,
    pub row_bytes: u32,
    /// Elements between tokens in y: the output's width (`rows`, or `rows / 2` under
    /// [`Epilogue::SwiGlu`]). A matrix split by rows across bindings is one dispatch per
    /// part, each with y bound at its first row (a multiple of 64 rows keeps that offset
    /// 256-byte aligned) and y_stride the whole matrix's width.
    pub y_stride: u32,
    /// RMSNorm's epsilon, under [`Fuse::norm`].
    pub eps: f32,
    /// [`Fuse::code`]: which pipeline reads these parameters (the shader ignores it).
    pub fuse: u32,
    pub _pad: u32,
}

impl Params {
    /// These parameters for a matmul fusing `fuse`, with `eps` for its norm.
    pub fn fused(self, fuse: Fuse, eps: f32) -> Params {
        Params { eps, fuse: fuse.code(), ..self }
    }
}

/// One matmul part in a step: `rows` output rows of a (·, cols) weight of type `ty`, written
/// `y_stride` apart, for the whole batch or the last token.
#[derive(Debug, Clone, PartialEq)]
pub struct Slot {
    pub ty: TensorType,
    pub rows: usize,
    pub cols: usize,
    pub y_stride: usize,
    pub tokens: Rows,
    pub fuse: Fuse,
    /// RMSNorm's epsilon, under `fuse.norm`.
    pub eps: f32,
}

impl SlotParams for Slot {
    type Params = Params;
    /// Sizes were checked when the weights were loaded, so the casts cannot truncate.
    fn params(&self, step: &Step) -> Params {
        Params {
            rows: self.rows as u32,
            cols: self.cols as u32,
            n_tokens: self.tokens.of(step),
            row_bytes: self.ty.bytes_for(self.cols as u64).unwrap_or(0) as u32,
            y_stride: self.y_stride as u32,
            eps: self.eps,
            fuse: self.fuse.code(),
            _pad: 0,
        }
    }
}

#[derive(Clone)]
struct Variant {
    pipeline: wgpu::ComputePipeline,
    /// Rows and tokens one workgroup covers.
    rows: u32,
    tile: u32,
    /// Tile's RUNTIME prefill kernel: `rows` are SWIGLU's, twice as many for the others.
    runtime: bool,
}

impl Variant {
    /// Output rows one workgroup covers under `fuse`.
    fn outputs(&self, fuse: Fuse) -> u32 {
        if self.runtime && !fuse.epilogue.gated() {
            2 * self.rows
        } else {
            self.rows
        }
    }
}

/// A decode (one token) pipeline, and a prefill one where batches pass through.
struct Pair {
    decode: Variant,
    prefill: Option<Variant>,
}

impl Pair {
    fn get(&self, n_tokens: u32) -> Option<&Variant> {
        if n_tokens <= 1 {
            Some(&self.decode)
        } else {
            self.prefill.as_ref()
        }
    }
}

/// One fusion's pipelines.
struct Kernels {
    fuse: Fuse,
    /// The strategy's pipelines.
    main: Pair,
    /// Under Tile, Reduce pipelines for rows that are not whole 32-weight pieces (F32/F16
    /// only: every quantized row is whole blocks), which Tile cannot read.
    fallback: Option<Pair>,
    /// Under Reduce, the decode GEMV per row length (`gemv.wgsl`; the length is compiled in).
    gemv: Vec<(u32, Variant)>,
}

impl Kernels {
    /// The decode pipelines (and under Reduce the GEMV per row length); prefill ones are
    /// added by [`Kernels::add_prefill`] where batches pass through.
    fn new(gpu: &Gpu, ty: TensorType, strategy: Strategy, fuse: Fuse, lengths: &[usize]) -> Result<Self, GpuError> {
        let reduce_decode = || -> Result<Pair, GpuError> {
            Ok(Pair { decode: reduce_variant(gpu, ty, fuse, DECODE_ROWS, 1)?, prefill: None })
        };
        let (main, fallback) = match strategy {
            Strategy::Tile => {
                let source = fused_source(&tile_source(TILE_DECODE_ROWS, 1, Some(fuse)), ty, Some(fuse))?;
                let pipeline = gpu.compute_pipeline(&format!("matmul {ty} {fuse:?}"), &source, "main", &[])?;
                let rows = fuse.out_rows(TILE_DECODE_ROWS) * TILE_WORKGROUP;
                let decode = Variant { pipeline, rows, tile: 1, runtime: false };
                (Pair { decode, prefill: None }, if ty.block_size() == 1 { Some(reduce_decode()?) } else { None })
            }
            Strategy::Reduce => (reduce_decode()?, None),
        };
        let mut gemv = Vec::new();
        if strategy == Strategy::Reduce {
            for &cols in lengths.iter().filter(|&&c| gemv_fits(c)) {
                if gemv.iter().any(|&(c, _)| c as usize == cols) {
                    continue;
                }
                let constants = [("WG", f64::from(gemv_workgroup(cols))), ("SLICES", (cols / 8) as f64)];
                let name = format!("gemv {ty} × {cols} {fuse:?}");
                let pipeline = gpu.compute_pipeline(&name, &gemv_source(ty, fuse)?, "main", &constants)?;
                gemv.push((cols as u32, Variant { pipeline, rows: fuse.out_rows(GEMV_ROWS), tile: 1, runtime: false }));
            }
        }
        Ok(Kernels { fuse, main, fallback, gemv })
    }

    /// Adds the prefill pipelines this fusion lacks: under Tile the format's shared RUNTIME
    /// tile (`tile_prefill`), else (and for Tile's Reduce fallback) a Reduce one.
    fn add_prefill(&mut self, gpu: &Gpu, ty: TensorType, tile_prefill: Option<&Variant>) -> Result<(), GpuError> {
        let fuse = self.fuse;
        let reduce = |gpu: &Gpu| reduce_variant(gpu, ty, fuse, PREFILL_ROWS, PREFILL_TILE);
        if self.main.prefill.is_none() {
            self.main.prefill = Some(match tile_prefill {
                Some(tile) => tile.clone(),
                None => reduce(gpu)?,
            });
        }
        if let Some(fallback) = &mut self.fallback {
            if fallback.prefill.is_none() {
                fallback.prefill = Some(reduce(gpu)?);
            }
        }
        Ok(())
    }
}

/// A [`Strategy::Reduce`] pipeline (`shaders/matmul.wgsl`) of `rows` rows and `tile` tokens
/// per workgroup.
fn reduce_variant(gpu: &Gpu, ty: TensorType, fuse: Fuse, rows: u32, tile: u32) -> Result<Variant, GpuError> {
    let source = fused_source(SOURCE, ty, Some(fuse))?;
    let constants = [("WG", f64::from(WORKGROUP)), ("ROWS", f64::from(rows)), ("TILE_N", f64::from(tile))];
    let pipeline = gpu.compute_pipeline(&format!("matmul {ty} {fuse:?}"), &source, "main", &constants)?;
    Ok(Variant { pipeline, rows: fuse.out_rows(rows), tile, runtime: false })
}

pub struct MatMul {
    pub ty: TensorType,
    pub strategy: Strategy,
    /// Per fusion the model uses.
    kernels: Vec<Kernels>,
    /// Under Tile, once a fusion takes batches: the format's prefill tile (one pipeline,
    /// its fusion read at run time).
    tile_prefill: Option<Variant>,
    /// Tile's prefill tile: rows, tokens per thread.
    prefill_tile: (u32, u32),
    /// Workgroups per dispatch dimension (the device limit; lowered by tests).
    max_groups: u32,
}

impl MatMul {
    /// The kernels for `ty` with the strategy this device uses, for each (row length,
    /// fusion) in `shapes` (a decode GEMV is built per length on GPUs), with prefill
    /// pipelines for the fusions in `batched` only (more by [`MatMul::add_prefill`]).
    pub fn new(gpu: &Gpu, ty: TensorType, shapes: &[(usize, Fuse)], batched: &[Fuse]) -> Result<Self, GpuError> {
        Self::build(gpu, ty, gpu.strategy(), shapes, batched, TILE_PREFILL)
    }

    /// Every kernel of `shapes` under `strategy`, prefill included.
    pub fn with_strategy(
        gpu: &Gpu,
        ty: TensorType,
        strategy: Strategy,
        shapes: &[(usize, Fuse)],
    ) -> Result<Self, GpuError> {
        let batched: Vec<Fuse> = shapes.iter().map(|s| s.1).collect();
        Self::build(gpu, ty, strategy, shapes, &batched, TILE_PREFILL)
    }

    /// As [`MatMul::new`], under `strategy`, with Tile's prefill tile (rows, tokens per
    /// thread).
    pub(crate) fn build(
        gpu: &Gpu,
        ty: TensorType,
        strategy: Strategy,
        shapes: &[(usize, Fuse)],
        batched: &[Fuse],
        prefill_tile: (u32, u32),
    ) -> Result<Self, GpuError> {
        let mut fusions: Vec<Fuse> = Vec::new();
        for &(_, f) in shapes {
            if !fusions.contains(&f) {
                fusions.push(f);
            }
        }
        let max_groups = gpu.limits.max_compute_workgroups_per_dimension;
        let mut op = MatMul { ty, strategy, kernels: Vec::new(), tile_prefill: None, prefill_tile, max_groups };
        for fuse in fusions {
            let lengths: Vec<usize> = shapes.iter().filter(|s| s.1 == fuse).map(|s| s.0).collect();
            op.kernels.push(Kernels::new(gpu, ty, strategy, fuse, &lengths)?);
            if batched.contains(&fuse) {
                op.add_prefill(gpu, fuse)?;
            }
        }
        Ok(op)
    }

    /// Under Tile, the format's prefill tile, built on first use. It is one pipeline per
    /// format, its fusion read at run time: each unrolled 16 × 16 tile costs ~20 s to compile
    /// on SwiftShader, and one per fusion doubled the browser's load (measured: 46 → 98 s of
    /// pipeline builds for SmolLM2, natively on SwiftShader).
    fn tile_prefill(&mut self, gpu: &Gpu) -> Result<Option<Variant>, GpuError> {
        if self.strategy != Strategy::Tile {
            return Ok(None);
        }
        if self.tile_prefill.is_none() {
            let (rows, tokens) = self.prefill_tile;
            let source = fused_source(&tile_source(rows, tokens, None), self.ty, None)?;
            let pipeline = gpu.compute_pipeline(&format!("matmul {} prefill", self.ty), &source, "main", &[])?;
            self.tile_prefill =
                Some(Variant { pipeline, rows: rows / 2 * TILE_WORKGROUP, tile: tokens, runtime: true });
        }
        Ok(self.tile_prefill.clone())
    }

    /// Builds the prefill pipelines `fuse` lacks, so that batches can pass through it: the
    /// logits of every position need them for the output matrix, which a chat never asks
    /// for. `fuse` must be one of the fusions this op was built for.
    pub fn add_prefill(&mut self, gpu: &Gpu, fuse: Fuse) -> Result<(), GpuError> {
        let Some(i) = self.kernels.iter().position(|k| k.fuse == fuse) else {
            return Err(GpuError::Shader {
                kernel: format!("matmul {} {fuse:?}", self.ty),
                message: "no decode kernel was built for this fusion".into(),
            });
        };
        let tile = self.tile_prefill(gpu)?;
        self.kernels[i].add_prefill(gpu, self.ty, tile.as_ref())
    }

    /// Parameters for `y = x Wᵀ` with W (rows × cols) of this op's type and `n_tokens` rows
    /// of x; y is (n_tokens × rows). Fails if `cols` is not a whole number of blocks or the
    /// weights exceed the kernel's 32-bit byte addressing.
    pub fn params(&self, rows: usize, cols: usize, n_tokens: usize) -> Result<Params, GpuError> {
        let too_large = |needed: u64| GpuError::TooLarge {
            what: format!("a {rows} × {cols} {} matrix", self.ty),
            needed,
            allowed: u64::from(u32::MAX),
        };
        let row_bytes = self.ty.bytes_for(cols as u64).ok_or_else(|| too_large(u64::MAX))?;
        let total = row_bytes.saturating_mul(rows as u64);
        if total > u64::from(u32::MAX) || rows > u32::MAX as usize || n_tokens > u32::MAX as usize {
            return Err(too_large(total));
        }
        Ok(Params {
            rows: rows as u32,
            cols: cols as u32,
            n_tokens: n_tokens as u32,
            row_bytes: row_bytes as u32,
            y_stride: rows as u32,
            eps: 0.0,
            fuse: Fuse::NONE.code(),
            _pad: 0,
        })
    }

    /// The pipeline for `fuse` over a matrix of `cols` columns and `n_tokens` tokens.
    fn variant(&self, fuse: Fuse, cols: u32, n_tokens: u32) -> &Variant {
        let k = self.kernels.iter().find(|k| k.fuse == fuse);
        let v = k.and_then(|k| {
            if n_tokens <= 1 {
                if let Some((_, v)) = k.gemv.iter().find(|(c, _)| *c == cols) {
                    return Some(v);
                }
            }
            match &k.fallback {
                Some(reduce) if !cols.is_multiple_of(32) => reduce.get(n_tokens),
                _ => k.main.get(n_tokens),
            }
        });
        // The model builds a pipeline for every fusion it binds, with prefill where batches
        // pass (`GpuWeights::matmul_shapes`, `GpuModel::all_logits`).
        v.expect("a pipeline for every fusion and token count bound")
    }

    /// Binds the buffers for a dispatch of `fuse` over `n_tokens` tokens of a (· × `cols`)
    /// matrix (the pipeline, hence the layout, depends on all three): `w` raw GGUF bytes
    /// ([`upload_weights`]), `x` (n × cols) f32, `y` (n × y_stride) f32, and under
    /// `fuse.norm` the norm weights (cols, padded to whole vec4) f32.
    #[allow(clippy::too_many_arguments)]
    pub fn bind(
        &self,
        gpu: &Gpu,
        fuse: Fuse,
        cols: u32,
        n_tokens: u32,
        params: wgpu::BufferBinding,
        w: wgpu::BufferBinding,
        x: wgpu::BufferBinding,
        y: wgpu::BufferBinding,
        norm: Option<wgpu::BufferBinding>,
    ) -> wgpu::BindGroup {
        let v = self.variant(fuse, cols, n_tokens);
        // The RUNTIME kernel always binds norm weights; without a norm it reads x there
        // (in bounds, and ignored).
        let norm = match norm.filter(|_| fuse.norm) {
            None if v.runtime => Some(x.clone()),
            n => n,
        };
        let mut bindings = vec![(0, params), (1, w), (2, x), (3, y)];
        bindings.extend(norm.map(|n| (4, n)));
        bind_group(gpu, "matmul", &v.pipeline, &bindings)
    }
}

impl Kernel for MatMul {
    type Params = Params;
    type Bind = wgpu::BindGroup;

    fn dispatch(&self, pass: &mut Pass, bind: &wgpu::BindGroup, p: &Params) {
        let fuse = Fuse::from_code(p.fuse);
        let v = self.variant(fuse, p.cols, p.n_tokens);
        let (gx, gy) = grid(fuse.out_rows(p.rows).div_ceil(v.outputs(fuse)), self.max_groups);
        pass.dispatch(&v.pipeline, bind, [gx, gy, p.n_tokens.div_ceil(v.tile)]);
    }
}

/// Lays `groups` workgroups out as x × y with x ≤ `max` (the kernel computes x + y · x_dim
/// and skips the surplus).
pub(crate) fn grid(groups: u32, max: u32) -> (u32, u32) {
    let x = groups.clamp(1, max);
    (x, groups.div_ceil(x).max(1))
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::Arc;

    use hearth_model::Matrix;
    use rand_chacha::rand_core::RngCore;
    use rand_chacha::ChaCha8Rng;

    use super::*;
    use crate::testing::{self, Budget, Output};

    /// f32 → IEEE half bits, truncating the mantissa; values below the half normal range
    /// become zero. Enough to make test data: the reference reads back the same bits.
    pub fn f16_bits(v: f32) -> u16 {
        let b = v.to_bits();
        let sign = ((b >> 16) & 0x8000) as u16;
        let exp = ((b >> 23) & 0xff) as i32 - 127 + 15;
        if exp <= 0 {
            return sign;
        }
        assert!(exp < 31, "{v} overflows f16");
        sign | ((exp as u16) << 10) | ((b >> 13) & 0x3ff) as u16
    }

    fn f16_value(bits: u16) -> f32 {
        let mut out = [0f32];
        hearth_gguf::dequantize(TensorType::F16, &bits.to_le_bytes(), &mut out).unwrap();
        out[0]
    }

    /// A random f16 scale in [2^-7, 2^-6) (≈ 1e-2), as bytes.
    fn random_scale(rng: &mut ChaCha8Rng) -> [u8; 2] {
        ((8u16 << 10) | (rng.next_u32() & 0x3ff) as u16).to_le_bytes()
    }

    /// Random (rows × cols) weights in `ty`'s GGUF layout: legacy formats by quantizing
    /// random floats, K-quants as random blocks with sane scales (any bytes are a valid block).
    pub fn random_weights(rng: &mut ChaCha8Rng, ty: TensorType, rows: usize, cols: usize) -> Vec<u8> {
        let n = rows * cols;
        let mut out = Vec::new();
        match ty {
            TensorType::F32 => testing::random(rng, n, 1.0).iter().for_each(|v| out.extend(v.to_le_bytes())),
            TensorType::F16 => testing::random(rng, n, 1.0).iter().for_each(|&v| out.extend(f16_bits(v).to_le_bytes())),
            TensorType::Q8_0 | TensorType::Q4_0 | TensorType::Q4_1 => {
                for block in testing::random(rng, n, 1.0).chunks_exact(32) {
                    let (lo, hi) = block.iter().fold((0f32, 0f32), |(l, h), &v| (l.min(v), h.max(v)));
                    let amax = hi.max(-lo);
                    let (levels, offset) = match ty {
                        TensorType::Q8_0 => (127.0, 0.0),
                        TensorType::Q4_0 => (7.0, 8.0),
                        _ => (15.0, 0.0),
                    };
                    let (d_bits, m) = match ty {
                        TensorType::Q4_1 => (f16_bits((hi - lo) / levels), f16_bits(lo)),
                        _ => (f16_bits(amax / levels), 0),
                    };
                    let (d, m_val) = (f16_value(d_bits), f16_value(m));
                    out.extend(d_bits.to_le_bytes());
                    if ty == TensorType::Q4_1 {
                        out.extend(m.to_le_bytes());
                    }
                    let q: Vec<i32> = block.iter().map(|&v| ((v - m_val) / d).round() as i32 + offset as i32).collect();
                    match ty {
                        TensorType::Q8_0 => out.extend(q.iter().map(|&v| v.clamp(-127, 127) as i8 as u8)),
                        _ => out.extend((0..16).map(|j| (q[j].clamp(0, 15) | (q[j + 16].clamp(0, 15) << 4)) as u8)),
                    }
                }
            }
            TensorType::Q5_0 | TensorType::Q5_1 | TensorType::Q4_K | TensorType::Q5_K | TensorType::Q6_K => {
                let size = ty.type_size() as usize;
                // Byte offsets of the f16 scales (d, and m or dmin).
                let scales: &[usize] = match ty {
                    TensorType::Q5_0 => &[0],
                    TensorType::Q6_K => &[208],
                    _ => &[0, 2],
                };
                for _ in 0..n / ty.block_size() as usize {
                    let mut b: Vec<u8> = (0..size).map(|_| rng.next_u32() as u8).collect();
                    for &at in scales {
                        b[at..at + 2].copy_from_slice(&random_scale(rng));
                    }
                    out.extend(b);
                }
            }
            _ => panic!("no test data for {ty}"),
        }
        assert_eq!(out.len(), rows * ty.bytes_for(cols as u64).unwrap() as usize);
        out
    }

    /// The per-format budget.
    fn budget(ty: TensorType) -> Budget {
        match ty {
            TensorType::F32 => Budget::MATMUL_F32,
            TensorType::F16 => Budget::MATMUL_F16,
            TensorType::Q8_0 => Budget::MATMUL_Q8_0,
            TensorType::Q4_0 => Budget::MATMUL_Q4_0,
            TensorType::Q4_1 => Budget::MATMUL_Q4_1,
            TensorType::Q5_0 => Budget::MATMUL_Q5_0,
            TensorType::Q5_1 => Budget::MATMUL_Q5_1,
            TensorType::Q4_K => Budget::MATMUL_Q4_K,
            TensorType::Q5_K => Budget::MATMUL_Q5_K,
            TensorType::Q6_K => Budget::MATMUL_Q6_K,
            _ => unreachable!(),
        }
    }

    /// Runs y = x Wᵀ with `fuse` on the GPU, and its parts one by one on the CPU reference
    /// (rmsnorm, matmul, residual add, swiglu), and compares them. `rows`: rows of W.
    fn check(op: &MatMul, rng: &mut ChaCha8Rng, rows: usize, cols: usize, n: usize, fuse: Fuse) {
        const EPS: f32 = 1e-5;
        let gpu = testing::gpu();
        let ty = op.ty;
        let bytes = random_weights(rng, ty, rows, cols);
        let x = testing::random(rng, n * cols, 1.0);
        let mut g = testing::random(rng, cols.next_multiple_of(4), 1.0);
        g[cols..].fill(f32::NAN); // the padding is never read
        let xn = if fuse.norm {
            let mut xn = vec![0f32; n * cols];
            hearth_model::ops::rmsnorm_rows(&mut xn, &x, &g[..cols], EPS);
            xn
        } else {
            x.clone()
        };
        let mut y = vec![0f32; n * rows];
        let m = Matrix::new("w", ty, rows, cols, Arc::from(bytes.as_slice())).unwrap();
        hearth_model::ops::matmul(&mut y, &xn, &m);
        let out_rows = fuse.out_rows(rows as u32) as usize;
        let init = testing::random(rng, n * out_rows, 1.0);
        let want: Vec<f32> = match fuse.epilogue {
            Epilogue::Store => y,
            Epilogue::Add => y.iter().zip(&init).map(|(a, b)| a + b).collect(),
            Epilogue::SwiGlu | Epilogue::GeGlu => y
                .chunks_exact(rows)
                .flat_map(|row| {
                    let (mut gate, up) = (row[..out_rows].to_vec(), &row[out_rows..]);
                    let act = match fuse.epilogue {
                        Epilogue::GeGlu => hearth_model::ops::Activation::GeluTanh,
                        _ => hearth_model::ops::Activation::Silu,
                    };
                    hearth_model::ops::gated(&mut gate, up, act);
                    gate
                })
                .collect(),
        };

        let p = Params { y_stride: out_rows as u32, ..op.params(rows, cols, n).unwrap().fused(fuse, EPS) };
        let params = gpu.uniform("params", &p);
        let wb = upload_weights(gpu, "w", &bytes);
        let (xb, gb) = (gpu.upload("x", &x), gpu.upload("norm", &g));
        let out = if fuse.epilogue == Epilogue::Add { Output::with(gpu, &init) } else { Output::new(gpu, want.len()) };
        let bind = op.bind(
            gpu,
            fuse,
            cols as u32,
            n as u32,
            params.as_entire_buffer_binding(),
            wb.as_entire_buffer_binding(),
            xb.as_entire_buffer_binding(),
            out.binding(),
            Some(gb.as_entire_buffer_binding()),
        );
        testing::run(gpu, |pass| op.dispatch(pass, &bind, &p));
        let got = out.read(gpu);
        let what = format!("matmul {ty} {fuse:?} {:?} {rows}x{cols}, n = {n}", op.strategy);
        let budget = if fuse.epilogue.gated() { Budget::MATMUL_SWIGLU } else { budget(ty) };
        testing::assert_close(&what, &got, &want, budget);
    }

    const STRATEGIES: [Strategy; 2] = [Strategy::Reduce, Strategy::Tile];

    /// Every row length the tests use (Reduce builds a decode GEMV for those it can read).
    const ROW_LENGTHS: [usize; 8] = [57, 96, 224, 255, 256, 768, 1056, 1280];

    /// Every kernel both strategies build for `ty`, on the test adapter.
    fn ops(ty: TensorType) -> impl Iterator<Item = MatMul> {
        let shapes: Vec<(usize, Fuse)> =
            ROW_LENGTHS.into_iter().filter(|c| c % ty.block_size() as usize == 0).map(|c| (c, Fuse::NONE)).collect();
        STRATEGIES.into_iter().map(move |s| MatMul::with_strategy(testing::gpu(), ty, s, &shapes).unwrap())
    }

    impl MatMul {
        fn has_gemv(&self, fuse: Fuse, cols: usize) -> bool {
            self.kernels.iter().any(|k| k.fuse == fuse && k.gemv.iter().any(|&(c, _)| c as usize == cols))
        }
    }

    #[test]
    fn shader_is_valid_and_params_match() {
        let tiles = [(TILE_DECODE_ROWS, 1), TILE_PREFILL, (3, 5)];
        for &ty in FORMATS {
            let fusions = [Fuse::NONE, Fuse::NORM, Fuse::ADD, Fuse::NORM_SWIGLU, Fuse::NORM_GEGLU];
            let sources = fusions.into_iter().flat_map(|f| {
                let kernels = std::iter::once(SOURCE.to_string())
                    .chain(tiles.iter().map(move |&(r, t)| tile_source(r, t, Some(f))))
                    .map(move |k| fused_source(&k, ty, Some(f)).unwrap());
                let even = tiles.iter().filter(|&&(r, _)| r % 2 == 0);
                let runtime = even.map(move |&(r, t)| fused_source(&tile_source(r, t, None), ty, None).unwrap());
                kernels.chain(runtime).chain([gemv_source(ty, f).unwrap()])
            });
            for source in sources {
                for mark in ["{{DECLARE}}", "{{LOAD_X}}", "{{ROWS}}", "{{STORE}}"] {
                    assert!(!source.contains(mark), "{mark} was left unfilled");
                }
                testing::check_uniform::<Params>(
                    &source,
                    "Params",
                    &[
                        ("rows", std::mem::offset_of!(Params, rows)),
                        ("cols", std::mem::offset_of!(Params, cols)),
                        ("n_tokens", std::mem::offset_of!(Params, n_tokens)),
                        ("row_bytes", std::mem::offset_of!(Params, row_bytes)),
                        ("y_stride", std::mem::offset_of!(Params, y_stride)),
                    ],
                );
            }
        }
    }

    /// Column counts per format: not multiples of 4 blocks (nor, for F32/F16, of 4 or 32).
    fn awkward_cols(ty: TensorType) -> &'static [usize] {
        match ty.block_size() {
            1 => &[57, 96, 255],
            32 => &[96, 224, 1056],
            _ => &[256, 768, 1280],
        }
    }

    #[test]
    fn matvec_matches_cpu_reference_at_awkward_shapes() {
        let mut rng = testing::rng(2);
        for &ty in FORMATS {
            for op in ops(ty) {
                for (i, &cols) in awkward_cols(ty).iter().enumerate() {
                    let gemv = op.has_gemv(Fuse::NONE, cols);
                    assert_eq!(gemv, op.strategy == Strategy::Reduce && gemv_fits(cols), "{ty} × {cols}: GEMV built");
                    for rows in [7, 33, 130] {
                        if i == 2 && rows != 33 {
                            continue; // the longest rows once is enough
                        }
                        check(&op, &mut rng, rows, cols, 1, Fuse::NONE);
                    }
                }
            }
        }
    }

    /// The GEMV's loads are coalesced: for every format, the first loads of 32 neighbouring
    /// threads (one warp on NVIDIA) touch few 128-byte lines, for weights and for x alike.
    /// The addresses come from the shader (`trace_loads` computes them with the functions
    /// `main` loads through). The old one-thread-per-block kernel put neighbouring threads'
    /// x loads 128 bytes apart: 32 lines per warp-wide load.
    #[test]
    fn gemv_loads_are_coalesced() {
        const MAX_LINES: usize = 8;
        let gpu = testing::gpu();
        let wg = gemv_workgroup(4096);
        for &ty in FORMATS {
            let constants = [("WG", f64::from(wg)), ("SLICES", 512.0)];
            let source = gemv_source(ty, Fuse::NONE).unwrap();
            let pipeline = gpu.compute_pipeline("gemv trace", &source, "trace_loads", &constants);
            let pipeline = pipeline.unwrap();
            let out = Output::new(gpu, 2 * wg as usize);
            let bind = super::super::bind_group(gpu, "trace", &pipeline, &[(4, out.binding())]);
            testing::run(gpu, |pass| pass.dispatch(&pipeline, &bind, [1, 1, 1]));
            let addrs: Vec<u32> = out.read(gpu).iter().map(|v| v.to_bits()).collect();
            for warp in addrs.chunks_exact(64) {
                for (what, site, width) in [("weights", 0, 4), ("x", 1, 16)] {
                    let mut lines: Vec<u32> =
                        warp.iter().skip(site).step_by(2).flat_map(|&a| [a / 128, (a + width - 1) / 128]).collect();
                    lines.sort_unstable();
                    lines.dedup();
                    assert!(lines.len() <= MAX_LINES, "{ty}: a warp's {what} load touches {} lines", lines.len());
                }
            }
        }
    }

    #[test]
    fn matmul_matches_cpu_reference_at_awkward_shapes() {
        let mut rng = testing::rng(3);
        for &ty in FORMATS {
            for op in ops(ty) {
                let cols = awkward_cols(ty);
                for (rows, cols, n) in [(7, cols[0], 2), (33, cols[1], 5), (130, cols[0], 37), (33, cols[1], 64)] {
                    check(&op, &mut rng, rows, cols, n, Fuse::NONE);
                }
            }
        }
    }

    #[test]
    fn rows_beyond_one_dispatch_dimension_wrap_into_y() {
        // Reduce: 451 rows = 113 row groups of 4, laid out 3 × 38 (1 surplus group), for
        // decode and prefill. Tile: 8 groups of 64 rows (3 × 3) for decode, 4 of 128 rows
        // (3 × 2) for prefill.
        let mut rng = testing::rng(4);
        for mut op in ops(TensorType::Q4_0) {
            op.max_groups = 3;
            check(&op, &mut rng, 451, 96, 1, Fuse::NONE);
            check(&op, &mut rng, 451, 96, 19, Fuse::NONE);
        }
        assert_eq!(grid(33, 5), (5, 7));
        assert_eq!(grid(3, 65535), (3, 1));
    }

    #[test]
    fn two_matrices_fill_one_output_through_y_stride() {
        // y = [x Aᵀ | x Bᵀ] (n × 97): A's 64 rows at column 0, B's 33 at column 64 (a
        // 256-byte binding offset), as for fused projections or a matrix split in two.
        let gpu = testing::gpu();
        let mut rng = testing::rng(6);
        let (cols, n, ra, rb) = (768, 3, 64, 33);
        let cases = [(TensorType::Q4_K, 1), (TensorType::Q6_K, n)];
        for (op, tokens) in cases.iter().flat_map(|&(ty, tokens)| ops(ty).map(move |op| (op, tokens))) {
            let ty = op.ty;
            let x = testing::random(&mut rng, tokens * cols, 1.0);
            let out = Output::new(gpu, tokens * (ra + rb));
            let mut want = vec![0f32; tokens * (ra + rb)];
            let mut keep = Vec::new();
            for (rows, col0) in [(ra, 0), (rb, ra)] {
                let bytes = random_weights(&mut rng, ty, rows, cols);
                let mut part = vec![0f32; tokens * rows];
                let m = Matrix::new("w", ty, rows, cols, Arc::from(bytes.as_slice())).unwrap();
                hearth_model::ops::matmul(&mut part, &x, &m);
                for t in 0..tokens {
                    want[t * (ra + rb) + col0..][..rows].copy_from_slice(&part[t * rows..][..rows]);
                }
                let params = Params { y_stride: (ra + rb) as u32, ..op.params(rows, cols, tokens).unwrap() };
                keep.push((gpu.uniform("params", &params), upload_weights(gpu, "w", &bytes), params, col0));
            }
            let xb = gpu.upload("x", &x);
            let whole = out.binding();
            let binds: Vec<_> = keep
                .iter()
                .map(|(params, wb, _, col0)| {
                    let y = wgpu::BufferBinding {
                        buffer: whole.buffer,
                        offset: whole.offset + (*col0 as u64) * 4,
                        size: std::num::NonZeroU64::new((tokens * (ra + rb) - col0) as u64 * 4),
                    };
                    let (p, w, x) = (
                        params.as_entire_buffer_binding(),
                        wb.as_entire_buffer_binding(),
                        xb.as_entire_buffer_binding(),
                    );
                    op.bind(gpu, Fuse::NONE, cols as u32, tokens as u32, p, w, x, y, None)
                })
                .collect();
            testing::run(gpu, |pass| {
                for (bind, (_, _, p, _)) in binds.iter().zip(&keep) {
                    op.dispatch(pass, bind, p);
                }
            });
            let got = out.read(gpu);
            testing::assert_close(&format!("matmul {ty} [A | B], n = {tokens}"), &got, &want, budget(ty));
        }
    }

    /// Tile's prefill tile in the fused test: the model's 16 × 16 takes lavapipe ~45 s to
    /// compile per pipeline (30 of them here). The fusion's generated lines are the same at
    /// every tile size; the model's tile runs fused in the tiny-model and SmolLM2 tests.
    const TEST_TILE: (u32, u32) = (4, 3);

    /// Every fusion, for every format under both strategies: the decode kernels (the GEMV on
    /// Reduce) and the prefill ones, at awkward shapes: row counts that leave the last
    /// workgroup part empty (odd numbers of outputs under SwiGLU), token counts that leave
    /// the last tile part empty.
    #[test]
    fn fused_matmuls_match_cpu_reference() {
        let mut rng = testing::rng(11);
        for &ty in FORMATS {
            let cols = awkward_cols(ty)[1];
            for fuse in [Fuse::NORM, Fuse::ADD, Fuse::NORM_SWIGLU, Fuse::NORM_GEGLU] {
                for strategy in STRATEGIES {
                    let op = MatMul::build(testing::gpu(), ty, strategy, &[(cols, fuse)], &[fuse], TEST_TILE).unwrap();
                    assert_eq!(op.has_gemv(fuse, cols), strategy == Strategy::Reduce && gemv_fits(cols));
                    for (rows, n) in [(2 * 37, 1), (2 * 65, 1), (2 * 37, 5), (2 * 65, 19)] {
                        check(&op, &mut rng, rows, cols, n, fuse);
                    }
                }
            }
        }
    }

    /// A fusion built for decode only (the output matrix: a chat needs the logits of one
    /// position) has no prefill pipeline until asked for one; then batches match the CPU,
    /// F32 rows that are not whole 32-weight pieces (Tile's Reduce fallback) included.
    #[test]
    fn prefill_pipelines_are_built_on_first_use() {
        let mut rng = testing::rng(12);
        for (ty, cols) in [(TensorType::Q8_0, 224), (TensorType::F32, 57)] {
            for strategy in STRATEGIES {
                let gpu = testing::gpu();
                let mut op = MatMul::build(gpu, ty, strategy, &[(cols, Fuse::NORM)], &[], TEST_TILE).unwrap();
                let k = &op.kernels[0];
                let prefills = || k.main.prefill.iter().chain(k.fallback.as_ref().and_then(|f| f.prefill.as_ref()));
                assert_eq!(prefills().count(), 0, "{ty} {strategy:?}: a prefill pipeline built for decode only");
                assert!(op.tile_prefill.is_none());
                check(&op, &mut rng, 37, cols, 1, Fuse::NORM);
                op.add_prefill(gpu, Fuse::NORM).unwrap();
                op.add_prefill(gpu, Fuse::NORM).unwrap(); // built once
                check(&op, &mut rng, 37, cols, 5, Fuse::NORM);
                assert!(op.add_prefill(gpu, Fuse::ADD).is_err(), "a fusion without a decode kernel");
            }
        }
    }

    #[test]
    fn unsupported_format_is_an_error_naming_it() {
        let err = MatMul::new(testing::gpu(), TensorType::Q3_K, &[(256, Fuse::NONE)], &[]).err().unwrap().to_string();
        assert!(err.contains("Q3_K") && err.contains("Q4_K"), "{err}");
    }
}
