//! Splitting text on special-token texts: llama.cpp's `tokenizer_st_partition`.

use crate::vocab::{attr, Vocab};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fragment<'t> {
    Text(&'t str),
    Token(u32),
}

/// C `isspace` in the "C" locale.
fn is_c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0B | 0x0C | b'\r')
}

/// Special tokens are tried longest first; each one splits every text fragment left by the
/// ones before it, at each occurrence from left to right. USER_DEFINED tokens are always
/// split out; CONTROL and UNKNOWN ones only with `parse_special`. LSTRIP/RSTRIP tokens eat
/// the whitespace next to them.
pub(crate) fn partition<'t>(vocab: &Vocab, text: &'t str, parse_special: bool) -> Vec<Fragment<'t>> {
    let mut frags = Vec::new();
    if text.is_empty() {
        return frags;
    }
    frags.push(Fragment::Text(text));
    for &id in &vocab.special_by_len {
        let a = vocab.attr(id);
        if !parse_special && a & (attr::CONTROL | attr::UNKNOWN) != 0 {
            continue;
        }
        let Some(special) = vocab.texts.get(id as usize) else {
            continue;
        };
        if !text.contains(special.as_str()) {
            continue; // cheap skip: most special tokens are absent
        }
        let mut next = Vec::with_capacity(frags.len() + 2);
        for f in frags {
            match f {
                Fragment::Text(t) => split_one(t, special, id, a, &mut next),
                tok => next.push(tok),
            }
        }
        frags = next;
    }
    frags
}

fn split_one<'t>(mut rest: &'t str, special: &str, id: u32, a: u16, out: &mut Vec<Fragment<'t>>) {
    while let Some(at) = rest.find(special) {
        let mut left = &rest[..at];
        if a & attr::LSTRIP != 0 {
            left = left.trim_end_matches(|c: char| c.is_ascii() && is_c_space(c as u8));
        }
        if !left.is_empty() {
            out.push(Fragment::Text(left));
        }
        out.push(Fragment::Token(id));
        rest = &rest[at + special.len()..];
        if a & attr::RSTRIP != 0 {
            rest = rest.trim_start_matches(|c: char| c.is_ascii() && is_c_space(c as u8));
        }
    }
    if !rest.is_empty() {
        out.push(Fragment::Text(rest));
    }
}
