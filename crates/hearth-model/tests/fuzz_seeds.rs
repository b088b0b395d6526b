//! Writes the seeds of the `gguf_model` fuzz target (`fuzz/seeds-model/`): headers of real
//! files, cut down to fuzz quickly. Not a test; run by hand when the seeds should change:
//! `cargo test --release -p hearth-model --test fuzz_seeds -- --ignored`.

use std::collections::HashSet;

use hearth_gguf::{read_index, write_header, FileSource, TensorSpec, Value};
use hearth_testdata::{model_path, testdata};

/// Tokens kept per vocabulary.
const KEEP: usize = 1000;

/// The index of `path` with its vocabulary cut to the first [`KEEP`] tokens (and the merges
/// among them), the output and embedding matrices cut to match, and `template` as its chat
/// template when given. Header bytes only: the fuzz target reads it as the start of a file.
fn seed(path: &std::path::Path, template: Option<&str>) -> Vec<u8> {
    let index = read_index(&FileSource::open(path).unwrap()).unwrap();
    let tokens: Vec<String> = match index.get("tokenizer.ggml.tokens") {
        Some(Value::Array(_, t)) => t.iter().take(KEEP).filter_map(|v| v.as_str().map(str::to_string)).collect(),
        _ => Vec::new(),
    };
    let kept: HashSet<&str> = tokens.iter().map(String::as_str).collect();
    let mut metadata: Vec<(&str, Value)> = Vec::new();
    for (key, value) in &index.metadata {
        let value = match (key.as_str(), value) {
            ("tokenizer.ggml.merges", Value::Array(ty, merges)) => {
                let keep = |m: &&Value| {
                    let Some((a, b)) = m.as_str().and_then(|s| s.split_once(' ')) else { return false };
                    kept.contains(a) && kept.contains(b) && kept.contains(format!("{a}{b}").as_str())
                };
                Value::Array(*ty, merges.iter().filter(keep).cloned().collect())
            }
            (k, Value::Array(ty, items)) if k.starts_with("tokenizer.ggml.") && items.len() > KEEP => {
                Value::Array(*ty, items[..KEEP].to_vec())
            }
            (k, Value::U32(id)) if k.ends_with("_token_id") && *id as usize >= KEEP => Value::U32(1),
            ("tokenizer.chat_template", _) if template.is_some() => continue,
            _ => value.clone(),
        };
        metadata.push((key.as_str(), value));
    }
    if let Some(t) = template {
        metadata.push(("tokenizer.chat_template", Value::String(t.to_string())));
    }
    let specs: Vec<TensorSpec> = index
        .tensors
        .iter()
        .map(|t| {
            let mut dims = t.dims.clone();
            if matches!(t.name.as_str(), "token_embd.weight" | "output.weight") && dims.len() == 2 {
                dims[1] = KEEP as u64;
            }
            TensorSpec { name: t.name.clone(), dims, ty: t.ty }
        })
        .collect();
    let header = write_header(&metadata, &specs);
    let mut bytes = header.bytes;
    // The header as the browser reads it: up to the end of the tensor index, no data.
    bytes.truncate(header.tensors.first().map_or(bytes.len(), |&(offset, _)| offset as usize));
    bytes
}

#[test]
#[ignore = "writes fuzz/seeds-model; run by hand"]
fn write_model_fuzz_seeds() {
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds-model");
    std::fs::create_dir_all(&out).unwrap();
    let template = |name: &str| std::fs::read_to_string(testdata(&format!("templates/{name}.jinja"))).unwrap();
    let seeds = [
        ("smollm2-135m", seed(&model_path(), None)),
        (
            "llama-spm-llama2",
            seed(&testdata("vocab/ggml-vocab-llama-spm.gguf"), Some(&template("meta-llama-Llama-2-7b-chat"))),
        ),
        (
            "llama-bpe-llama3",
            seed(&testdata("vocab/ggml-vocab-llama-bpe.gguf"), Some(&template("meta-llama-Llama-3.1-8B-Instruct"))),
        ),
        ("qwen2-qwen25", seed(&testdata("vocab/ggml-vocab-qwen2.gguf"), Some(&template("Qwen-Qwen2.5-7B-Instruct")))),
        ("gpt2-no-template", seed(&testdata("vocab/ggml-vocab-gpt-2.gguf"), None)),
        (
            "phi3-mistral",
            seed(&testdata("vocab/ggml-vocab-phi-3.gguf"), Some(&template("mistralai-Mistral-Nemo-Instruct-2407"))),
        ),
    ];
    for (name, bytes) in seeds {
        assert!(bytes.len() < 65536, "{name}: {} bytes", bytes.len());
        std::fs::write(out.join(format!("{name}.bin")), bytes).unwrap();
    }
}

/// The committed seeds reach the end of the fuzz target: a tokenizer, and a chat template that
/// renders (else the fuzzer would start far from the code it is for).
#[test]
fn model_fuzz_seeds_reach_the_template() {
    use hearth_gguf::{parse_index, Parse};
    use hearth_model::chat::ChatFormat;
    use hearth_tokenizer::template::Message;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds-model");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        let Ok(Parse::Complete(index)) = parse_index(&bytes, None) else {
            panic!("{}: no complete index", path.display())
        };
        let tokenizer =
            hearth_tokenizer::Tokenizer::from_gguf(&index).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let format = ChatFormat::from_gguf(&index, &tokenizer).unwrap();
        let tokens = format.tokenize(&tokenizer, &[Message::user("Hello there")]).unwrap();
        assert!(tokens.len() > 3, "{}: {tokens:?}", path.display());
        seen += 1;
    }
    assert!(seen >= 6, "{seen} seeds");
    // The SmolLM2 seed also makes a config.
    let bytes = std::fs::read(dir.join("smollm2-135m.bin")).unwrap();
    let Ok(Parse::Complete(index)) = parse_index(&bytes, None) else { panic!() };
    hearth_model::Config::from_gguf(&index).unwrap();
}
