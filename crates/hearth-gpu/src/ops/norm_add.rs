//! A sub-block's output added to the residual stream through its own RMSNorm
//! (`shaders/norm_add.wgsl`): Gemma 3's post-attention and post-FFN norms, one dispatch each
//! after Wo and W_down (which then store instead of adding). CPU reference:
//! `hearth_model::ops::rmsnorm_rows` then `add_assign`, as `Model::forward` does it.

use super::{bind_group, Kernel, Pass};
use crate::step::{SlotParams, Step};
use crate::{Gpu, GpuError};

pub const SOURCE: &str = include_str!("../../../../shaders/norm_add.wgsl");

/// Threads per workgroup (one workgroup per token).
pub const WORKGROUP: u32 = 64;

/// The WGSL `Params` struct, field for field.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    pub n_tokens: u32,
    pub dim: u32,
    pub eps: f32,
    pub _pad: u32,
}

/// What a step covers: every token of the batch, rows of `dim`.
#[derive(Debug, Clone, PartialEq)]
pub struct Slot {
    pub dim: usize,
    pub eps: f32,
}

impl SlotParams for Slot {
    type Params = Params;
    fn params(&self, step: &Step) -> Params {
        Params { n_tokens: step.n as u32, dim: self.dim as u32, eps: self.eps, _pad: 0 }
    }
}

pub struct NormAdd {
    pipeline: wgpu::ComputePipeline,
    /// Workgroups per grid dimension: the device's limit.
    max_groups: u32,
}

impl NormAdd {
    pub fn new(gpu: &Gpu) -> Result<Self, GpuError> {
        let pipeline = gpu.compute_pipeline("norm + add", SOURCE, "main", &[("WG", f64::from(WORKGROUP))])?;
        Ok(NormAdd { pipeline, max_groups: gpu.limits.max_compute_workgroups_per_dimension })
    }

    /// `x` (n_tokens × dim) is updated in place from `o` (n_tokens × dim) and the norm's
    /// weights `w` (dim).
    pub fn bind(
        &self,
        gpu: &Gpu,
        params: wgpu::BufferBinding,
        x: wgpu::BufferBinding,
        o: wgpu::BufferBinding,
        w: wgpu::BufferBinding,
    ) -> wgpu::BindGroup {
        bind_group(gpu, "norm + add", &self.pipeline, &[(0, params), (1, x), (2, o), (3, w)])
    }
}

impl Kernel for NormAdd {
    type Params = Params;
    type Bind = wgpu::BindGroup;

    fn dispatch(&self, pass: &mut Pass, bind: &wgpu::BindGroup, p: &Params) {
        let (gx, gy) = super::matmul::grid(p.n_tokens, self.max_groups);
        pass.dispatch(&self.pipeline, bind, [gx, gy, 1]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{self, Budget, Output};

    #[test]
    fn shader_is_valid_and_params_match() {
        use std::mem::offset_of;
        let fields = [
            ("n_tokens", offset_of!(Params, n_tokens)),
            ("dim", offset_of!(Params, dim)),
            ("eps", offset_of!(Params, eps)),
        ];
        testing::check_uniform::<Params>(SOURCE, "Params", &fields);
    }

    /// Against the CPU's norm then add, at widths below, at and above the workgroup, odd ones
    /// included, and at 1 and several tokens; a tiny grid limit spreads tokens over two
    /// dimensions.
    #[test]
    fn matches_cpu_reference_at_awkward_sizes() {
        let gpu = testing::gpu();
        let mut op = NormAdd::new(gpu).unwrap();
        let mut rng = testing::rng(21);
        for (n, dim, max_groups) in [(1, 7, None), (3, 64, None), (5, 640, None), (2, 1153, None), (9, 96, Some(4))] {
            if let Some(m) = max_groups {
                op.max_groups = m;
            }
            let x = testing::random(&mut rng, n * dim, 3.0);
            let o = testing::random(&mut rng, n * dim, 20.0);
            let w = testing::random(&mut rng, dim, 2.0);
            let eps = 1e-6;
            let mut want = vec![0f32; n * dim];
            hearth_model::ops::rmsnorm_rows(&mut want, &o, &w, eps);
            hearth_model::ops::add_assign(&mut want, &x);

            let p = Params { n_tokens: n as u32, dim: dim as u32, eps, _pad: 0 };
            let pb = gpu.uniform("params", &p);
            let out = Output::with(gpu, &x);
            let (ob, wb) = (gpu.upload("o", &o), gpu.upload("w", &w));
            let bind = op.bind(
                gpu,
                pb.as_entire_buffer_binding(),
                out.binding(),
                ob.as_entire_buffer_binding(),
                wb.as_entire_buffer_binding(),
            );
            testing::run(gpu, |pass| op.dispatch(pass, &bind, &p));
            testing::assert_close(&format!("norm + add {n}x{dim}"), &out.read(gpu), &want, Budget::NORM_ADD);
        }
    }
}
