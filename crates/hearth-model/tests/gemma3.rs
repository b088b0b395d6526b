//! Gemma 3 270M Q4_K_M (the `gemma3` architecture's real model) on the CPU reference against
//! the exact llama.cpp oracle: the same weights dequantized to F32, an f32 KV cache and GELU
//! in f32 (tests/fixtures/gemma3_270m/make_oracle.py). Also its SentencePiece vocabulary
//! against llama.cpp's tokenizer. Needs the model: `cargo xtask fetch-gemma` (or `cargo xtask
//! test`).

use hearth_gguf::{read_index, FileSource};
use hearth_model::{argmax, perplexity, Logits, Model};
use hearth_testdata::{gemma_path, greedy_step, ids, testdata};
use hearth_tokenizer::Tokenizer;
use serde_json::Value;

/// The budgets: greedy may part only where the oracle's top-2 margin is below 0.02;
/// top-64 logits within 2e-2 (f32 noise on this model is about 1e-2 in the logits);
/// perplexity within 0.1% of the exact oracle.
const NEAR_TIE: f64 = 0.02;
const LOGIT_TOLERANCE: f64 = 2e-2;
const PPL_EXACT_REL: f64 = 0.001;

fn fixture(name: &str) -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/gemma3_270m/").to_string() + name;
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap()
}

fn load() -> (Model, Tokenizer) {
    let src = FileSource::open(gemma_path()).expect("open model");
    let index = read_index(&src).expect("read GGUF index");
    let model = Model::load(&index, &src).expect("load model");
    let tok = Tokenizer::from_gguf(&index).expect("tokenizer");
    (model, tok)
}

/// The oracle itself is checked: an independent f64 NumPy forward pass agreed with it.
#[test]
fn the_oracle_agrees_with_an_independent_forward_pass() {
    let o = fixture("oracle.json");
    let diff = o["numpy_f64_cross_check"]["top64_max_abs_diff"].as_f64().unwrap();
    assert!(diff < LOGIT_TOLERANCE, "NumPy f64 and llama.cpp differ by {diff}");
}

#[test]
fn the_config_is_gemma3_with_sliding_windows() {
    let (model, _) = load();
    let c = &model.config;
    assert_eq!(c.family, hearth_model::Family::Gemma3);
    assert!(c.post_norms && c.qk_norm && c.embed_scale.is_some());
    let s = c.sliding.as_ref().expect("sliding windows");
    let global: Vec<usize> = (0..c.n_layers).filter(|&l| c.window(l).is_none()).collect();
    assert_eq!(global, [5, 11, 17], "every sixth layer is global (window {})", s.window);
}

