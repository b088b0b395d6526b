//! Rotary position embedding of Q and K, fused with the append of K and V to the f16 KV cache
//! (`shaders/rope.wgsl`): one dispatch between a layer's Q/K/V projection and its attention.
//! It also adds the Q/K/V biases (Qwen2) and RMS-normalises each query and key head (Qwen3)
//! on the way, so those families' layers stay six dispatches.
//! CPU reference: `hearth_model::ops::Rope`, `add_assign` and `rmsnorm_heads` as the model's
//! forward pass orders them, and f16 rounding for the cache (layout in `ops::attention`).

use hearth_model::ops::{Rope as RopeSpec, RopeMode};

use super::{bind_group, Kernel, Pass};
use crate::step::{SlotParams, Step};
use crate::{Gpu, GpuError};

pub const SOURCE: &str = include_str!("../../../../shaders/rope.wgsl");

/// Threads per workgroup; one invocation per pair of adjacent outputs, workgroups along
/// (pairs, tokens).
pub const WORKGROUP: u32 = 64;

/// The WGSL `Params` struct, field for field.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    pub n_tokens: u32,
    pub n_heads: u32,
    pub n_kv_heads: u32,
    pub head_dim: u32,
    pub n_rot: u32,
    pub start: u32,
    /// 0 = interleaved (llama), 1 = NeoX.
    pub mode: u32,
    pub has_factors: u32,
    /// `freq_base^(-2/n_rot)`, computed here with the CPU's `powf` so that θ matches it.
    pub theta_scale: f32,
    pub freq_scale: f32,
    pub q_stride: u32,
    pub kv_stride: u32,
    pub q_off: u32,
    pub k_off: u32,
    pub v_off: u32,
    pub has_bias: u32,
    pub has_qk_norm: u32,
    /// The Q/K norms' epsilon.
    pub eps: f32,
    pub _pad: [u32; 2],
}

/// Where a step's q, k and v rows lie in the projection's output, in f32 elements: token t's
/// q at `q_off + t · q_stride`, its k and v at `k_off`/`v_off + t · kv_stride`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    pub q_stride: usize,
    pub kv_stride: usize,
    pub q_off: usize,
    pub k_off: usize,
    pub v_off: usize,
}

impl Layout {
    /// One [Q | K | V] row per token (the projection was one matmul).
    pub fn rows(q_dim: usize, kv_dim: usize) -> Layout {
        let stride = q_dim + 2 * kv_dim;
        Layout { q_stride: stride, kv_stride: stride, q_off: 0, k_off: q_dim, v_off: q_dim + kv_dim }
    }
}

/// What a step rotates and appends: `n_heads` query and `n_kv_heads` key/value heads of
/// every token of the batch, laid out as `layout` says, with the model's RoPE (unless
/// `rotate` is off), biases added where `bias`, heads normalised where `qk_norm`.
#[derive(Debug, Clone, PartialEq)]
pub struct Slot {
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub layout: Layout,
    pub rotate: bool,
    pub bias: bool,
    pub qk_norm: bool,
    /// The Q/K norms' epsilon (under `qk_norm`).
    pub eps: f32,
    /// A sliding layer's own θ base (Gemma 3), unscaled and without frequency factors, in
    /// place of the model's RoPE.
    pub local_base: Option<f32>,
}

impl Slot {
    /// A layer that rotates, with neither biases nor Q/K norms (Llama's).
    pub fn plain(n_heads: usize, n_kv_heads: usize, layout: Layout) -> Slot {
        Slot { n_heads, n_kv_heads, layout, rotate: true, bias: false, qk_norm: false, eps: 0.0, local_base: None }
    }
}

