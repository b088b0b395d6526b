//! The `hearth` binary end to end: its JSON interface against the llama.cpp oracle, the chat
//! loop, and one-line errors on bad input.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use hearth_gguf::{read_index, FileSource, Value as GgufValue};
use hearth_testdata::{model_path, testdata};
use serde_json::Value;

fn hearth(args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hearth"));
    // Opening the GPU (the default backend probes it) on a headless machine without
    // XDG_RUNTIME_DIR makes Mesa's Vulkan WSI print a line of its own on stderr; give it a
    // directory so that stderr holds only hearth's output.
    if std::env::var_os("XDG_RUNTIME_DIR").is_none() {
        cmd.env("XDG_RUNTIME_DIR", std::env::temp_dir());
    }
    cmd.args(args).output().expect("run hearth")
}

fn ok_json(args: &[&str]) -> Value {
    let out = hearth(args);
    assert!(out.status.success(), "hearth {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("stdout is one JSON value")
}

fn ids(v: &Value) -> Vec<u64> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap()).collect()
}

/// A failure is one line on stderr, a non-zero exit, and no panic.
fn assert_clean_error(out: &Output, needle: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "expected failure, got success");
    assert!(!err.contains("panicked") && !err.contains("internal error"), "panic: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "error is not one line: {err}");
    assert!(err.to_lowercase().contains(&needle.to_lowercase()), "error {err:?} does not mention {needle:?}");
}

#[test]
fn generate_chat_json_matches_the_exact_oracle() {
    let model = model_path();
    let cases: Value =
        serde_json::from_str(&std::fs::read_to_string(testdata("oracle/smollm2_exact_greedy.json")).unwrap()).unwrap();
    // Two prompts keep the test short; tests/oracle.rs in hearth-model covers all eight.
    for case in cases.as_array().unwrap().iter().take(2) {
        let expected = ids(&case["greedy"]);
        let max = expected.len().to_string();
        let out = ok_json(&[
            "generate",
            "--model",
            model.to_str().unwrap(),
            "--chat",
            case["prompt"].as_str().unwrap(),
            "--temperature",
            "0",
            "--max-tokens",
            &max,
            "--json",
        ]);
        assert_eq!(
            ids(&out["prompt_tokens"]),
            ids(&case["prompt_tokens"]),
            "chat template + tokenizer differ from llama.cpp's prompt"
        );
        let got = ids(&out["tokens"]);
        let margins = case["greedy_top2_margins"].as_array().unwrap();
        let parted = got.iter().zip(&expected).position(|(a, b)| a != b);
        match parted {
            None => assert!(
                got.len() == expected.len() || out["stop_reason"] == "eos",
                "length differs: {got:?} vs {expected:?}"
            ),
            Some(i) => assert!(margins[i].as_f64().unwrap() < 0.005, "parted at step {i} with margin {}", margins[i]),
        }
        if parted.is_none() && got.len() == expected.len() {
            assert_eq!(out["text"].as_str().unwrap(), case["greedy_text"].as_str().unwrap());
        }
        for key in ["stop_reason", "timings", "text"] {
            assert!(out.get(key).is_some(), "--json output lacks {key}");
        }
    }
}

#[test]
fn generate_on_the_gpu_gives_the_exact_oracle_tokens() {
    // One short prompt: the GPU engine's own tests (hearth-gpu/tests/oracle.rs) cover all eight.
    let model = model_path();
    let cases: Value =
        serde_json::from_str(&std::fs::read_to_string(testdata("oracle/smollm2_exact_greedy.json")).unwrap()).unwrap();
    let case = &cases[0];
    let expected = ids(&case["greedy"]);
    let max = expected.len().to_string();
    let out = ok_json(&[
        "generate",
        "--model",
        model.to_str().unwrap(),
        "--backend",
        "gpu",
        "--chat",
        case["prompt"].as_str().unwrap(),
        "--temperature",
        "0",
        "--max-tokens",
        &max,
        "--json",
    ]);
    assert_eq!(ids(&out["prompt_tokens"]), ids(&case["prompt_tokens"]));
    assert_eq!(ids(&out["tokens"]), expected, "GPU greedy tokens differ from the exact oracle");
}

