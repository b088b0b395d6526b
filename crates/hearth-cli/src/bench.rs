//! `hearth bench`: prefill and decode speed, bytes read per decoded token (weights and KV
//! cache), achieved memory bandwidth and its utilisation, and kernel launches per token.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{ArgGroup, Args};
use hearth_gguf::{GgufIndex, ReadAt, TensorType};
use hearth_model::{generate, GenerateParams, Logits, QuantMix, SamplingParams, SyntheticModel, SyntheticShape};
use serde_json::json;
use web_time::Instant;

use hearth_gpu::GpuOptions;

use crate::Backend;

#[derive(Args)]
#[command(group(ArgGroup::new("source").required(true).args(["model", "synthetic"])))]
pub struct BenchArgs {
    /// A .gguf model file.
    #[arg(long, short = 'm')]
    model: Option<PathBuf>,
    /// A model of this shape with seeded random weights: llama2-7b, llama3-8b, smollm2-135m,
    /// tiny.
    #[arg(long, requires = "quant")]
    synthetic: Option<SyntheticShape>,
    /// Weight format for --synthetic: F32, F16, Q8_0, Q4_0, Q4_1, Q4_K, Q6_K, or Q4_K_M
    /// (llama.cpp's mix: Q4_K, with Q6_K attn_v/ffn_down in half the layers and Q6_K output).
    #[arg(long)]
    quant: Option<String>,
    #[arg(long, default_value_t = 512)]
    prompt_tokens: usize,
    #[arg(long, default_value_t = 128)]
    gen_tokens: usize,
    /// Peak memory bandwidth of the device in GB/s, for the utilisation figure.
    #[arg(long)]
    peak_gbps: Option<f64>,
    #[arg(long, value_enum)]
    backend: Option<Backend>,
    /// Decode one step at a time, waiting for each token before the next step is
    /// submitted (the default pipelines where the backend can).
    #[arg(long)]
    sequential: bool,
    /// Also time each kernel family of a decode step with GPU timestamps (where the adapter
    /// has timestamps inside compute passes).
    #[arg(long)]
    profile: bool,
    #[arg(long)]
    json: bool,
}

fn parse_quant(name: &str) -> Result<QuantMix> {
    const NAMES: &[TensorType] = &[
        TensorType::F32,
        TensorType::F16,
        TensorType::Q8_0,
        TensorType::Q4_0,
        TensorType::Q4_1,
        TensorType::Q4_K,
        TensorType::Q6_K,
    ];
    QuantMix::parse(name, NAMES).with_context(|| {
        format!("--quant {name}: one of {}, Q4_K_M", NAMES.iter().map(|t| t.name()).collect::<Vec<_>>().join(", "))
    })
}

/// Weight bytes one decoded token reads: every matrix once, but only one row of the
/// embedding table (unless it is also the output matrix).
fn weight_bytes_per_token(index: &GgufIndex) -> u64 {
    let total: u64 = index.tensors.iter().map(|t| t.n_bytes).sum();
    match (index.tensor("token_embd.weight"), index.tensor("output.weight")) {
        (Some(e), Some(_)) => total - e.n_bytes + e.n_bytes / e.dims.get(1).copied().unwrap_or(1),
        _ => total,
    }
}

