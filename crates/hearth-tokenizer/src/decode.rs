//! Token → bytes (llama.cpp `token_to_piece`) and ids → text (`detokenize`).

use crate::unicode;
use crate::vocab::{attr, Kind, Vocab};
use crate::{Limits, TokenizerError};

/// Every token's piece as llama.cpp's `cache_token_to_piece` holds it (rendered with
/// `special = true`), stored back to back.
pub(crate) struct Pieces {
    bytes: Vec<u8>,
    /// `ends[i]` is where token `i`'s piece ends in `bytes`.
    ends: Vec<usize>,
}

impl Pieces {
    /// Fails past [`Limits::PIECE_BYTES`] in all; token texts are at most
    /// [`Limits::TOKEN_BYTES`] (checked by `Vocab::load`), so one piece overshoots by at most
    /// ~17 MB before the check.
    pub fn build(vocab: &Vocab) -> Result<Pieces, TokenizerError> {
        let mut bytes = Vec::new();
        let mut ends = Vec::with_capacity(vocab.n_tokens());
        for (text, &a) in vocab.texts.iter().zip(&vocab.attrs) {
            piece_into(vocab.kind, text, a, &mut bytes);
            if bytes.len() > Limits::PIECE_BYTES {
                let what = "the text of the token pieces (tokenizer.ggml.tokens, decoded)".to_string();
                return Err(TokenizerError::Limit { what, size: bytes.len(), max: Limits::PIECE_BYTES });
            }
            ends.push(bytes.len());
        }
        Ok(Pieces { bytes, ends })
    }

    /// The raw piece (control tokens included); empty for an out-of-range id.
    pub fn get(&self, id: u32) -> &[u8] {
        let i = id as usize;
        let Some(&end) = self.ends.get(i) else {
            return &[];
        };
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.bytes[start..end]
    }
}

/// `token_to_piece` for one token with `special = true`: UNKNOWN/CONTROL/USER_DEFINED tokens
/// render as their text, NORMAL ones decoded (SPM: U+2581 → space; BPE: GPT-2 bytes),
/// BYTE ones as their byte, anything else (UNUSED, UNDEFINED) as nothing.
fn piece_into(kind: Kind, text: &str, a: u16, out: &mut Vec<u8>) {
    if a & (attr::UNKNOWN | attr::CONTROL | attr::USER_DEFINED) != 0 {
        out.extend_from_slice(text.as_bytes());
    } else if a & attr::NORMAL != 0 {
        match kind {
            Kind::Spm => out.extend_from_slice(text.replace('\u{2581}', " ").as_bytes()),
            Kind::Bpe => bpe_decode_text(text, out),
        }
    } else if a & attr::BYTE != 0 {
        // "<0xXX>": llama.cpp reads the two chars at offset 3 with strtol (base 16), which
        // stops at the first non-hex char.
        let two = text.as_bytes().get(3..).unwrap_or(&[]).iter().take(2);
        let mut byte = 0u8;
        for &c in two {
            match (c as char).to_digit(16) {
                Some(d) => byte = byte.wrapping_mul(16).wrapping_add(d as u8),
                None => break,
            }
        }
        out.push(byte);
    }
}

/// llama.cpp `llama_decode_text`: each char back to its GPT-2 byte; a char outside the
/// mapping becomes `[UNK_BYTE_0x<its utf-8 hex><whole token text>]`, as llama.cpp writes it.
fn bpe_decode_text(text: &str, out: &mut Vec<u8>) {
    for c in text.chars() {
        match unicode::char_to_byte(c) {
            Some(b) => out.push(b),
            None => {
                out.extend_from_slice(b"[UNK_BYTE_0x");
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    out.extend_from_slice(format!("{b:02x}").as_bytes());
                }
                out.extend_from_slice(text.as_bytes());
                out.push(b']');
            }
        }
    }
}

/// llama.cpp `detokenize`: concatenated pieces, minus the SPM space prefix of the first one,
/// then the `clean_spaces` pass where the vocabulary asks for it.
pub(crate) fn detokenize(
    vocab: &Vocab,
    pieces: &Pieces,
    mut ids: &[u32],
    remove_special: bool,
    unparse_special: bool,
) -> Vec<u8> {
    let mut remove_space = vocab.add_space_prefix;
    if remove_special && vocab.add_bos {
        if let (Some(&first), Some(bos)) = (ids.first(), vocab.bos) {
            if first == bos {
                remove_space = false;
                ids = &ids[1..];
            }
        }
    }
    if remove_special && vocab.add_eos {
        if let (Some(&last), Some(eos)) = (ids.last(), vocab.eos) {
            if last == eos {
                ids = &ids[..ids.len() - 1];
            }
        }
    }

    let mut text = Vec::new();
    for &id in ids {
        let a = vocab.attr(id);
        if unparse_special || a & (attr::UNKNOWN | attr::CONTROL) == 0 {
            let mut p = pieces.get(id);
            if remove_space {
                if let Some(rest) = p.strip_prefix(b" ") {
                    p = rest;
                }
            }
            text.extend_from_slice(p);
        }
        remove_space = false;
    }

    if vocab.clean_spaces {
        clean_spaces(&mut text);
    }
    text
}

/// The three passes of llama.cpp's `clean_spaces` (HF `clean_up_tokenization_spaces`),
/// compacting in place exactly as llama.cpp does (its second pass reads a byte it has just
/// zeroed, which matters for runs like `" ' ' "`).
fn clean_spaces(text: &mut Vec<u8>) {
    // " ?", " !", " .", " ," lose the space.
    let n = text.len();
    let mut total = n.min(1);
    for i in 1..n {
        let x = text[i];
        if text[i - 1] == b' ' && matches!(x, b'?' | b'!' | b'.' | b',') {
            total -= 1;
        }
        text[total] = x;
        total += 1;
    }
    text.truncate(total);

    // " ' " becomes "'".
    let n = text.len();
    let mut total = n.min(1);
    let mut i = 1;
    while i < n {
        let x = text[i];
        if x == b'\'' && i + 1 < n && text[i - 1] == b' ' && text[i + 1] == b' ' {
            total -= 1;
            i += 1;
            text[i] = 0;
        }
        text[total] = x;
        total += 1;
        i += 1;
    }
    text.truncate(total);

    // " 's", " 'm", " 're", " 've" lose the space (" 't", " 'd", " 'll" keep it).
    let n = text.len();
    let mut total = n.min(1);
    for i in 1..n {
        let x = text[i];
        if text[i - 1] == b' ' && x == b'\'' && i + 1 < n {
            let x1 = text[i + 1];
            let drop =
                matches!(x1, b's' | b'm') || (i + 2 < n && matches!((x1, text[i + 2]), (b'r', b'e') | (b'v', b'e')));
            if drop {
                total -= 1;
            }
        }
        text[total] = x;
        total += 1;
    }
    text.truncate(total);
}

#[cfg(test)]
mod tests {
    use super::clean_spaces;

    fn clean(s: &str) -> String {
        let mut v = s.as_bytes().to_vec();
        clean_spaces(&mut v);
        String::from_utf8(v).unwrap()
    }

    #[test]
    fn clean_spaces_passes() {
        assert_eq!(clean("Hello , world !"), "Hello, world!");
        assert_eq!(clean("a ' b"), "a'b");
        assert_eq!(clean("it 's we 're I 'd they 'll"), "it's we're I 'd they 'll");
        assert_eq!(clean("x ' ' y"), "x'' y");
    }
}
