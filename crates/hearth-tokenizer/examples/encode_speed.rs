//! Load time and encoding throughput on the test vocabularies in shared/testdata/vocab:
//! `cargo run --release --example encode_speed -p hearth-tokenizer`.
use std::time::Instant;
fn main() {
    for name in ["llama-spm", "phi-3", "llama-bpe", "qwen2", "gpt-2"] {
        let path = format!("{}/../../../shared/testdata/vocab/ggml-vocab-{name}.gguf", env!("CARGO_MANIFEST_DIR"));
        let bytes = std::fs::read(&path).unwrap();
        let t = Instant::now();
        let idx = match hearth_gguf::parse_index(&bytes, Some(bytes.len() as u64)).unwrap() {
            hearth_gguf::Parse::Complete(i) => i,
            _ => panic!(),
        };
        let t1 = t.elapsed();
        let tok = hearth_tokenizer::Tokenizer::from_gguf(&idx).unwrap();
        let t2 = t.elapsed();
        let inp = std::fs::read_to_string(format!("{path}.inp")).unwrap().repeat(200);
        let t = Instant::now();
        let ids = tok.encode(&inp, false, false);
        let te = t.elapsed();
        println!(
            "{name}: parse {t1:?} load {:?}; encode {} bytes -> {} ids in {te:?} ({:.1} MB/s)",
            t2 - t1,
            inp.len(),
            ids.len(),
            inp.len() as f64 / te.as_secs_f64() / 1e6
        );
    }
}
