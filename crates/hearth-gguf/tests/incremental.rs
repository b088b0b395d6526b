//! The incremental contract of `parse_index`: a prefix that is too short is `NeedMore` with a
//! `min_len` past the prefix and within the file, feeding that many bytes makes progress, and
//! growing prefixes end in the same index as parsing the whole file at once.

mod common;

use common::*;
use hearth_gguf::{parse_index, GgufIndex, Parse, TensorType, Value, ValueType};

const VOCAB_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/testdata/vocab/");

/// Small files of different shapes: every value type, no tensors, custom alignment.
fn small_files() -> Vec<(String, Built)> {
    let mut files = vec![
        ("sample v2".to_string(), sample(2).build()),
        ("sample v3".to_string(), sample(3).build()),
        ("empty".to_string(), Gguf::new(3).build()),
        (
            "metadata only".to_string(),
            Gguf::new(2)
                .kv(
                    "tokenizer.ggml.tokens",
                    Value::Array(
                        ValueType::String,
                        ["<s>", "</s>", "a", "\u{e9}"].iter().map(|s| Value::String(s.to_string())).collect(),
                    ),
                )
                .build(),
        ),
    ];
    for a in [1, 64] {
        let g = Gguf::new(3)
            .alignment(a)
            .tensor(TensorSpec::new("a", TensorType::Q4_K, &[256, 2]))
            .tensor(TensorSpec::new("b", TensorType::F32, &[3]));
        files.push((format!("alignment {a}"), g.build()));
    }
    files
}

fn need_more(prefix: &[u8], file_len: Option<u64>, what: &str) -> u64 {
    match parse_index(prefix, file_len) {
        Ok(Parse::NeedMore { min_len }) => min_len,
        other => panic!("{what}: prefix {}: expected NeedMore, got {other:?}", prefix.len()),
    }
}

/// Feeding exactly `min_len` bytes either completes the index or asks for strictly more.
fn makes_progress(bytes: &[u8], min_len: u64, what: &str) {
    let next = &bytes[..min_len as usize];
    match parse_index(next, None) {
        Ok(Parse::Complete(_)) => {}
        Ok(Parse::NeedMore { min_len: m }) => {
            assert!(m > min_len, "{what}: {min_len} bytes asked for {m}")
        }
        Err(e) => panic!("{what}: {min_len} bytes of a valid file: {e}"),
    }
}

#[test]
fn need_more_at_every_prefix() {
    for (what, built) in small_files() {
        let bytes = &built.bytes;
        let full_len = bytes.len() as u64;
        let whole = complete(bytes, Some(full_len));
        for p in 0..=bytes.len() {
            let prefix = &bytes[..p];
            if (p as u64) < built.info_end {
                let (min_len, peak) = peak_alloc(|| need_more(prefix, None, &what));
                assert!(peak <= ALLOC_BOUND, "{what}: prefix {p} allocated {peak} bytes");
                assert!(min_len > p as u64, "{what}: prefix {p} asked for {min_len}");
                assert!(min_len <= built.info_end, "{what}: prefix {p} asked for {min_len}");
                // Knowing the whole file's length changes nothing while the prefix is short.
                assert_eq!(need_more(prefix, Some(full_len), &what), min_len, "{what}: prefix {p}");
                makes_progress(bytes, min_len, &what);
            } else {
                // The index is all there; the tensor data need not be.
                assert_same_index(&complete(prefix, None), &whole);
                assert_same_index(&complete(prefix, Some(full_len)), &whole);
            }
        }
    }
}

/// Starting from nothing and handing over exactly `min_len` bytes each time reaches the
/// index, one item at a time.
#[test]
fn following_min_len_exactly() {
    for (what, built) in small_files() {
        let bytes = &built.bytes;
        let mut len = 0u64;
        let mut steps = 0;
        let index = loop {
            match parse_index(&bytes[..len as usize], None).unwrap() {
                Parse::Complete(i) => break i,
                Parse::NeedMore { min_len } => {
                    assert!(min_len > len && min_len <= built.info_end, "{what}: {len} -> {min_len}");
                    len = min_len;
                }
            }
            steps += 1;
            assert!(steps < 10_000, "{what}: no end in sight");
        };
        assert_eq!(len, built.info_end, "{what}: completed at {len}");
        assert_same_index(&index, &complete(bytes, None));
    }
}

/// What a streaming caller does: parse what has arrived, and when asked for more, fetch at
/// least `min_len` bytes (here: at least double, so a big index costs few re-parses).
/// Checks the contract at each step and returns the index and the number of calls.
fn stream(bytes: &[u8], what: &str) -> (GgufIndex, usize) {
    let full_len = bytes.len() as u64;
    let mut len = 0u64;
    let mut calls = 0;
    loop {
        let prefix = &bytes[..len as usize];
        calls += 1;
        match parse_index(prefix, None) {
            Ok(Parse::Complete(index)) => return (index, calls),
            Ok(Parse::NeedMore { min_len }) => {
                assert!(min_len > len, "{what}: {len} bytes asked for {min_len}");
                assert!(min_len <= full_len, "{what}: {len} bytes asked for {min_len} of {full_len}");
                // With the length known (a Content-Length), the answer is the same.
                assert_eq!(need_more(prefix, Some(full_len), what), min_len);
                // And that many bytes would have done.
                makes_progress(bytes, min_len, what);
                len = min_len.max(len * 2).min(full_len);
            }
            Err(e) => panic!("{what}: prefix {len}: {e}"),
        }
    }
}

