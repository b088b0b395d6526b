//! Token selection on the device (`shaders/sample.wgsl`): greedy argmax and temperature +
//! top-k + top-p + min-p sampling with a uniform number from the host, so a decode step
//! reads back one u32 instead of the logits. CPU references: `hearth_model::{argmax, Sampler}`.
//!
//! The sampler keeps at most [`K_MAX`] candidates (see the shader for the algorithm) and does
//! not apply the repetition penalty: callers that want one sample on the CPU.

use super::{bind_group, Kernel, Pass};
use crate::step::{SlotParams, Step};
use crate::{Gpu, GpuError};

pub const SOURCE: &str = include_str!("../../../../shaders/sample.wgsl");

/// Threads per workgroup; a power of two for the reductions and scans.
pub const WORKGROUP: u32 = 256;
/// Most candidates the sampler keeps (its top-k ceiling); a power of two for the bitonic sort.
pub const K_MAX: u32 = 256;
/// Argmax: fewest logits per workgroup of the first pass, and most workgroups in it (the
/// second pass reduces their results in one workgroup).
pub const ARGMAX_CHUNK: u32 = 4096;
pub const MAX_PARTIALS: u32 = 256;

/// Bytes of the buffers this op owns (argmax's (value, index) partials), for the memory plan.
pub(crate) const OWN_BYTES: u64 = 4 * 2 * MAX_PARTIALS as u64;

/// The WGSL `Params` struct, field for field.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    pub n: u32,
    pub top_k: u32,
    pub top_p: f32,
    pub min_p: f32,
    pub temperature: f32,
    pub u: f32,
    pub chunk: u32,
    pub n_partials: u32,
}

impl Params {
    /// Greedy argmax over `n` logits.
    pub fn argmax(n: u32) -> Self {
        let n_partials = n.div_ceil(ARGMAX_CHUNK).clamp(1, MAX_PARTIALS);
        let chunk = n.div_ceil(n_partials).max(1);
        Params { n, top_k: 1, top_p: 1.0, min_p: 0.0, temperature: 0.0, u: 0.0, chunk, n_partials }
    }

    /// Whether [`Params::sample`] follows `s` completely: the repetition penalty is not
    /// applied on the device, so with one the caller samples on the CPU.
    pub fn supports(s: &hearth_model::SamplingParams) -> bool {
        s.repeat_penalty == 1.0
    }

    /// Sampling over `n` logits with `s`'s temperature, top-k, top-p and min-p (not its
    /// repetition penalty or seed), drawing with `u` in [0, 1).
    pub fn sample(n: u32, s: &hearth_model::SamplingParams, u: f32) -> Self {
        Params {
            n,
            top_k: u32::try_from(s.top_k).unwrap_or(0),
            top_p: s.top_p,
            min_p: s.min_p,
            temperature: s.temperature,
            u,
            chunk: 0,
            n_partials: 0,
        }
    }
}

/// Greedy argmax over the `vocab` logits of the last position.
#[derive(Debug, Clone, PartialEq)]
pub struct ArgmaxSlot {
    pub vocab: usize,
}

impl SlotParams for ArgmaxSlot {
    type Params = Params;
    fn params(&self, _: &Step) -> Params {
        Params::argmax(self.vocab as u32)
    }
}

/// Sampling over the `vocab` logits of the last position, with the step's parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct SampleSlot {
    pub vocab: usize,
}

impl SlotParams for SampleSlot {
    type Params = Params;
    fn params(&self, step: &Step) -> Params {
        step.sample.unwrap_or_else(|| Params::argmax(self.vocab as u32))
    }
}

/// Greedy argmax: two dispatches (per-chunk partial results, then one workgroup over them).
/// Owns the scratch buffer of partial results, so one `Argmax` serves one stream of work.
pub struct Argmax {
    partial: wgpu::ComputePipeline,
    last: wgpu::ComputePipeline,
    partials: wgpu::Buffer,
}

pub struct ArgmaxBind {
    partial: wgpu::BindGroup,
    last: wgpu::BindGroup,
}

impl Argmax {
    pub fn new(gpu: &Gpu) -> Result<Self, GpuError> {
        Self::with_workgroup(gpu, WORKGROUP)
    }

    /// `workgroup`: a power of two.
    pub fn with_workgroup(gpu: &Gpu, workgroup: u32) -> Result<Self, GpuError> {
        let c = [("WG", f64::from(workgroup)), ("K_MAX", f64::from(K_MAX))];
        let partial = gpu.compute_pipeline("argmax_partial", SOURCE, "argmax_partial", &c)?;
        let last = gpu.compute_pipeline("argmax_final", SOURCE, "argmax_final", &c)?;
        let partials = gpu.upload("argmax partials", &vec![0u32; (OWN_BYTES / 4) as usize]);
        Ok(Argmax { partial, last, partials })
    }

