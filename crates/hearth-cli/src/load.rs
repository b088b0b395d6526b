//! Opening a model file: index, tokenizer, and (when asked) weights.

use anyhow::{Context, Result};
use hearth_gguf::{read_index, FileSource, GgufIndex};
use hearth_model::{CpuEngine, Engine, Model};
use hearth_tokenizer::template::ChatTemplate;
use hearth_tokenizer::Tokenizer;

use crate::ModelArgs;

pub struct Loaded {
    pub index: GgufIndex,
    pub tokenizer: Tokenizer,
    src: FileSource,
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
        let _ = args.backend; // one backend so far: the CPU reference
        let model = Model::load(&self.index, &self.src).with_context(|| format!("loading {}", self.path))?;
        let ctx = context_size(model.config.max_context, context)?;
        Ok(Box::new(CpuEngine::new(model, ctx)))
    }

    pub fn chat_template(&self) -> Result<ChatTemplate> {
        let source = self.index.get("tokenizer.chat_template").and_then(|v| v.as_str());
        ChatTemplate::for_model(source, |t| self.tokenizer.token_id(t).is_some())
            .with_context(|| format!("{}: the chat template does not compile", self.path))
    }

    /// BOS and EOS texts as the template sees them.
    pub fn special_texts(&self) -> (String, String) {
        let text = |id: Option<u32>| id.and_then(|i| self.tokenizer.token_text(i)).unwrap_or("").to_string();
        (text(self.tokenizer.bos_id()), text(self.tokenizer.eos_id()))
    }

    /// Tokenizes a rendered chat: special tokens parsed; BOS added when the model wants it,
    /// unless the template already wrote it (llama.cpp strips it the same way).
    pub fn tokenize_chat(&self, rendered: &str) -> Vec<u32> {
        let add_bos = self.tokenizer.add_bos_default();
        let (bos, _) = self.special_texts();
        let text = match rendered.strip_prefix(bos.as_str()) {
            Some(rest) if add_bos && !bos.is_empty() => rest,
            _ => rendered,
        };
        self.tokenizer.encode(text, add_bos, true)
    }
}

/// A context size: the one asked for, else the model's, capped at 4096 to keep memory modest.
pub fn context_size(max: usize, asked: Option<usize>) -> Result<usize> {
    match asked {
        Some(n) if n == 0 || n > max => anyhow::bail!("--ctx {n} is outside 1..={max} (this model's trained context)"),
        Some(n) => Ok(n),
        None => Ok(max.min(4096)),
    }
}