#[test]
fn vocab_files_parse_incrementally() {
    let mut names: Vec<_> = std::fs::read_dir(VOCAB_DIR)
        .unwrap_or_else(|e| panic!("{VOCAB_DIR}: {e}"))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "gguf"))
        .collect();
    names.sort();
    assert!(names.len() >= 5, "expected the vocab test files in {VOCAB_DIR}");
    for path in names {
        let what = path.file_name().unwrap().to_string_lossy().into_owned();
        let bytes = std::fs::read(&path).unwrap();
        let whole = complete(&bytes, Some(bytes.len() as u64));
        assert_same_index(&whole, &complete(&bytes, None));
        let (index, calls) = stream(&bytes, &what);
        assert_same_index(&index, &whole);
        assert!(!whole.get_array("tokenizer.ggml.tokens").unwrap().is_empty(), "{what}");
        for t in &whole.tensors {
            whole.tensor_data(&bytes, &t.name).unwrap();
        }
        eprintln!(
            "{what}: {} bytes, {} keys, {} tensors, complete after {calls} calls",
            bytes.len(),
            whole.metadata.len(),
            whole.tensors.len()
        );
    }
}

/// Writes the fuzz target's seed inputs to fuzz/seeds/ (see fuzz/README.md):
/// `cargo test -p hearth-gguf --test incremental write_fuzz_seeds -- --ignored`.
#[test]
#[ignore = "writes fuzz/seeds; run by hand"]
fn write_fuzz_seeds() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fuzz/seeds");
    std::fs::create_dir_all(dir).unwrap();
    let mut seeds: Vec<(&str, Vec<u8>)> = Vec::new();
    for (what, built) in small_files() {
        let name = match what.as_str() {
            "sample v2" => "sample-v2",
            "sample v3" => "sample-v3",
            "empty" => "empty",
            "metadata only" => "metadata-only",
            "alignment 1" => "alignment-1",
            _ => "alignment-64",
        };
        seeds.push((name, built.bytes));
    }
    // One small tensor of every type, for the dequantizer.
    let mut g = Gguf::new(3).kv("general.architecture", Value::String("llama".into()));
    for id in 0..64 {
        if let Some(ty) = TensorType::from_id(id) {
            let dims = [ty.block_size() * 2, 2];
            g = g.tensor(TensorSpec::new(&format!("t.{ty}"), ty, &dims));
        }
    }
    seeds.push(("every-type", g.bytes()));
    // The start of a real vocabulary: a long string array cut short.
    let spm = std::fs::read(format!("{VOCAB_DIR}ggml-vocab-llama-spm.gguf")).unwrap();
    seeds.push(("llama-spm-head", spm[..16 << 10].to_vec()));
    for (name, bytes) in seeds {
        std::fs::write(format!("{dir}/{name}.bin"), bytes).unwrap();
    }
}

/// A header larger than the cap is refused by name after reading at most the cap (the
/// browser read header prefixes without end); the real vocabularies are far under the
/// production cap.
#[test]
fn the_index_prefix_is_capped() {
    use hearth_gguf::{next_prefix, read_index, read_index_within, GgufError, ReadError, MAX_INDEX_BYTES};
    // 3 MiB of metadata: one long string.
    let big = Gguf::new(3).kv("general.description", Value::String("x".repeat(3 << 20))).build();
    match read_index_within(&big.bytes, 2 << 20) {
        Err(ReadError::Gguf(e @ GgufError::LimitExceeded { .. })) => {
            assert!(e.to_string().contains("GGUF header"), "{e}")
        }
        other => panic!("expected the header cap, got {other:?}"),
    }
    assert!(read_index_within(&big.bytes, 4 << 20).is_ok(), "under the cap it parses");
    // Prefixes grow by at least doubling and stay within the file and the cap.
    assert_eq!(next_prefix(1 << 20, 5, 10 << 20, 8 << 20), Ok(2 << 20));
    assert_eq!(next_prefix(1 << 20, 3 << 20, 10 << 20, 8 << 20), Ok(3 << 20));
    assert_eq!(next_prefix(4 << 20, 5 << 20, 6 << 20, 8 << 20), Ok(6 << 20));
    assert_eq!(next_prefix(4 << 20, 5 << 20, 100 << 20, 6 << 20), Ok(6 << 20));
    for name in ["ggml-vocab-qwen2.gguf", "ggml-vocab-llama-bpe.gguf"] {
        let bytes = std::fs::read(format!("{VOCAB_DIR}{name}")).unwrap();
        let index = read_index(&bytes).unwrap();
        assert!(index.data_offset < MAX_INDEX_BYTES / 16, "{name}: {} header bytes", index.data_offset);
    }
}
