//! BPE pre-tokenization: llama.cpp's `unicode_regex_split`.
//!
//! Each regex of a pre-tokenizer splits every piece left by the previous one; text between
//! matches stays a piece of its own. Two regexes have hand-written splitters in llama.cpp
//! (GPT-2's and Llama 3's) and are mirrored here step by step. Every other regex runs as
//! llama.cpp runs it through `std::regex`: if it uses `\p{..}` categories it runs on a
//! "collapsed" text where each non-ASCII codepoint is replaced by one placeholder per
//! category (so `\p{N}` only means ASCII digits plus the number placeholder, and so on);
//! otherwise on the text with non-ASCII whitespace replaced by `\x0B`.

use fancy_regex::Regex;

use crate::error::TokenizerError;
use crate::unicode::{self, Flags};
use crate::vocab::PreFlags;

// Regex sources, as in llama.cpp's `llm_tokenizer_bpe` constructor. Non-ASCII chars are
// written as escapes: several (e.g. U+1F7D, U+212A) would be changed by NFC normalization.
const GPT2: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)";
const LLAMA3: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const LLAMA3_ORIG: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const JAIS2: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s{512}(?!\S)|\s{256}(?!\S)|\s{128}(?!\S)|\s{64}(?!\S)|\s{32}(?!\S)|\s{16}(?!\S)|\s{8}(?!\S)|\s{4}(?!\S)|\s{1,2}(?!\S)|\s{1}";
const QWEN2: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const QWEN35: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const DEEPSEEK3_MAIN: &str = r##"[!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"##;
const SPARK25_MAIN: &str = r##"[!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+|[\r\n]|\s+(?!\S)|\s+"##;
const CJK_KANA: &str = "[\u{4E00}-\u{9FA5}\u{3040}-\u{309F}\u{30A0}-\u{30FF}]+";
const YOUTU_CJK: &str = "[\u{AC00}-\u{D7A3}\u{3131}-\u{318E}]+|[\u{FF01}\u{2026}\u{201C}\u{201D}\u{2018}\u{2019}\u{2014}\u{FF1A}\u{FF1B}\u{FF0C}\u{3001}-\u{303F}\u{FE30}-\u{FE4F}]+|[\u{3105}-\u{312F}]+|[\u{4E00}-\u{9FA5}\u{3040}-\u{309F}\u{30A0}-\u{30FF}]+";
const YOUTU_MAIN: &str = r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const DEEPSEEK_LLM_LETTERS: &str = "\\s?[A-Za-z\u{B5}\u{C0}-\u{D6}\u{D8}-\u{F6}\u{F8}-\u{1BA}\u{1BC}-\u{1BF}\u{1C4}-\u{293}\u{295}-\u{2AF}\u{370}-\u{373}\u{376}\u{377}\u{37B}-\u{37D}\u{37F}\u{386}\u{388}-\u{38A}\u{38C}\u{38E}-\u{3A1}\u{3A3}-\u{3F5}\u{3F7}-\u{481}\u{48A}-\u{52F}\u{531}-\u{556}\u{10A0}-\u{10C5}\u{13A0}-\u{13F5}\u{13F8}-\u{13FD}\u{1C90}-\u{1CBA}\u{1CBD}-\u{1CBF}\u{1D00}-\u{1D2B}\u{1D6B}-\u{1D77}\u{1D79}-\u{1D9A}\u{1E00}-\u{1F15}\u{1F18}-\u{1F1D}\u{1F20}-\u{1F45}\u{1F48}-\u{1F4D}\u{1F50}-\u{1F57}\u{1F59}\u{1F5B}\u{1F5D}\u{1F5F}-\u{1F7D}\u{1F80}-\u{1FB4}\u{1FB6}-\u{1FBC}\u{1FBE}\u{1FC2}-\u{1FC4}\u{1FC6}-\u{1FCC}\u{1FD0}-\u{1FD3}\u{1FD6}-\u{1FDB}\u{1FE0}-\u{1FEC}\u{1FF2}-\u{1FF4}\u{1FF6}-\u{1FFC}\u{2102}\u{2107}\u{210A}-\u{2113}\u{2115}\u{2119}-\u{211D}\u{2124}\u{2126}\u{2128}\u{212A}-\u{212D}\u{212F}-\u{2134}\u{2139}\u{213C}-\u{213F}\u{2145}-\u{2149}\u{214E}\u{2183}\u{2184}\u{2C00}-\u{2C7B}\u{2C7E}-\u{2CE4}\u{2CEB}-\u{2CEE}\u{2CF2}\u{2CF3}\u{A640}-\u{A66D}\u{A680}-\u{A69B}\u{A722}-\u{A76F}\u{A771}-\u{A787}\u{A78B}-\u{A78E}\u{AB70}-\u{ABBF}\u{FB00}-\u{FB06}\u{FB13}-\u{FB17}\u{FF21}-\u{FF3A}\u{FF41}-\u{FF5A}\u{10400}-\u{1044F}\u{104B0}-\u{104D3}\u{104D8}-\u{104FB}\u{10C80}-\u{10CB2}\u{10CC0}-\u{10CF2}\u{118A0}-\u{118DF}\u{1E900}-\u{1E943}]+";
const DEEPSEEK_LLM_PUNCT: &str = "\\s?[!-/:-~\u{FF01}-\u{FF0F}\u{FF1A}-\u{FF5E}\u{2018}-\u{201F}\u{3000}-\u{3002}]+";
const CJK_HANGUL: &str = "[\u{4E00}-\u{9FA5}\u{800}-\u{4E00}\u{AC00}-\u{D7FF}]+";
const FALCON_PUNCT: &str = r"[\p{P}\$\+<=>\^~\|`]+";
const DEFAULT_PUNCT: &str = r"[\p{P}\$\+<=>\^~\|]+";
const PORO: &str = " ?[^(\\s|.,!?\u{2026}\u{3002}\u{FF0C}\u{3001}\u{964}\u{6D4}\u{60C})]+";
const TEKKEN: &str = r"[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+|[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))+((?=[\p{L}])([^A-Z]))*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const GPT4O: &str = r"[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))+((?=[\p{L}])([^A-Z]))*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const GRANITE_EMB_MULTI: &str = r"[^\r\n\p{L}\p{N}]?((?=[\p{L}\p{M}])([^a-z]))*((?=[\p{L}\p{M}])([^A-Z]))+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\r\n\p{L}\p{N}]?((?=[\p{L}\p{M}])([^a-z]))+((?=[\p{L}\p{M}])([^A-Z]))*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const BAILINGMOE: &str = r"'(?:[sSdDmMtT]|[lL][lL]|[vV][eE]|[rR][eE])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+";
const SEED_CODER: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1}| ?[^\s\p{L}\p{N}\r\n]+|\s*[\r\n]+|\s+(?!\S)|\s+";
const UFAKZEKA: &str = r"[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const EXAONE_MOE: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?(?:\p{L}\p{M}*(?: \p{L}\p{M}*)*)+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]?|\s*[\r\n]|\s+(?!\S)|\s+";
const MINICPM5: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}+| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const NEWLINE_RUNS: &str = r"[^\n]+|[\n]+";

