//! Codepoint classification and GPT-2's byte↔unicode mapping, as llama.cpp's `unicode.cpp`
//! defines them. The category table is llama.cpp's (Unicode 15.1), so that `\p{L}`, `\p{N}`
//! and friends agree with it codepoint for codepoint.

use std::sync::OnceLock;

use crate::unicode_flags::RANGES;

pub(crate) const UNDEFINED: u8 = 0x01;
pub(crate) const NUMBER: u8 = 0x02;
pub(crate) const LETTER: u8 = 0x04;
pub(crate) const MARK: u8 = 0x10;
pub(crate) const PUNCTUATION: u8 = 0x20;
pub(crate) const SYMBOL: u8 = 0x40;

/// What llama.cpp's `unicode_cpt_flags` says about one position of the text. Positions past
/// the end of the piece being split get [`Flags::OUT`], whose every bit is clear (llama.cpp
/// returns a default-constructed `unicode_cpt_flags{}` there).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Flags {
    /// One of the category constants (0 only for [`Flags::OUT`]).
    pub category: u8,
    pub whitespace: bool,
}

impl Flags {
    pub const OUT: Flags = Flags { category: 0, whitespace: false };

    pub fn is_letter(self) -> bool {
        self.category == LETTER
    }
    pub fn is_number(self) -> bool {
        self.category == NUMBER
    }
    /// `flags.as_uint() != 0`: true for every real codepoint, false past the end.
    pub fn is_some(self) -> bool {
        self.category != 0 || self.whitespace
    }
}

/// llama.cpp's `unicode_set_whitespace` (the Unicode White_Space property).
pub(crate) fn is_whitespace(cp: u32) -> bool {
    matches!(
        cp,
        0x09..=0x0D
            | 0x20
            | 0x85
            | 0xA0
            | 0x1680
            | 0x2000..=0x200A
            | 0x2028
            | 0x2029
            | 0x202F
            | 0x205F
            | 0x3000
    )
}

/// Category flag of a codepoint (`UNDEFINED` for unassigned ones and anything out of range).
pub(crate) fn category(cp: u32) -> u8 {
    // partition_point gives the first range starting after cp; the one before holds it.
    let i = RANGES.partition_point(|&(start, _)| start <= cp);
    match i.checked_sub(1).and_then(|i| RANGES.get(i)) {
        Some(&(_, flag)) => flag,
        None => UNDEFINED,
    }
}

pub(crate) fn flags(cp: u32) -> Flags {
    Flags { category: category(cp), whitespace: is_whitespace(cp) }
}

/// Simple lowercase, as far as llama.cpp's splitters need it: they only compare the result
/// with ASCII letters, and no non-ASCII codepoint lowercases to `s t m d r v e l`.
pub(crate) fn to_lower_ascii(cp: u32) -> u32 {
    if (b'A' as u32..=b'Z' as u32).contains(&cp) {
        cp + 32
    } else {
        cp
    }
}

/// GPT-2's `bytes_to_unicode`: printable Latin-1 bytes map to themselves, the other 68 to
/// U+0100.. in byte order (llama.cpp `unicode_byte_to_utf8_map`).
pub(crate) fn byte_to_char_table() -> &'static [char; 256] {
    static TABLE: OnceLock<[char; 256]> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut table = ['\0'; 256];
        let mut n = 0u32;
        for (b, slot) in table.iter_mut().enumerate() {
            let b = b as u32;
            let printable = (0x21..=0x7E).contains(&b) || (0xA1..=0xAC).contains(&b) || (0xAE..=0xFF).contains(&b);
            let cp = if printable {
                b
            } else {
                n += 1;
                255 + n
            };
            *slot = char::from_u32(cp).unwrap_or('\u{FFFD}');
        }
        table
    })
}

/// The inverse of [`byte_to_char_table`] (`unicode_utf8_to_byte`); `None` for any other char.
pub(crate) fn char_to_byte(c: char) -> Option<u8> {
    let cp = c as u32;
    match cp {
        0x21..=0x7E | 0xA1..=0xAC | 0xAE..=0xFF => Some(cp as u8),
        0x100..=0x143 => {
            static SHIFTED: OnceLock<[u8; 68]> = OnceLock::new();
            let shifted = SHIFTED.get_or_init(|| {
                let mut out = [0u8; 68];
                for (b, &c) in byte_to_char_table().iter().enumerate() {
                    if let Some(slot) = (c as u32).checked_sub(0x100).and_then(|i| out.get_mut(i as usize)) {
                        *slot = b as u8;
                    }
                }
                out
            });
            shifted.get((cp - 0x100) as usize).copied()
        }
        _ => None,
    }
}

/// Appends the GPT-2 byte-level encoding of `s` (each UTF-8 byte as its mapped char).
pub(crate) fn byte_encode_into(s: &str, out: &mut String) {
    let table = byte_to_char_table();
    for &b in s.as_bytes() {
        out.push(table[b as usize]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn categories_match_llama_cpp_table() {
        assert_eq!(category('a' as u32), LETTER);
        assert_eq!(category('7' as u32), NUMBER);
        assert_eq!(category('!' as u32), PUNCTUATION);
        assert_eq!(category('$' as u32), SYMBOL);
        assert_eq!(category(0x0301), MARK);
        assert_eq!(category(0x0378), UNDEFINED);
        assert_eq!(category(0x2EBF0), LETTER); // CJK Ext. I: Unicode 15.1
        assert_eq!(category(0x1C89), UNDEFINED); // Unicode 16 addition: not yet
        assert_eq!(category(0x110000), UNDEFINED);
        assert_eq!(category(u32::MAX), UNDEFINED);
    }

    #[test]
    fn byte_mapping_round_trips() {
        let table = byte_to_char_table();
        assert_eq!(table[b' ' as usize], 'Ġ');
        assert_eq!(table[b'\n' as usize], 'Ċ');
        assert_eq!(table[b'a' as usize], 'a');
        for b in 0..=255u8 {
            assert_eq!(char_to_byte(table[b as usize]), Some(b));
        }
        assert_eq!(char_to_byte('€'), None);
    }
}
