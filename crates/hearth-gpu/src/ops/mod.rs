//! One module per op: its pipeline(s), its parameter struct, its dispatch, and its test
//! against the CPU reference.

pub mod attention;
pub mod elementwise;
pub mod embedding;
pub mod matmul;
pub mod norm_add;
pub mod rope;
pub mod sample;
pub mod softmax;

/// A compute pass that counts its dispatches. Every kernel is recorded through
/// [`Pass::dispatch`] — a test fails if `dispatch_workgroups` appears anywhere else — so the
/// dispatches per token that `hearth bench` and the tests report are exact, and an op that is
/// fused away changes the count without anyone editing a tally.
pub struct Pass<'a> {
    inner: wgpu::ComputePass<'a>,
    dispatches: usize,
    weight_bytes: u64,
    profile: Option<&'a mut Profile>,
    /// Workgroups per dimension the device allows ([`Pass::limited`]).
    max_groups: u32,
    /// The first dispatch refused for passing `max_groups`: (kernel family, largest dimension).
    refused: Option<(&'static str, u32)>,
    /// The kernel family of the dispatches being recorded ([`Pass::family`]).
    family: &'static str,
}

/// Per-kernel GPU timestamps of a recorded step (`hearth bench --profile`): a timestamp
/// before every dispatch and one at the end, each dispatch labelled with the kernel family
/// the forward pass named ([`Pass::family`]). Needs `TIMESTAMP_QUERY_INSIDE_PASSES`.
pub struct Profile {
    pub queries: wgpu::QuerySet,
    /// Family of the dispatch that each written timestamp starts.
    pub spans: Vec<&'static str>,
}

/// Timestamps one profiled step may write: the dispatches of a 7B decode step and more.
pub const PROFILE_QUERIES: u32 = 1024;

impl Profile {
    pub fn new(device: &wgpu::Device) -> Self {
        let desc =
            wgpu::QuerySetDescriptor { label: Some("profile"), ty: wgpu::QueryType::Timestamp, count: PROFILE_QUERIES };
        Profile { queries: device.create_query_set(&desc), spans: Vec::new() }
    }

    /// Writes the closing timestamp after the last pass (call once the step is recorded).
    pub fn finish(&mut self, pass: &mut wgpu::ComputePass) {
        self.write(pass, "end");
    }

    fn write(&mut self, pass: &mut wgpu::ComputePass, family: &'static str) {
        let i = self.spans.len() as u32;
        if i < PROFILE_QUERIES {
            pass.write_timestamp(&self.queries, i);
            self.spans.push(family);
        }
    }
}

impl<'a> Pass<'a> {
    pub fn new(enc: &'a mut wgpu::CommandEncoder) -> Self {
        Self::around(enc.begin_compute_pass(&Default::default()))
    }

    fn around(inner: wgpu::ComputePass<'a>) -> Self {
        Pass {
            inner,
            dispatches: 0,
            weight_bytes: 0,
            profile: None,
            max_groups: u32::MAX,
            refused: None,
            family: "other",
        }
    }

    /// Refuses (records nothing for, and reports by [`Pass::refused`]) any dispatch with more
    /// than `max_groups` workgroups in a dimension: wgpu would panic natively and the browser
    /// would compute garbage.
    pub fn limited(self, max_groups: u32) -> Self {
        Pass { max_groups, ..self }
    }

    /// The first refused dispatch, as an error.
    pub fn refused(&self) -> Result<(), crate::GpuError> {
        match self.refused {
            None => Ok(()),
            Some((kernel, groups)) => {
                Err(crate::GpuError::TooManyWorkgroups { kernel: kernel.to_string(), groups, max: self.max_groups })
            }
        }
    }

    /// A pass whose dispatches are timestamped into `profile`.
    pub fn profiled(enc: &'a mut wgpu::CommandEncoder, profile: Option<&'a mut Profile>) -> Self {
        Pass { profile, ..Pass::new(enc) }
    }

    /// Names the kernel family of the dispatches that follow, for a profile and for errors.
    pub fn family(&mut self, name: &'static str) {
        self.family = name;
    }