/// A `tokenizer.ggml.pre` value: its regexes and the vocabulary flags it sets
/// (llama.cpp's `tokenizer_pre` → `pre_type` chain in `load`, and the regex table).
pub(crate) struct PreType {
    pub regexes: &'static [&'static str],
    pub flags: PreFlags,
}

impl PreType {
    /// `None` for a name llama.cpp does not know at all; `Some(Err)` for one it knows but
    /// that needs a tokenizer Hearth does not have.
    pub fn lookup(name: Option<&str>) -> Result<PreType, TokenizerError> {
        let f = |ignore_merges, add_bos, keep_spaces| PreFlags { ignore_merges, add_bos, keep_spaces, no_bos: false };
        let plain = f(false, false, false);
        let keep = f(false, false, true);
        let t = |regexes: &'static [&'static str], flags| Ok(PreType { regexes, flags });
        const DEFAULT: &[&str] = &[DEFAULT_PUNCT, GPT2, r"\p{N}+", "[0-9][0-9][0-9]"];
        let Some(name) = name else {
            return t(DEFAULT, plain); // llama.cpp warns and uses 'default'
        };
        match name {
            "default" => t(DEFAULT, plain),
            "minicpm5" => t(&[r"\p{N}{1,3}", MINICPM5], f(true, false, false)),
            "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "falcon-h1" | "pixtral" | "midm-2.0" | "lfm2"
            | "jina-v5-nano" => t(&[LLAMA3], f(true, true, false)),
            "dbrx" | "smaug-bpe" => t(&[LLAMA3], plain),
            "jais-2" => t(&[JAIS2], plain),
            "deepseek-llm" => {
                t(&["[\r\n]", DEEPSEEK_LLM_LETTERS, DEEPSEEK_LLM_PUNCT, r"\s+$", CJK_HANGUL, r"\p{N}+"], keep)
            }
            "deepseek-coder" => t(&["[\r\n]", r"\s?\p{L}+", r"\s?\p{P}+", CJK_HANGUL, r"\p{N}"], keep),
            "deepseek-v3" | "hunyuan-dense" | "hy_v4" | "joyai-llm" => {
                t(&[r"\p{N}{1,3}", CJK_KANA, DEEPSEEK3_MAIN], keep)
            }
            "spark2_5" => t(&[r"\p{N}{1,3}", CJK_KANA, SPARK25_MAIN, r"\p{N}"], keep),
            "youtu" => t(&[YOUTU_CJK, YOUTU_MAIN], f(true, false, true)),
            "falcon" => t(&[FALCON_PUNCT, GPT2, "[0-9][0-9][0-9]"], plain),
            "starcoder" | "refact" | "codeshell" | "exaone" | "minerva-7b" | "mellum2" => t(&[r"\p{N}", GPT2], plain),
            "command-r" | "smollm" => t(&[r"\p{N}", GPT2], keep),
            "gpt-2" | "phi-2" | "jina-es" | "jina-de" | "gigachat" | "jina-v2-es" | "jina-v2-de" | "a.x-4.0"
            | "mellum" | "modern-bert" | "jina-v1-en" | "jina-v2-code" | "roberta-bpe" | "mpt" | "olmo" | "jais"
            | "exaone4" => t(&[GPT2], plain),
            "trillion" | "granite-docling" => t(&[GPT2], keep),
            "qwen2" | "deepseek-r1-qwen" | "kormo" | "f2llmv2" | "hunyuan" | "solar-open" => t(&[QWEN2], keep),
            "stablelm2" | "megrez" => t(&[QWEN2], plain),
            "qwen35" => t(&[QWEN35], keep),
            "poro-chat" => t(&[PORO], keep),
            "bloom" | "gpt3-finnish" => t(&[PORO], plain),
            "viking" => t(&[PORO, r"\p{N}"], keep),
            "chatglm-bpe" => t(&[LLAMA3], PreFlags { no_bos: true, ..plain }),
            "glm4" | "glm5" => t(&[LLAMA3], PreFlags { no_bos: true, ..f(true, false, false) }),
            "tekken" => t(&[TEKKEN], f(true, true, true)),
            "chameleon" => t(
                &[
                    "<sentinel:[0-9]+>",
                    "(IMGIMG)((A|B|C|D|E|F|G|H|I){1,4})Z",
                    "([\\t\\n]|    |  )",
                    r"\p{N}",
                    r"[\p{P}!-/:-@\[-`{-~]",
                    GPT2,
                ],
                f(false, true, true),
            ),
            "gpt-4o" | "llama4" | "kanana2" | "talkie" | "minimax-m2" => t(&[GPT4O], keep),
            "granite-embed-multi-97m" => t(&[GRANITE_EMB_MULTI], f(true, false, true)),
            "bailingmoe" | "bailingmoe2" | "llada-moe" => t(&[BAILINGMOE], keep),
            "seed-coder" => t(&[SEED_CODER], keep),
            "ufakzeka" => t(&[UFAKZEKA], keep),
            "grok-2" => t(&[QWEN2], keep),
            "laguna" => t(&[NEWLINE_RUNS, QWEN2], keep),
            "exaone-moe" => t(&[EXAONE_MOE], plain),
            // Known to llama.cpp, but they need custom splitters, no byte encoding, empty
            // regex matches or `\d`/`\b` semantics that are not mirrored here.
            "gemma4"
            | "granite-embed-multi-311m"
            | "sarvam-moe"
            | "whitespace"
            | "kimi-k2"
            | "afmoe"
            | "tiny_aya"
            | "cohere2moe"
            | "superbpe" => Err(TokenizerError::UnsupportedPreTokenizer(name.to_string())),
            _ => Err(TokenizerError::UnknownPreTokenizer(name.to_string())),
        }
    }
}

