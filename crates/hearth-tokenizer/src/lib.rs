//! Tokenizers that give exactly llama.cpp's token ids, built from a GGUF's `tokenizer.ggml.*`
//! metadata, and chat templates rendered the way Hugging Face renders them.

pub mod template;
