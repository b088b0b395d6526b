//! GGUF, the container llama.cpp writes: a header, typed metadata, a tensor index and
//! aligned tensor data.
//!
//! The reader is incremental: [`parse_index`] takes whatever prefix of the file has arrived
//! and answers either with the complete index or with [`Parse::NeedMore`]. The browser
//! streams a model from the network and must know the tensor index before the weights land;
//! natively the whole file is just a longer prefix. Every count, length and offset read from
//! the file is checked against the bytes that can exist before anything is allocated from it.

mod dequant;
mod error;
mod index;
mod source;
mod tensor_type;
mod value;
mod writer;

pub use dequant::{dequantize, dequantize_row};
pub use error::GgufError;
pub use index::{parse_index, GgufIndex, Parse, TensorInfo, DEFAULT_ALIGNMENT, MAX_DIMS};
pub use source::{
    first_prefix, next_prefix, read_index, read_index_within, read_tensor, FileSource, ReadAt, ReadError, TensorSource,
    MAX_INDEX_BYTES,
};
pub use tensor_type::TensorType;
pub use value::{Value, ValueType};
pub use writer::{with_metadata, write_header, Header, TensorSpec};
