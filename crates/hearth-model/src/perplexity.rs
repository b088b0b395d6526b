//! Perplexity exactly as `../shared/testdata/oracle/smollm2_perplexity.json` defines it:
//! consecutive windows of `ctx` tokens (the remainder dropped), each from an empty cache;
//! the negative log-likelihood of positions 1..ctx-1 of each window; ppl = exp(mean NLL).

use crate::{Engine, Logits, ModelError};

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Perplexity {
    pub ppl: f64,
    pub scored_tokens: usize,
}

/// `on_window(done, total)` reports progress after each window.
pub fn perplexity(
    engine: &mut dyn Engine,
    tokens: &[u32],
    ctx: usize,
    on_window: &mut dyn FnMut(usize, usize),
) -> Result<Perplexity, ModelError> {
    if ctx < 2 {
        return Err(ModelError::BadConfig {
            key: "ctx".into(),
            value: ctx.to_string(),
            why: "must be at least 2".into(),
        });
    }
    let n_windows = tokens.len() / ctx;
    if n_windows == 0 {
        return Err(ModelError::ContextFull { needed: ctx, max: tokens.len() });
    }
    if engine.cache_capacity() < ctx {
        return Err(ModelError::ContextFull { needed: ctx, max: engine.cache_capacity() });
    }
    let vocab = engine.config().vocab_size;
    let (mut nll, mut scored) = (0f64, 0usize);
    for (w, window) in tokens.chunks_exact(ctx).enumerate() {
        engine.truncate_cache(0);
        let logits = engine.forward(window, Logits::All)?;
        for i in 1..ctx {
            let row = &logits[(i - 1) * vocab..i * vocab];
            nll -= log_softmax_at(row, window[i] as usize);
            scored += 1;
        }
        on_window(w + 1, n_windows);
    }
    Ok(Perplexity { ppl: (nll / scored as f64).exp(), scored_tokens: scored })
}

/// log p(target) under softmax(row), in f64.
pub fn log_softmax_at(row: &[f32], target: usize) -> f64 {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let sum: f64 = row.iter().map(|&l| (l as f64 - max).exp()).sum();
    row[target] as f64 - max - sum.ln()
}
