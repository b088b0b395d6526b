//! Interactive terminal chat over `hearth_model::chat::Conversation`: the KV cache is kept
//! across turns, and each turn runs only the tokens after the prefix already in the cache.

use std::io::{BufRead, Write};

use anyhow::Result;
use clap::Args;
use hearth_model::chat::{Conversation, Overflow, TurnError};
use hearth_model::{Blocking, GenerateParams};
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
    let mut conversation = Conversation::new(format, loaded.tokenizer);
    let mut params = GenerateParams {
        max_tokens: a.max_tokens,
        sampling: a.sampling.params()?,
        stop: Vec::new(),
        sequential: false,
    };

    let mut messages: Vec<Message> = a.system.iter().map(|s| Message::system(s.clone())).collect();
    let n_fixed = messages.len();

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
                conversation.forget(&mut Blocking(engine.as_mut()));
                eprintln!("[conversation cleared]");
                continue;
            }
            _ => {}
        }
        messages.push(Message::user(line));

        // When the conversation no longer fits (leaving room for a reply), the oldest
        // exchanges are dropped: say so.
        let mut stdout = std::io::stdout();
        let mut on_text = |s: &str| {
            let _ = write!(stdout, "{}", crate::terminal::for_stdout(s));
            let _ = stdout.flush();
        };
        let turn = conversation.reply_blocking(
            engine.as_mut(),
            &messages,
            &params,
            Overflow::DropOldest,
            &mut on_text,
            &|| false,
        );
        let turn = match turn {
            Err(e @ TurnError::TooLong { .. }) => {
                messages.pop();
                eprintln!("[{e}; or raise --ctx]");
                continue;
            }
            other => other?,
        };
        println!();
        if turn.dropped > 0 {
            messages.drain(n_fixed..n_fixed + turn.dropped);
            eprintln!("[context full: dropped the {} oldest messages]", turn.dropped);
        }
        let g = turn.generation;
        eprintln!(
            "[{} new prompt tokens, {} generated at {:.1} tok/s; context {}/{}]",
            g.timings.prompt_tokens,
            g.timings.generated_tokens,
            g.timings.generate_tokens_per_second(),
            engine.cache_len(),
            engine.cache_capacity()
        );
        messages.push(Message::assistant(g.text));
        params.sampling.seed = params.sampling.seed.wrapping_add(1);
    }
    Ok(())
}
