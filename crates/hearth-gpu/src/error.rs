/// What can go wrong on the GPU. Messages say what to do.
#[derive(Debug, thiserror::Error)]
pub enum GpuError {
    #[error("no GPU adapter found: {0}. Use `--backend cpu`, or install a Vulkan driver (Linux: mesa-vulkan-drivers gives a CPU one, lavapipe)")]
    NoAdapter(String),
    #[error("the GPU refused a device with the limits Hearth asked for: {0}")]
    RequestDevice(String),
    #[error("kernel {kernel:?} failed to compile: {message}")]
    Shader { kernel: String, message: String },
    /// A model whose shapes or weight formats no GPU kernel takes: said as such, not as a
    /// kernel that failed to compile.
    #[error("this model cannot run on the GPU: {what} ({why})")]
    Unsupported { what: String, why: String },
    #[error(
        "{what} needs {needed} bytes of GPU memory, but this adapter allows {allowed}: pick a smaller model or context"
    )]
    TooLarge { what: String, needed: u64, allowed: u64 },
    /// A dispatch grid past the device's workgroups per dimension. The ops that can lay a
    /// large grid out in two dimensions do (matmul, embedding, elementwise); the others are
    /// refused at load for the model's largest step, before anything runs.
    #[error(
        "a {kernel} dispatch needs {groups} workgroups in one dimension, but this device allows {max}: this model's shapes are too large for it"
    )]
    TooManyWorkgroups { kernel: String, groups: u32, max: u32 },
    #[error("the GPU ran out of memory loading the model ({0}): pick a smaller model or a shorter context")]
    OutOfMemory(String),
    #[error("the GPU device was lost ({0}); re-create it")]
    DeviceLost(String),
    #[error("the GPU reported an error ({0}); reload the model")]
    Uncaptured(String),
    #[error("reading results back from the GPU failed: {0}")]
    Readback(String),
    /// The model itself: its metadata, tensors or file.
    #[error(transparent)]
    Model(#[from] hearth_model::ModelError),
}