enum Splitter {
    /// `unicode_regex_split_custom_gpt2`.
    Gpt2,
    /// `unicode_regex_split_custom_llama3` (`digits` = 3), `_qwen2` (`digits` = 1) and
    /// `_qwen35` (1, with combining marks joining letter runs).
    Llama3Like { digits: usize, marks: bool },
    /// `std::regex` on the collapsed text (`collapsed`) or `std::wregex` on the real one.
    Regex { re: Regex, collapsed: bool },
}

pub(crate) struct PreTokenizer {
    splitters: Vec<Splitter>,
}

/// `\p{..}` names llama.cpp collapses, and the category each stands for.
const UCATS: &[(&str, u8)] = &[
    (r"\p{N}", unicode::NUMBER),
    (r"\p{L}", unicode::LETTER),
    (r"\p{P}", unicode::PUNCTUATION),
    (r"\p{M}", unicode::MARK),
    (r"\p{S}", unicode::SYMBOL),
    (r"\p{Lu}", unicode::LETTER),
    (r"\p{Ll}", unicode::LETTER),
    (r"\p{Lt}", unicode::LETTER),
    (r"\p{Lm}", unicode::LETTER),
    (r"\p{Lo}", unicode::LETTER),
];

/// The placeholder char a collapsed non-ASCII codepoint becomes. llama.cpp uses the bytes
/// 0xD0..0xD5; we use private-use codepoints so the collapsed text stays a `str`.
fn placeholder(category: u8) -> char {
    match category {
        unicode::NUMBER => '\u{E0D1}',
        unicode::LETTER => '\u{E0D2}',
        unicode::PUNCTUATION => '\u{E0D3}',
        unicode::MARK => '\u{E0D4}',
        unicode::SYMBOL => '\u{E0D5}',
        _ => '\u{E0D0}',
    }
}

