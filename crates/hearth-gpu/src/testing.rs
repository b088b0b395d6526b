//! Test support for kernels: one shared device, seeded random inputs, outputs fenced by
//! poison and guard words, and comparison with the CPU reference under a named budget.
//!
//! WebGPU clamps out-of-bounds accesses silently, so an indexing bug does not crash: it
//! writes the wrong element or none. Every output is therefore pre-filled with a poison NaN
//! (an unwritten element fails) and surrounded by guard words (a stray write fails).

use std::sync::OnceLock;

use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::{Gpu, GpuOptions};

/// The shared test device (lavapipe in CI; whatever adapter the machine has otherwise).
pub fn gpu() -> &'static Gpu {
    static GPU: OnceLock<Gpu> = OnceLock::new();
    GPU.get_or_init(|| {
        let gpu = Gpu::new_blocking(&GpuOptions::default()).unwrap_or_else(|e| {
            panic!("GPU tests need an adapter: {e}. On Debian, `apt-get install mesa-vulkan-drivers` gives lavapipe")
        });
        eprintln!("GPU tests on {:?} ({:?})", gpu.info.name, gpu.info.backend);
        gpu
    })
}

pub fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

/// `n` values uniform in [-scale, scale).
pub fn random(rng: &mut ChaCha8Rng, n: usize, scale: f32) -> Vec<f32> {
    (0..n).map(|_| ((rng.next_u32() >> 8) as f32 / (1u32 << 24) as f32 * 2.0 - 1.0) * scale).collect()
}

/// A quiet NaN with a recognisable payload: "this element was never written".
pub const POISON: u32 = 0x7fc0_dead;
/// Fills the words before and after an output.
pub const GUARD: u32 = 0x6a09_e667;

/// An output buffer: `[guard × G][n values, poisoned][guard × G]`, bound to the middle.
pub struct Output {
    buffer: wgpu::Buffer,
    offset: u64,
    n: usize,
}

impl Output {
    pub fn new(gpu: &Gpu, n: usize) -> Self {
        // Guard regions as long as the binding-offset alignment (256 bytes on most adapters).
        let g = (gpu.limits.min_storage_buffer_offset_alignment as usize / 4).max(64);
        let mut words = vec![GUARD; g];
        words.extend(std::iter::repeat_n(POISON, n));
        words.extend(std::iter::repeat_n(GUARD, g));
        Output { buffer: gpu.upload("output", &words), offset: (g * 4) as u64, n }
    }

    /// An output whose elements start as `init` (for kernels that add to it).
    pub fn with(gpu: &Gpu, init: &[f32]) -> Self {
        let out = Output::new(gpu, init.len());
        gpu.queue.write_buffer(&out.buffer, out.offset, bytemuck::cast_slice(init));
        out
    }

    pub fn binding(&self) -> wgpu::BufferBinding<'_> {
        wgpu::BufferBinding {
            buffer: &self.buffer,
            offset: self.offset,
            size: std::num::NonZeroU64::new(self.n as u64 * 4),
        }
    }

    /// The output values; fails if a guard word changed or an element was never written.
    pub fn read(&self, gpu: &Gpu) -> Vec<f32> {
        let words: Vec<u32> = gpu.read_back(&self.buffer).expect("read back output");
        let g = (self.offset / 4) as usize;
        for (i, &w) in words[..g].iter().chain(&words[g + self.n..]).enumerate() {
            assert_eq!(w, GUARD, "guard word {i} was overwritten: out-of-bounds write");
        }
        let body = &words[g..g + self.n];
        if let Some(i) = body.iter().position(|&w| w == POISON) {
            panic!("output element {i} of {} was never written", self.n);
        }
        body.iter().map(|&w| f32::from_bits(w)).collect()
    }
}

/// Records one compute pass, submits it and waits.
pub fn run(gpu: &Gpu, record: impl FnOnce(&mut crate::ops::Pass)) {
    let mut enc = gpu.device.create_command_encoder(&Default::default());
    {
        let mut pass = crate::ops::Pass::new(&mut enc);
        record(&mut pass);
    }
    gpu.queue.submit([enc.finish()]);
    gpu.device.poll(wgpu::PollType::wait_indefinitely()).expect("GPU work finished");
}

/// An error budget: normalised mean squared error, Σ(got − want)² / Σ want², at most `nmse`.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    pub name: &'static str,
    pub nmse: f64,
}