    /// `params` from [`Params::argmax`]; logits: (n) f32; out: (1) u32, the token id.
    pub fn bind(
        &self,
        gpu: &Gpu,
        params: wgpu::BufferBinding,
        logits: wgpu::BufferBinding,
        out: wgpu::BufferBinding,
    ) -> ArgmaxBind {
        let partials = self.partials.as_entire_buffer_binding();
        ArgmaxBind {
            partial: bind_group(
                gpu,
                "argmax_partial",
                &self.partial,
                &[(0, params.clone()), (1, logits), (2, partials.clone())],
            ),
            last: bind_group(gpu, "argmax_final", &self.last, &[(0, params), (2, partials), (3, out)]),
        }
    }
}

impl Kernel for Argmax {
    type Params = Params;
    type Bind = ArgmaxBind;

    /// Records both passes, over the `n_partials` of the bound params.
    fn dispatch(&self, pass: &mut Pass, bind: &ArgmaxBind, p: &Params) {
        pass.dispatch(&self.partial, &bind.partial, [p.n_partials, 1, 1]);
        pass.dispatch(&self.last, &bind.last, [1, 1, 1]);
    }
}

/// Temperature + top-k + top-p + min-p sampling in one workgroup.
pub struct Sample {
    pipeline: wgpu::ComputePipeline,
}

impl Sample {
    pub fn new(gpu: &Gpu) -> Result<Self, GpuError> {
        Self::with_workgroup(gpu, WORKGROUP)
    }

    /// `workgroup`: a power of two, at most the device's limit; it need not match [`K_MAX`].
    pub fn with_workgroup(gpu: &Gpu, workgroup: u32) -> Result<Self, GpuError> {
        let c = [("WG", f64::from(workgroup)), ("K_MAX", f64::from(K_MAX))];
        Ok(Sample { pipeline: gpu.compute_pipeline("sample", SOURCE, "sample", &c)? })
    }

    /// `params` from [`Params::sample`]; logits: (n) f32; out: (1) u32, the token id.
    pub fn bind(
        &self,
        gpu: &Gpu,
        params: wgpu::BufferBinding,
        logits: wgpu::BufferBinding,
        out: wgpu::BufferBinding,
    ) -> wgpu::BindGroup {
        bind_group(gpu, "sample", &self.pipeline, &[(0, params), (1, logits), (3, out)])
    }
}

impl Kernel for Sample {
    type Params = Params;
    type Bind = wgpu::BindGroup;

