//! Llama-family models (and Qwen2, Qwen3, SmolLM3) on the CPU, in plain f32: the reference every GPU kernel is checked
//! against, and a working (slow) backend in its own right.
//!
//! GGUF index → [`Config`] (typed hyper-parameters) → [`Weights`] (tensors in their file
//! dtype) → [`Model::forward`] over a [`KvCache`] → logits → [`Sampler`] → [`generate`].

pub mod chat;
mod config;
mod engine;
mod error;
mod generate;
mod model;
pub mod openai;
pub mod ops;
mod perplexity;
mod sampling;
mod synthetic;
mod weights;

pub use config::{Config, Family, Llama3Scaling, RopeConfig};
pub use engine::{Blocking, CpuEngine, Engine, EngineStats, Feed, Pipelined, Steps};
pub use error::ModelError;
pub use generate::{generate, generate_async, GenerateParams, Generation, StopReason, Timings};
pub use model::{KvCache, Logits, Model};
pub use perplexity::{log_softmax_at, perplexity, Perplexity};
pub use sampling::{argmax, Sampler, SamplingParams};
pub use synthetic::{QuantMix, SyntheticModel, SyntheticShape};
pub use weights::{checked_tensor, unused_tensor, Layer, LayerWeights, LlamaWeights, Matrix, WeightLoader, Weights};