impl Budget {
    /// Matmul per weight format: dequantization is exact (ggml's f32 arithmetic), so only the
    /// f32 dot-product order differs from the CPU's. Each is ~10× the worst NMSE measured on
    /// lavapipe over the tests' shapes and two seeds (F32 2.6e-14, F16 4.1e-14, Q8_0 3.1e-14,
    /// Q4_0 5.4e-14, Q4_1 5.4e-14, Q5_0 4.4e-14, Q5_1 1.8e-13, Q4_K 1.6e-13, Q5_K 5.6e-14,
    /// Q6_K 1.8e-13).
    pub const MATMUL_F32: Budget = Budget { name: "matmul F32", nmse: 3e-13 };
    pub const MATMUL_F16: Budget = Budget { name: "matmul F16", nmse: 4e-13 };
    pub const MATMUL_Q8_0: Budget = Budget { name: "matmul Q8_0", nmse: 3e-13 };
    pub const MATMUL_Q4_0: Budget = Budget { name: "matmul Q4_0", nmse: 6e-13 };
    pub const MATMUL_Q4_1: Budget = Budget { name: "matmul Q4_1", nmse: 6e-13 };
    pub const MATMUL_Q5_0: Budget = Budget { name: "matmul Q5_0", nmse: 5e-13 };
    pub const MATMUL_Q5_1: Budget = Budget { name: "matmul Q5_1", nmse: 2e-12 };
    pub const MATMUL_Q4_K: Budget = Budget { name: "matmul Q4_K", nmse: 2e-12 };
    pub const MATMUL_Q5_K: Budget = Budget { name: "matmul Q5_K", nmse: 6e-13 };
    pub const MATMUL_Q6_K: Budget = Budget { name: "matmul Q6_K", nmse: 2e-12 };
    /// A matmul with the fused norm or residual add stays within its format's budget (worst
    /// measured 1.3e-13, Q5_K with the norm). The fused SwiGLU multiplies two matmul outputs
    /// through silu, which amplifies their rounding where gate and up nearly cancel: ~10× the
    /// worst measured over every format and both strategies (1.05e-12, Q5_K; 6.9e-13 Q8_0).
    pub const MATMUL_SWIGLU: Budget = Budget { name: "matmul with fused SwiGLU", nmse: 1e-11 };
    /// Embedding rows are dequantized with ggml's f32 arithmetic, as on the CPU: bit-exact.
    pub const EMBEDDING: Budget = Budget { name: "embedding (exact dequant)", nmse: 0.0 };
    pub const SWIGLU: Budget = Budget { name: "swiglu (f32)", nmse: 3e-14 };
    /// RMSNorm of a row then an add: f32 tree sum against the CPU's f64 sum, and inverseSqrt.
    pub const NORM_ADD: Budget = Budget { name: "norm + add (f32)", nmse: 1e-13 };
    /// θ as the CPU builds it (bit-exact on lavapipe: 2e-15 measured); leaves room for GPU
    /// cos/sin on [-π, π] with ~1e-6 absolute error. θ by pow() instead would cost 3e-7.
    pub const ROPE: Budget = Budget { name: "rope (f32)", nmse: 1e-12 };
    /// f32 exp and sum against the CPU's f64 sum: rounding only (1.5e-14 measured).
    pub const SOFTMAX: Budget = Budget { name: "softmax (f32)", nmse: 2e-13 };
    /// Attention on an f16 KV cache against the CPU on the same f16-rounded K/V: f32 rounding
    /// and the online softmax's order only (1.1e-12 measured).
    pub const ATTENTION: Budget = Budget { name: "attention (f32 on f16 K/V)", nmse: 1e-11 };
    /// How far f16 K/V storage moves attention from f32 K/V (CPU both ways; 3e-7 measured).
    pub const KV_F16: Budget = Budget { name: "f16 KV cache storage", nmse: 3e-6 };
}

/// Compares `got` with the CPU reference `want`; any NaN or Inf fails outright.
pub fn assert_close(label: &str, got: &[f32], want: &[f32], budget: Budget) {
    assert_eq!(got.len(), want.len(), "{label}: length");
    let (mut err, mut norm, mut worst) = (0f64, 0f64, (0usize, 0f64));
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!(g.is_finite(), "{label}: element {i} is {g} (reference {w})");
        let d = f64::from(g) - f64::from(w);
        err += d * d;
        norm += f64::from(w) * f64::from(w);
        if d.abs() > worst.1 {
            worst = (i, d.abs());
        }
    }
    let nmse = err / norm.max(f64::MIN_POSITIVE);
    // How the budgets' "measured" figures were taken: HEARTH_PRINT_NMSE=1 cargo test -- --nocapture
    if std::env::var("HEARTH_PRINT_NMSE").is_ok() {
        eprintln!("NMSE {label}: {nmse:.3e}");
    }
    assert!(
        nmse <= budget.nmse,
        "{label}: NMSE {nmse:.3e} over the {} budget {:.1e}; worst element {} off by {:.3e} (got {}, want {})",
        budget.name,
        budget.nmse,
        worst.0,
        worst.1,
        got[worst.0],
        want[worst.0]
    );
}

/// Validates `source` with naga and checks that WGSL struct `name` has the size and member
/// offsets of the Rust struct `T` that fills it: host and shader cannot drift apart.
pub fn check_uniform<T>(source: &str, name: &str, fields: &[(&str, usize)]) {
    let module = naga::front::wgsl::parse_str(source).unwrap_or_else(|e| panic!("{}", e.emit_to_string(source)));
    // pack2x16float / unpack2x16float are core WGSL; naga files them under this capability,
    // which does not need the `f16` extension. Nothing else is granted.
    let caps = naga::valid::Capabilities::SHADER_FLOAT16_IN_FLOAT32;
    naga::valid::Validator::new(naga::valid::ValidationFlags::all(), caps)
        .validate(&module)
        .unwrap_or_else(|e| panic!("naga rejects the shader: {e:?}"));
    let (members, span) = module
        .types
        .iter()
        .find_map(|(_, ty)| match (&ty.name, &ty.inner) {
            (Some(n), naga::TypeInner::Struct { members, span }) if n == name => Some((members.clone(), *span)),
            _ => None,
        })
        .unwrap_or_else(|| panic!("struct {name} not found in the shader"));
    assert_eq!(span as usize, std::mem::size_of::<T>(), "size of {name}");
    for &(field, offset) in fields {
        let m = members
            .iter()
            .find(|m| m.name.as_deref() == Some(field))
            .unwrap_or_else(|| panic!("{name}.{field} missing in WGSL"));
        assert_eq!(m.offset as usize, offset, "offset of {name}.{field}");
    }
}
