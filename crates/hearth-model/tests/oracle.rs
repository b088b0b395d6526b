//! The CPU reference against llama.cpp on SmolLM2-135M-Instruct Q4_1 (the exact oracle:
//! llama.cpp on the same weights dequantized to F32, with an f32 KV cache; see
//! ../shared/testdata/README.md). Needs the model: `cargo xtask fetch-model`.

use hearth_gguf::{read_index, FileSource};
use hearth_model::{argmax, perplexity, CpuEngine, Logits, Model};
use hearth_testdata::{greedy_step, ids, json, model_path, testdata};
use hearth_tokenizer::Tokenizer;

/// Budgets from the issue: greedy may part only at a near-tie, top-64 logits within 1e-3,
/// perplexity within 0.1% of the exact oracle and 1.5% of llama.cpp's default run.
const NEAR_TIE: f64 = 0.005;
const LOGIT_TOLERANCE: f64 = 1e-3;
const PPL_EXACT_REL: f64 = 0.001;
const PPL_DEFAULT_REL: f64 = 0.015;

fn load() -> (Model, Tokenizer) {
    let src = FileSource::open(model_path()).expect("open model");
    let index = read_index(&src).expect("read GGUF index");
    let model = Model::load(&index, &src).expect("load model");
    let tok = Tokenizer::from_gguf(&index).expect("tokenizer");
    (model, tok)
}

#[test]
fn greedy_tokens_and_last_logits_match_the_exact_oracle() {
    let (model, _) = load();
    let cases = json("oracle/smollm2_exact_greedy.json");
    let mut failures = Vec::new();
    for (i, case) in cases.as_array().unwrap().iter().enumerate() {
        let prompt = ids(&case["prompt_tokens"]);
        let expected = ids(&case["greedy"]);
        let margins: Vec<f64> =
            case["greedy_top2_margins"].as_array().unwrap().iter().map(|m| m.as_f64().unwrap()).collect();

        let mut cache = model.new_cache(prompt.len() + expected.len() + 1);
        let mut logits = model.forward(&mut cache, &prompt, Logits::Last).unwrap();
        assert!(logits.iter().all(|l| l.is_finite()), "prompt {i}: non-finite logits");

        // Top-64 logits at the last prompt position.
        let worst = hearth_testdata::top64_logit_error(i, case, &logits, LOGIT_TOLERANCE, &mut failures);

        for (step, &want) in expected.iter().enumerate() {
            let candidates: Vec<(u32, f32)> = logits.iter().enumerate().map(|(t, &l)| (t as u32, l)).collect();
            let got = argmax(&candidates);
            if !greedy_step(i, step, got, want, margins[step], NEAR_TIE, &mut failures) {
                break;
            }
            if step + 1 < expected.len() {
                logits = model.forward(&mut cache, &[got], Logits::Last).unwrap();
            }
        }
        eprintln!("prompt {i}: {} greedy tokens checked, worst top-64 logit error {worst:.2e}", expected.len());
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn perplexity_matches_the_oracle() {
    let (model, tok) = load();
    let mut engine = CpuEngine::new(model, 512);
    let spec = json("oracle/smollm2_perplexity.json");
    let text = std::fs::read_to_string(testdata("oracle/perplexity_text.md")).unwrap();
    let tokens = tok.encode(&text, false, false);
    for (exact, default) in spec["results_exact"].as_array().unwrap().iter().zip(spec["results"].as_array().unwrap()) {
        let ctx = exact["ctx"].as_u64().unwrap() as usize;
        assert_eq!(
            tokens.len() as u64,
            default["file_tokens"].as_u64().unwrap(),
            "file token count differs from llama.cpp's"
        );
        let got = perplexity(&mut engine, &tokens, ctx, &mut |_, _| {}).unwrap();
        let want = exact["ppl"].as_f64().unwrap();
        let want_default = default["ppl"].as_f64().unwrap();
        eprintln!("ctx {ctx}: ppl {:.6} (exact oracle {want:.6}, llama.cpp default {want_default:.6})", got.ppl);
        assert_eq!(got.scored_tokens as u64, exact["scored_tokens"].as_u64().unwrap());
        assert!((got.ppl / want - 1.0).abs() < PPL_EXACT_REL, "ctx {ctx}: ppl {} vs exact {want}", got.ppl);
        assert!(
            (got.ppl / want_default - 1.0).abs() < PPL_DEFAULT_REL,
            "ctx {ctx}: ppl {} vs default {want_default}",
            got.ppl
        );
    }
}