#[test]
fn tokenize_flags_control_bos_and_special_tokens() {
    let model = model_path();
    let m = model.to_str().unwrap();
    let plain = ids(&ok_json(&["tokenize", "--model", m, "--text", "<|im_start|>user", "--json"]));
    let special = ids(&ok_json(&["tokenize", "--model", m, "--text", "<|im_start|>user", "--special", "--json"]));
    assert_eq!(special[0], 1, "<|im_start|> is id 1 in SmolLM2");
    assert!(plain.len() > special.len() && !plain.contains(&1), "without --special the marker is plain text");
    // SmolLM2's BOS is <|endoftext|> (id 0); --bos adds it, without --bos nothing is added.
    let with_bos = ids(&ok_json(&["tokenize", "--model", m, "--text", "Hello", "--bos", "--json"]));
    let without = ids(&ok_json(&["tokenize", "--model", m, "--text", "Hello", "--json"]));
    assert_eq!(with_bos[1..], without[..]);
    assert_eq!(with_bos.len(), without.len() + 1);
}

#[test]
fn chat_keeps_context_across_turns_and_reuses_the_cache() {
    let model = model_path();
    let mut child = Command::new(env!("CARGO_BIN_EXE_hearth"))
        .args(["chat", "--model", model.to_str().unwrap(), "--temperature", "0", "--max-tokens", "24"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"What is the capital of France?\nAnd of Germany?\n/exit\n").unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "chat failed: {stderr}");
    assert!(stdout.contains("Paris"), "first reply: {stdout}");
    assert!(stdout.contains("Berlin"), "second reply should use the context: {stdout}");
    // Per-turn status lines: "[N new prompt tokens, ...". The second turn must run only the
    // new message, not the whole conversation again.
    let news: Vec<usize> =
        stderr.lines().filter_map(|l| l.rsplit_once('[')?.1.split(" new prompt tokens").next()?.parse().ok()).collect();
    assert_eq!(news.len(), 2, "stderr: {stderr}");
    assert!(news[1] < news[0], "second turn re-ran {} tokens (first: {})", news[1], news[0]);
}

#[test]
fn info_reports_the_adapter_and_whether_the_model_fits() {
    let model = model_path();
    let out = ok_json(&["info", "--model", model.to_str().unwrap(), "--ctx", "2048", "--json"]);
    assert!(!out["adapter"]["name"].as_str().unwrap().is_empty());
    assert!(out["limits"]["max_storage_buffer_binding_size"].as_u64().unwrap() > 0);
    assert_eq!(out["model"]["fits"], true, "{out}");
    // 30 layers × K and V × 2048 positions × 192 × 2 bytes (f16)
    assert_eq!(out["model"]["kv_cache_bytes"].as_u64().unwrap(), 30 * 2 * 2048 * 192 * 2);
    // The parts add up, and the weights are the file's tensors (norms padded to whole vec4).
    let m = &out["model"];
    let parts: u64 = ["weights_bytes", "kv_cache_bytes", "activation_bytes", "step_bytes"]
        .iter()
        .map(|k| m[k].as_u64().unwrap())
        .sum();
    assert!(parts <= m["total_bytes"].as_u64().unwrap() && parts + 4096 > m["total_bytes"].as_u64().unwrap(), "{m}");
    let tensors: u64 = read_index(&FileSource::open(&model).unwrap()).unwrap().tensors.iter().map(|t| t.n_bytes).sum();
    let weights = m["weights_bytes"].as_u64().unwrap();
    assert!(weights >= tensors && weights < tensors + 61 * 4 * 2304, "{weights} vs {tensors}");
}

