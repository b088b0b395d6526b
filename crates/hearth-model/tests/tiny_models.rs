//! The CPU reference against llama.cpp on tiny random models that cover what the real
//! SmolLM2 model does not: multi-head attention with an untied `output.weight`, other GQA
//! ratios, a head size given by `attention.key_length` (n_heads · head_dim ≠ dim, an odd
//! number of rotated pairs), RoPE bases 1e4 / 1e6 / 5e5, Llama 3 frequency scaling (the
//! `rope_freqs.weight` tensor, and the same factors from metadata), linear RoPE scaling, and
//! the other families: qwen2 (Q/K/V biases, NeoX RoPE), qwen3 (per-head Q/K norms, NeoX, a
//! head size of its own) and smollm3 (every fourth layer without RoPE).
//! The models and llama.cpp's logits come from tests/fixtures/make_tiny_models.py; see the
//! docstring there for how the oracle was run.
//!
//! Also: malformed models and inputs must give the right [`ModelError`], not a panic.

use std::collections::BTreeMap;
use std::path::PathBuf;

use hearth_gguf::{read_index, read_tensor, GgufIndex, TensorType, Value};
use hearth_model::{Config, Family, Logits, Model, ModelError};
use serde_json::Value as Json;

/// Largest |hearth − llama.cpp| allowed for any logit of any position. Both sides compute in
/// f32 on F32 weights with an f32 KV cache, differing only in summation order (SIMD widths,
/// f64 vs f32 accumulators, ggml's expf/silu approximations); on these models, with logits up
/// to ~16, that came to at most 9.5e-6. 1e-4 leaves room for other CPUs while still failing
/// on any real mistake: the probes in the fixture show that switching off a single feature
/// (rope_freqs, linear scaling) moves the logits by 1e-1 or more.
const LOGIT_TOLERANCE: f32 = 1e-4;
/// Batch and token-by-token runs of our own forward pass: same arithmetic but for the matmul
/// grouping, so they agree far more closely than either does with llama.cpp.
const SELF_TOLERANCE: f32 = 1e-5;
/// Llama 3 factors from metadata against the converter's `rope_freqs.weight` (relative).
const FREQ_FACTOR_REL_TOLERANCE: f32 = 1e-6;

fn fixtures() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures"))
}

fn manifest() -> Json {
    let text = std::fs::read_to_string(fixtures().join("tiny_models.json")).expect("tiny_models.json");
    serde_json::from_str(&text).unwrap()
}

