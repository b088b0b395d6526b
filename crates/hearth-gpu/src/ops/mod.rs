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
    /// Tile on CPU-backed adapters, Reduce on GPUs.
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

    #[test]
    fn templates_fill_whole_mark_lines_only() {
        let t = "a\n    {{X}}\nb {{X}}\n";
        assert_eq!(fill_template(t, &[("X", "    x1\n    x2\n")]), "a\n    x1\n    x2\nb {{X}}\n");
    }
}
