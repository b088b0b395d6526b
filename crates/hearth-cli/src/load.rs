//! Opening a model file: index, tokenizer, and (when asked) weights.

use std::sync::Arc;

use anyhow::{Context, Result};
use hearth_gguf::{read_index, FileSource, GgufIndex, ReadAt};
use hearth_gpu::{Gpu, GpuEngine, GpuError, GpuOptions};
use hearth_model::chat::ChatFormat;
use hearth_model::{Config, CpuEngine, Engine, Model};
use hearth_tokenizer::Tokenizer;

use crate::{Backend, ModelArgs};

pub struct Loaded {
    pub index: GgufIndex,
    pub tokenizer: Tokenizer,
    pub src: FileSource,
    path: String,
}

pub fn open(path: &std::path::Path) -> Result<Loaded> {
    let shown = path.display().to_string();
    let src = FileSource::open(path).with_context(|| format!("cannot open model {shown}"))?;
    let index = read_index(&src).with_context(|| format!("{shown} is not a usable GGUF model"))?;
    let tokenizer = Tokenizer::from_gguf(&index).with_context(|| format!("{shown}: reading the tokenizer"))?;
    Ok(Loaded { index, tokenizer, src, path: shown })
}

impl Loaded {
    /// Loads the weights onto the chosen backend with a KV cache of `context` positions
    /// (default: the model's trained context, at most 4096).
    pub fn engine(&self, args: &ModelArgs, context: Option<usize>) -> Result<Box<dyn Engine>> {
        let config = Config::from_gguf(&self.index).with_context(|| format!("loading {}", self.path))?;
        let ctx = context_size(config.max_context, context)?;
        engine_for(args.backend, &self.index, &self.src, ctx, &GpuOptions::default())
            .with_context(|| format!("loading {}", self.path))
    }

    pub fn chat_format(&self) -> Result<ChatFormat> {
        ChatFormat::from_gguf(&self.index, &self.tokenizer)
            .with_context(|| format!("{}: the chat template does not compile", self.path))
    }
}

/// Loads a model onto `backend` with a KV cache of `ctx` positions. With no backend named:
/// the GPU when the adapter is real hardware; on a software one (lavapipe) the CPU reference,
/// which is faster there; with no adapter at all the CPU, after a one-line note.
pub fn engine_for(
    backend: Option<Backend>,
    index: &GgufIndex,
    src: &dyn ReadAt,
    ctx: usize,
    options: &GpuOptions,
) -> Result<Box<dyn Engine>> {
    let gpu = match backend {
        Some(Backend::Cpu) => None,
        Some(Backend::Gpu) => Some(Gpu::new_blocking(options)?),
        None => match Gpu::new_blocking(options) {
            Ok(gpu) if gpu.info.device_type != hearth_gpu::wgpu::DeviceType::Cpu => Some(gpu),
            Ok(_) => None,
            Err(GpuError::NoAdapter(why)) => {
                eprintln!("note: no GPU adapter ({why}); running on the CPU");
                None
            }
            Err(e) => return Err(e.into()),
        },
    };
    Ok(match gpu {
        Some(gpu) => Box::new(GpuEngine::load(Arc::new(gpu), index, src, ctx)?),
        None => Box::new(CpuEngine::new(Model::load(index, src)?, ctx)),
    })
}

/// A context size: the one asked for, else the model's, capped at 4096 to keep memory modest.
pub fn context_size(max: usize, asked: Option<usize>) -> Result<usize> {
    match asked {
        Some(n) if n == 0 || n > max => anyhow::bail!("--ctx {n} is outside 1..={max} (this model's trained context)"),
        Some(n) => Ok(n),
        None => Ok(max.min(4096)),
    }
}
