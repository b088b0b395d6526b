//! Test-only helpers that find the outside data tests compare against. A test that needs it
//! and cannot find it fails with a message saying where it should be, never passes silently.

use std::path::PathBuf;

/// `../shared/testdata/<rel>` beside the repository.
pub fn testdata(rel: &str) -> PathBuf {
    let p = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/testdata")).join(rel);
    assert!(p.exists(), "test data {} is missing (it lives in ../shared/testdata beside the repository)", p.display());
    p
}

/// The default test model (SmolLM2-135M-Instruct Q4_1): `$HEARTH_TEST_MODEL` (set by
/// `cargo xtask test`), else where `cargo xtask fetch-model` caches it by default.
pub fn model_path() -> PathBuf {
    let p = std::env::var_os("HEARTH_TEST_MODEL").map(PathBuf::from).unwrap_or_else(|| {
        let home = std::env::var_os("HOME").unwrap_or_default();
        PathBuf::from(home).join(".cache/hearth/models/SmolLM2-135M-Instruct.Q4_1.gguf")
    });
    assert!(p.exists(), "model {} is missing: run `cargo xtask fetch-model` (or `cargo xtask test`)", p.display());
    p
}

/// Gemma 3 270M Q4_K_M, the `gemma3` architecture's real model: `$HEARTH_TEST_GEMMA` (set by
/// `cargo xtask test`), else where `cargo xtask fetch-gemma` caches it by default.
pub fn gemma_path() -> PathBuf {
    let p = std::env::var_os("HEARTH_TEST_GEMMA").map(PathBuf::from).unwrap_or_else(|| {
        let home = std::env::var_os("HOME").unwrap_or_default();
        PathBuf::from(home).join(".cache/hearth/models/gemma-3-270m-q4_k_m.gguf")
    });
    assert!(p.exists(), "model {} is missing: run `cargo xtask fetch-gemma` (or `cargo xtask test`)", p.display());
    p
}

/// A JSON array of token ids (an oracle's `prompt_tokens`, `greedy`).
pub fn ids(v: &serde_json::Value) -> Vec<u32> {
    let items = v.as_array().unwrap_or_else(|| panic!("expected an array of token ids, got {v}"));
    items.iter().map(|x| x.as_u64().unwrap_or_else(|| panic!("{x} is not a token id")) as u32).collect()
}

/// A JSON file from the test data.
pub fn json(rel: &str) -> serde_json::Value {
    let path = testdata(rel);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()))
}

/// The greedy oracle's rule at one step of prompt `prompt`: equal tokens go on (`true`). A
/// parting where the oracle's top-2 margin is below `near_tie` is accepted and ends the
/// comparison; any other parting is recorded in `failures` and ends it too.
pub fn greedy_step(
    prompt: usize,
    step: usize,
    got: u32,
    want: u32,
    margin: f64,
    near_tie: f64,
    failures: &mut Vec<String>,
) -> bool {
    if got == want {
        return true;
    }
    if margin < near_tie {
        eprintln!("prompt {prompt}: parted at step {step} at a near-tie (margin {margin:.4}); accepted");
    } else {
        failures.push(format!("prompt {prompt}: step {step} gave {got}, oracle {want} (margin {margin:.4})"));
    }
    false
}

/// The oracle's top-64 check at the last prompt position of case `prompt`: the largest
/// |logit − oracle| over `case["last_logits_top64"]`, recorded in `failures` when it passes
/// `tolerance`. Returns that error.
pub fn top64_logit_error(
    prompt: usize,
    case: &serde_json::Value,
    logits: &[f32],
    tolerance: f64,
    failures: &mut Vec<String>,
) -> f64 {
    let mut worst = (0u32, 0f64);
    for pair in case["last_logits_top64"].as_array().expect("oracle case has last_logits_top64") {
        let id = pair[0].as_u64().expect("token id") as u32;
        let err = (f64::from(logits[id as usize]) - pair[1].as_f64().expect("logit")).abs();
        if err > worst.1 {
            worst = (id, err);
        }
    }
    if worst.1 > tolerance {
        failures
            .push(format!("prompt {prompt}: logit of token {} off by {:.2e} (budget {tolerance:e})", worst.0, worst.1));
    }
    worst.1
}