pub fn run(a: BenchArgs) -> Result<()> {
    let (index, src, name): (GgufIndex, Box<dyn ReadAt>, String) = match (&a.model, a.synthetic) {
        (Some(path), _) => {
            let loaded = crate::load::open(path)?;
            let src = hearth_gguf::FileSource::open(path)?;
            (loaded.index, Box::new(src), path.display().to_string())
        }
        (None, Some(shape)) => {
            let quant = parse_quant(a.quant.as_deref().unwrap_or("Q4_0"))?;
            let synth = SyntheticModel::new(shape, quant, 0x4845_4152_5448)?;
            (synth.index().clone(), Box::new(synth), format!("synthetic {} {quant}", shape.name()))
        }
        (None, None) => anyhow::bail!("give --model or --synthetic"),
    };
    let ctx = a.prompt_tokens + a.gen_tokens + 8;
    let t_load = Instant::now();
    let options = GpuOptions { timestamps: a.profile, ..Default::default() };
    let mut engine = crate::load::engine_for(a.backend, &index, src.as_ref(), ctx, &options)?;
    let load_s = t_load.elapsed().as_secs_f64();
    let vocab = engine.config().vocab_size as u32;

    // Seeded pseudo-random prompt ids (content does not change the speed).
    let mut s = 0x9e37_79b9u32;
    let prompt: Vec<u32> = (0..a.prompt_tokens.max(1))
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            s % vocab
        })
        .collect();

    // Warm up: pipelines, first-touch allocations.
    engine.forward(&prompt[..prompt.len().min(8)], Logits::Last)?;
    engine.truncate_cache(0);

    // Greedy, through the loop `generate` uses: the first token comes from the prompt's
    // step, then `gen_tokens` decode steps. No tokenizer, so no end-of-generation token.
    let params = GenerateParams {
        max_tokens: a.gen_tokens + 1,
        sampling: SamplingParams::greedy(),
        stop: Vec::new(),
        sequential: a.sequential,
    };
    let g = generate(engine.as_mut(), None, &[], &prompt, &params, &mut |_| {})?;
    let prefill_s = g.timings.prompt_seconds;
    // Per kernel family, at the position decode ended at.
    let profile = match a.profile {
        true => Some(engine.profile(g.tokens.last().copied().unwrap_or(0), 8)?),
        false => None,
    };
    let prefill_tps = prompt.len() as f64 / prefill_s;
    let decode_tps = g.timings.generate_tokens_per_second();
    let bytes = weight_bytes_per_token(&index);
    // Attention at position p reads the K and V of positions 0..=p; decode ran at positions
    // prompt..prompt + gen, so on average prompt + (gen + 1) / 2 of them.
    let kv_positions = prompt.len() as f64 + (a.gen_tokens as f64 + 1.0) / 2.0;
    let kv_bytes = (engine.kv_bytes_per_position() as f64 * kv_positions).round() as u64;
    let gbps = (bytes + kv_bytes) as f64 * decode_tps / 1e9;
    let mbu = a.peak_gbps.map(|p| gbps / p);
    let stats = engine.stats();
    let out = json!({
        "model": name,
        "backend": a.backend.map_or("default".to_string(), |b| format!("{b:?}").to_lowercase()),
        "prompt_tokens": prompt.len(),
        "gen_tokens": a.gen_tokens,
        "prefill_tokens_per_second": prefill_tps,
        "decode_tokens_per_second": decode_tps,
        "weight_bytes_per_token": bytes,
        "kv_bytes_per_token": kv_bytes,
        "decode_gb_per_second": gbps,
        "peak_gb_per_second": a.peak_gbps,
        "memory_bandwidth_utilization": mbu,
        "dispatches_per_token": stats.dispatches_per_token,
        "submits_per_token": stats.submits_per_token,
        "sequential": a.sequential,
        "load_seconds": load_s,
        "pipelines": stats.pipelines,
        "profile_seconds_per_token": profile.as_ref().map(|p| match p {
            Some(families) => json!(families.iter().map(|(f, t)| json!({"kernels": f, "seconds": t})).collect::<Vec<_>>()),
            None => json!("no timestamps inside compute passes on this adapter"),
        }),
    });
    if a.json {
        println!("{out}");
    } else {
        println!("{name}");
        println!("  prefill  {prefill_tps:>9.1} tok/s  ({} tokens)", prompt.len());
        println!("  decode   {decode_tps:>9.1} tok/s  ({} tokens)", a.gen_tokens);
        let (w, kv) = (hearth_gpu::human(bytes), hearth_gpu::human(kv_bytes));
        println!("  reads    {w} of weights + {kv} of KV cache per token, {gbps:.2} GB/s achieved");
        if let Some(m) = mbu {
            println!("  MBU      {:.1}% of {} GB/s", m * 100.0, a.peak_gbps.unwrap_or(0.0));
        }
        println!("  per token: {} dispatches, {} submits", stats.dispatches_per_token, stats.submits_per_token);
        println!("  load     {load_s:.2} s, {} pipelines built", stats.pipelines);
        match &profile {
            Some(Some(families)) => {
                let total: f64 = families.iter().map(|(_, t)| t).sum();
                println!("  GPU time per decoded token, by kernel family ({:.3} ms in all):", total * 1e3);
                for (family, t) in families {
                    println!("    {family:<26} {:>9.3} ms  {:>5.1}%", t * 1e3, 100.0 * t / total.max(1e-12));
                }
            }
            Some(None) => println!("  profile: this adapter has no timestamps inside compute passes"),
            None => {}
        }
    }
    Ok(())
}