impl Params {
    /// Parameters for `n_tokens` tokens at positions `start..start + n_tokens`. Sizes were
    /// checked at load (they fit in u32).
    pub fn new(rope: &RopeSpec, slot: &Slot, n_tokens: u32, start: u32) -> Self {
        let l = slot.layout;
        let n_rot = if slot.rotate { rope.n_rot as u32 } else { 0 };
        // As hearth_model's Rope::local for a sliding layer.
        let (freq_base, freq_scale, has_factors) = match slot.local_base {
            Some(base) => (base, 1.0, false),
            None => (rope.freq_base, rope.freq_scale, rope.freq_factors.is_some()),
        };
        Params {
            n_tokens,
            n_heads: slot.n_heads as u32,
            n_kv_heads: slot.n_kv_heads as u32,
            head_dim: rope.head_dim as u32,
            n_rot,
            start,
            mode: match rope.mode {
                RopeMode::Interleaved => 0,
                RopeMode::Neox => 1,
            },
            has_factors: u32::from(has_factors),
            theta_scale: freq_base.powf(-2.0 / rope.n_rot as f32),
            freq_scale,
            q_stride: l.q_stride as u32,
            kv_stride: l.kv_stride as u32,
            q_off: l.q_off as u32,
            k_off: l.k_off as u32,
            v_off: l.v_off as u32,
            has_bias: u32::from(slot.bias),
            has_qk_norm: u32::from(slot.qk_norm),
            eps: slot.eps,
            _pad: [0; 2],
        }
    }
}

impl SlotParams for Slot {
    type Params = Params;
    fn params(&self, step: &Step) -> Params {
        Params::new(step.rope, self, step.n as u32, step.start as u32)
    }
}

/// Bytes of the buffers this op owns (the placeholder bound where a model has no frequency
/// factors, biases or norms), for the memory plan.
pub(crate) const OWN_BYTES: u64 = 4;

pub struct RopeKv {
    pipeline: wgpu::ComputePipeline,
    /// Bound in place of the frequency factors, biases or Q/K norms where a model has none
    /// (the params say so and the shader skips them).
    placeholder: wgpu::Buffer,
}

/// The optional inputs of a layer's RoPE: each `None` where the model has none.
#[derive(Default)]
pub struct Extras<'a> {
    /// (n_rot / 2) f32 (then `Params::has_factors` must be 1)
    pub freq_factors: Option<wgpu::BufferBinding<'a>>,
    /// [b_q; b_k; b_v] f32 (`Slot::bias`)
    pub bias: Option<wgpu::BufferBinding<'a>>,
    /// [g_q; g_k] f32 (`Slot::qk_norm`)
    pub qk_norm: Option<wgpu::BufferBinding<'a>>,
}

impl RopeKv {
    pub fn new(gpu: &Gpu) -> Result<Self, GpuError> {
        let pipeline = gpu.compute_pipeline("rope + kv write", SOURCE, "main", &[("WG", f64::from(WORKGROUP))])?;
        Ok(RopeKv { pipeline, placeholder: gpu.upload("rope placeholder", &[1f32; (OWN_BYTES / 4) as usize]) })
    }

    /// `src`: the projection's output (q, k, v where the params say); `q_out`: (n_tokens,
    /// n_heads, head_dim) f32; the caches: one layer's, (positions, kv_dim / 2) u32.
    #[allow(clippy::too_many_arguments)]
    pub fn bind<'a>(
        &'a self,
        gpu: &Gpu,
        params: wgpu::BufferBinding<'a>,
        src: wgpu::BufferBinding<'a>,
        extras: Extras<'a>,
        q_out: wgpu::BufferBinding<'a>,
        k_cache: wgpu::BufferBinding<'a>,
        v_cache: wgpu::BufferBinding<'a>,
    ) -> wgpu::BindGroup {
        let or_placeholder =
            |b: Option<wgpu::BufferBinding<'a>>| b.unwrap_or_else(|| self.placeholder.as_entire_buffer_binding());
        let bindings = [
            (0, params),
            (1, src),
            (2, or_placeholder(extras.freq_factors)),
            (3, q_out),
            (4, k_cache),
            (5, v_cache),
            (6, or_placeholder(extras.bias)),
            (7, or_placeholder(extras.qk_norm)),
        ];
        bind_group(gpu, "rope + kv write", &self.pipeline, &bindings)
    }
}

