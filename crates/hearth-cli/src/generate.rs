use std::io::Write;

use anyhow::Result;
use clap::{ArgGroup, Args};
use hearth_model::{generate, GenerateParams};
use hearth_tokenizer::template::Message;
use serde_json::json;

use crate::{ModelArgs, SamplingArgs};

#[derive(Args)]
#[command(group(ArgGroup::new("input").required(true).args(["prompt", "chat"])))]
pub struct GenerateArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Raw prompt text (BOS added if the model wants it; special tokens not parsed).
    #[arg(long)]
    prompt: Option<String>,
    /// One user message, rendered with the model's chat template.
    #[arg(long)]
    chat: Option<String>,
    /// System message for --chat.
    #[arg(long, requires = "chat")]
    system: Option<String>,
    #[arg(long, default_value_t = 256)]
    max_tokens: usize,
    /// Stop before this text (repeatable).
    #[arg(long)]
    stop: Vec<String>,
    #[command(flatten)]
    sampling: SamplingArgs,
    /// Print one JSON object instead of streaming text.
    #[arg(long)]
    json: bool,
}

pub fn run(a: GenerateArgs) -> Result<()> {
    let loaded = crate::load::open(&a.model.model)?;
    let tok = &loaded.tokenizer;
    let prompt_tokens = match (&a.prompt, &a.chat) {
        (Some(p), _) => tok.encode(p, tok.add_bos_default(), false),
        (None, Some(msg)) => {
            let mut messages = Vec::new();
            if let Some(s) = &a.system {
                messages.push(Message::system(s.clone()));
            }
            messages.push(Message::user(msg.clone()));
            loaded.chat_format()?.tokenize(tok, &messages)?
        }
        (None, None) => anyhow::bail!("give --prompt or --chat"),
    };
    if prompt_tokens.is_empty() {
        anyhow::bail!("the prompt is empty");
    }
    let mut engine = loaded.engine(&a.model, a.sampling.ctx)?;
    let params = GenerateParams {
        max_tokens: a.max_tokens,
        sampling: a.sampling.params()?,
        stop: a.stop.clone(),
        sequential: false,
    };

    let mut stdout = std::io::stdout();
    let mut on_text = |s: &str| {
        if !a.json {
            let _ = write!(stdout, "{}", crate::terminal::for_stdout(s));
            let _ = stdout.flush();
        }
    };
    let g = generate(engine.as_mut(), Some(tok), &[], &prompt_tokens, &params, &mut on_text)?;
    let t = &g.timings;
    if a.json {
        let out = json!({
            "prompt_tokens": prompt_tokens,
            "tokens": g.tokens,
            "text": g.text,
            "stop_reason": g.stop_reason.as_str(),
            "seed": params.sampling.seed,
            "timings": {
                "prompt_tokens": t.prompt_tokens,
                "prompt_seconds": t.prompt_seconds,
                "prompt_tokens_per_second": t.prompt_tokens_per_second(),
                "generated_tokens": t.generated_tokens,
                "generate_seconds": t.generate_seconds,
                "generate_tokens_per_second": t.generate_tokens_per_second(),
            }
        });
        println!("{out}");
    } else {
        println!();
        eprintln!(
            "[{} prompt tokens at {:.1} tok/s, {} generated at {:.1} tok/s, stop: {}]",
            t.prompt_tokens,
            t.prompt_tokens_per_second(),
            t.generated_tokens,
            t.generate_tokens_per_second(),
            g.stop_reason.as_str()
        );
    }
    Ok(())
}