    fn dispatch(&self, pass: &mut Pass, bind: &wgpu::BindGroup, _: &Params) {
        pass.dispatch(&self.pipeline, bind, [1, 1, 1]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{self, Output};
    use hearth_model::SamplingParams;
    use rand_chacha::rand_core::RngCore;

    #[test]
    fn shader_is_valid_and_params_match() {
        use std::mem::offset_of;
        testing::check_uniform::<Params>(
            SOURCE,
            "Params",
            &[
                ("n", offset_of!(Params, n)),
                ("top_k", offset_of!(Params, top_k)),
                ("top_p", offset_of!(Params, top_p)),
                ("min_p", offset_of!(Params, min_p)),
                ("temperature", offset_of!(Params, temperature)),
                ("u", offset_of!(Params, u)),
                ("chunk", offset_of!(Params, chunk)),
                ("n_partials", offset_of!(Params, n_partials)),
            ],
        );
    }

    fn gpu_argmax(op: &Argmax, logits: &[f32]) -> u32 {
        let gpu = testing::gpu();
        let p = Params::argmax(logits.len() as u32);
        let params = gpu.uniform("params", &p);
        let lb = gpu.upload("logits", &logits[..logits.len().max(1)]);
        let out = Output::new(gpu, 1);
        let bind = op.bind(gpu, params.as_entire_buffer_binding(), lb.as_entire_buffer_binding(), out.binding());
        testing::run(gpu, |pass| op.dispatch(pass, &bind, &p));
        out.read(gpu)[0].to_bits()
    }

    fn cpu_argmax(logits: &[f32]) -> u32 {
        let cands: Vec<(u32, f32)> = logits.iter().enumerate().map(|(i, &l)| (i as u32, l)).collect();
        hearth_model::argmax(&cands)
    }

    #[test]
    fn argmax_matches_cpu_on_random_logits() {
        let op = Argmax::new(testing::gpu()).unwrap();
        let mut rng = testing::rng(7);
        // The last size needs more than MAX_PARTIALS chunks of ARGMAX_CHUNK: longer chunks.
        for n in [1, 2, 1000, 4097, 49152, 128256, (MAX_PARTIALS * ARGMAX_CHUNK) as usize + 5] {
            let logits = testing::random(&mut rng, n, 10.0);
            assert_eq!(gpu_argmax(&op, &logits), cpu_argmax(&logits), "argmax of {n} random logits");
        }
        assert_eq!(Params::argmax(MAX_PARTIALS * ARGMAX_CHUNK + 5).n_partials, MAX_PARTIALS);
    }

    #[test]
    fn argmax_ties_go_to_the_lowest_id() {
        let op = Argmax::new(testing::gpu()).unwrap();
        let mut rng = testing::rng(8);
        // Few distinct values: the maximum appears many times, in several chunks.
        for n in [3, 1000, 49152, 128256] {
            let logits: Vec<f32> = testing::random(&mut rng, n, 4.0).iter().map(|v| v.round()).collect();
            assert_eq!(gpu_argmax(&op, &logits), cpu_argmax(&logits), "argmax of {n} rounded logits");
        }
        let n = 128256;
        let mut logits = vec![1.0f32; n];
        assert_eq!(gpu_argmax(&op, &logits), 0, "all equal");
        logits[n - 1] = 2.0;
        logits[70000] = 2.0;
        assert_eq!(gpu_argmax(&op, &logits), 70000, "two maxima in different chunks");
        let mut logits = vec![f32::NEG_INFINITY; 5000];
        assert_eq!(gpu_argmax(&op, &logits), 0, "all -inf");
        logits[4999] = -1e30;
        logits[17] = f32::NAN;
        assert_eq!(gpu_argmax(&op, &logits), cpu_argmax(&logits), "NaN is never the maximum");
        let logits = [-0.0f32, 0.0, -1.0];
        assert_eq!(gpu_argmax(&op, &logits), cpu_argmax(&logits), "-0 and +0 tie");
    }

    /// The shader's rule in plain Rust (f64 sums): the candidates left after top-k, top-p and
    /// min-p, best first, with their normalised cumulative probabilities at temperature.
    fn reference_candidates(logits: &[f32], s: &SamplingParams) -> (Vec<u32>, Vec<f64>) {
        if logits.is_empty() {
            return (vec![0], vec![1.0]);
        }
        if s.temperature <= 0.0 {
            return (vec![cpu_argmax(logits)], vec![1.0]);
        }
        let mut cands: Vec<(u32, f32)> = logits
            .iter()
            .enumerate()
            .map(|(i, &l)| (i as u32, if l.is_nan() { f32::NEG_INFINITY } else { l }))
            .collect();
        cands.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        let k = if s.top_k == 0 || s.top_k > K_MAX as usize { K_MAX as usize } else { s.top_k };
        cands.truncate(k);
        let best = cands[0].1;
        if best == f32::NEG_INFINITY {
            return (vec![cands[0].0], vec![1.0]);
        }
        let cumulative = |c: &[(u32, f32)], t: f32| {
            let mut sum = 0f64;
            let cum: Vec<f64> =
                c.iter().map(|x| (sum += (f64::from(x.1 - best) / f64::from(t)).exp(), sum).1).collect();
            cum.iter().map(|v| v / sum).collect::<Vec<f64>>()
        };
        let mut keep = cands.len();
        if s.top_p < 1.0 {
            let cum = cumulative(&cands, 1.0);
            keep = cum.iter().position(|&c| c >= f64::from(s.top_p)).unwrap_or(keep - 1) + 1;
        }
        if s.min_p > 0.0 {
            let threshold = best + s.min_p.ln();
            keep = cands[..keep].iter().position(|c| c.1 < threshold).unwrap_or(keep).max(1);
        }
        (cands[..keep].iter().map(|c| c.0).collect(), cumulative(&cands[..keep], s.temperature))
    }

    /// Position of the draw for `u`: the first cumulative probability above it.
    fn draw(cum: &[f64], u: f64) -> usize {
        cum.iter().position(|&c| c > u).unwrap_or(cum.len() - 1)
    }

    fn reference(logits: &[f32], s: &SamplingParams, u: f32) -> u32 {
        let (ids, cum) = reference_candidates(logits, s);
        ids[draw(&cum, f64::from(u))]
    }

    /// The GPU sums in f32: where `u` lies within `EPS` of a boundary between candidates
    /// (u near 1 over a long tail of tiny probabilities), either side is the same rule.
    const EPS: f64 = 1e-5;

    fn accepted(logits: &[f32], s: &SamplingParams, u: f32) -> Vec<u32> {
        let (ids, cum) = reference_candidates(logits, s);
        let u = f64::from(u);
        ids[draw(&cum, u - EPS)..=draw(&cum, u + EPS)].to_vec()
    }

    /// Runs `sample` once per `u` over the same logits, all in one submission: draw d binds
    /// its params and its output word at offset d · stride of shared buffers. Every other
    /// word of the output buffer is a guard; an unwritten output keeps its poison.
    fn gpu_sample(op: &Sample, logits: &[f32], s: &SamplingParams, us: &[f32]) -> Vec<u32> {
        use crate::testing::{GUARD, POISON};
        let gpu = testing::gpu();
        let lb = gpu.upload("logits", &logits[..logits.len().max(1)]);
        let stride = gpu.limits.min_uniform_buffer_offset_alignment.max(gpu.limits.min_storage_buffer_offset_alignment)
            as usize
            / 4;
        let mut params = vec![0u32; stride * us.len()];
        let mut outs = vec![GUARD; stride * (us.len() + 1)];
        for (d, &u) in us.iter().enumerate() {
            let p = Params::sample(logits.len() as u32, s, u);
            params[d * stride..][..8].copy_from_slice(bytemuck::cast_slice(std::slice::from_ref(&p)));
            outs[(d + 1) * stride] = POISON;
        }
        let pb = {
            use wgpu::util::DeviceExt;
            gpu.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some("params"),
                contents: bytemuck::cast_slice(&params),
                usage: wgpu::BufferUsages::UNIFORM,
            })
        };
        let ob = gpu.upload("outputs", &outs);
        let slot = |buffer, index: usize, size: u64| wgpu::BufferBinding {
            buffer,
            offset: (index * stride * 4) as u64,
            size: std::num::NonZeroU64::new(size),
        };
        let psize = std::mem::size_of::<Params>() as u64;
        let binds: Vec<_> = (0..us.len())
            .map(|d| op.bind(gpu, slot(&pb, d, psize), lb.as_entire_buffer_binding(), slot(&ob, d + 1, 4)))
            .collect();
        testing::run(gpu, |pass| {
            binds.iter().for_each(|b| op.dispatch(pass, b, &Params::sample(logits.len() as u32, s, 0.0)))
        });
        let got: Vec<u32> = gpu.read_back(&ob).unwrap();
        for (i, &w) in got.iter().enumerate() {
            if i % stride != 0 || i == 0 {
                assert_eq!(w, GUARD, "guard word {i} was overwritten");
            }
        }
        let ids: Vec<u32> = (0..us.len()).map(|d| got[(d + 1) * stride]).collect();
        assert!(!ids.contains(&POISON), "an output was never written");
        ids
    }

