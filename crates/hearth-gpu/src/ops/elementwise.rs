//! In-place element-wise ops (`shaders/elementwise.wgsl`): SwiGLU and GeGLU, for models whose
//! gate and up projections are two matmuls (different formats); otherwise they are fused into
//! the gate/up matmul (`ops::matmul::Fuse`). CPU reference: `hearth_model::ops::gated`.

use super::{bind_group, Kernel, Pass};
use crate::step::{SlotParams, Step};
use crate::{Gpu, GpuError};

pub const SOURCE: &str = include_str!("../../../../shaders/elementwise.wgsl");

/// Threads per workgroup, one element each.
pub const WORKGROUP: u32 = 256;

/// The WGSL `Params` struct, field for field.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    pub n: u32,
    pub _pad: [u32; 3],
}

impl Params {
    pub fn new(n: u32) -> Self {
        Params { n, _pad: [0; 3] }
    }
}

/// What a step covers: `width` columns of every token of the batch.
#[derive(Debug, Clone, PartialEq)]
pub struct Slot {
    pub width: usize,
}

impl SlotParams for Slot {
    type Params = Params;
    fn params(&self, step: &Step) -> Params {
        Params::new((step.n * self.width) as u32)
    }
}

/// Which entry point of `elementwise.wgsl`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `x = silu(x) * y` (x: gate, y: up).
    SwiGlu,
    /// `x = gelu(x) * y` (Gemma).
    GeGlu,
}

impl Kind {
    /// The gated FFN middle for a gate activated by `act`.
    pub fn gated(act: hearth_model::ops::Activation) -> Kind {
        match act {
            hearth_model::ops::Activation::Silu => Kind::SwiGlu,
            hearth_model::ops::Activation::GeluTanh => Kind::GeGlu,
        }
    }
}

/// One element-wise op: `x ← f(x, y)` over `n` elements, both (n) f32.
pub struct Elementwise {
    pipeline: wgpu::ComputePipeline,
    workgroup: u32,
    /// Workgroups per grid dimension: the device's limit (tests lower it).
    max_groups: u32,
}

impl Elementwise {
    pub fn new(gpu: &Gpu, kind: Kind) -> Result<Self, GpuError> {
        Self::with_workgroup(gpu, kind, WORKGROUP)
    }

    pub fn with_workgroup(gpu: &Gpu, kind: Kind, workgroup: u32) -> Result<Self, GpuError> {
        let entry = match kind {
            Kind::SwiGlu => "swiglu",
            Kind::GeGlu => "geglu",
        };
        let pipeline = gpu.compute_pipeline(entry, SOURCE, entry, &[("WG", f64::from(workgroup))])?;
        Ok(Elementwise { pipeline, workgroup, max_groups: gpu.limits.max_compute_workgroups_per_dimension })
    }

    /// `x` is read and written in place; `y` is read.
    pub fn bind(
        &self,
        gpu: &Gpu,
        params: wgpu::BufferBinding,
        x: wgpu::BufferBinding,
        y: wgpu::BufferBinding,
    ) -> wgpu::BindGroup {
        bind_group(gpu, "elementwise", &self.pipeline, &[(0, params), (1, x), (2, y)])
    }
}

impl Kernel for Elementwise {
    type Params = Params;
    type Bind = wgpu::BindGroup;

    /// Records the op over the `n` elements of the bound params.
    fn dispatch(&self, pass: &mut Pass, bind: &wgpu::BindGroup, p: &Params) {
        let (gx, gy) = grid(p.n, self.workgroup, self.max_groups);
        pass.dispatch(&self.pipeline, bind, [gx, gy, 1]);
    }
}

