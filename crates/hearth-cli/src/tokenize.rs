use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{ArgGroup, Args};

#[derive(Args)]
#[command(group(ArgGroup::new("input").required(true).args(["text", "file"])))]
pub struct TokenizeArgs {
    #[arg(long, short = 'm')]
    model: PathBuf,
    #[arg(long)]
    text: Option<String>,
    /// Read the text from this file.
    #[arg(long)]
    file: Option<PathBuf>,
    /// Add the BOS token.
    #[arg(long)]
    bos: bool,
    /// Parse special tokens such as <|im_start|>.
    #[arg(long)]
    special: bool,
    /// Print the ids as a JSON array.
    #[arg(long)]
    json: bool,
}

pub fn run(a: TokenizeArgs) -> Result<()> {
    let loaded = crate::load::open(&a.model)?;
    let text = match (&a.text, &a.file) {
        (Some(t), _) => t.clone(),
        (None, Some(f)) => std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?,
        (None, None) => anyhow::bail!("give --text or --file"),
    };
    let ids = loaded.tokenizer.encode(&text, a.bos, a.special);
    if a.json {
        println!("{}", serde_json::to_string(&ids)?);
    } else {
        for id in ids {
            let piece = String::from_utf8_lossy(loaded.tokenizer.token_bytes(id)).into_owned();
            println!("{id:>7} {piece:?}");
        }
    }
    Ok(())
}
