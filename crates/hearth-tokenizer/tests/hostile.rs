//! Vocabularies crafted to make loading slow or huge get a clear error before the memory is
//! spent (issue 10): a byte-level BPE token of 100,000 spaces asked for ~10 GB of pieces
//! (each character outside GPT-2's byte table renders as the whole token again), and the
//! process aborted. The files are written with `hearth-gguf`'s writer.

use hearth_gguf::{parse_index, write_header, Parse, Value, ValueType};
use hearth_tokenizer::{Limits, Tokenizer, TokenizerError};

/// A GPT-2-style vocabulary of `tokens` (with `merges`), parsed back into an index.
fn tokenizer(tokens: Vec<String>, merges: Vec<String>) -> Result<Tokenizer, TokenizerError> {
    let strings = |v: Vec<String>| Value::Array(ValueType::String, v.into_iter().map(Value::String).collect());
    let metadata = [
        ("general.architecture", Value::String("llama".into())),
        ("tokenizer.ggml.model", Value::String("gpt2".into())),
        ("tokenizer.ggml.pre", Value::String("gpt-2".into())),
        ("tokenizer.ggml.tokens", strings(tokens)),
        ("tokenizer.ggml.merges", strings(merges)),
    ];
    let header = write_header(&metadata, &[]);
    match parse_index(&header.bytes, Some(header.file_len)) {
        Ok(Parse::Complete(index)) => Tokenizer::from_gguf(&index),
        other => panic!("the written header does not parse: {other:?}"),
    }
}

fn plain_vocab() -> Vec<String> {
    ["a", "b", "Ġ", "ab"].map(String::from).to_vec()
}

fn assert_limit(what: &str, got: Result<Tokenizer, TokenizerError>, max: usize) {
    match got {
        Err(e @ TokenizerError::Limit { .. }) => {
            let message = e.to_string();
            assert!(message.contains(&max.to_string()) && !message.contains('\n'), "{what}: {message}");
        }
        Err(e) => panic!("{what}: another error: {e}"),
        Ok(_) => panic!("{what}: loaded"),
    }
}

#[test]
fn a_small_vocabulary_loads() {
    let t = tokenizer(plain_vocab(), vec!["a b".into()]).unwrap();
    assert_eq!(t.encode("ab", false, false), vec![3]);
}

#[test]
fn one_very_long_token_is_refused() {
    let mut tokens = plain_vocab();
    tokens.push(" ".repeat(100_000));
    assert_limit("a 100,000-byte token", tokenizer(tokens, vec![]), Limits::TOKEN_BYTES);
    // At the cap it loads (its piece is quadratic, ~17 MB, and within the piece cap).
    let mut tokens = plain_vocab();
    tokens.push(" ".repeat(Limits::TOKEN_BYTES));
    tokenizer(tokens, vec![]).unwrap();
}

#[test]
fn pieces_past_the_cap_are_refused() {
    // Four tokens at the length cap, each rendering ~17 MB: past 64 MiB in all.
    let mut tokens = plain_vocab();
    tokens.extend((0..4).map(|i| format!("{i}{}", " ".repeat(Limits::TOKEN_BYTES - 1))));
    assert_limit("four quadratic pieces", tokenizer(tokens, vec![]), Limits::PIECE_BYTES);
}

#[test]
fn a_very_long_merge_is_refused() {
    let merge = format!("a {}", "b".repeat(3 * Limits::TOKEN_BYTES));
    assert_limit("a long merge", tokenizer(plain_vocab(), vec![merge]), 2 * Limits::TOKEN_BYTES + 1);
}

#[test]
fn too_many_tokens_are_refused() {
    let tokens = (0..=Limits::TOKENS).map(|i| i.to_string()).collect();
    assert_limit("2^21 + 1 tokens", tokenizer(tokens, vec![]), Limits::TOKENS);
}
