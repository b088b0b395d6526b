//! One generation loop: only `hearth-model` (its `generate` and `perplexity`) loops over an
//! engine's forward and sampling calls. A front end that wrote its own loop would drift from
//! it (stop strings, stop reasons, the pipelined decode's rollback), as the browser's once did
//! (issue 11). This reads the other crates' sources and fails on such a call inside a loop.

use std::path::{Path, PathBuf};

/// The engine calls a generation loop is made of (`Engine`, `Steps`, `Pipelined`).
const ENGINE_CALLS: &[&str] = &[".forward(", ".forward_and_sample(", ".submit(", ".read_sampled(", ".prefill("];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Lines (1-based) of `source` where an engine call sits inside a `for`, `while` or `loop`
/// body, or in a closure handed to an iterator adapter on the same line.
fn engine_calls_in_loops(source: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    let mut depth = 0i32;
    // Brace depths at which loop bodies opened.
    let mut loops: Vec<i32> = Vec::new();
    for (n, raw) in source.lines().enumerate() {
        let line = raw.split("//").next().unwrap_or("");
        let trimmed = line.trim_start();
        let opens_loop = ["for ", "while ", "loop {", "loop{"].iter().any(|k| trimmed.starts_with(k))
            || line.contains(" loop {")
            || line.contains("= loop {");
        let call = ENGINE_CALLS.iter().any(|c| line.contains(c));
        let adapter = [".map(", ".for_each(", ".try_for_each(", ".filter_map("].iter().any(|a| line.contains(a));
        if call && (!loops.is_empty() || adapter) {
            found.push((n + 1, raw.trim().to_string()));
        }
        for c in line.chars() {
            match c {
                '{' => depth += 1,
                '}' => {
                    if loops.last() == Some(&depth) {
                        loops.pop();
                    }
                    depth -= 1;
                }
                _ => {}
            }
        }
        // The brace that ends a loop's header line opens its body.
        if opens_loop && line.trim_end().ends_with('{') {
            loops.push(depth);
        }
    }
    found
}

#[test]
fn only_hearth_model_loops_over_the_engine() {
    let crates = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut checked = 0;
    let mut offenders = Vec::new();
    for entry in std::fs::read_dir(&crates).unwrap() {
        let dir = entry.unwrap().path();
        // hearth-model has the loop; hearth-gpu is an engine (its loops are over wgpu's calls,
        // `queue.submit` among them), not a front end.
        let engine = dir.file_name().is_some_and(|n| n == "hearth-model" || n == "hearth-gpu");
        if engine || !dir.join("src").is_dir() {
            continue;
        }
        let mut files = Vec::new();
        rust_files(&dir.join("src"), &mut files);
        for file in files {
            let source = std::fs::read_to_string(&file).unwrap();
            // Unit tests compare kernels step by step; they are not front ends.
            let source = source.split("#[cfg(test)]").next().unwrap_or("");
            checked += 1;
            for (line, text) in engine_calls_in_loops(source) {
                offenders.push(format!("{}:{line}: {text}", file.display()));
            }
        }
    }
    assert!(checked > 15, "read only {checked} files");
    assert!(
        offenders.is_empty(),
        "engine calls in a loop outside hearth-model (use hearth_model::generate):\n{}",
        offenders.join("\n")
    );
}

/// The scanner itself: it finds a hand-written loop, and passes a single call.
#[test]
fn the_scanner_finds_hand_written_loops() {
    let looped =
        "fn f(e: &mut E) {\n    for _ in 0..4 {\n        let t = e.forward_and_sample(&x, &mut s)?;\n    }\n}\n";
    assert_eq!(engine_calls_in_loops(looped).len(), 1);
    let looped = "fn f() {\n    loop {\n        if a {\n            e.submit(feed, s)?;\n        }\n    }\n}\n";
    assert_eq!(engine_calls_in_loops(looped).len(), 1);
    let mapped = "let l: Vec<_> = ps.iter().map(|p| e.forward(p, Logits::Last)).collect();\n";
    assert_eq!(engine_calls_in_loops(mapped).len(), 1);
    let once = "fn f() {\n    for w in ws {\n        w.go();\n    }\n    e.forward(&p, Logits::Last)?;\n}\n";
    assert!(engine_calls_in_loops(once).is_empty());
}