impl Kernel for RopeKv {
    type Params = Params;
    type Bind = wgpu::BindGroup;

    fn dispatch(&self, pass: &mut Pass, bind: &wgpu::BindGroup, p: &Params) {
        let items = (p.n_heads + p.n_kv_heads) * (p.head_dim / 2);
        pass.dispatch(&self.pipeline, bind, [items.div_ceil(WORKGROUP), p.n_tokens, 1]);
    }
}

#[cfg(test)]
mod tests {
    use half::f16;

    use super::*;
    use crate::testing::{self, Budget, Output, POISON};

    #[test]
    fn rope_shader_is_valid_and_params_match() {
        use std::mem::offset_of;
        let fields = [
            ("n_tokens", offset_of!(Params, n_tokens)),
            ("n_heads", offset_of!(Params, n_heads)),
            ("n_kv_heads", offset_of!(Params, n_kv_heads)),
            ("head_dim", offset_of!(Params, head_dim)),
            ("n_rot", offset_of!(Params, n_rot)),
            ("start", offset_of!(Params, start)),
            ("mode", offset_of!(Params, mode)),
            ("has_factors", offset_of!(Params, has_factors)),
            ("theta_scale", offset_of!(Params, theta_scale)),
            ("freq_scale", offset_of!(Params, freq_scale)),
            ("q_stride", offset_of!(Params, q_stride)),
            ("kv_stride", offset_of!(Params, kv_stride)),
            ("q_off", offset_of!(Params, q_off)),
            ("k_off", offset_of!(Params, k_off)),
            ("v_off", offset_of!(Params, v_off)),
            ("has_bias", offset_of!(Params, has_bias)),
            ("has_qk_norm", offset_of!(Params, has_qk_norm)),
            ("eps", offset_of!(Params, eps)),
        ];
        // The struct alone: the kernel's pack2x16float needs a capability check_uniform
        // does not grant (ops/attention.rs validates the whole shader with it).
        let start = SOURCE.find("struct Params {").unwrap();
        let end = start + SOURCE[start..].find("\n}\n").unwrap() + 3;
        testing::check_uniform::<Params>(&SOURCE[start..end], "Params", &fields);
    }

    const SENTINEL: u32 = 0x5a5a_a5a5;

    /// f16 bits of `a` and `b` differ by at most one unit in the last place (WGSL leaves
    /// pack2x16float's rounding to the implementation).
    fn assert_f16_words(what: &str, got: &[u32], want: &[f32]) {
        for (i, &g) in got.iter().enumerate() {
            for half in 0..2 {
                let w = f16::from_f32(want[2 * i + half]).to_bits();
                let g = (g >> (16 * half)) as u16;
                assert!(
                    (i32::from(g) - i32::from(w)).abs() <= 1,
                    "{what}: element {} is f16 {g:#06x}, want {w:#06x}",
                    2 * i + half
                );
            }
        }
    }