/// The ASCII members llama.cpp adds next to each placeholder (`k_ucat_map`), written for
/// Rust's regex syntax inside a class.
fn ascii_members(category: u8) -> &'static str {
    match category {
        unicode::NUMBER => "0-9",
        unicode::LETTER => "A-Za-z",
        unicode::PUNCTUATION => r"!-#%-*,-/:-;?-@\[-\]_\{\}",
        unicode::SYMBOL => r"\$\+<->\^`\|\~",
        _ => "",
    }
}

fn uses_categories(regex: &str) -> bool {
    UCATS.iter().any(|(name, _)| regex.contains(name))
}

/// Rewrites `\p{..}` as llama.cpp does for the collapsed text: a class of the placeholder
/// and the category's ASCII members, merged into an enclosing `[...]` if there is one.
fn collapse_regex(regex: &str) -> String {
    let bytes = regex.as_bytes();
    let mut out = String::with_capacity(regex.len() * 2);
    let mut inside = false;
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        let escaped = i > 0 && bytes[i - 1] == b'\\';
        if c == b'[' && !escaped {
            out.push('[');
            inside = true;
            i += 1;
            continue;
        }
        if inside && c == b']' && !escaped {
            out.push(']');
            inside = false;
            i += 1;
            continue;
        }
        if c == b'\\' && bytes.get(i + 1) == Some(&b'p') && bytes.get(i + 2) == Some(&b'{') {
            if let Some(close) = regex[i..].find('}').map(|p| p + i) {
                let pat = &regex[i..=close];
                if let Some(&(_, cat)) = UCATS.iter().find(|(name, _)| *name == pat) {
                    if !inside {
                        out.push('[');
                    }
                    out.push(placeholder(cat));
                    out.push_str(ascii_members(cat));
                    if !inside {
                        out.push(']');
                    }
                    i = close + 1;
                    continue;
                }
            }
        }
        // Copy one whole char (the regex may hold non-ASCII literals).
        let ch = regex[i..].chars().next().unwrap_or('\0');
        out.push(ch);
        i += ch.len_utf8().max(1);
    }
    out
}