/// `--profile` times each kernel family of a decode step with GPU timestamps: the families
/// of the forward pass in order, and in seconds (their sum is below the wall time per token).
#[test]
fn bench_profile_times_each_kernel_family() {
    let out = ok_json(&[
        "bench",
        "--synthetic",
        "tiny",
        "--quant",
        "Q4_0",
        "--prompt-tokens",
        "8",
        "--gen-tokens",
        "4",
        "--backend",
        "gpu",
        "--profile",
        "--json",
    ]);
    let Some(families) = out["profile_seconds_per_token"].as_array() else {
        panic!("the test adapter (lavapipe) has timestamps inside passes: {out}");
    };
    let names: Vec<&str> = families.iter().map(|f| f["kernels"].as_str().unwrap()).collect();
    let forward = [
        "embedding",
        "norm + QKV",
        "RoPE + KV write",
        "attention",
        "Wo + add",
        "norm + gate/up + SwiGLU",
        "down + add",
        "norm + output",
        "sampling",
    ];
    assert_eq!(names, forward, "{out}");
    let seconds: Vec<f64> = families.iter().map(|f| f["seconds"].as_f64().unwrap()).collect();
    assert!(seconds.iter().all(|&s| s >= 0.0), "{out}");
    let total: f64 = seconds.iter().sum();
    let per_token = 1.0 / out["decode_tokens_per_second"].as_f64().unwrap();
    assert!(total > 0.0 && total < 2.0 * per_token, "GPU {total} s against {per_token} s per token: {out}");
}

#[test]
fn bench_reports_speed_bandwidth_and_launches() {
    for backend in ["cpu", "gpu"] {
        let out = ok_json(&[
            "bench",
            "--synthetic",
            "smollm2-135m",
            "--quant",
            "Q8_0",
            "--prompt-tokens",
            "8",
            "--gen-tokens",
            "2",
            "--peak-gbps",
            "100",
            "--backend",
            backend,
            "--json",
        ]);
        assert!(out["prefill_tokens_per_second"].as_f64().unwrap() > 0.0, "{out}");
        assert!(out["decode_tokens_per_second"].as_f64().unwrap() > 0.0, "{out}");
        // Every matrix once: tied Q8_0 embedding (49152 × 576 · 34/32 bytes) plus 30 layers.
        let per_layer = (576 * 576 * 2 + 576 * 192 * 2 + 576 * 1536 * 3) * 34 / 32 + 2 * 576 * 4;
        let expected = 49152 * 576 * 34 / 32 + 30 * per_layer + 576 * 4;
        assert_eq!(out["weight_bytes_per_token"].as_u64().unwrap(), expected as u64);
        // K and V of 30 layers × 192 (3 KV heads of 64), f32 on the CPU and f16 on the GPU,
        // at the decode's mean position count: positions 8 and 9 read 9 and 10 of them.
        let element = if backend == "gpu" { 2.0 } else { 4.0 };
        let kv = 2.0 * 30.0 * 192.0 * element * 9.5;
        assert_eq!(out["kv_bytes_per_token"].as_u64().unwrap(), kv as u64, "{out}");
        let mbu = out["memory_bandwidth_utilization"].as_f64().unwrap();
        let gbps = out["decode_gb_per_second"].as_f64().unwrap();
        assert!((mbu - gbps / 100.0).abs() < 1e-9);
        if backend == "gpu" {
            assert_eq!(out["submits_per_token"].as_f64().unwrap(), 1.0, "{out}");
            assert!(out["dispatches_per_token"].as_f64().unwrap() > 30.0, "{out}");
        }
    }
}