    /// Closes a profile in this pass (the last pass of the step).
    pub fn finish_profile(&mut self) {
        if let Some(p) = &mut self.profile {
            p.finish(&mut self.inner);
        }
    }

    /// A pass that writes GPU timestamps at its start and end into `queries` (measurements).
    pub fn timed(enc: &'a mut wgpu::CommandEncoder, queries: &wgpu::QuerySet, start: u32) -> Self {
        let timestamp_writes = wgpu::ComputePassTimestampWrites {
            query_set: queries,
            beginning_of_pass_write_index: Some(start),
            end_of_pass_write_index: Some(start + 1),
        };
        let desc = wgpu::ComputePassDescriptor { label: None, timestamp_writes: Some(timestamp_writes) };
        Self::around(enc.begin_compute_pass(&desc))
    }

    /// Records `pipeline` over `groups` workgroups with `bind` as group 0; an empty grid
    /// records nothing.
    pub fn dispatch(&mut self, pipeline: &wgpu::ComputePipeline, bind: &wgpu::BindGroup, groups: [u32; 3]) {
        if groups.contains(&0) {
            return;
        }
        let largest = groups.into_iter().max().unwrap_or(0);
        if largest > self.max_groups {
            self.refused.get_or_insert((self.family, largest));
            return;
        }
        if let Some(p) = &mut self.profile {
            p.write(&mut self.inner, self.family);
        }
        self.inner.set_pipeline(pipeline);
        self.inner.set_bind_group(0, bind, &[]);
        self.inner.dispatch_workgroups(groups[0], groups[1], groups[2]);
        self.dispatches += 1;
    }

    /// Dispatches recorded so far.
    pub fn dispatches(&self) -> usize {
        self.dispatches
    }

    /// Counts `bytes` of weights that the next dispatch reads (whole matrices or parts).
    pub fn reads_weights(&mut self, bytes: u64) {
        self.weight_bytes += bytes;
    }

    /// Weight bytes the dispatches recorded so far read.
    pub fn weight_bytes(&self) -> u64 {
        self.weight_bytes
    }
}

/// An op's recording: its pipeline(s) over a grid sized from the same parameters its shader
/// reads.
pub trait Kernel {
    /// The WGSL `Params` struct.
    type Params;
    /// What [`Kernel::dispatch`] binds: a bind group, or several for multi-pass ops.
    type Bind;
    fn dispatch(&self, pass: &mut Pass, bind: &Self::Bind, params: &Self::Params);
}

impl Pass<'_> {
    /// Records `op` with a bind group built at load, for `step`.
    pub(crate) fn run<K, S>(&mut self, op: &K, bound: &crate::step::Bound<S, K::Bind>, step: &crate::step::Step)
    where
        K: Kernel,
        S: crate::step::SlotParams<Params = K::Params>,
    {
        op.dispatch(self, &bound.bind, &bound.params(step));
    }
}

/// A bind group for group 0 of `pipeline` with the given buffer bindings.
pub(crate) fn bind_group(
    gpu: &crate::Gpu,
    label: &str,
    pipeline: &wgpu::ComputePipeline,
    bindings: &[(u32, wgpu::BufferBinding)],
) -> wgpu::BindGroup {
    let entries: Vec<_> = bindings
        .iter()
        .map(|(binding, b)| wgpu::BindGroupEntry {
            binding: *binding,
            resource: wgpu::BindingResource::Buffer(b.clone()),
        })
        .collect();
    gpu.device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: Some(label),
        layout: &pipeline.get_bind_group_layout(0),
        entries: &entries,
    })
}

/// How the heavy kernels (matmul, attention) lay their work on threads; picked per adapter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// GPUs: the threads of a workgroup share one output (a matmul row, an attention head)
    /// and combine in workgroup memory, so neighbouring threads read neighbouring words.
    Reduce,
    /// CPU-backed adapters (lavapipe, SwiftShader, WARP): each thread owns a register tile
    /// of outputs. There every buffer load is a per-lane gather and only reuse pays.
    Tile,
}

