use hearth_gguf::{GgufError, ReadError, TensorType};

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error(transparent)]
    Gguf(#[from] GgufError),
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error("unsupported architecture {0:?}: Hearth runs general.architecture llama (Llama 2/3, TinyLlama, SmolLM2, Mistral), qwen2 (Qwen2.5), qwen3 and smollm3")]
    UnsupportedArchitecture(String),
    #[error("unsupported model: {0}")]
    Unsupported(String),
    #[error("model metadata: {key} = {value} is not valid: {why}")]
    BadConfig { key: String, value: String, why: String },
    #[error("tensor {0:?} is missing from the model file")]
    MissingTensor(String),
    #[error("tensor {tensor:?} has shape {found:?}, expected {expected:?}")]
    BadShape { tensor: String, expected: Vec<u64>, found: Vec<u64> },
    #[error("tensor {tensor:?} is stored as {ty}, which Hearth cannot run: re-quantize to Q4_0, Q4_1, Q8_0, Q4_K, Q6_K, F16 or F32")]
    UnsupportedTensorType { tensor: String, ty: TensorType },
    #[error(
        "the prompt needs {needed} positions but the context holds {max}: shorten the prompt or raise the context size"
    )]
    ContextFull { needed: usize, max: usize },
    #[error("token id {id} is outside the vocabulary of {n_vocab}")]
    BadToken { id: u32, n_vocab: usize },
    #[error("{0}")]
    Backend(String),
    /// The GPU device went away (a driver reset, a lost context): the engine is gone with it.
    #[error("the GPU device was lost ({0}): load the model again")]
    DeviceLost(String),
    #[error("nothing to evaluate: the token list is empty")]
    EmptyInput,
}