fn compile(src: &str, original: &str) -> Result<Regex, TokenizerError> {
    fancy_regex::RegexBuilder::new(src)
        .backtrack_limit(50_000_000)
        .build()
        .map_err(|e| TokenizerError::BadRegex { regex: original.to_string(), detail: e.to_string() })
}

/// A text as one char per codepoint, with each codepoint's byte offset for mapping match
/// positions back to codepoint counts.
struct Mapped {
    text: String,
    /// `offsets[i]` is the byte offset of codepoint `i`; one extra entry for the end.
    offsets: Vec<usize>,
}

impl Mapped {
    fn new(cpts: &[u32], map: impl Fn(u32) -> char) -> Mapped {
        let mut text = String::with_capacity(cpts.len());
        let mut offsets = Vec::with_capacity(cpts.len() + 1);
        for &cp in cpts {
            offsets.push(text.len());
            text.push(map(cp));
        }
        offsets.push(text.len());
        Mapped { text, offsets }
    }

    fn cpt_at(&self, byte: usize) -> usize {
        self.offsets.partition_point(|&o| o < byte)
    }
}

impl PreTokenizer {
    pub fn new(regexes: &[&str]) -> Result<PreTokenizer, TokenizerError> {
        let mut splitters = Vec::with_capacity(regexes.len());
        for &r in regexes {
            let s = if r == GPT2 {
                Splitter::Gpt2
            } else if r == LLAMA3 || r == LLAMA3_ORIG {
                Splitter::Llama3Like { digits: 3, marks: false }
            } else if r == QWEN2 {
                Splitter::Llama3Like { digits: 1, marks: false }
            } else if r == QWEN35 {
                Splitter::Llama3Like { digits: 1, marks: true }
            } else if uses_categories(r) {
                Splitter::Regex { re: compile(&collapse_regex(r), r)?, collapsed: true }
            } else {
                Splitter::Regex { re: compile(r, r)?, collapsed: false }
            };
            splitters.push(s);
        }
        Ok(PreTokenizer { splitters })
    }