/// The (x, y) workgroup grid covering `n` elements with at most `max_groups` per dimension;
/// the shader numbers workgroup (wx, wy) as `wy * gx + wx`, so a ragged last row is bounded
/// by `n`.
pub fn grid(n: u32, workgroup: u32, max_groups: u32) -> (u32, u32) {
    let groups = n.div_ceil(workgroup);
    if groups <= max_groups {
        (groups, 1)
    } else {
        let gy = groups.div_ceil(max_groups);
        (groups.div_ceil(gy), gy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{self, Budget, GUARD};

    #[test]
    fn shader_is_valid_and_params_match() {
        testing::check_uniform::<Params>(SOURCE, "Params", &[("n", std::mem::offset_of!(Params, n))]);
    }

    /// An in-place buffer: `[guard × G][data][guard × G]`, bound to the middle.
    struct InPlace {
        buffer: wgpu::Buffer,
        g: usize,
        n: usize,
    }

    impl InPlace {
        fn new(gpu: &Gpu, data: &[f32]) -> Self {
            let g = (gpu.limits.min_storage_buffer_offset_alignment as usize / 4).max(64);
            let mut words = vec![GUARD; g];
            words.extend(data.iter().map(|v| v.to_bits()));
            words.extend(std::iter::repeat_n(GUARD, g));
            InPlace { buffer: gpu.upload("x", &words), g, n: data.len() }
        }

        fn binding(&self) -> wgpu::BufferBinding<'_> {
            wgpu::BufferBinding {
                buffer: &self.buffer,
                offset: (self.g * 4) as u64,
                size: std::num::NonZeroU64::new(self.n as u64 * 4),
            }
        }

        fn read(&self, gpu: &Gpu) -> Vec<f32> {
            let words: Vec<u32> = gpu.read_back(&self.buffer).expect("read back");
            for (i, &w) in words[..self.g].iter().chain(&words[self.g + self.n..]).enumerate() {
                assert_eq!(w, GUARD, "guard word {i} was overwritten: out-of-bounds write");
            }
            words[self.g..self.g + self.n].iter().map(|&w| f32::from_bits(w)).collect()
        }
    }

    fn run_op(op: &Elementwise, x: &[f32], y: &[f32]) -> Vec<f32> {
        let gpu = testing::gpu();
        let params = gpu.uniform("params", &Params::new(x.len() as u32));
        let xb = InPlace::new(gpu, x);
        let yb = gpu.upload("y", y);
        let bind = op.bind(gpu, params.as_entire_buffer_binding(), xb.binding(), yb.as_entire_buffer_binding());
        testing::run(gpu, |pass| op.dispatch(pass, &bind, &Params::new(x.len() as u32)));
        xb.read(gpu)
    }

    fn check(op: &Elementwise, kind: Kind, n: usize, seed: u64) {
        let mut rng = testing::rng(seed);
        let x = testing::random(&mut rng, n, 8.0);
        let y = testing::random(&mut rng, n, 2.0);
        let mut want = x.clone();
        let budget = match kind {
            Kind::SwiGlu => {
                hearth_model::ops::swiglu(&mut want, &y);
                Budget::SWIGLU
            }
            Kind::GeGlu => {
                hearth_model::ops::gated(&mut want, &y, hearth_model::ops::Activation::GeluTanh);
                Budget::SWIGLU
            }
        };
        let got = run_op(op, &x, &y);
        testing::assert_close(&format!("{kind:?} n={n}"), &got, &want, budget);
    }

    #[test]
    fn matches_cpu_reference_at_awkward_sizes() {
        let gpu = testing::gpu();
        for kind in [Kind::SwiGlu, Kind::GeGlu] {
            let op = Elementwise::new(gpu, kind).unwrap();
            for (seed, n) in [1, 3, 255, 257, 1000, 4097].into_iter().enumerate() {
                check(&op, kind, n, seed as u64);
            }
        }
    }

    #[test]
    fn swiglu_is_finite_at_extreme_gates() {
        let gpu = testing::gpu();
        let op = Elementwise::new(gpu, Kind::SwiGlu).unwrap();
        let x: Vec<f32> = [-1e4f32, -1e3, -100.0, -89.0, -88.0, -20.0, -0.0, 0.0, 20.0, 88.0, 89.0, 100.0, 1e3, 1e4]
            .into_iter()
            .collect();
        let y: Vec<f32> = (0..x.len()).map(|i| if i % 2 == 0 { 1.5 } else { -0.5 }).collect();
        let got = run_op(&op, &x, &y);
        for (i, (&g, &v)) in got.iter().zip(&x).enumerate() {
            assert!(g.is_finite(), "silu({v}) * {} = {g}", y[i]);
            let v = f64::from(v);
            let want = v / (1.0 + (-v).exp()) * f64::from(y[i]);
            let tol = 1e-6 * want.abs() + 1e-30;
            assert!((f64::from(g) - want).abs() <= tol, "silu({v}) * {}: {g} vs {want}", y[i]);
        }
    }

    #[test]
    fn geglu_is_finite_at_extreme_gates() {
        let gpu = testing::gpu();
        let op = Elementwise::new(gpu, Kind::GeGlu).unwrap();
        let x: Vec<f32> = vec![-1e4, -1e3, -100.0, -20.0, -3.0, -0.0, 0.0, 3.0, 20.0, 100.0, 1e3, 1e4];
        let y = vec![1.5f32; x.len()];
        let got = run_op(&op, &x, &y);
        for ((&g, &v), &u) in got.iter().zip(&x).zip(&y) {
            let want = hearth_model::ops::Activation::GeluTanh.apply(v) * u;
            assert!(g.is_finite() && (g - want).abs() <= 1e-6 * want.abs() + 1e-6, "gelu({v}) * {u}: {g} vs {want}");
        }
    }

    #[test]
    fn grid_spreads_over_two_dimensions() {
        assert_eq!(grid(0, 64, 65535), (0, 1));
        assert_eq!(grid(1, 64, 65535), (1, 1));
        assert_eq!(grid(65535 * 64, 64, 65535), (65535, 1));
        assert_eq!(grid(65535 * 64 + 7, 64, 65535), (32768, 2));
        // A tiny per-dimension limit runs the 2D index math on the device, with a ragged
        // last row of workgroups that must write nothing.
        let gpu = testing::gpu();
        for kind in [Kind::SwiGlu] {
            let mut op = Elementwise::with_workgroup(gpu, kind, 64).unwrap();
            op.max_groups = 3;
            for n in [64 * 3 + 1, 64 * 7 + 5, 64 * 9] {
                assert!(grid(n as u32, 64, 3).1 > 1);
                check(&op, kind, n, 40 + n as u64);
            }
        }
    }

    #[test]
    fn more_workgroups_than_one_dimension_allows() {
        let gpu = testing::gpu();
        let op = Elementwise::with_workgroup(gpu, Kind::SwiGlu, 64).unwrap();
        let n = op.max_groups as usize * 64 + 7;
        let t = std::time::Instant::now();
        check(&op, Kind::SwiGlu, n, 99);
        eprintln!("swiglu over {n} elements: {:?}", t.elapsed());
    }
}
