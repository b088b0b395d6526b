//! Interactive terminal chat. The KV cache is kept across turns: each turn re-renders the
//! whole conversation and only the tokens after the longest prefix already in the cache are
//! run through the model.

use std::io::{BufRead, Write};

use anyhow::Result;
use clap::Args;
use hearth_model::chat::{reusable_prefix, Fitted};
use hearth_model::{generate, GenerateParams};
use hearth_tokenizer::template::Message;

use crate::{ModelArgs, SamplingArgs};

#[derive(Args)]
pub struct ChatArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// System message (default: the template's own, if it has one).
    #[arg(long)]
    system: Option<String>,
    /// Most tokens per reply.
    #[arg(long, default_value_t = 1024)]
    max_tokens: usize,
    #[command(flatten)]
    sampling: SamplingArgs,
}

pub fn run(a: ChatArgs) -> Result<()> {
    let loaded = crate::load::open(&a.model.model)?;
    let format = loaded.chat_format()?;
    let mut engine = loaded.engine(&a.model, a.sampling.ctx)?;
    let mut params = GenerateParams {
        max_tokens: a.max_tokens,
        sampling: a.sampling.params()?,
        stop: Vec::new(),
        sequential: false,
    };

    let mut messages: Vec<Message> = a.system.iter().map(|s| Message::system(s.clone())).collect();
    let n_fixed = messages.len();
    let mut cached: Vec<u32> = Vec::new(); // the tokens whose keys and values are in `cache`

    eprintln!("Chatting with {}. /reset starts over, /exit or Ctrl-D quits.", a.model.model.display());
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    loop {
        eprint!("\n> ");
        let Some(line) = lines.next() else { break };
        let line = line?;
        match line.trim() {
            "" => continue,
            "/exit" | "/quit" => break,
            "/reset" => {
                messages.truncate(n_fixed);
                engine.truncate_cache(0);
                cached.clear();
                eprintln!("[conversation cleared]");
                continue;
            }
            _ => {}
        }
        messages.push(Message::user(line));

        // Render; when the conversation no longer fits (leaving room for a reply), drop the
        // oldest exchange and say so.
        let reserve = params.max_tokens.min(engine.cache_capacity() / 4);
        let fitted = format.fit(&loaded.tokenizer, &messages, n_fixed, engine.cache_capacity(), reserve)?;
        let Some(Fitted { tokens, dropped }) = fitted else {
            messages.pop();
            eprintln!(
                "[that message is too long for a context of {} tokens; try a shorter one or --ctx]",
                engine.cache_capacity()
            );
            continue;
        };

        if dropped > 0 {
            messages.drain(n_fixed..n_fixed + dropped);
            eprintln!("[context full: dropped the {dropped} oldest messages]");
        }
        let common = reusable_prefix(&cached, &tokens);
        engine.truncate_cache(common);
        cached.truncate(common);

        let mut stdout = std::io::stdout();
        let g = generate(engine.as_mut(), Some(&loaded.tokenizer), &cached, &tokens[common..], &params, &mut |s| {
            let _ = write!(stdout, "{}", crate::terminal::for_stdout(s));
            let _ = stdout.flush();
        })?;
        println!();
        eprintln!(
            "[{} new prompt tokens, {} generated at {:.1} tok/s; context {}/{}]",
            g.timings.prompt_tokens,
            g.timings.generated_tokens,
            g.timings.generate_tokens_per_second(),
            engine.cache_len(),
            engine.cache_capacity()
        );
        cached = tokens.iter().chain(&g.tokens).copied().take(engine.cache_len()).collect();
        messages.push(Message::assistant(g.text));
        params.sampling.seed = params.sampling.seed.wrapping_add(1);
    }
    Ok(())
}
