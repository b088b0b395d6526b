//! SentencePiece-style tokenization: llama.cpp's `llm_tokenizer_spm_session::tokenize`.
//! The caller has already added the space prefix and replaced spaces with U+2581.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use crate::vocab::Vocab;
use rustc_hash::FxHashMap;

#[derive(Clone, Copy)]
struct Symbol {
    start: usize,
    len: usize,
    prev: Option<usize>,
    next: Option<usize>,
}

/// Queue entry; the heap pops the highest score, then the leftmost.
struct Bigram {
    score: f32,
    left: u32,
    right: u32,
    size: u32,
}

impl Ord for Bigram {
    fn cmp(&self, other: &Self) -> Ordering {
        self.score
            .total_cmp(&other.score)
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
impl PartialEq for Bigram {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Bigram {}

struct Session<'a> {
    vocab: &'a Vocab,
    text: &'a str,
    syms: Vec<Symbol>,
    queue: BinaryHeap<Bigram>,
    /// Merged text → the pair that formed it last (llama.cpp `rev_merge`).
    rev_merge: FxHashMap<&'a str, (usize, usize)>,
}

pub(crate) fn tokenize(vocab: &Vocab, text: &str, out: &mut Vec<u32>) {
    let mut s = Session {
        vocab,
        text,
        syms: Vec::with_capacity(text.len()),
        queue: BinaryHeap::new(),
        rev_merge: FxHashMap::default(),
    };
    for (i, (start, c)) in text.char_indices().enumerate() {
        s.syms.push(Symbol { start, len: c.len_utf8(), prev: i.checked_sub(1), next: None });
        if let Some(p) = i.checked_sub(1) {
            s.syms[p].next = Some(i);
        }
    }
    for i in 1..s.syms.len() {
        s.try_add_bigram(Some(i - 1), Some(i));
    }

    while let Some(b) = s.queue.pop() {
        let (left, right) = (b.left as usize, b.right as usize);
        let (l, r) = (s.syms[left], s.syms[right]);
        if l.len == 0 || r.len == 0 || l.len + r.len != b.size as usize {
            continue;
        }
        s.syms[left].len += r.len;
        s.syms[right].len = 0;
        s.syms[left].next = r.next;
        if let Some(n) = r.next {
            s.syms[n].prev = Some(left);
        }
        s.try_add_bigram(l.prev, Some(left));
        s.try_add_bigram(Some(left), r.next);
    }

    let mut cur = if s.syms.is_empty() { None } else { Some(0) };
    while let Some(i) = cur {
        s.resegment(i, out, 0);
        cur = s.syms[i].next;
    }
}

impl<'a> Session<'a> {
    fn sym_text(&self, i: usize) -> &'a str {
        let s = self.syms[i];
        self.text.get(s.start..s.start + s.len).unwrap_or("")
    }

    fn try_add_bigram(&mut self, left: Option<usize>, right: Option<usize>) {
        let (Some(left), Some(right)) = (left, right) else {
            return;
        };
        let (l, r) = (self.syms[left], self.syms[right]);
        let Some(text) = self.text.get(l.start..l.start + l.len + r.len) else {
            return;
        };
        let Some(id) = self.vocab.id(text) else {
            return;
        };
        let score = self.vocab.scores.get(id as usize).copied().unwrap_or(0.0);
        // Texts and indices fit in u32: encode() inputs are far below 4 GiB per fragment
        // in practice, and a wrapped index would only mis-order, never index out of bounds.
        self.queue.push(Bigram { score, left: left as u32, right: right as u32, size: text.len() as u32 });
        self.rev_merge.insert(text, (left, right));
    }

    /// Emits symbol `i` as its token, or as the tokens of the pair it was merged from, or
    /// byte by byte (`<0xXX>`).
    fn resegment(&self, i: usize, out: &mut Vec<u32>, depth: usize) {
        let text = self.sym_text(i);
        if let Some(id) = self.vocab.id(text) {
            out.push(id);
            return;
        }
        match self.rev_merge.get(text) {
            // Depth guard: the recursion follows merges, which only ever shorten.
            Some(&(l, r)) if depth < 64 => {
                self.resegment(l, out, depth + 1);
                self.resegment(r, out, depth + 1);
            }
            _ => {
                for &b in text.as_bytes() {
                    // llama.cpp throws if the byte has no token; we fall back to <unk>.
                    if let Some(id) = self.vocab.spm_byte_token(b).or(self.vocab.unk) {
                        out.push(id);
                    }
                }
            }
        }
    }
}
