//! One module per op: its pipeline(s), its parameter struct, its dispatch, and its test
//! against the CPU reference.

pub mod attention;
pub mod elementwise;
pub mod embedding;
pub mod matmul;
pub mod rmsnorm;
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
}

impl<'a> Pass<'a> {
    pub fn new(enc: &'a mut wgpu::CommandEncoder) -> Self {
        Pass { inner: enc.begin_compute_pass(&Default::default()), dispatches: 0 }
    }

    /// Records `pipeline` over `groups` workgroups with `bind` as group 0; an empty grid
    /// records nothing.
    pub fn dispatch(&mut self, pipeline: &wgpu::ComputePipeline, bind: &wgpu::BindGroup, groups: [u32; 3]) {
        if groups.contains(&0) {
            return;
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

    #[test]
    fn templates_fill_whole_mark_lines_only() {
        let t = "a\n    {{X}}\nb {{X}}\n";
        assert_eq!(fill_template(t, &[("X", "    x1\n    x2\n")]), "a\n    x1\n    x2\nb {{X}}\n");
    }
}
