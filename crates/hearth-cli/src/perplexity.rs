use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use serde_json::json;

use crate::ModelArgs;

#[derive(Args)]
pub struct PerplexityArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Text file to score.
    #[arg(long)]
    file: PathBuf,
    /// Window size in tokens.
    #[arg(long, default_value_t = 512)]
    ctx: usize,
    #[arg(long)]
    json: bool,
}

pub fn run(a: PerplexityArgs) -> Result<()> {
    let loaded = crate::load::open(&a.model.model)?;
    let text = std::fs::read_to_string(&a.file).with_context(|| format!("reading {}", a.file.display()))?;
    let tokens = loaded.tokenizer.encode(&text, false, false);
    let mut engine = loaded.engine(&a.model, Some(a.ctx))?;
    if tokens.len() < a.ctx {
        anyhow::bail!("{} has {} tokens, fewer than one window of --ctx {}", a.file.display(), tokens.len(), a.ctx);
    }
    let quiet = a.json;
    let p = hearth_model::perplexity(engine.as_mut(), &tokens, a.ctx, &mut |done, total| {
        if !quiet {
            eprint!("\rwindow {done}/{total}");
        }
    })?;
    if a.json {
        println!("{}", json!({ "ppl": p.ppl, "scored_tokens": p.scored_tokens }));
    } else {
        eprintln!();
        println!("perplexity {:.4} over {} tokens (ctx {})", p.ppl, p.scored_tokens, a.ctx);
    }
    Ok(())
}
