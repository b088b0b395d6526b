//! Byte-level BPE: llama.cpp's `llm_tokenizer_bpe_session::tokenize`.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use hearth_gguf::GgufIndex;

use crate::error::TokenizerError;
use crate::pretokenize::PreTokenizer;
use crate::unicode;
use crate::vocab::Vocab;
use crate::Limits;
use rustc_hash::FxHashMap;

const KEY_MERGES: &str = "tokenizer.ggml.merges";

pub(crate) struct Bpe {
    pre: PreTokenizer,
    /// Each distinct merge side, interned, so ranks can be looked up without allocating.
    sides: FxHashMap<String, u32>,
    ranks: FxHashMap<(u32, u32), u32>,
    /// Llama 3's `ignore_merges`: a whole pre-token found in the vocabulary is emitted as is.
    ignore_merges: bool,
}

impl Bpe {
    pub fn load(index: &GgufIndex, pre: PreTokenizer, ignore_merges: bool) -> Result<Bpe, TokenizerError> {
        let merges = index
            .get(KEY_MERGES)
            .ok_or(TokenizerError::MissingMerges)?
            .as_array()
            .ok_or(TokenizerError::WrongType { key: KEY_MERGES, expected: "array of strings" })?;
        if merges.len() > Limits::MERGES {
            let what = format!("the length of {KEY_MERGES}");
            return Err(TokenizerError::Limit { what, size: merges.len(), max: Limits::MERGES });
        }
        let mut sides: FxHashMap<String, u32> = FxHashMap::default();
        let mut ranks = FxHashMap::with_capacity_and_hasher(merges.len(), Default::default());
        for (i, m) in merges.iter().enumerate() {
            let m = m.as_str().ok_or(TokenizerError::BadElement { key: KEY_MERGES, index: i, expected: "string" })?;
            if m.len() > 2 * Limits::TOKEN_BYTES + 1 {
                let what = format!("{KEY_MERGES}[{i}] in bytes");
                return Err(TokenizerError::Limit { what, size: m.len(), max: 2 * Limits::TOKEN_BYTES + 1 });
            }
            // llama.cpp splits at the first space after the first byte; a line without one
            // becomes the pair ("", ""). The first rank of a repeated pair wins (emplace).
            let space = m.bytes().skip(1).position(|b| b == b' ').map(|p| p + 1);
            let (first, second) = match space {
                Some(p) => (&m[..p], &m[p + 1..]),
                None => ("", ""),
            };
            let mut intern = |s: &str| {
                let next = sides.len() as u32;
                *sides.entry(s.to_string()).or_insert(next)
            };
            let key = (intern(first), intern(second));
            ranks.entry(key).or_insert(i as u32);
        }
        Ok(Bpe { pre, sides, ranks, ignore_merges })
    }

    fn rank(&self, left: &str, right: &str) -> Option<u32> {
        let l = *self.sides.get(left)?;
        let r = *self.sides.get(right)?;
        self.ranks.get(&(l, r)).copied()
    }

    pub fn tokenize(&self, vocab: &Vocab, text: &str, out: &mut Vec<u32>) {
        let mut word = String::new();
        for piece in self.pre.split(text) {
            word.clear();
            unicode::byte_encode_into(piece, &mut word);
            if self.ignore_merges {
                if let Some(id) = vocab.id(&word) {
                    out.push(id);
                    continue;
                }
            }
            self.merge_word(vocab, &word, out);
        }
    }

    fn merge_word(&self, vocab: &Vocab, word: &str, out: &mut Vec<u32>) {
        // One symbol per char, as a doubly linked list over `syms`.
        let mut syms: Vec<Symbol> = Vec::with_capacity(word.len());
        for (i, (start, c)) in word.char_indices().enumerate() {
            syms.push(Symbol { start, len: c.len_utf8(), prev: i.checked_sub(1), next: None });
            if let Some(p) = i.checked_sub(1) {
                syms[p].next = Some(i);
            }
        }
        let text = |s: &Symbol| word.get(s.start..s.start + s.len).unwrap_or("");

        let mut queue = BinaryHeap::new();
        let push = |queue: &mut BinaryHeap<Bigram>, syms: &[Symbol], left: usize, right: usize| {
            let (l, r) = (&syms[left], &syms[right]);
            if let Some(rank) = self.rank(text(l), text(r)) {
                queue.push(Bigram { rank, left: left as u32, right: right as u32, size: (l.len + r.len) as u32 });
            }
        };
        for i in 1..syms.len() {
            push(&mut queue, &syms, i - 1, i);
        }

        while let Some(b) = queue.pop() {
            let (left, right) = (b.left as usize, b.right as usize);
            let (l, r) = (syms[left], syms[right]);
            // Outdated: one side was merged away or grew since the bigram was queued.
            if l.len == 0 || r.len == 0 || l.len + r.len != b.size as usize {
                continue;
            }
            syms[left].len += r.len;
            syms[right].len = 0;
            syms[left].next = r.next;
            if let Some(n) = r.next {
                syms[n].prev = Some(left);
            }
            if let Some(p) = l.prev {
                push(&mut queue, &syms, p, left);
            }
            if let Some(n) = r.next {
                push(&mut queue, &syms, left, n);
            }
        }

        let mut cur = if syms.is_empty() { None } else { Some(0) };
        while let Some(i) = cur {
            let s = &syms[i];
            let t = text(s);
            match vocab.id(t) {
                Some(id) => out.push(id),
                None => {
                    // llama.cpp looks each byte up as a one-byte string: only ASCII bytes can
                    // be tokens; the rest are dropped.
                    for &byte in t.as_bytes() {
                        if byte.is_ascii() {
                            if let Some(id) = vocab.id(std::str::from_utf8(&[byte]).unwrap_or("")) {
                                out.push(id);
                            }
                        }
                    }
                }
            }
            cur = s.next;
        }
    }
}

#[derive(Clone, Copy)]
struct Symbol {
    start: usize,
    len: usize,
    prev: Option<usize>,
    next: Option<usize>,
}

/// Queue entry; the heap pops the lowest rank, then the leftmost.
#[derive(PartialEq, Eq)]
struct Bigram {
    rank: u32,
    left: u32,
    right: u32,
    size: u32,
}

impl Ord for Bigram {
    fn cmp(&self, other: &Self) -> Ordering {
        other
            .rank
            .cmp(&self.rank)
            .then_with(|| other.left.cmp(&self.left))
            .then_with(|| other.right.cmp(&self.right))
            .then_with(|| other.size.cmp(&self.size))
    }
}

impl PartialOrd for Bigram {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
