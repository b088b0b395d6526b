//! `hearth`: run Llama-family GGUF models from the command line.
//!
//! The interface here is fixed: other tools script against it.

mod bench;
mod chat;
mod generate;
mod info;
mod load;
mod perplexity;
mod serve;
mod terminal;
mod tokenize;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(name = "hearth", version, about = "Private LLM chat on your own hardware: run Llama-family GGUF models")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the token ids of a text.
    Tokenize(tokenize::TokenizeArgs),
    /// Generate text from a prompt or a single chat message.
    Generate(generate::GenerateArgs),
    /// Perplexity of a text file (windows of --ctx tokens, no BOS).
    Perplexity(perplexity::PerplexityArgs),
    /// Interactive chat in the terminal; context is kept across turns.
    Chat(chat::ChatArgs),
    /// The GPU adapter, its features and limits, and whether a model fits.
    Info(info::InfoArgs),
    /// Prefill and decode speed, bandwidth achieved, launches per token.
    Bench(bench::BenchArgs),
    /// Serve the model over OpenAI's chat-completions API (http://127.0.0.1:8080/v1).
    Serve(serve::ServeArgs),
}

/// Where the model runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Backend {
    /// Plain f32 CPU reference (slow, exact).
    Cpu,
    /// WGSL kernels through wgpu (Vulkan, Metal or DX12).
    Gpu,
}

/// Options shared by every command that runs a model.
#[derive(Args, Clone)]
pub struct ModelArgs {
    /// Path to a .gguf model file.
    #[arg(long, short = 'm')]
    pub model: PathBuf,
    /// Default: the GPU when there is a hardware adapter, else the CPU.
    #[arg(long, value_enum)]
    pub backend: Option<Backend>,
}

/// Sampling options shared by `generate` and `chat` (defaults are llama.cpp's).
#[derive(Args, Clone)]
pub struct SamplingArgs {
    /// 0 = greedy.
    #[arg(long, default_value_t = 0.8)]
    pub temperature: f32,
    /// 0 = off.
    #[arg(long, default_value_t = 40)]
    pub top_k: usize,
    /// 1 = off.
    #[arg(long, default_value_t = 0.95)]
    pub top_p: f32,
    /// 0 = off.
    #[arg(long, default_value_t = 0.05)]
    pub min_p: f32,
    /// 1 = off.
    #[arg(long, default_value_t = 1.0)]
    pub repeat_penalty: f32,
    /// Random seed (default: from the clock).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Context size in tokens (default: the model's, at most 4096).
    #[arg(long)]
    pub ctx: Option<usize>,
}

impl SamplingArgs {
    pub fn params(&self) -> anyhow::Result<hearth_model::SamplingParams> {
        let seed = self.seed.unwrap_or_else(|| {
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
        });
        let p = hearth_model::SamplingParams {
            temperature: self.temperature,
            top_k: self.top_k,
            top_p: self.top_p,
            min_p: self.min_p,
            repeat_penalty: self.repeat_penalty,
            repeat_last_n: 64,
            seed,
        };
        p.validate().map_err(anyhow::Error::msg)?;
        Ok(p)
    }
}

fn main() {
    // A panic is a bug, but the user still gets one line, not a trace.
    std::panic::set_hook(Box::new(|info| {
        eprintln!("hearth: internal error: {info}. Please report this.");
    }));
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Tokenize(a) => tokenize::run(a),
        Command::Generate(a) => generate::run(a),
        Command::Perplexity(a) => perplexity::run(a),
        Command::Chat(a) => chat::run(a),
        Command::Info(a) => info::run(a),
        Command::Bench(a) => bench::run(a),
        Command::Serve(a) => serve::run(a),
    };
    if let Err(e) = result {
        // Errors may quote the model file (a template's message, a key): never raw controls.
        eprintln!("hearth: error: {}", terminal::clean(&format!("{e:#}")));
        std::process::exit(1);
    }
}
