use crate::TensorType;

/// Everything that can be wrong with a GGUF file. Each variant names the problem and, where
/// it helps, what to do about it.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum GgufError {
    #[error("not a GGUF file: the first four bytes are {found:02x?}, expected \"GGUF\"")]
    BadMagic { found: [u8; 4] },
    #[error(
        "unsupported GGUF version {0}: Hearth reads versions 2 and 3 (re-convert the model with a current llama.cpp)"
    )]
    UnsupportedVersion(u32),
    #[error("the file is truncated: {what} needs bytes up to offset {needed}, but the file has only {len} bytes")]
    Truncated { what: String, needed: u64, len: u64 },
    #[error("{what} is {value}, which cannot fit in a file of {len} bytes")]
    CountTooLarge { what: String, value: u64, len: u64 },
    #[error("{what} is {value}, above the limit of {limit}")]
    LimitExceeded { what: String, value: u64, limit: u64 },
    #[error("metadata key {key:?} has unknown value type {type_id}")]
    UnknownValueType { key: String, type_id: u32 },
    #[error("a metadata key or string is not valid UTF-8 (at offset {offset})")]
    InvalidUtf8 { offset: u64 },
    #[error("metadata key {0:?} appears twice")]
    DuplicateKey(String),
    #[error("tensor {0:?} appears twice")]
    DuplicateTensor(String),
    #[error("tensor {tensor:?} has unknown type id {type_id}: this build of Hearth cannot read it (re-quantize to Q4_0, Q4_1, Q8_0, Q4_K, Q6_K, F16 or F32)")]
    UnknownTensorType { tensor: String, type_id: u32 },
    #[error("tensor {tensor:?} has {n_dims} dimensions; at most {max} are allowed")]
    TooManyDims { tensor: String, n_dims: u32, max: u32 },
    #[error("tensor {tensor:?} has shape {dims:?}, whose element count overflows")]
    ShapeOverflow { tensor: String, dims: Vec<u64> },
    #[error("tensor {tensor:?} has a zero dimension in shape {dims:?}")]
    EmptyTensor { tensor: String, dims: Vec<u64> },
    #[error("tensor {tensor:?}: its first dimension {ne0} is not a multiple of the {ty} block size {block}")]
    RaggedBlocks { tensor: String, ty: TensorType, ne0: u64, block: u64 },
    #[error("tensor {tensor:?}: data offset {offset} is not a multiple of the alignment {alignment}")]
    MisalignedTensor { tensor: String, offset: u64, alignment: u64 },
    #[error("tensor {tensor:?}: its data [{start}, {end}) lies outside the file of {len} bytes")]
    TensorOutOfBounds { tensor: String, start: u64, end: u64, len: u64 },
    #[error("general.alignment is {0}; it must be a non-zero power of two")]
    BadAlignment(u64),
    #[error("metadata key {key:?} is missing")]
    MissingKey { key: String },
    #[error("metadata key {key:?} has type {found}, expected {expected}")]
    WrongType { key: String, expected: &'static str, found: &'static str },
    #[error("tensor {0:?} is not in this file")]
    MissingTensor(String),
    #[error("dequantizing {ty}: {detail}")]
    Dequant { ty: TensorType, detail: String },
}
