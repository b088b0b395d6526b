//! The GPU engine: WGSL kernels (in `shaders/`) run through wgpu — WebGPU in the browser;
//! Vulkan, Metal or DX12 natively.
//!
//! Portable first: every kernel is core WGSL with no `shader-f16` and no subgroups (browsers
//! give neither reliably); reductions use workgroup memory and accumulate in f32. Each op
//! has one module in `ops/` that owns its pipeline, its parameter struct and its dispatch,
//! with its test beside it, comparing against the CPU reference in `hearth_model::ops`.

mod binds;
mod buffers;
mod context;
mod engine;
mod error;
mod model;
pub mod ops;
mod plan;
mod step;
#[cfg(test)]
mod testing;
mod weights;

pub use context::{Gpu, GpuOptions};
pub use engine::{GpuEngine, StepStats};
pub use error::GpuError;
pub use model::GpuModel;
pub use plan::{human, MemoryPlan, KV_BYTES, MAX_BATCH};
/// The wgpu this crate was built against, for callers that inspect the adapter.
pub use wgpu;
