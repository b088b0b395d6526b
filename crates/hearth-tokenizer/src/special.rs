//! Splitting text on special-token texts: llama.cpp's `tokenizer_st_partition`.

use std::ops::Range;

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
/// split out; CONTROL and UNKNOWN ones only with `parse_special`, and never where they
/// overlap a byte range of `plain` (text a user typed). LSTRIP/RSTRIP tokens eat the
/// whitespace next to them.
pub(crate) fn partition<'t>(
    vocab: &Vocab,
    text: &'t str,
    parse_special: bool,
    plain: &[Range<usize>],
) -> Vec<Fragment<'t>> {
    let mut frags = Vec::new();
    if text.is_empty() {
        return frags;
    }
    frags.push(Fragment::Text(text));
    for &id in &vocab.special_by_len {
        let a = vocab.attr(id);
        let control = a & (attr::CONTROL | attr::UNKNOWN) != 0;
        if !parse_special && control {
            continue;
        }
        let Some(special) = vocab.texts.get(id as usize) else {
            continue;
        };
        if !text.contains(special.as_str()) {
            continue; // cheap skip: most special tokens are absent
        }
        // Whether an occurrence at these bytes of `text` stays text.
        let typed = |at: Range<usize>| control && plain.iter().any(|p| p.start < at.end && at.start < p.end);
        let mut next = Vec::with_capacity(frags.len() + 2);
        for f in frags {
            match f {
                Fragment::Text(t) => {
                    let base = t.as_ptr() as usize - text.as_ptr() as usize;
                    split_one(t, special, id, a, &|at: Range<usize>| typed(base + at.start..base + at.end), &mut next)
                }
                tok => next.push(tok),
            }
        }
        frags = next;
    }
    frags
}

/// Splits `t` at each occurrence of `special` whose byte range in `t` is not `typed`.
fn split_one<'t>(
    t: &'t str,
    special: &str,
    id: u32,
    a: u16,
    typed: &dyn Fn(Range<usize>) -> bool,
    out: &mut Vec<Fragment<'t>>,
) {
    let (mut rest, mut rest_at, mut from) = (t, 0, 0);
    while let Some(found) = rest[from..].find(special) {
        let at = from + found;
        if typed(rest_at + at..rest_at + at + special.len()) {
            from = at + special.len();
            continue;
        }
        let mut left = &rest[..at];
        if a & attr::LSTRIP != 0 {
            left = left.trim_end_matches(|c: char| c.is_ascii() && is_c_space(c as u8));
        }
        if !left.is_empty() {
            out.push(Fragment::Text(left));
        }
        out.push(Fragment::Token(id));
        let mut after = &rest[at + special.len()..];
        if a & attr::RSTRIP != 0 {
            after = after.trim_start_matches(|c: char| c.is_ascii() && is_c_space(c as u8));
        }
        rest_at += rest.len() - after.len();
        (rest, from) = (after, 0);
    }
    if !rest.is_empty() {
        out.push(Fragment::Text(rest));
    }
}