fn spec(name: &str) -> Json {
    manifest()["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == name)
        .unwrap_or_else(|| panic!("no model {name}"))
        .clone()
}

fn tokens() -> Vec<u32> {
    manifest()["tokens"].as_array().unwrap().iter().map(|t| t.as_u64().unwrap() as u32).collect()
}

fn n_ctx() -> usize {
    manifest()["n_ctx"].as_u64().unwrap() as usize
}

fn file_bytes(name: &str) -> Vec<u8> {
    let path = fixtures().join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// llama.cpp's logits: n_tokens × n_vocab, little-endian f32.
fn oracle_logits(spec: &Json) -> Vec<f32> {
    file_bytes(spec["logits"].as_str().unwrap())
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect()
}

fn model_bytes(name: &str) -> Vec<u8> {
    file_bytes(spec(name)["gguf"].as_str().unwrap())
}

fn load_bytes(bytes: &Vec<u8>) -> Result<Model, ModelError> {
    let index = read_index(bytes)?;
    Model::load(&index, bytes)
}

/// Largest |a − b| and where (position, token); fails on NaN or Inf in `a`.
fn max_err(what: &str, a: &[f32], b: &[f32], n_vocab: usize) -> (f32, usize, usize) {
    assert_eq!(a.len(), b.len(), "{what}: logit count");
    let mut worst = (0f32, 0, 0);
    for (i, (&x, &y)) in a.iter().zip(b).enumerate() {
        assert!(x.is_finite(), "{what}: logit {} of position {} is {x}", i % n_vocab, i / n_vocab);
        let e = (x - y).abs();
        if e > worst.0 {
            worst = (e, i / n_vocab, i % n_vocab);
        }
    }
    worst
}

/// Runs the fixture tokens through `model` in one batch and again one token at a time
/// through the KV cache, and compares both with llama.cpp. Returns the largest error.
fn check_against_oracle(label: &str, model: &Model, expected: &[f32]) -> f32 {
    // Gemma 3's oracle is llama.cpp built with its GELU in f32 (make_tiny_models.py): the same
    // budget holds (6.7e-6 measured); against stock llama.cpp, whose GELU goes through f16,
    // it is 4.6e-3.
    let budget = LOGIT_TOLERANCE;
    let toks = tokens();
    let n_vocab = model.config.vocab_size;
    assert_eq!(expected.len(), toks.len() * n_vocab, "{label}: oracle logit count");

    let mut cache = model.new_cache(n_ctx());
    let batch = model.forward(&mut cache, &toks, Logits::All).unwrap();
    assert_eq!(cache.len(), toks.len());

    let mut cache = model.new_cache(n_ctx());
    let mut stepwise = Vec::with_capacity(batch.len());
    for &t in &toks {
        stepwise.extend(model.forward(&mut cache, &[t], Logits::Last).unwrap());
    }
    assert_eq!(cache.len(), toks.len());

    let (eb, pb, tb) = max_err(label, &batch, expected, n_vocab);
    let (es, ps, ts) = max_err(label, &stepwise, expected, n_vocab);
    let (ebs, _, _) = max_err(label, &batch, &stepwise, n_vocab);
    eprintln!(
        "{label}: max |Δ| vs llama.cpp: batch {eb:.2e} (pos {pb}, token {tb}), token by token {es:.2e} (pos {ps}, token {ts}); batch vs token by token {ebs:.2e}"
    );
    assert!(eb <= budget, "{label}: batch logit at position {pb}, token {tb} off by {eb:.3e} (budget {budget:e})");
    assert!(
        es <= budget,
        "{label}: token-by-token logit at position {ps}, token {ts} off by {es:.3e} (budget {budget:e})"
    );
    assert!(
        ebs <= SELF_TOLERANCE,
        "{label}: batch and token-by-token runs differ by {ebs:.3e} (budget {SELF_TOLERANCE:e})"
    );
    eb.max(es)
}

/// Loads fixture `name`, checks its config against the manifest, compares with llama.cpp.
fn check_model(name: &str) {
    let spec = spec(name);
    let bytes = model_bytes(name);
    let index = read_index(&bytes).unwrap();
    let model = Model::load(&index, &bytes).unwrap();
    let c = &model.config;
    let n = |k: &str| spec[k].as_u64().unwrap() as usize;
    assert_eq!(
        (c.dim, c.n_layers, c.n_heads, c.n_kv_heads, c.head_dim, c.ffn_dim, c.vocab_size),
        (n("dim"), n("n_layers"), n("n_heads"), n("n_kv_heads"), n("head_dim"), n("ffn_dim"), n("n_vocab")),
        "{name}: config"
    );
    assert_eq!(c.family.gguf_name(), spec["arch"].as_str().unwrap(), "{name}: family");
    assert_eq!(c.qk_norm, spec["qk_norm"].as_bool().unwrap(), "{name}: Q/K norms");
    assert_eq!(c.post_norms, spec["post_norms"].as_bool().unwrap(), "{name}: post-norms");
    let window = c.sliding.as_ref().map(|s| s.window as u64);
    assert_eq!(window, spec["sliding_window"].as_u64(), "{name}: sliding window");
    if c.ffn_act == hearth_model::ops::Activation::GeluTanh {
        let gelu = spec["oracle_gelu"].as_str();
        assert_eq!(gelu, Some("f32 (GGML_GELU_FP16 off)"), "{name}: the oracle must not round GELU through f16");
    }
    let biased = model.weights.layers.iter().all(|l| l.qkv_bias.is_some());
    assert_eq!(biased, spec["bias"].as_bool().unwrap(), "{name}: Q/K/V biases");
    assert_eq!(c.rope.n_rot, c.head_dim, "{name}: n_rot");
    assert_eq!(c.rope.freq_base, spec["rope_base"].as_f64().unwrap() as f32, "{name}: rope base");
    assert_eq!(c.norm_eps, spec["norm_eps"].as_f64().unwrap() as f32, "{name}: eps");
    let scale = spec["linear_scaling_factor"].as_f64().map_or(1.0, |f| 1.0 / f as f32);
    assert_eq!(c.rope.freq_scale, scale, "{name}: linear scale");
    assert_eq!(index.tensor("output.weight").is_none(), spec["tied"].as_bool().unwrap(), "{name}: tied");
    check_against_oracle(name, &model, &oracle_logits(&spec));
}

#[test]
fn mha_with_untied_output_matches_llama_cpp() {
    check_model("mha_untied");
}

#[test]
fn gqa_with_explicit_odd_head_size_and_tied_output_matches_llama_cpp() {
    check_model("gqa3_hd10_tied");
}

#[test]
fn llama3_rope_freqs_tensor_matches_llama_cpp() {
    check_model("llama3_rope_freqs");
}

#[test]
fn linear_rope_scaling_matches_llama_cpp() {
    check_model("linear_rope");
}

#[test]
fn qwen2_with_qkv_biases_and_neox_rope_matches_llama_cpp() {
    check_model("qwen2_bias");
}

#[test]
fn qwen3_with_per_head_qk_norms_matches_llama_cpp() {
    check_model("qwen3_qk_norm");
}

#[test]
fn smollm3_without_rope_every_fourth_layer_matches_llama_cpp() {
    let model = load_bytes(&model_bytes("smollm3_no_rope")).unwrap();
    let rotates: Vec<bool> = (0..4).map(|l| model.config.rotates(l)).collect();
    assert_eq!(rotates, [true, true, true, false]);
    check_model("smollm3_no_rope");
}

// ---------------------------------------------------------------------------------------------
// Llama 3 scaling given as metadata instead of the tensor. llama.cpp cannot load such a file
// (it knows no rope.scaling.type "llama3"), so the variant is made here, from the fixture, and
// must reproduce the tensor's factors and hence llama.cpp's logits for the fixture.

/// The metadata keys Hearth reads for llama3 scaling, from the manifest.
fn with_llama3_metadata(bytes: &Vec<u8>, spec: &Json) -> Gguf {
    let p = &spec["llama3_scaling"];
    let f = |k: &str| Value::F32(p[k].as_f64().unwrap() as f32);
    let mut g = Gguf::parse(bytes);
    g.set("llama.rope.scaling.type", Value::String("llama3".into()));
    g.set("llama.rope.scaling.factor", f("factor"));
    g.set("llama.rope.scaling.low_freq_factor", f("low_freq_factor"));
    g.set("llama.rope.scaling.high_freq_factor", f("high_freq_factor"));
    g.set(
        "llama.rope.scaling.original_context_length",
        Value::U32(p["original_context_length"].as_u64().unwrap() as u32),
    );
    g
}

#[test]
fn llama3_freq_factors_from_metadata_equal_the_rope_freqs_tensor() {
    let spec = spec("llama3_rope_freqs");
    let bytes = model_bytes("llama3_rope_freqs");
    let index = read_index(&bytes).unwrap();
    let info = index.tensor("rope_freqs.weight").expect("fixture has rope_freqs.weight");
    assert_eq!(info.ty, TensorType::F32);
    let tensor: Vec<f32> =
        read_tensor(&bytes, info).unwrap().chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect();
    // The fixture covers all three branches: unchanged, blended, divided by the factor.
    let factor = spec["llama3_scaling"]["factor"].as_f64().unwrap() as f32;
    assert!(
        tensor.contains(&1.0) && tensor.contains(&factor) && tensor.iter().any(|&f| f > 1.0 && f < factor),
        "{tensor:?}"
    );

    let variant = with_llama3_metadata(&bytes, &spec).to_bytes();
    let config = Config::from_gguf(&read_index(&variant).unwrap()).unwrap();
    let scaling = config.rope.llama3.expect("llama3 scaling read from metadata");
    assert_eq!(config.rope.freq_scale, 1.0, "llama3 scaling must not also scale linearly");
    let ours = scaling.freq_factors(config.rope.freq_base, config.rope.n_rot);
    assert_eq!(ours.len(), tensor.len());
    let mut worst = 0f32;
    for (i, (&a, &b)) in ours.iter().zip(&tensor).enumerate() {
        let rel = (a - b).abs() / b.abs();
        assert!(rel <= FREQ_FACTOR_REL_TOLERANCE, "pair {i}: ours {a}, rope_freqs.weight {b}");
        worst = worst.max(rel);
    }
    eprintln!("llama3 freq factors {ours:?}: max relative difference from rope_freqs.weight {worst:.2e}");
}

#[test]
fn llama3_scaling_from_metadata_matches_llama_cpp() {
    let spec = spec("llama3_rope_freqs");
    let mut g = with_llama3_metadata(&model_bytes("llama3_rope_freqs"), &spec);
    g.remove_tensor("rope_freqs.weight");
    let model = load_bytes(&g.to_bytes()).unwrap();
    assert!(model.weights.rope_freq_factors.is_some());
    check_against_oracle("llama3 scaling from metadata", &model, &oracle_logits(&spec));
}

#[test]
fn linear_scaling_factor_without_a_type_is_linear_as_in_llama_cpp() {
    // Older conversions wrote rope.scaling.factor without rope.scaling.type; llama.cpp then
    // takes the type to be linear (make_tiny_models.py's probe "factor_without_scaling_type"
    // confirms its logits equal the fixture's).
    let spec = spec("linear_rope");
    let probe = &spec["probes"]["factor_without_scaling_type"];
    assert_eq!(probe["max_abs_diff"].as_f64(), Some(0.0), "llama.cpp's behaviour changed: {probe}");
    let mut g = Gguf::parse(&model_bytes("linear_rope"));
    assert!(g.remove("llama.rope.scaling.type"));
    let model = load_bytes(&g.to_bytes()).unwrap();
    assert_eq!(model.config.rope.freq_scale, 0.25);
    check_against_oracle("linear factor without type", &model, &oracle_logits(&spec));
}

#[test]
fn probes_show_the_rope_comparisons_are_sensitive() {
    // If switching a feature off moved llama.cpp's logits by less than the budget, the
    // comparisons above could not catch its absence.
    for (model, probe) in [
        ("llama3_rope_freqs", "without_rope_freqs"),
        ("linear_rope", "without_linear_scaling"),
        ("qwen2_bias", "without_bias"),
        ("qwen2_bias", "as_llama"),
        ("qwen3_qk_norm", "qk_norm_weights_ones"),
        ("smollm3_no_rope", "as_llama"),
        ("gemma3_swa", "qk_norm_weights_ones"),
        ("gemma3_swa", "post_norm_weights_ones"),
        ("gemma3_swa", "without_sliding_window"),
        ("gemma3_swa", "swa_rope_base_1e6"),
    ] {
        let d =
            spec(model)["probes"][probe]["max_abs_diff"].as_f64().unwrap_or_else(|| panic!("{model}: probe {probe}"));
        assert!(d > 100.0 * f64::from(LOGIT_TOLERANCE), "{model}: {probe} moves logits by only {d:e}");
    }
}

// ---------------------------------------------------------------------------------------------
// Bad input: errors, not panics.

fn load_err(g: &Gguf) -> ModelError {
    match load_bytes(&g.to_bytes()) {
        Ok(_) => panic!("loaded a broken model"),
        Err(e) => e,
    }
}

#[test]
fn unsupported_architecture_is_an_error() {
    let mut g = Gguf::parse(&model_bytes("mha_untied"));
    g.set("general.architecture", Value::String("gptneox".into()));
    match load_err(&g) {
        ModelError::UnsupportedArchitecture(a) => assert_eq!(a, "gptneox"),
        e => panic!("wrong error: {e:?}"),
    }
}

/// Gemma 3: six layers, the first five sliding (window 5 < 30 tokens) with RoPE base 10 000,
/// the sixth global with base 1e6; embeddings × √48; Q/K norms; post-norms; GeGLU.
#[test]
fn gemma3_with_sliding_windows_post_norms_and_geglu_matches_llama_cpp() {
    let model = load_bytes(&model_bytes("gemma3_swa")).unwrap();
    let c = &model.config;
    let windows: Vec<Option<usize>> = (0..6).map(|l| c.window(l)).collect();
    assert_eq!(windows, [Some(5), Some(5), Some(5), Some(5), Some(5), None]);
    assert_eq!(c.sliding.as_ref().unwrap().freq_base, 10_000.0);
    assert_eq!(c.embed_scale, Some(48f32.sqrt()));
    check_model("gemma3_swa");
}

/// Gemma 3's sliding pattern as llama.cpp reads it: a count n (every n-th layer global), or
/// one bool per layer; a malformed one is refused by key.
#[test]
fn gemma3_sliding_patterns_follow_llama_cpp() {
    let with = |v: Value| {
        let mut g = Gguf::parse(&model_bytes("gemma3_swa"));
        g.set("gemma3.attention.sliding_window_pattern", v);
        load_bytes(&g.to_bytes())
    };
    let windows = |m: Model| (0..6).map(|l| m.config.window(l).is_some()).collect::<Vec<_>>();
    assert_eq!(windows(with(Value::U32(3)).unwrap()), [true, true, false, true, true, false]);
    let flags = [false, true, false, true, true, true];
    let arr = Value::Array(hearth_gguf::ValueType::Bool, flags.iter().map(|&b| Value::Bool(b)).collect());
    assert_eq!(windows(with(arr).unwrap()), flags);
    let short = Value::Array(hearth_gguf::ValueType::Bool, vec![Value::Bool(true)]);
    assert!(
        matches!(with(short), Err(ModelError::BadConfig { key, .. }) if key == "gemma3.attention.sliding_window_pattern")
    );
}

#[test]
fn the_families_are_told_apart_by_their_architecture() {
    // The same qwen2 tensors read as llama: adjacent RoPE pairs, so different logits
    // (llama.cpp's probe "as_llama"); as qwen3: its Q/K norms are missing.
    let mut g = Gguf::parse(&model_bytes("qwen2_bias"));
    let renamed: Vec<(String, Value)> = g
        .metadata
        .iter()
        .filter_map(|(k, v)| k.strip_prefix("qwen2.").map(|rest| (format!("llama.{rest}"), v.clone())))
        .collect();
    g.metadata.extend(renamed);
    g.set("general.architecture", Value::String("llama".into()));
    let model = load_bytes(&g.to_bytes()).unwrap();
    assert_eq!(model.config.family, Family::Llama);
    let mut cache = model.new_cache(n_ctx());
    let logits = model.forward(&mut cache, &tokens(), Logits::All).unwrap();
    let (e, _, _) = max_err("qwen2 read as llama", &logits, &oracle_logits(&spec("qwen2_bias")), 264);
    assert!(e > 1.0, "NeoX against adjacent pairs moved the logits by only {e}");

    let mut g = Gguf::parse(&model_bytes("qwen3_qk_norm"));
    g.remove_tensor("blk.1.attn_k_norm.weight");
    assert!(matches!(load_err(&g), ModelError::MissingTensor(t) if t == "blk.1.attn_k_norm.weight"));
}

/// A tensor the forward pass has no place for is refused by name, not skipped: an output
/// projection bias, a fused Q/K/V, Q/K norms in a family that has none.
#[test]
fn tensors_hearth_would_skip_are_refused_by_name() {
    for (model, name, dims) in [
        ("qwen2_bias", "blk.1.attn_output.bias", vec![48]),
        ("qwen2_bias", "blk.0.attn_qkv.weight", vec![48, 96]),
        ("mha_untied", "blk.0.attn_q_norm.weight", vec![12]),
        ("smollm3_no_rope", "output.bias", vec![264]),
        ("gqa3_hd10_tied", "blk.2.attn_norm.weight", vec![48]),
    ] {
        let mut g = Gguf::parse(&model_bytes(model));
        let n: u64 = dims.iter().product();
        g.tensors.push(Tensor { name: name.into(), dims, ty: TensorType::F32, data: vec![0; 4 * n as usize] });
        match load_err(&g) {
            ModelError::Unsupported(why) => assert!(why.contains(name), "{model}: {why}"),
            e => panic!("{model} with {name}: wrong error {e:?}"),
        }
    }
}

#[test]
fn missing_tensor_is_an_error() {
    let mut g = Gguf::parse(&model_bytes("mha_untied"));
    g.remove_tensor("blk.1.ffn_down.weight");
    match load_err(&g) {
        ModelError::MissingTensor(t) => assert_eq!(t, "blk.1.ffn_down.weight"),
        e => panic!("wrong error: {e:?}"),
    }
}

#[test]
fn wrong_tensor_shapes_are_errors() {
    // attn_output is [q_dim = 60, dim = 48] in ggml order; store it transposed.
    let mut g = Gguf::parse(&model_bytes("gqa3_hd10_tied"));
    g.tensor_mut("blk.0.attn_output.weight").dims = vec![48, 60];
    match load_err(&g) {
        ModelError::BadShape { tensor, expected, found } => {
            assert_eq!((tensor.as_str(), expected, found), ("blk.0.attn_output.weight", vec![60, 48], vec![48, 60]))
        }
        e => panic!("wrong error: {e:?}"),
    }
    // A KV projection one row short (and its data with it).
    let mut g = Gguf::parse(&model_bytes("mha_untied"));
    let t = g.tensor_mut("blk.1.attn_v.weight");
    t.dims = vec![48, 47];
    t.data.truncate(48 * 47 * 4);
    match load_err(&g) {
        ModelError::BadShape { tensor, expected, found } => {
            assert_eq!((tensor.as_str(), expected, found), ("blk.1.attn_v.weight", vec![48, 48], vec![48, 47]))
        }
        e => panic!("wrong error: {e:?}"),
    }
    // rope_freqs.weight must have one factor per rotated pair.
    let mut g = Gguf::parse(&model_bytes("llama3_rope_freqs"));
    let t = g.tensor_mut("rope_freqs.weight");
    t.dims = vec![5];
    t.data.truncate(5 * 4);
    assert!(matches!(load_err(&g), ModelError::BadShape { tensor, .. } if tensor == "rope_freqs.weight"));
}

#[test]
fn kv_heads_not_dividing_heads_is_an_error() {
    let mut g = Gguf::parse(&model_bytes("mha_untied"));
    g.set("llama.attention.head_count_kv", Value::U32(3)); // 4 heads
    match load_err(&g) {
        ModelError::BadConfig { key, value, .. } => {
            assert_eq!((key.as_str(), value.as_str()), ("llama.attention.head_count_kv", "3"))
        }
        e => panic!("wrong error: {e:?}"),
    }
}

/// Heads × head size past 2^24 (q_dim and kv_dim would wrap a 32-bit usize on wasm32, and
/// no model is that wide) is refused by key, before anything is sized from it.
#[test]
fn heads_times_head_size_past_the_bound_is_an_error() {
    let mut g = Gguf::parse(&model_bytes("mha_untied"));
    g.set("llama.attention.head_count", Value::U32(1 << 16));
    g.set("llama.attention.head_count_kv", Value::U32(1));
    for key in ["attention.key_length", "attention.value_length", "rope.dimension_count"] {
        g.set(&format!("llama.{key}"), Value::U32(1 << 12));
    }
    match load_err(&g) {
        ModelError::BadConfig { key, why, .. } => assert_eq!(key, "llama.attention.head_count", "{why}"),
        e => panic!("wrong error: {e:?}"),
    }
}

#[test]
fn prompt_longer_than_the_cache_is_an_error() {
    let model = load_bytes(&model_bytes("mha_untied")).unwrap();
    let toks = tokens();
    let mut cache = model.new_cache(10);
    match model.forward(&mut cache, &toks, Logits::Last) {
        Err(ModelError::ContextFull { needed, max }) => assert_eq!((needed, max), (toks.len(), 10)),
        other => panic!("wrong result: {:?}", other.map(|l| l.len())),
    }
    assert_eq!(cache.len(), 0, "a refused batch leaves the cache as it was");
    // Filling the cache exactly works; one more token does not.
    model.forward(&mut cache, &toks[..10], Logits::Last).unwrap();
    match model.forward(&mut cache, &toks[10..11], Logits::Last) {
        Err(ModelError::ContextFull { needed, max }) => assert_eq!((needed, max), (11, 10)),
        other => panic!("wrong result: {:?}", other.map(|l| l.len())),
    }
    assert_eq!(cache.len(), 10);
}

#[test]
fn token_outside_the_vocabulary_is_an_error() {
    let model = load_bytes(&model_bytes("mha_untied")).unwrap();
    let n_vocab = model.config.vocab_size;
    for bad in [n_vocab as u32, u32::MAX] {
        let mut cache = model.new_cache(8);
        match model.forward(&mut cache, &[1, 5, bad, 7], Logits::All) {
            Err(ModelError::BadToken { id, n_vocab: n }) => assert_eq!((id, n), (bad, n_vocab)),
            other => panic!("wrong result: {:?}", other.map(|l| l.len())),
        }
        assert_eq!(cache.len(), 0);
    }
}

// ---------------------------------------------------------------------------------------------
// A test-only GGUF (v3) rewriter: parse a fixture, edit metadata or tensors, write it back.

struct Tensor {
    name: String,
    dims: Vec<u64>,
    ty: TensorType,
    data: Vec<u8>,
}

struct Gguf {
    metadata: BTreeMap<String, Value>,
    tensors: Vec<Tensor>,
    alignment: u64,
}

impl Gguf {
    fn parse(bytes: &Vec<u8>) -> Self {
        let index: GgufIndex = read_index(bytes).unwrap();
        let tensors = index
            .tensors
            .iter()
            .map(|t| Tensor {
                name: t.name.clone(),
                dims: t.dims.clone(),
                ty: t.ty,
                data: read_tensor(bytes, t).unwrap(),
            })
            .collect();
        Gguf { metadata: index.metadata.clone(), tensors, alignment: index.alignment }
    }

    fn set(&mut self, key: &str, v: Value) {
        self.metadata.insert(key.to_string(), v);
    }

    fn remove(&mut self, key: &str) -> bool {
        self.metadata.remove(key).is_some()
    }

    fn remove_tensor(&mut self, name: &str) {
        let before = self.tensors.len();
        self.tensors.retain(|t| t.name != name);
        assert_eq!(self.tensors.len() + 1, before, "no tensor {name}");
    }

    fn tensor_mut(&mut self, name: &str) -> &mut Tensor {
        self.tensors.iter_mut().find(|t| t.name == name).unwrap_or_else(|| panic!("no tensor {name}"))
    }

    fn to_bytes(&self) -> Vec<u8> {
        let mut out = b"GGUF".to_vec();
        out.extend(3u32.to_le_bytes());
        out.extend((self.tensors.len() as u64).to_le_bytes());
        out.extend((self.metadata.len() as u64).to_le_bytes());
        for (k, v) in &self.metadata {
            put_str(&mut out, k);
            out.extend((v.value_type() as u32).to_le_bytes());
            put_value(&mut out, v);
        }
        let align = |n: u64| n.div_ceil(self.alignment) * self.alignment;
        let mut offset = 0u64;
        for t in &self.tensors {
            put_str(&mut out, &t.name);
            out.extend((t.dims.len() as u32).to_le_bytes());
            for d in &t.dims {
                out.extend(d.to_le_bytes());
            }
            out.extend(t.ty.id().to_le_bytes());
            out.extend(offset.to_le_bytes());
            offset = align(offset + t.data.len() as u64);
        }
        for t in &self.tensors {
            out.resize(align(out.len() as u64) as usize, 0);
            out.extend(&t.data);
        }
        out
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend((s.len() as u64).to_le_bytes());
    out.extend(s.as_bytes());
}

fn put_value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::U8(x) => out.extend(x.to_le_bytes()),
        Value::I8(x) => out.extend(x.to_le_bytes()),
        Value::U16(x) => out.extend(x.to_le_bytes()),
        Value::I16(x) => out.extend(x.to_le_bytes()),
        Value::U32(x) => out.extend(x.to_le_bytes()),
        Value::I32(x) => out.extend(x.to_le_bytes()),
        Value::F32(x) => out.extend(x.to_le_bytes()),
        Value::Bool(x) => out.push(u8::from(*x)),
        Value::String(s) => put_str(out, s),
        Value::Array(ty, items) => {
            out.extend((*ty as u32).to_le_bytes());
            out.extend((items.len() as u64).to_le_bytes());
            for item in items {
                put_value(out, item);
            }
        }
        Value::U64(x) => out.extend(x.to_le_bytes()),
        Value::I64(x) => out.extend(x.to_le_bytes()),
        Value::F64(x) => out.extend(x.to_le_bytes()),
    }
}

#[test]
fn rewriter_round_trips_a_fixture() {
    // The edits above are only meaningful if an unedited rewrite loads to the same model.
    let bytes = model_bytes("gqa3_hd10_tied");
    let rewritten = Gguf::parse(&bytes).to_bytes();
    let (a, b) = (read_index(&bytes).unwrap(), read_index(&rewritten).unwrap());
    assert_eq!(a.metadata, b.metadata);
    for (x, y) in a.tensors.iter().zip(&b.tensors) {
        assert_eq!((&x.name, &x.dims, x.ty), (&y.name, &y.dims, y.ty));
        assert_eq!(read_tensor(&bytes, x).unwrap(), read_tensor(&rewritten, y).unwrap());
    }
    assert_eq!(a.tensors.len(), b.tensors.len());
}
