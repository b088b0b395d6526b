//! Softmax over rows (`shaders/softmax.wgsl`), out of place or in place. CPU reference:
//! `hearth_model::ops::softmax`.

use crate::ops::elementwise::grid;
use crate::ops::{bind_group, Pass};
use crate::{Gpu, GpuError};

pub const SOURCE: &str = include_str!("../../../../shaders/softmax.wgsl");

/// Threads per workgroup (one workgroup per row); a power of two for the tree reductions.
pub const WORKGROUP: u32 = 256;

/// The WGSL `Params` struct, field for field.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    pub n_cols: u32,
    pub n_rows: u32,
    pub _pad: [u32; 2],
}

pub struct Softmax {
    out_of_place: wgpu::ComputePipeline,
    in_place: wgpu::ComputePipeline,
    /// Workgroups per grid dimension: the device's limit (tests lower it).
    max_groups: u32,
}

impl Softmax {
    pub fn new(gpu: &Gpu) -> Result<Self, GpuError> {
        let constants = [("WG", f64::from(WORKGROUP))];
        Ok(Softmax {
            out_of_place: gpu.compute_pipeline("softmax", SOURCE, "main", &constants)?,
            in_place: gpu.compute_pipeline("softmax in place", SOURCE, "in_place", &constants)?,
            max_groups: gpu.limits.max_compute_workgroups_per_dimension,
        })
    }

    /// `y = softmax(x)` row by row; x, y: (n_rows, n_cols) f32.
    pub fn bind(
        &self,
        gpu: &Gpu,
        params: wgpu::BufferBinding,
        x: wgpu::BufferBinding,
        y: wgpu::BufferBinding,
    ) -> wgpu::BindGroup {
        bind_group(gpu, "softmax", &self.out_of_place, &[(0, params), (1, x), (2, y)])
    }

    /// `y = softmax(y)` row by row, in place; y: (n_rows, n_cols) f32.
    pub fn bind_in_place(&self, gpu: &Gpu, params: wgpu::BufferBinding, y: wgpu::BufferBinding) -> wgpu::BindGroup {
        bind_group(gpu, "softmax in place", &self.in_place, &[(0, params), (2, y)])
    }

    /// Records the out-of-place form (a bind group from [`Softmax::bind`]).
    pub fn dispatch(&self, pass: &mut Pass, bind: &wgpu::BindGroup, n_rows: u32) {
        self.record(pass, &self.out_of_place, bind, n_rows);
    }

    /// Records the in-place form (a bind group from [`Softmax::bind_in_place`]).
    pub fn dispatch_in_place(&self, pass: &mut Pass, bind: &wgpu::BindGroup, n_rows: u32) {
        self.record(pass, &self.in_place, bind, n_rows);
    }

    fn record(&self, pass: &mut Pass, pipeline: &wgpu::ComputePipeline, bind: &wgpu::BindGroup, n: u32) {
        let (gx, gy) = grid(n, 1, self.max_groups);
        pass.dispatch(pipeline, bind, [gx, gy, 1]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{self, Budget, Output};

    #[test]
    fn softmax_shader_is_valid_and_params_match() {
        testing::check_uniform::<Params>(
            SOURCE,
            "Params",
            &[("n_cols", std::mem::offset_of!(Params, n_cols)), ("n_rows", std::mem::offset_of!(Params, n_rows))],
        );
    }

    fn nmse(got: &[f32], want: &[f32]) -> f64 {
        let err: f64 = got.iter().zip(want).map(|(&g, &w)| (f64::from(g) - f64::from(w)).powi(2)).sum();
        err / want.iter().map(|&w| f64::from(w).powi(2)).sum::<f64>()
    }

    #[test]
    fn softmax_matches_cpu_reference_out_of_place_and_in_place() {
        let gpu = testing::gpu();
        let mut op = Softmax::new(gpu).unwrap();
        let mut rng = testing::rng(5);
        // (n_rows, n_cols, scale, max workgroups per dimension): the last case spreads rows
        // over a 2D grid with a ragged last row of workgroups.
        for (n_rows, n_cols, scale, max_groups) in
            [(1, 1, 1.0, 65535), (3, 57, 4.0, 65535), (2, 300, 20.0, 65535), (4, 1000, 8.0, 65535), (7, 33, 3.0, 3)]
        {
            op.max_groups = max_groups;
            let x = testing::random(&mut rng, n_rows * n_cols, scale);
            let mut want = x.clone();
            want.chunks_exact_mut(n_cols).for_each(hearth_model::ops::softmax);
            let params = gpu.uniform("params", &Params { n_cols: n_cols as u32, n_rows: n_rows as u32, _pad: [0; 2] });
            let label = format!("softmax {n_rows}x{n_cols}");

            let xb = gpu.upload("x", &x);
            let out = Output::new(gpu, n_rows * n_cols);
            let bind = op.bind(gpu, params.as_entire_buffer_binding(), xb.as_entire_buffer_binding(), out.binding());
            testing::run(gpu, |pass| op.dispatch(pass, &bind, n_rows as u32));
            let got = out.read(gpu);
            eprintln!("{label}: NMSE {:.3e}", nmse(&got, &want));
            testing::assert_close(&label, &got, &want, Budget::SOFTMAX);

            let yb = gpu.upload("y", &x);
            let bind = op.bind_in_place(gpu, params.as_entire_buffer_binding(), yb.as_entire_buffer_binding());
            testing::run(gpu, |pass| op.dispatch_in_place(pass, &bind, n_rows as u32));
            let got: Vec<f32> = gpu.read_back(&yb).unwrap();
            testing::assert_close(&format!("{label} in place"), &got, &want, Budget::SOFTMAX);
        }
    }
}
