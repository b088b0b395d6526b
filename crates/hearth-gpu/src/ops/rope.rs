//! Rotary position embedding, in place (`shaders/rope.wgsl`). CPU reference:
//! `hearth_model::ops::Rope`.

use hearth_model::ops::{Rope as RopeSpec, RopeMode};

use super::{bind_group, Kernel, Pass};
use crate::step::{SlotParams, Step};
use crate::{Gpu, GpuError};

pub const SOURCE: &str = include_str!("../../../../shaders/rope.wgsl");

/// Threads per workgroup; one invocation per rotated pair, workgroups along (pairs, tokens).
pub const WORKGROUP: u32 = 64;

/// The WGSL `Params` struct, field for field.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    pub n_tokens: u32,
    pub n_heads: u32,
    pub head_dim: u32,
    pub n_rot: u32,
    pub start: u32,
    /// 0 = interleaved (llama), 1 = NeoX.
    pub mode: u32,
    pub has_factors: u32,
    /// `freq_base^(-2/n_rot)`, computed here with the CPU's `powf` so that θ matches it.
    pub theta_scale: f32,
    pub freq_scale: f32,
    pub _pad: [u32; 3],
}

impl Params {
    /// Parameters for rotating `n_tokens` tokens of `n_heads` heads at positions
    /// `start..start + n_tokens`.
    pub fn new(rope: &RopeSpec, n_tokens: u32, n_heads: u32, start: u32) -> Self {
        Params {
            n_tokens,
            n_heads,
            head_dim: rope.head_dim as u32,
            n_rot: rope.n_rot as u32,
            start,
            mode: match rope.mode {
                RopeMode::Interleaved => 0,
                RopeMode::Neox => 1,
            },
            has_factors: u32::from(rope.freq_factors.is_some()),
            theta_scale: rope.freq_base.powf(-2.0 / rope.n_rot as f32),
            freq_scale: rope.freq_scale,
            _pad: [0; 3],
        }
    }
}

/// What a step rotates: `n_heads` heads of every token of the batch, with the model's RoPE.
#[derive(Debug, Clone, PartialEq)]
pub struct Slot {
    pub n_heads: usize,
}

impl SlotParams for Slot {
    type Params = Params;
    fn params(&self, step: &Step) -> Params {
        Params::new(step.rope, step.n as u32, self.n_heads as u32, step.start as u32)
    }
}

pub struct Rope {
    pipeline: wgpu::ComputePipeline,
    /// Bound in place of the frequency factors when a model has none (the shader skips it).
    no_factors: wgpu::Buffer,
}

impl Rope {
    pub fn new(gpu: &Gpu) -> Result<Self, GpuError> {
        let pipeline = gpu.compute_pipeline("rope", SOURCE, "main", &[("WG", f64::from(WORKGROUP))])?;
        Ok(Rope { pipeline, no_factors: gpu.upload("rope no factors", &[1f32]) })
    }

    /// `x`: (n_tokens, n_heads, head_dim) f32, rotated in place; `freq_factors`: (n_rot / 2)
    /// f32 or `None` (then `Params::has_factors` must be 0).
    pub fn bind(
        &self,
        gpu: &Gpu,
        params: wgpu::BufferBinding,
        x: wgpu::BufferBinding,
        freq_factors: Option<wgpu::BufferBinding>,
    ) -> wgpu::BindGroup {
        let factors = freq_factors.unwrap_or_else(|| self.no_factors.as_entire_buffer_binding());
        bind_group(gpu, "rope", &self.pipeline, &[(0, params), (1, x), (2, factors)])
    }
}

impl Kernel for Rope {
    type Params = Params;
    type Bind = wgpu::BindGroup;

