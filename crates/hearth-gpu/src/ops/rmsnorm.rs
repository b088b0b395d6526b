//! RMSNorm over rows (`shaders/rmsnorm.wgsl`). CPU reference: `hearth_model::ops::rmsnorm`.

use super::{bind_group, Kernel, Pass};
use crate::step::{Rows, SlotParams, Step};
use crate::{Gpu, GpuError};

pub const SOURCE: &str = include_str!("../../../../shaders/rmsnorm.wgsl");

/// Threads per workgroup (one workgroup per row); a power of two for the tree reduction.
pub const WORKGROUP: u32 = 256;

/// The WGSL `Params` struct, field for field.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    pub dim: u32,
    pub n_rows: u32,
    pub eps: f32,
    pub _pad: u32,
}

/// What a step's RMSNorm reads: rows of `dim` (the whole batch or the last token).
#[derive(Debug, Clone, PartialEq)]
pub struct Slot {
    pub dim: usize,
    pub eps: f32,
    pub rows: Rows,
}

impl SlotParams for Slot {
    type Params = Params;
    fn params(&self, step: &Step) -> Params {
        Params { dim: self.dim as u32, n_rows: self.rows.of(step), eps: self.eps, _pad: 0 }
    }
}

pub struct RmsNorm {
    pipeline: wgpu::ComputePipeline,
}

impl RmsNorm {
    pub fn new(gpu: &Gpu) -> Result<Self, GpuError> {
        let pipeline = gpu.compute_pipeline("rmsnorm", SOURCE, "main", &[("WG", f64::from(WORKGROUP))])?;
        Ok(RmsNorm { pipeline })
    }

    /// Records `y = rmsnorm(x) * w` for `n_rows` rows. Bindings are built by the caller once
    /// and reused (see [`RmsNorm::bind`]).
    pub fn bind(
        &self,
        gpu: &Gpu,
        params: wgpu::BufferBinding,
        x: wgpu::BufferBinding,
        w: wgpu::BufferBinding,
        y: wgpu::BufferBinding,
    ) -> wgpu::BindGroup {
        bind_group(gpu, "rmsnorm", &self.pipeline, &[(0, params), (1, x), (2, w), (3, y)])
    }
}

impl Kernel for RmsNorm {
    type Params = Params;
    type Bind = wgpu::BindGroup;

    fn dispatch(&self, pass: &mut Pass, bind: &wgpu::BindGroup, p: &Params) {
        pass.dispatch(&self.pipeline, bind, [p.n_rows, 1, 1]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{self, Budget, Output};

    #[test]
    fn shader_is_valid_and_params_match() {
        testing::check_uniform::<Params>(
            SOURCE,
            "Params",
            &[
                ("dim", std::mem::offset_of!(Params, dim)),
                ("n_rows", std::mem::offset_of!(Params, n_rows)),
                ("eps", std::mem::offset_of!(Params, eps)),
            ],
        );
    }

    #[test]
    fn matches_cpu_reference_at_awkward_shapes() {
        let gpu = testing::gpu();
        let op = RmsNorm::new(gpu).unwrap();
        let mut rng = testing::rng(1);
        for (n_rows, dim) in [(1, 1), (3, 57), (2, 255), (5, 576), (1, 2049)] {
            let x = testing::random(&mut rng, n_rows * dim, 3.0);
            let w = testing::random(&mut rng, dim, 1.0);
            let eps = 1e-5;
            let mut want = vec![0f32; n_rows * dim];
            hearth_model::ops::rmsnorm_rows(&mut want, &x, &w, eps);

            let p = Params { dim: dim as u32, n_rows: n_rows as u32, eps, _pad: 0 };
            let params = gpu.uniform("params", &p);
            let xb = gpu.upload("x", &x);
            let wb = gpu.upload("w", &w);
            let out = Output::new(gpu, n_rows * dim);
            let bind = op.bind(
                gpu,
                params.as_entire_buffer_binding(),
                xb.as_entire_buffer_binding(),
                wb.as_entire_buffer_binding(),
                out.binding(),
            );
            testing::run(gpu, |pass| op.dispatch(pass, &bind, &p));
            let got = out.read(gpu);
            testing::assert_close(&format!("rmsnorm {n_rows}x{dim}"), &got, &want, Budget::RMSNORM);
        }
    }
}