    /// Splits `text` into pre-tokens (as sub-slices of `text`, in order, covering it).
    pub fn split<'t>(&self, text: &'t str) -> Vec<&'t str> {
        let cpts: Vec<u32> = text.chars().map(|c| c as u32).collect();
        let flags: Vec<Flags> = cpts.iter().map(|&c| unicode::flags(c)).collect();
        let mut collapsed: Option<Mapped> = None;
        let mut widened: Option<Mapped> = None;

        let mut lens = vec![cpts.len()];
        for s in &self.splitters {
            lens = match s {
                Splitter::Gpt2 => split_gpt2(&cpts, &flags, &lens),
                Splitter::Llama3Like { digits, marks } => split_llama3(&cpts, &flags, &lens, *digits, *marks),
                Splitter::Regex { re, collapsed: true } => {
                    let m = collapsed.get_or_insert_with(|| {
                        Mapped::new(&cpts, |cp| {
                            if cp < 128 {
                                char::from_u32(cp).unwrap_or('\0')
                            } else {
                                let f = unicode::flags(cp);
                                if f.whitespace {
                                    '\x0B'
                                } else {
                                    placeholder(f.category)
                                }
                            }
                        })
                    });
                    split_regex(re, m, &lens)
                }
                Splitter::Regex { re, collapsed: false } => {
                    let m = widened.get_or_insert_with(|| {
                        Mapped::new(&cpts, |cp| {
                            if cp > 0x7F && unicode::is_whitespace(cp) {
                                '\x0B'
                            } else {
                                char::from_u32(cp).unwrap_or('\u{FFFD}')
                            }
                        })
                    });
                    split_regex(re, m, &lens)
                }
            };
        }

        // Codepoint lengths back to byte slices of the original text.
        let mut out = Vec::with_capacity(lens.len());
        let mut byte = 0;
        let mut chars = text.char_indices().map(|(i, _)| i).chain(std::iter::once(text.len()));
        let _ = chars.next();
        for len in lens {
            if len == 0 {
                continue;
            }
            let mut end = byte;
            for _ in 0..len {
                end = chars.next().unwrap_or(text.len());
            }
            out.push(&text[byte..end]);
            byte = end;
        }
        out
    }
}

/// `unicode_regex_split_stl`: matches and the text between them, per existing piece.
fn split_regex(re: &Regex, m: &Mapped, lens: &[usize]) -> Vec<usize> {
    let mut out = Vec::with_capacity(lens.len());
    let mut start = 0;
    for &len in lens {
        let (b0, b1) = (m.offsets[start], m.offsets[start + len]);
        let piece = &m.text[b0..b1];
        let mut prev = start;
        for found in re.find_iter(piece) {
            let Ok(found) = found else {
                break; // backtrack limit: leave the rest of the piece whole
            };
            let (s, e) = (m.cpt_at(b0 + found.start()), m.cpt_at(b0 + found.end()));
            if s > prev {
                out.push(s - prev);
            }
            out.push(e - s);
            prev = e;
        }
        if prev < start + len {
            out.push(start + len - prev);
        }
        start += len;
    }
    out
}

/// Shared scaffolding of llama.cpp's custom splitters: codepoints and flags of one piece,
/// with out-of-piece positions reading as "nothing".
struct Piece<'a> {
    cpts: &'a [u32],
    flags: &'a [Flags],
    ini: usize,
    end: usize,
    prev_end: usize,
    out: &'a mut Vec<usize>,
}

const OUT_OF_RANGE: u32 = 0xFFFF_FFFF;

impl Piece<'_> {
    fn cpt(&self, pos: usize) -> u32 {
        if self.ini <= pos && pos < self.end {
            self.cpts[pos]
        } else {
            OUT_OF_RANGE
        }
    }
    fn flags(&self, pos: usize) -> Flags {
        if self.ini <= pos && pos < self.end {
            self.flags[pos]
        } else {
            Flags::OUT
        }
    }
    /// Ends the current token at `end`; returns its length.
    fn add(&mut self, end: usize) -> usize {
        let len = end - self.prev_end;
        if len > 0 {
            self.out.push(len);
        }
        self.prev_end = end;
        len
    }
}

fn for_each_piece(cpts: &[u32], flags: &[Flags], lens: &[usize], mut body: impl FnMut(&mut Piece)) -> Vec<usize> {
    let mut out = Vec::with_capacity(lens.len());
    let mut start = 0;
    for &len in lens {
        let mut p = Piece { cpts, flags, ini: start, end: start + len, prev_end: start, out: &mut out };
        body(&mut p);
        start += len;
    }
    out
}

/// Punctuation-like: `[^\s\p{L}\p{N}]` for a real codepoint.
fn is_other(f: Flags) -> bool {
    !(f.whitespace || f.is_letter() || f.is_number()) && f.is_some()
}