    fn dispatch(&self, pass: &mut Pass, bind: &wgpu::BindGroup, params: &Params) {
        let pairs = params.n_heads * (params.n_rot / 2);
        pass.dispatch(&self.pipeline, bind, [pairs.div_ceil(WORKGROUP), params.n_tokens, 1]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{self, Budget, GUARD};

    #[test]
    fn rope_shader_is_valid_and_params_match() {
        use std::mem::offset_of;
        testing::check_uniform::<Params>(
            SOURCE,
            "Params",
            &[
                ("n_tokens", offset_of!(Params, n_tokens)),
                ("n_heads", offset_of!(Params, n_heads)),
                ("head_dim", offset_of!(Params, head_dim)),
                ("n_rot", offset_of!(Params, n_rot)),
                ("start", offset_of!(Params, start)),
                ("mode", offset_of!(Params, mode)),
                ("has_factors", offset_of!(Params, has_factors)),
                ("theta_scale", offset_of!(Params, theta_scale)),
                ("freq_scale", offset_of!(Params, freq_scale)),
            ],
        );
    }

    /// Runs the kernel on `x` in a buffer fenced by guard words and returns the result.
    fn run_rope(gpu: &Gpu, op: &Rope, params: &Params, x: &[f32], factors: Option<&[f32]>) -> Vec<f32> {
        let g = (gpu.limits.min_storage_buffer_offset_alignment as usize / 4).max(64);
        let mut words = vec![GUARD; g];
        words.extend(x.iter().map(|v| v.to_bits()));
        words.extend(std::iter::repeat_n(GUARD, g));
        let buf = gpu.upload("x", &words);
        let binding = wgpu::BufferBinding {
            buffer: &buf,
            offset: (g * 4) as u64,
            size: std::num::NonZeroU64::new(x.len() as u64 * 4),
        };
        let pb = gpu.uniform("params", params);
        let fb = factors.map(|f| gpu.upload("freq factors", f));
        let bind =
            op.bind(gpu, pb.as_entire_buffer_binding(), binding, fb.as_ref().map(|b| b.as_entire_buffer_binding()));
        testing::run(gpu, |pass| op.dispatch(pass, &bind, params));
        let back: Vec<u32> = gpu.read_back(&buf).unwrap();
        for (i, &w) in back[..g].iter().chain(&back[g + x.len()..]).enumerate() {
            assert_eq!(w, GUARD, "guard word {i} was overwritten: out-of-bounds write");
        }
        back[g..g + x.len()].iter().map(|&w| f32::from_bits(w)).collect()
    }

    fn nmse(got: &[f32], want: &[f32]) -> f64 {
        let err: f64 = got.iter().zip(want).map(|(&g, &w)| (f64::from(g) - f64::from(w)).powi(2)).sum();
        err / want.iter().map(|&w| f64::from(w).powi(2)).sum::<f64>()
    }

    #[test]
    fn rope_matches_cpu_reference() {
        let gpu = testing::gpu();
        let op = Rope::new(gpu).unwrap();
        let mut rng = testing::rng(3);
        // (mode, n_tokens, n_heads, head_dim, n_rot, start, freq_base, freq_scale, factors)
        let cases = [
            (RopeMode::Interleaved, 5, 9, 64, 64, 0, 10000.0, 1.0, false),
            (RopeMode::Neox, 3, 4, 40, 40, 17, 1_000_000.0, 1.0, false),
            (RopeMode::Interleaved, 2, 3, 128, 128, 8000, 500_000.0, 1.0, true),
            (RopeMode::Neox, 7, 6, 80, 48, 300, 10000.0, 0.25, true),
            (RopeMode::Interleaved, 1, 2, 10, 6, 65_000, 10000.0, 0.5, false),
        ];
        for (mode, n, heads, hd, n_rot, start, base, scale, with_factors) in cases {
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
            let x = testing::random(&mut rng, n * heads * hd, 2.0);
            let mut want = x.clone();
            for (t, row) in want.chunks_exact_mut(heads * hd).enumerate() {
                spec.apply(row, &spec.cos_sin(start + t));
            }
            let params = Params::new(&spec, n as u32, heads as u32, start as u32);
            let got = run_rope(gpu, &op, &params, &x, factors.as_deref());
            let label = format!("rope {mode:?} {n}x{heads}x{hd} rot {n_rot} start {start}");
            eprintln!("{label}: NMSE {:.3e}", nmse(&got, &want));
            testing::assert_close(&label, &got, &want, Budget::ROPE);
        }
    }
}