    fn params(temperature: f32, top_k: usize, top_p: f32, min_p: f32) -> SamplingParams {
        SamplingParams { temperature, top_k, top_p, min_p, ..Default::default() }
    }

    #[test]
    fn sample_follows_the_reference_rule() {
        let op = Sample::new(testing::gpu()).unwrap();
        let mut rng = testing::rng(9);
        let us = [0.0f32, 1e-7, 0.013, 0.25, 0.5, 0.77, 0.999, 1.0 - f32::EPSILON / 2.0];
        let configs = [
            params(0.8, 40, 0.95, 0.05), // llama.cpp's defaults
            params(1.0, 0, 1.0, 0.0),    // plain softmax over the K_MAX best
            params(0.5, 7, 1.0, 0.0),
            params(1.3, 300, 0.6, 0.0),
            params(1.0, 256, 0.9, 0.2),
            params(0.0, 40, 0.95, 0.05), // greedy
            params(2.0, 1, 1.0, 0.0),
        ];
        let mut near_boundary = 0;
        for n in [1, 5, 255, 1000, 49152] {
            for (c, s) in configs.iter().enumerate() {
                // Some vocabularies with heavy ties (rounded logits), to exercise the tie order.
                let scale = if n > 100 { 12.0 } else { 3.0 };
                let mut logits = testing::random(&mut rng, n, scale);
                if c % 2 == 1 {
                    logits.iter_mut().for_each(|l| *l = (*l * 2.0).round() / 2.0);
                }
                let got = gpu_sample(&op, &logits, s, &us);
                for (&u, &g) in us.iter().zip(&got) {
                    if g != reference(&logits, s, u) {
                        let ok = accepted(&logits, s, u);
                        assert!(ok.contains(&g), "n={n} {s:?} u={u}: got {g}, want one of {ok:?}");
                        near_boundary += 1;
                    }
                }
            }
        }
        eprintln!("{near_boundary} draws within {EPS:e} of a boundary took the neighbouring candidate");
        assert!(near_boundary <= 3, "{near_boundary} draws off the exact rule");
    }

