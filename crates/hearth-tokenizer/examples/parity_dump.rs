//! Dumps what the tokenizer does with a vocabulary, in the format of
//! `scripts/llama_dump.cpp` (the same dump taken from llama.cpp), for differential testing:
//!
//! ```text
//! cargo run --release --example parity_dump -p hearth-tokenizer -- VOCAB.gguf INPUTS > ours.txt
//! llama_dump VOCAB.gguf INPUTS > theirs.txt && diff ours.txt theirs.txt
//! ```
//!
//! INPUTS holds the test strings separated by NUL bytes. For each token: its piece and
//! whether it ends generation; for each string, with parse_special off then on: the ids and
//! the detokenized bytes.

use std::fmt::Write as _;

use hearth_gguf::{parse_index, Parse};
use hearth_tokenizer::Tokenizer;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: parity_dump VOCAB.gguf INPUTS");
        std::process::exit(2);
    }
    let bytes = std::fs::read(&args[1]).expect("read vocab");
    let Ok(Parse::Complete(index)) = parse_index(&bytes, Some(bytes.len() as u64)) else {
        panic!("not a complete GGUF index");
    };
    let tok = Tokenizer::from_gguf(&index).expect("tokenizer");
    let id = |v: Option<u32>| v.map_or(-1, |v| v as i64);
    println!(
        "V {} bos {} eos {} add_bos {}",
        tok.n_vocab(),
        id(tok.bos_id()),
        id(tok.eos_id()),
        tok.add_bos_default() as u8
    );
    for i in 0..tok.n_vocab() as u32 {
        println!("P {i} {} {}", tok.is_end_of_generation(i) as u8, hex(tok.token_bytes(i)));
    }
    let all = std::fs::read(&args[2]).expect("read inputs");
    let mut pos = 0;
    while pos < all.len() {
        let end = all[pos..].iter().position(|&b| b == 0).map_or(all.len(), |p| pos + p);
        let s = String::from_utf8_lossy(&all[pos..end]).into_owned();
        pos = end + 1;
        for ps in [false, true] {
            let ids = tok.encode(&s, false, ps);
            let list: String = ids.iter().map(|i| format!(" {i}")).collect();
            println!("T{}{list}", ps as u8);
            println!("D{} {}", ps as u8, hex(&tok.detokenize_bytes(&ids, false, false)));
        }
    }
}