#[test]
fn tokenizer_matches_llama_cpp() {
    let (_, tok) = load();
    let cases = fixture("vocab.json");
    let mut failures = Vec::new();
    for case in cases.as_array().unwrap() {
        let text = case["text"].as_str().unwrap();
        let special = case["special"].as_bool().unwrap();
        let got = tok.encode(text, false, special);
        if got != ids(&case["ids"]) {
            failures.push(format!("{text:?} (special {special}): got {got:?}, llama.cpp {}", case["ids"]));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases differ:\n{}",
        failures.len(),
        cases.as_array().unwrap().len(),
        failures.join("\n")
    );
}

#[test]
fn greedy_tokens_and_last_logits_match_the_exact_oracle() {
    let (model, tok) = load();
    let o = fixture("oracle.json");
    let mut failures = Vec::new();
    for (i, case) in o["cases"].as_array().unwrap().iter().enumerate() {
        let prompt = ids(&case["prompt_tokens"]);
        assert_eq!(tok.encode(case["prompt"].as_str().unwrap(), true, false), prompt, "prompt {i}: tokens");
        let expected = ids(&case["greedy"]);
        let margins: Vec<f64> =
            case["greedy_top2_margins"].as_array().unwrap().iter().map(|m| m.as_f64().unwrap()).collect();
        let mut cache = model.new_cache(prompt.len() + expected.len() + 1);
        let mut logits = model.forward(&mut cache, &prompt, Logits::Last).unwrap();
        assert!(logits.iter().all(|l| l.is_finite()), "prompt {i}: non-finite logits");
        let worst = hearth_testdata::top64_logit_error(i, case, &logits, LOGIT_TOLERANCE, &mut failures);
        let mut checked = 0;
        for (step, &want) in expected.iter().enumerate() {
            let candidates: Vec<(u32, f32)> = logits.iter().enumerate().map(|(t, &l)| (t as u32, l)).collect();
            let got = argmax(&candidates);
            if !greedy_step(i, step, got, want, margins[step], NEAR_TIE, &mut failures) {
                break;
            }
            checked += 1;
            if step + 1 < expected.len() {
                logits = model.forward(&mut cache, &[got], Logits::Last).unwrap();
            }
        }
        eprintln!(
            "prompt {i}: {checked} of {} greedy tokens equal, worst top-64 logit error {worst:.2e}",
            expected.len()
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The browser's two chat turns (the file has no template: Hearth's Gemma fallback renders
/// them): the prompt tokens equal llama.cpp's for its built-in "gemma" format, and the greedy
/// replies equal the oracle's, stopped where it stopped.
#[test]
fn chat_turns_tokenize_and_reply_as_llama_cpp() {
    use hearth_model::chat::ChatFormat;
    use hearth_tokenizer::template::Message;
    let (model, tok) = load();
    let src = FileSource::open(gemma_path()).unwrap();
    let index = read_index(&src).unwrap();
    let format = ChatFormat::from_gguf(&index, &tok).unwrap();
    let o = fixture("oracle.json");
    let mut failures = Vec::new();
    for (i, case) in o["chat_cases"].as_array().unwrap().iter().enumerate() {
        let prompt = ids(&case["prompt_tokens"]);
        let ours = format.tokenize(&tok, &[Message::user(case["prompt"].as_str().unwrap())]).unwrap();
        assert_eq!(ours, prompt, "chat {i}: prompt tokens");
        let expected = ids(&case["greedy"]);
        let margins: Vec<f64> =
            case["greedy_top2_margins"].as_array().unwrap().iter().map(|m| m.as_f64().unwrap()).collect();
        let mut cache = model.new_cache(prompt.len() + expected.len() + 1);
        let mut logits = model.forward(&mut cache, &prompt, Logits::Last).unwrap();
        for (step, &want) in expected.iter().enumerate() {
            let got = argmax(&logits.iter().enumerate().map(|(t, &l)| (t as u32, l)).collect::<Vec<_>>());
            if !greedy_step(i, step, got, want, margins[step], NEAR_TIE, &mut failures) {
                break;
            }
            logits = model.forward(&mut cache, &[got], Logits::Last).unwrap();
        }
        if expected.len() < 16 {
            // The oracle stopped at an end-of-generation token: so must the next greedy one.
            let got = argmax(&logits.iter().enumerate().map(|(t, &l)| (t as u32, l)).collect::<Vec<_>>());
            assert!(
                tok.is_end_of_generation(got),
                "chat {i}: the oracle stopped after {} tokens, we go on with {got}",
                expected.len()
            );
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn perplexity_matches_the_exact_oracle() {
    let (model, tok) = load();
    let o = fixture("oracle.json");
    let want = &o["perplexity"];
    let ctx = want["ctx"].as_u64().unwrap() as usize;
    let text = std::fs::read_to_string(testdata("oracle/perplexity_text.md")).unwrap();
    let tokens = tok.encode(&text, false, false);
    assert_eq!(tokens.len() as u64, want["file_tokens"].as_u64().unwrap(), "file tokens");
    let mut engine = hearth_model::CpuEngine::new(model, ctx);
    let got = perplexity(&mut engine, &tokens, ctx, &mut |_, _| {}).unwrap();
    let exact = want["ppl"].as_f64().unwrap();
    let rel = (got.ppl - exact).abs() / exact;
    eprintln!("ctx {ctx}: ppl {:.4}, exact oracle {exact:.4} ({:+.3}%)", got.ppl, 100.0 * (got.ppl - exact) / exact);
    assert_eq!(got.scored_tokens as u64, want["scored_tokens"].as_u64().unwrap());
    assert!(rel <= PPL_EXACT_REL, "ppl {} vs exact {exact}: {:.3}% off", got.ppl, 100.0 * rel);
}