impl Strategy {
    /// Tile on CPU-backed adapters, Reduce on GPUs ([`crate::Gpu::strategy`] applies the
    /// override of [`crate::GpuOptions::strategy`] first).
    pub fn for_adapter(info: &wgpu::AdapterInfo) -> Strategy {
        let name = format!("{} {}", info.name, info.driver).to_lowercase();
        if info.device_type == wgpu::DeviceType::Cpu || ["llvmpipe", "swiftshader"].iter().any(|n| name.contains(n)) {
            Strategy::Tile
        } else {
            Strategy::Reduce
        }
    }
}

/// `template` with each line that is just `{{MARK}}` replaced by its text. The Tile
/// kernels are written out this way, unrolled, because the compilers behind CPU adapters
/// keep loop-indexed register arrays in per-lane scratch memory (4-5× slower, measured).
pub(crate) fn fill_template(template: &str, marks: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(template.len());
    for line in template.lines() {
        let text = marks.iter().find(|(mark, _)| line.trim() == format!("{{{{{mark}}}}}"));
        match text {
            Some((_, text)) => out.push_str(text),
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn software_adapters_get_the_tile_strategy() {
        let mut info = crate::testing::gpu().info.clone();
        info.device_type = wgpu::DeviceType::DiscreteGpu;
        info.name = "NVIDIA H100".into();
        info.driver = "NVIDIA".into();
        assert_eq!(Strategy::for_adapter(&info), Strategy::Reduce);
        info.name = "llvmpipe (LLVM 15.0.6, 256 bits)".into();
        assert_eq!(Strategy::for_adapter(&info), Strategy::Tile);
        info.name = "SwiftShader Device (Subzero)".into();
        assert_eq!(Strategy::for_adapter(&info), Strategy::Tile);
        info.name = "Microsoft Basic Render Driver".into();
        info.device_type = wgpu::DeviceType::Cpu;
        assert_eq!(Strategy::for_adapter(&info), Strategy::Tile);
    }

    /// Every dispatch goes through [`Pass::dispatch`], which counts it: a kernel recorded
    /// any other way would be missing from the dispatch counts the tests and `hearth bench`
    /// rely on.
    #[test]
    fn every_dispatch_goes_through_the_counting_pass() {
        // Every crate of the workspace, examples and tests included.
        let crates = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut files = vec![crates];
        let mut offenders = Vec::new();
        while let Some(path) = files.pop() {
            if path.is_dir() {
                files.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                let calls = text.matches(concat!(".dispatch_", "workgroups(")).count();
                let allowed = usize::from(path.ends_with("hearth-gpu/src/ops/mod.rs"));
                if calls != allowed {
                    offenders.push(format!("{} ({calls})", path.display()));
                }
            }
        }
        assert!(offenders.is_empty(), "dispatches outside ops::Pass::dispatch: {offenders:?}");
    }

    /// Every kernel variant builds under WebGPU's default limits (at most 8 storage buffers
    /// per stage, 16 KiB of workgroup memory), so none needs an adapter that grants more:
    /// every matmul format × fusion × strategy (with GEMV row lengths up to the widest
    /// workgroup, and Tile's fallback for ragged F32/F16 rows), attention at the head sizes
    /// and groups models use, RoPE + KV write, the embedding per format, argmax, sampling,
    /// SwiGLU. Tile's prefill tile is built smaller than the model's: Tile kernels use no
    /// workgroup memory and the same bindings at every tile size, and the model's tile takes
    /// lavapipe seconds per pipeline. wgpu checks storage buffers per stage (a shader with 9
    /// must fail) but not workgroup memory natively, so that is measured from each pipeline's
    /// source with naga (checked on a shader with 16 KiB + 4 bytes).
    #[test]
    fn every_kernel_fits_webgpu_default_limits() {
        use matmul::{Fuse, MatMul, FORMATS};

        let options = crate::GpuOptions { webgpu_default_limits: true, ..Default::default() };
        let gpu = crate::Gpu::new_blocking(&options).expect("GPU tests need an adapter");
        assert_eq!(gpu.limits.max_storage_buffers_per_shader_stage, 8);
        assert_eq!(gpu.limits.max_compute_workgroup_storage_size, 16384);

        let over_storage = (0..9)
            .map(|i| format!("@group(0) @binding({i}) var<storage, read_write> b{i}: array<f32>;\n"))
            .collect::<String>()
            + "@compute @workgroup_size(1) fn main() {\n"
            + &(0..9).map(|i| format!("    b{i}[0] = 1.0;\n")).collect::<String>()
            + "}\n";
        let over_shared = "var<workgroup> m: array<f32, 4097>;\n\
                           @compute @workgroup_size(1) fn main() { m[4096] = 1.0; }\n";
        // wgpu checks storage buffers per stage natively; workgroup memory only browsers do,
        // so it is measured here from each pipeline's source with its override values.
        assert!(gpu.compute_pipeline("over", &over_storage, "main", &[]).is_err(), "9 storage buffers passed");
        assert_eq!(workgroup_bytes(over_shared, "main", &[]), 16388);
        gpu.built.lock().unwrap().clear();

        let fusions = [Fuse::NONE, Fuse::NORM, Fuse::ADD, Fuse::NORM_SWIGLU];
        for &ty in FORMATS {
            let lengths: &[usize] = if ty.block_size() == 1 { &[57, 256, 11008] } else { &[256, 11008] };
            let shapes: Vec<(usize, Fuse)> = lengths.iter().flat_map(|&c| fusions.map(|f| (c, f))).collect();
            for strategy in [Strategy::Reduce, Strategy::Tile] {
                MatMul::build(&gpu, ty, strategy, &shapes, &fusions, (4, 3))
                    .unwrap_or_else(|e| panic!("{ty} {strategy:?}: {e}"));
            }
            embedding::Embedding::new(&gpu, ty).unwrap_or_else(|e| panic!("embedding {ty}: {e}"));
        }
        for (head_dim, group) in [(64, 1), (64, 3), (128, 4), (128, 8), (256, 2), (80, 5)] {
            for strategy in [Strategy::Reduce, Strategy::Tile] {
                attention::Attention::with_strategy(&gpu, head_dim, group, strategy)
                    .unwrap_or_else(|e| panic!("attention {head_dim} × {group} {strategy:?}: {e}"));
            }
        }
        rope::RopeKv::new(&gpu).unwrap();
        sample::Argmax::new(&gpu).unwrap();
        sample::Sample::new(&gpu).unwrap();
        elementwise::Elementwise::new(&gpu, elementwise::Kind::SwiGlu).unwrap();

        let built = std::mem::take(&mut *gpu.built.lock().unwrap());
        let mut most = 0;
        for (source, entry, constants) in &built {
            let bytes = workgroup_bytes(source, entry, constants);
            let name = source.lines().find(|l| l.starts_with("//")).unwrap_or_default();
            assert!(bytes <= 16384, "{bytes} bytes of workgroup memory in {name:?} with {constants:?}");
            most = most.max(bytes);
        }
        eprintln!("{} pipelines; most workgroup memory: {most} bytes", built.len());
    }

    /// Bytes of workgroup memory `entry` of `source` declares, with `constants` for its
    /// overrides (array lengths such as `R * WG` depend on them).
    fn workgroup_bytes(source: &str, entry: &str, constants: &[(String, f64)]) -> u32 {
        let module = naga::front::wgsl::parse_str(source).unwrap_or_else(|e| panic!("{}", e.emit_to_string(source)));
        let caps = naga::valid::Capabilities::all();
        let info = naga::valid::Validator::new(naga::valid::ValidationFlags::all(), caps).validate(&module).unwrap();
        let constants = constants.iter().cloned().collect();
        let stage = Some((naga::ShaderStage::Compute, entry));
        let (module, _) = naga::back::pipeline_constants::process_overrides(&module, &info, stage, &constants).unwrap();
        let mut layouter = naga::proc::Layouter::default();
        layouter.update(module.to_ctx()).unwrap();
        module
            .global_variables
            .iter()
            .filter(|(_, v)| v.space == naga::AddressSpace::WorkGroup)
            .map(|(_, v)| layouter[v.ty].size)
            .sum()
    }

    #[test]
    fn templates_fill_whole_mark_lines_only() {
        let t = "a\n    {{X}}\nb {{X}}\n";
        assert_eq!(fill_template(t, &[("X", "    x1\n    x2\n")]), "a\n    x1\n    x2\nb {{X}}\n");
    }
}