#[test]
fn bad_input_gives_one_clear_line() {
    let dir = std::env::temp_dir().join(format!("hearth-cli-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();

    let out = hearth(&["generate", "--model", "/nonexistent/model.gguf", "--prompt", "hi"]);
    assert_clean_error(&out, "cannot open model");

    let not_gguf = dir.join("notes.gguf");
    std::fs::write(&not_gguf, b"this is not a model at all").unwrap();
    assert_clean_error(&hearth(&["generate", "--model", not_gguf.to_str().unwrap(), "--prompt", "hi"]), "not a GGUF");

    let truncated = dir.join("truncated.gguf");
    let bytes = std::fs::read(model_path()).unwrap();
    std::fs::write(&truncated, &bytes[..4096]).unwrap();
    assert_clean_error(&hearth(&["generate", "--model", truncated.to_str().unwrap(), "--prompt", "hi"]), "truncated");

    // A real GGUF of an architecture Hearth does not run (Phi-3's vocab file): refused by
    // name. One of a family it runs but without weights (Qwen2's vocab file): the first
    // missing tensor, by name.
    let phi = testdata("vocab/ggml-vocab-phi-3.gguf");
    assert_clean_error(
        &hearth(&["generate", "--model", phi.to_str().unwrap(), "--prompt", "hi"]),
        "unsupported architecture \"phi3\"",
    );
    let qwen = testdata("vocab/ggml-vocab-qwen2.gguf");
    assert_clean_error(
        &hearth(&["generate", "--model", qwen.to_str().unwrap(), "--prompt", "hi"]),
        "tensor \"token_embd.weight\" is missing",
    );

    let m = model_path();
    let long = "word ".repeat(300);
    assert_clean_error(
        &hearth(&["generate", "--model", m.to_str().unwrap(), "--prompt", &long, "--ctx", "64", "--max-tokens", "4"]),
        "context",
    );
    assert_clean_error(
        &hearth(&["generate", "--model", m.to_str().unwrap(), "--prompt", "hi", "--top-p", "3"]),
        "top-p",
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A copy of `src` with metadata `key` set to `value`: the header rewritten, every tensor's
/// bytes copied to its new place.
fn with_metadata(src: &std::path::Path, dst: &std::path::Path, key: &str, value: GgufValue) {
    let bytes = hearth_gguf::with_metadata(&FileSource::open(src).unwrap(), &[(key, value)]).unwrap();
    std::fs::write(dst, bytes).unwrap();
}

/// A chat template of nested loops over 10^10 iterations ran until the process was killed,
/// and a very long vocabulary token made it abort; now the CLI stops within seconds with one
/// line (issue 10).
#[test]
fn hostile_templates_and_vocabularies_fail_fast_with_one_line() {
    let dir = std::env::temp_dir().join(format!("hearth-cli-hostile-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let hostile = dir.join("nested-loops.gguf");
    let template = "{% for a in range(100000) %}{% for b in range(100000) %}x{% endfor %}{% endfor %}";
    with_metadata(&model_path(), &hostile, "tokenizer.chat_template", GgufValue::String(template.into()));
    let out = hearth(&["generate", "--model", hostile.to_str().unwrap(), "--chat", "hi", "--backend", "cpu"]);
    assert_clean_error(&out, "instructions");

    // A template's message with terminal escapes (retitle the window, ring the bell): shown,
    // but never as raw control characters.
    let escapes = dir.join("escapes.gguf");
    let template = "{{ raise_exception('\u{1b}]0;pwned\u{7}\u{1b}[2J') }}";
    with_metadata(&model_path(), &escapes, "tokenizer.chat_template", GgufValue::String(template.into()));
    let out = hearth(&["generate", "--model", escapes.to_str().unwrap(), "--chat", "hi", "--backend", "cpu"]);
    assert_clean_error(&out, "]0;pwned");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains(['\u{1b}', '\u{7}']) && err.contains('\u{241b}'), "{err:?}");

    // A vocabulary token of 100,000 spaces asked for ~10 GB of token pieces and aborted.
    let long_token = dir.join("long-token.gguf");
    let index = read_index(&FileSource::open(model_path()).unwrap()).unwrap();
    let Some(GgufValue::Array(ty, tokens)) = index.get("tokenizer.ggml.tokens") else { panic!("no tokens") };
    let mut tokens = tokens.clone();
    tokens[1000] = GgufValue::String(" ".repeat(100_000));
    with_metadata(&model_path(), &long_token, "tokenizer.ggml.tokens", GgufValue::Array(*ty, tokens));
    let out = hearth(&["generate", "--model", long_token.to_str().unwrap(), "--prompt", "hi", "--backend", "cpu"]);
    assert_clean_error(&out, "tokenizer.ggml.tokens[1000]");
    let _ = std::fs::remove_dir_all(&dir);
}