/// `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
fn split_gpt2(cpts: &[u32], flags: &[Flags], lens: &[usize]) -> Vec<usize> {
    for_each_piece(cpts, flags, lens, |p| {
        let mut pos = p.ini;
        while pos < p.end {
            let cpt = p.cpt(pos);
            let f = p.flags(pos);

            if cpt == '\'' as u32 && pos + 1 < p.end {
                let next = p.cpt(pos + 1);
                if [b's', b't', b'm', b'd'].iter().any(|&c| next == c as u32) {
                    pos += p.add(pos + 2);
                    continue;
                }
                if pos + 2 < p.end {
                    let next2 = p.cpt(pos + 2);
                    if is_pair(next, next2, b"re") || is_pair(next, next2, b"ve") || is_pair(next, next2, b"ll") {
                        pos += p.add(pos + 3);
                        continue;
                    }
                }
            }

            let space = cpt == ' ' as u32;
            let mut f2 = if space { p.flags(pos + 1) } else { f };
            if f2.is_letter() {
                pos += space as usize;
                while f2.is_letter() {
                    pos += 1;
                    f2 = p.flags(pos);
                }
                p.add(pos);
                continue;
            }
            if f2.is_number() {
                pos += space as usize;
                while f2.is_number() {
                    pos += 1;
                    f2 = p.flags(pos);
                }
                p.add(pos);
                continue;
            }
            if is_other(f2) {
                pos += space as usize;
                while is_other(f2) {
                    pos += 1;
                    f2 = p.flags(pos);
                }
                p.add(pos);
                continue;
            }

            let mut n_ws = 0;
            while p.flags(pos + n_ws).whitespace {
                n_ws += 1;
            }
            if n_ws > 1 && p.cpt(pos + n_ws) != OUT_OF_RANGE {
                pos += n_ws - 1;
                p.add(pos);
                continue;
            }
            if n_ws > 0 {
                pos += n_ws;
                p.add(pos);
                continue;
            }
            pos += 1;
            p.add(pos);
        }
    })
}

fn is_pair(a: u32, b: u32, pair: &[u8; 2]) -> bool {
    a == pair[0] as u32 && b == pair[1] as u32
}