    /// RoPE of Q into `q_out` and of K into the cache, V into the cache, against the CPU
    /// reference, for both RoPE modes, partial rotation, frequency factors, both source
    /// layouts (one [Q | K | V] row per token; three regions with poisoned gaps), Q/K/V biases
    /// (Qwen2), per-head Q/K norms (Qwen3), both together, and a layer that does not rotate
    /// (SmolLM3).
    #[test]
    fn rope_and_kv_write_match_cpu_reference() {
        let gpu = testing::gpu();
        let op = RopeKv::new(gpu).unwrap();
        let mut rng = testing::rng(3);
        // (mode, n_tokens, n_heads, n_kv_heads, head_dim, n_rot, start, freq_base, freq_scale,
        //  factors, one row per token, biases, Q/K norms, rotate, a sliding layer's own base)
        let cases = [
            (RopeMode::Interleaved, 5, 9, 3, 64, 64, 0, 10000.0, 1.0, false, true, false, false, true, None),
            (RopeMode::Neox, 3, 4, 4, 40, 40, 17, 1_000_000.0, 1.0, false, false, false, false, true, None),
            (RopeMode::Interleaved, 2, 3, 1, 128, 128, 8000, 500_000.0, 1.0, true, true, false, false, true, None),
            (RopeMode::Neox, 7, 6, 2, 80, 48, 300, 10000.0, 0.25, true, true, false, false, true, None),
            (RopeMode::Interleaved, 1, 2, 2, 10, 6, 65_000, 10000.0, 0.5, false, false, false, false, true, None),
            (RopeMode::Neox, 1, 16, 8, 66, 66, 2047, 10000.0, 1.0, false, true, false, false, true, None),
            (RopeMode::Neox, 4, 7, 1, 64, 64, 33, 1_000_000.0, 1.0, false, true, true, false, true, None),
            (RopeMode::Neox, 3, 6, 3, 34, 34, 5, 1_000_000.0, 1.0, false, false, true, false, true, None),
            (RopeMode::Neox, 5, 8, 2, 128, 128, 1000, 1_000_000.0, 1.0, false, true, false, true, true, None),
            (RopeMode::Neox, 2, 3, 3, 22, 22, 7, 10000.0, 1.0, false, false, true, true, true, None),
            (RopeMode::Interleaved, 3, 4, 2, 16, 16, 40, 10000.0, 1.0, false, true, false, false, false, None),
            (RopeMode::Neox, 4, 4, 1, 32, 32, 900, 1_000_000.0, 0.125, true, true, false, true, true, Some(10000.0)),
        ];
        for (
            mode,
            n,
            heads,
            kv_heads,
            hd,
            n_rot,
            start,
            base,
            scale,
            with_factors,
            rows,
            with_bias,
            with_norm,
            rotate,
            local,
        ) in cases
        {
            let factors = with_factors.then(|| {
                testing::random(&mut rng, n_rot / 2, 1.0).iter().map(|f| 1.0 + 4.0 * f.abs()).collect::<Vec<f32>>()
            });
            let spec = RopeSpec {
                mode,
                head_dim: hd,
                n_rot,
                freq_base: base,
                freq_scale: scale,
                freq_factors: factors.clone(),
            };
            let (q_dim, kv_dim) = (heads * hd, kv_heads * hd);
            let q = testing::random(&mut rng, n * q_dim, 2.0);
            let k = testing::random(&mut rng, n * kv_dim, 2.0);
            let v = testing::random(&mut rng, n * kv_dim, 1.0);
            let bias = with_bias.then(|| testing::random(&mut rng, q_dim + 2 * kv_dim, 3.0));
            let norm = with_norm.then(|| testing::random(&mut rng, 2 * hd, 1.5));
            let eps = 1e-6;
            let layout = if rows {
                Layout::rows(q_dim, kv_dim)
            } else {
                // Three regions, 3 poisoned words apart.
                let k_off = n * q_dim + 3;
                Layout { q_stride: q_dim, kv_stride: kv_dim, q_off: 0, k_off, v_off: k_off + n * kv_dim + 3 }
            };
            let len = layout.v_off + (n - 1) * layout.kv_stride + kv_dim + 2;
            let mut src = vec![POISON; len];
            for t in 0..n {
                for (off, stride, data, width) in [
                    (layout.q_off, layout.q_stride, &q, q_dim),
                    (layout.k_off, layout.kv_stride, &k, kv_dim),
                    (layout.v_off, layout.kv_stride, &v, kv_dim),
                ] {
                    let at = off + t * stride;
                    for (d, &x) in src[at..at + width].iter_mut().zip(&data[t * width..][..width]) {
                        *d = x.to_bits();
                    }
                }
            }
            // As hearth_model's forward pass: biases, then the heads' norms, then RoPE.
            let (mut want_q, mut want_k, mut want_v) = (q.clone(), k.clone(), v.clone());
            if let Some(b) = &bias {
                let (bq, rest) = b.split_at(q_dim);
                let (bk, bv) = rest.split_at(kv_dim);
                for (m, b) in [(&mut want_q, bq), (&mut want_k, bk), (&mut want_v, bv)] {
                    m.chunks_exact_mut(b.len()).for_each(|row| hearth_model::ops::add_assign(row, b));
                }
            }
            if let Some(g) = &norm {
                hearth_model::ops::rmsnorm_heads(&mut want_q, &g[..hd], eps);
                hearth_model::ops::rmsnorm_heads(&mut want_k, &g[hd..], eps);
            }
            // A sliding layer rotates as hearth_model's Rope::local: its base, unscaled, no factors.
            let local_spec =
                local.map(|b| RopeSpec { freq_base: b, freq_scale: 1.0, freq_factors: None, ..spec.clone() });
            if rotate {
                let spec = local_spec.as_ref().unwrap_or(&spec);
                for t in 0..n {
                    let cs = spec.cos_sin(start + t);
                    spec.apply(&mut want_q[t * q_dim..][..q_dim], &cs);
                    spec.apply(&mut want_k[t * kv_dim..][..kv_dim], &cs);
                }
            }

            let slot = Slot {
                n_heads: heads,
                n_kv_heads: kv_heads,
                layout,
                rotate,
                bias: with_bias,
                qk_norm: with_norm,
                eps,
                local_base: local,
            };
            let params = Params::new(&spec, &slot, n as u32, start as u32);
            let capacity = start + n + 2;
            let words = vec![SENTINEL; capacity * kv_dim / 2];
            let (kc, vc) = (gpu.upload("k cache", &words), gpu.upload("v cache", &words));
            let (pb, sb) = (gpu.uniform("params", &params), gpu.upload("src", &src));
            let fb = factors.as_ref().map(|f| gpu.upload("freq factors", f));
            let bb = bias.as_ref().map(|b| gpu.upload("bias", b));
            let nb = norm.as_ref().map(|g| gpu.upload("qk norm", g));
            let q_out = Output::new(gpu, n * q_dim);
            let bind = op.bind(
                gpu,
                pb.as_entire_buffer_binding(),
                sb.as_entire_buffer_binding(),
                Extras {
                    freq_factors: fb.as_ref().map(|b| b.as_entire_buffer_binding()),
                    bias: bb.as_ref().map(|b| b.as_entire_buffer_binding()),
                    qk_norm: nb.as_ref().map(|b| b.as_entire_buffer_binding()),
                },
                q_out.binding(),
                kc.as_entire_buffer_binding(),
                vc.as_entire_buffer_binding(),
            );
            testing::run(gpu, |pass| op.dispatch(pass, &bind, &params));
            let label = format!(
                "rope {mode:?} {n}x{heads}/{kv_heads}x{hd} rot {n_rot} start {start} rows {rows} bias {with_bias} \
                 norm {with_norm} rotate {rotate} local {local:?}"
            );
            testing::assert_close(&format!("{label}: q"), &q_out.read(gpu), &want_q, Budget::ROPE);
            for (name, buf, want) in [("k", &kc, &want_k), ("v", &vc, &want_v)] {
                let got: Vec<u32> = gpu.read_back(buf).unwrap();
                let (w0, w1) = (start * kv_dim / 2, (start + n) * kv_dim / 2);
                let outside = got[..w0].iter().chain(&got[w1..]).position(|&w| w != SENTINEL);
                assert!(outside.is_none(), "{label}: {name} cache written outside positions {start}..{}", start + n);
                assert_f16_words(&format!("{label}: {name} cache"), &got[w0..w1], want);
            }
        }
    }
}