    #[test]
    fn smaller_workgroups_give_the_same_tokens() {
        let mut rng = testing::rng(11);
        let logits: Vec<f32> = testing::random(&mut rng, 3001, 6.0).iter().map(|v| (v * 4.0).round() / 4.0).collect();
        for wg in [32, 64] {
            let argmax = Argmax::with_workgroup(testing::gpu(), wg).unwrap();
            assert_eq!(gpu_argmax(&argmax, &logits), cpu_argmax(&logits), "argmax, workgroup {wg}");
            let op = Sample::with_workgroup(testing::gpu(), wg).unwrap();
            let us = [0.0f32, 0.3, 0.6, 0.9];
            for s in [params(1.0, 0, 1.0, 0.0), params(0.8, 100, 0.95, 0.05)] {
                let got = gpu_sample(&op, &logits, &s, &us);
                for (&u, &g) in us.iter().zip(&got) {
                    assert_eq!(g, reference(&logits, &s, u), "workgroup {wg}, {s:?}, u={u}");
                }
            }
        }
    }

    #[test]
    fn sample_edge_cases() {
        let op = Sample::new(testing::gpu()).unwrap();
        let s = params(0.8, 40, 0.95, 0.05);
        let logits = vec![f32::NEG_INFINITY; 300];
        assert_eq!(gpu_sample(&op, &logits, &s, &[0.5]), [0], "all -inf");
        let mut logits = vec![f32::NEG_INFINITY; 300];
        logits[200] = 1.0;
        logits[5] = f32::NAN;
        assert_eq!(gpu_sample(&op, &logits, &s, &[0.0, 0.99]), [200, 200], "one finite logit");
        let logits = [0.0f32, -0.0, 0.0];
        let s = params(1.0, 0, 1.0, 0.0);
        for u in [0.1f32, 0.5, 0.9] {
            assert_eq!(gpu_sample(&op, &logits, &s, &[u]), [reference(&logits, &s, u)], "signed zeros, u={u}");
        }
        // top-k of 1 is greedy at any temperature and u; the tie goes to the lower id.
        let logits = [1.0f32, 3.0, 3.0, -2.0];
        assert_eq!(gpu_sample(&op, &logits, &params(5.0, 1, 1.0, 0.0), &[0.9]), [1]);
    }

    #[test]
    fn sample_distribution_matches_the_cpu_sampler() {
        let op = Sample::new(testing::gpu()).unwrap();
        let logits = [1.0f32, 3.0, 2.5, -1.0, 0.0, 2.9, 1.5, -3.0, 2.0, 0.5, 2.2, -0.5];
        for s in [params(0.8, 8, 0.9, 0.05), params(1.5, 0, 1.0, 0.0), params(0.7, 0, 0.8, 0.0)] {
            let draws = 4000;
            let mut rng = testing::rng(10);
            let us: Vec<f32> = (0..draws).map(|_| (rng.next_u32() >> 8) as f32 / (1u32 << 24) as f32).collect();
            let mut gpu_hist = vec![0usize; logits.len()];
            for t in gpu_sample(&op, &logits, &s, &us) {
                gpu_hist[t as usize] += 1;
            }
            let cpu_draws = 40_000;
            let mut sampler = hearth_model::Sampler::new(SamplingParams { seed: 3, ..s.clone() });
            let mut cpu_hist = vec![0usize; logits.len()];
            for _ in 0..cpu_draws {
                cpu_hist[sampler.sample(&logits, &[]) as usize] += 1;
            }
            for (t, (&g, &c)) in gpu_hist.iter().zip(&cpu_hist).enumerate() {
                let (pg, pc) = (g as f64 / draws as f64, c as f64 / cpu_draws as f64);
                // Binomial noise: σ ≤ 0.008 for 4000 draws; 0.03 is ~4σ.
                assert!((pg - pc).abs() < 0.03, "{s:?} token {t}: GPU {pg:.3} vs CPU sampler {pc:.3}");
                assert_eq!(g == 0, c == 0, "{s:?} token {t}: cut by one side only ({g} vs {c} draws)");
            }
        }
    }
}