/// `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
/// with `\p{N}{1,digits}`, and with `[\p{L}\p{M}]` for `\p{L}` when `marks` (Qwen 3.5).
fn split_llama3(cpts: &[u32], flags: &[Flags], lens: &[usize], digits: usize, marks: bool) -> Vec<usize> {
    let is_crlf = |c: u32| c == '\r' as u32 || c == '\n' as u32;
    let wordy = |f: Flags| f.is_letter() || (marks && f.category == unicode::MARK);
    let other = |f: Flags| !(f.whitespace || wordy(f) || f.is_number()) && f.is_some();
    for_each_piece(cpts, flags, lens, |p| {
        let mut pos = p.ini;
        while pos < p.end {
            let cpt = p.cpt(pos);
            let f = p.flags(pos);

            if cpt == '\'' as u32 && pos + 1 < p.end {
                let next = unicode::to_lower_ascii(p.cpt(pos + 1));
                if [b's', b't', b'm', b'd'].iter().any(|&c| next == c as u32) {
                    pos += p.add(pos + 2);
                    continue;
                }
                if pos + 2 < p.end {
                    let next2 = unicode::to_lower_ascii(p.cpt(pos + 2));
                    if is_pair(next, next2, b"re") || is_pair(next, next2, b"ve") || is_pair(next, next2, b"ll") {
                        pos += p.add(pos + 3);
                        continue;
                    }
                }
            }

            // [^\r\n\p{L}\p{N}]?\p{L}+
            if !(is_crlf(cpt) || f.is_number()) && (wordy(f) || wordy(p.flags(pos + 1))) {
                pos += 1;
                while wordy(p.flags(pos)) {
                    pos += 1;
                }
                p.add(pos);
                continue;
            }

            // \p{N}{1,3}
            if f.is_number() {
                let mut ini = pos;
                while p.flags(pos).is_number() {
                    pos += 1;
                    if pos - ini >= digits {
                        p.add(pos);
                        ini = pos;
                    }
                }
                p.add(pos);
                continue;
            }

            // <space>?[^\s\p{L}\p{N}]+[\r\n]*  (the entry test uses this position's flags,
            // the loop the next one's, exactly as llama.cpp does)
            let space = cpt == ' ' as u32;
            let mut f2 = if space { p.flags(pos + 1) } else { f };
            if !(f2.whitespace || wordy(f2) || f2.is_number()) && f.is_some() {
                pos += space as usize;
                while other(f2) {
                    pos += 1;
                    f2 = p.flags(pos);
                }
                while is_crlf(p.cpt(pos)) {
                    pos += 1;
                }
                p.add(pos);
                continue;
            }

            let mut n_ws = 0;
            let mut last_crlf_end = 0;
            while p.flags(pos + n_ws).whitespace {
                if is_crlf(p.cpt(pos + n_ws)) {
                    last_crlf_end = pos + n_ws + 1;
                }
                n_ws += 1;
            }
            // \s*[\r\n]+
            if last_crlf_end > 0 {
                pos = last_crlf_end;
                p.add(pos);
                continue;
            }
            // \s+(?!\S)
            if n_ws > 1 && p.cpt(pos + n_ws) != OUT_OF_RANGE {
                pos += n_ws - 1;
                p.add(pos);
                continue;
            }
            // \s+
            if n_ws > 0 {
                pos += n_ws;
                p.add(pos);
                continue;
            }
            pos += 1;
            p.add(pos);
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(regexes: &[&str], text: &str) -> Vec<String> {
        PreTokenizer::new(regexes).unwrap().split(text).into_iter().map(str::to_string).collect()
    }

    #[test]
    fn every_known_pre_tokenizer_compiles() {
        let names = [
            "default",
            "minicpm5",
            "llama3",
            "dbrx",
            "jais-2",
            "deepseek-llm",
            "deepseek-coder",
            "deepseek-v3",
            "spark2_5",
            "youtu",
            "falcon",
            "starcoder",
            "smollm",
            "gpt-2",
            "trillion",
            "qwen2",
            "stablelm2",
            "qwen35",
            "poro-chat",
            "bloom",
            "viking",
            "chatglm-bpe",
            "glm4",
            "tekken",
            "chameleon",
            "gpt-4o",
            "granite-embed-multi-97m",
            "bailingmoe",
            "seed-coder",
            "ufakzeka",
            "grok-2",
            "laguna",
            "exaone-moe",
        ];
        for name in names {
            let pre = PreType::lookup(Some(name)).unwrap();
            if let Err(e) = PreTokenizer::new(pre.regexes) {
                panic!("{name}: {e}");
            }
        }
    }

    #[test]
    fn gpt2_custom_splits() {
        assert_eq!(split(&[GPT2], "Hello world's  end\n"), ["Hello", " world", "'s", " ", " end", "\n"]);
    }

    #[test]
    fn llama3_custom_splits() {
        assert_eq!(
            split(&[LLAMA3], "I'VE 12345 ok!!\n\n  x"),
            ["I", "'VE", " ", "123", "45", " ok", "!!\n\n", " ", " x"]
        );
    }

    #[test]
    fn collapsed_regex_uses_placeholders() {
        let c = collapse_regex(r"[^\s\p{L}\p{N}]+|\p{N}");
        assert_eq!(c, "[^\\s\u{E0D2}A-Za-z\u{E0D1}0-9]+|[\u{E0D1}0-9]");
        // Non-ASCII letters and digits are matched through their placeholders.
        assert_eq!(split(&[QWEN2], "né 42"), ["né", " ", "4", "2"]);
        assert_eq!(split(&[r"\p{N}", GPT2], "a١٢b"), ["a", "١", "٢", "b"]);
    }
}
