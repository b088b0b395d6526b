/// Why a GGUF's `tokenizer.ggml.*` metadata cannot be turned into a [`crate::Tokenizer`].
/// Each variant names the key at fault.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TokenizerError {
    #[error("metadata key {key:?} is missing")]
    MissingKey { key: &'static str },
    #[error("metadata key {key:?} has the wrong type: expected {expected}")]
    WrongType { key: &'static str, expected: &'static str },
    #[error("unknown tokenizer.ggml.model {0:?}")]
    UnknownModel(String),
    #[error("tokenizer.ggml.model {0:?} is known to llama.cpp but not supported by Hearth (only \"llama\" and \"gpt2\" are)")]
    UnsupportedModel(String),
    #[error("unknown tokenizer.ggml.pre {0:?}")]
    UnknownPreTokenizer(String),
    #[error("tokenizer.ggml.pre {0:?} is known to llama.cpp but not supported by Hearth")]
    UnsupportedPreTokenizer(String),
    #[error("tokenizer.ggml.model is \"gpt2\" but tokenizer.ggml.merges is missing")]
    MissingMerges,
    #[error("{key} has {found} entries but tokenizer.ggml.tokens has {expected}")]
    LengthMismatch { key: &'static str, expected: usize, found: usize },
    #[error("{key}[{index}] is not a {expected}")]
    BadElement { key: &'static str, index: usize, expected: &'static str },
    #[error("tokenizer.ggml.tokens is empty")]
    EmptyVocab,
    #[error("tokenizer.ggml.tokens has {0} entries, more than token ids can address")]
    VocabTooLarge(usize),
    /// A size past what any real vocabulary needs ([`crate::Limits`]), refused before
    /// allocating for it: the file is broken or hostile.
    #[error("{what} is {size}, more than the {max} Hearth accepts")]
    Limit { what: String, size: usize, max: usize },
    #[error("duplicate token {text:?} in tokenizer.ggml.tokens: ids {first} and {second}")]
    DuplicateToken { text: String, first: u32, second: u32 },
    #[error("{flag_key} is true, but {id_key} is not set")]
    MissingSpecialToken { flag_key: &'static str, id_key: &'static str },
    #[error("pre-tokenizer regex {regex:?} does not compile: {detail}")]
    BadRegex { regex: String, detail: String },
}
