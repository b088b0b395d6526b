//! The vocabulary and its special tokens, read from `tokenizer.ggml.*` the way llama.cpp's
//! `llama_vocab::impl::load` reads them, including its text-based fix-ups (EOG detection,
//! control-type overrides, per-model strip attributes).

use std::collections::HashSet;

use hearth_gguf::{GgufIndex, Value};

use crate::error::TokenizerError;
use crate::Limits;
use rustc_hash::FxHashMap;

/// llama.cpp's `llama_token_attr` bits.
pub(crate) mod attr {
    pub const UNKNOWN: u16 = 1 << 0;
    pub const UNUSED: u16 = 1 << 1;
    pub const NORMAL: u16 = 1 << 2;
    pub const CONTROL: u16 = 1 << 3;
    pub const USER_DEFINED: u16 = 1 << 4;
    pub const BYTE: u16 = 1 << 5;
    pub const LSTRIP: u16 = 1 << 7;
    pub const RSTRIP: u16 = 1 << 8;
}

/// `tokenizer.ggml.token_type` values (llama.cpp `llama_token_type`) to attributes.
fn attr_from_type(t: i64) -> u16 {
    match t {
        1 => attr::NORMAL,
        2 => attr::UNKNOWN,
        3 => attr::CONTROL,
        4 => attr::USER_DEFINED,
        5 => attr::UNUSED,
        6 => attr::BYTE,
        _ => 0, // UNDEFINED
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `tokenizer.ggml.model = "llama"`: SentencePiece with byte fallback.
    Spm,
    /// `tokenizer.ggml.model = "gpt2"`: byte-level BPE.
    Bpe,
}

pub(crate) const KEY_MODEL: &str = "tokenizer.ggml.model";
pub(crate) const KEY_PRE: &str = "tokenizer.ggml.pre";
const KEY_TOKENS: &str = "tokenizer.ggml.tokens";
const KEY_SCORES: &str = "tokenizer.ggml.scores";
const KEY_TOKEN_TYPE: &str = "tokenizer.ggml.token_type";
const KEY_ADD_BOS: &str = "tokenizer.ggml.add_bos_token";
const KEY_ADD_EOS: &str = "tokenizer.ggml.add_eos_token";
const KEY_ADD_PREFIX: &str = "tokenizer.ggml.add_space_prefix";
const KEY_BOS: &str = "tokenizer.ggml.bos_token_id";
const KEY_EOS: &str = "tokenizer.ggml.eos_token_id";

/// Texts llama.cpp takes for an end-of-turn token when `eot_token_id` is not set.
const EOT_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|end_of_text|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "<｜end▁of▁sentence｜>",
    "<end_of_utterance>",
];
const FIM_PRE_TEXTS: &[&str] = &[
    "<|fim_prefix|>",
    "<fim-prefix>",
    "<fim_prefix>",
    "<｜fim▁begin｜>",
    "<PRE>",
    "▁<PRE>",
    "<|code_prefix|>",
    "<|prefix|>",
];
const FIM_SUF_TEXTS: &[&str] = &[
    "<|fim_suffix|>",
    "<fim-suffix>",
    "<fim_suffix>",
    "<｜fim▁hole｜>",
    "<SUF>",
    "▁<SUF>",
    "<|code_suffix|>",
    "<|suffix|>",
];
const FIM_MID_TEXTS: &[&str] = &[
    "<|fim_middle|>",
    "<fim-middle>",
    "<fim_middle>",
    "<｜fim▁end｜>",
    "<MID>",
    "▁<MID>",
    "<|code_middle|>",
    "<|middle|>",
];
const FIM_PAD_TEXTS: &[&str] = &["<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"];
const FIM_REP_TEXTS: &[&str] = &["<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>"];
const FIM_SEP_TEXTS: &[&str] = &["<|file_sep|>"];
/// Texts that end generation (llama.cpp's EOG list in `load`).
const EOG_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<|return|>",
    "<|call|>",
    "<|flush|>",
    "<|calls|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "</s>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "[EOS]",
    "<|end_of_text|>",
    "<end_of_utterance>",
    "<eos>",
    "<turn|>",
    "<|tool_response>",
    "<｜end▁of▁sentence｜>",
    "[e~[",
];

/// Flags that depend on the pre-tokenizer (set by [`crate::pretokenize::PreType::lookup`]).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct PreFlags {
    pub ignore_merges: bool,
    pub add_bos: bool,
    pub keep_spaces: bool,
    pub no_bos: bool,
}

pub(crate) struct Vocab {
    pub kind: Kind,
    pub texts: Vec<String>,
    pub scores: Vec<f32>,
    pub attrs: Vec<u16>,
    pub text_to_id: FxHashMap<String, u32>,
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    pub unk: Option<u32>,
    pub add_bos: bool,
    pub add_eos: bool,
    pub add_space_prefix: bool,
    /// llama.cpp `clean_spaces`: the "clean up tokenization spaces" pass of `detokenize`.
    pub clean_spaces: bool,
    pub eog: HashSet<u32>,
    /// CONTROL, USER_DEFINED and UNKNOWN tokens, longest text first
    /// (llama.cpp `cache_special_tokens`).
    pub special_by_len: Vec<u32>,
}

fn array<'a>(index: &'a GgufIndex, key: &'static str) -> Result<Option<&'a [Value]>, TokenizerError> {
    match index.get(key) {
        None => Ok(None),
        Some(v) => v.as_array().map(Some).ok_or(TokenizerError::WrongType { key, expected: "array" }),
    }
}

pub(crate) fn opt_str<'a>(index: &'a GgufIndex, key: &'static str) -> Result<Option<&'a str>, TokenizerError> {
    match index.get(key) {
        None => Ok(None),
        Some(v) => v.as_str().map(Some).ok_or(TokenizerError::WrongType { key, expected: "string" }),
    }
}

fn opt_bool(index: &GgufIndex, key: &'static str) -> Result<Option<bool>, TokenizerError> {
    match index.get(key) {
        None => Ok(None),
        Some(v) => v.as_bool().map(Some).ok_or(TokenizerError::WrongType { key, expected: "bool" }),
    }
}

/// A special-token id key: absent, negative or out-of-range values leave `default` (llama.cpp
/// warns "bad special token" and keeps the default).
fn special_id(
    index: &GgufIndex,
    key: &'static str,
    default: Option<u32>,
    n: usize,
) -> Result<Option<u32>, TokenizerError> {
    let default = default.filter(|&id| (id as usize) < n);
    match index.get(key) {
        None => Ok(default),
        Some(v) => {
            let id = v.as_i64().ok_or(TokenizerError::WrongType { key, expected: "integer" })?;
            Ok(match u32::try_from(id) {
                Ok(id) if (id as usize) < n => Some(id),
                _ => default,
            })
        }
    }
}

impl Vocab {
    pub fn load(index: &GgufIndex, kind: Kind, pre: PreFlags) -> Result<Vocab, TokenizerError> {
        let tokens = array(index, KEY_TOKENS)?.ok_or(TokenizerError::MissingKey { key: KEY_TOKENS })?;
        let n = tokens.len();
        if n == 0 {
            return Err(TokenizerError::EmptyVocab);
        }
        if u32::try_from(n).is_err() {
            return Err(TokenizerError::VocabTooLarge(n));
        }
        if n > Limits::TOKENS {
            return Err(TokenizerError::Limit {
                what: format!("the length of {KEY_TOKENS}"),
                size: n,
                max: Limits::TOKENS,
            });
        }

        let scores = match array(index, KEY_SCORES)? {
            None => vec![0.0; n],
            Some(a) => {
                // llama.cpp rejects fewer entries than tokens and ignores extra ones.
                if a.len() < n {
                    return Err(TokenizerError::LengthMismatch { key: KEY_SCORES, expected: n, found: a.len() });
                }
                a[..n]
                    .iter()
                    .enumerate()
                    .map(|(i, v)| {
                        v.as_f32().ok_or(TokenizerError::BadElement { key: KEY_SCORES, index: i, expected: "number" })
                    })
                    .collect::<Result<Vec<f32>, _>>()?
            }
        };

        let mut attrs = match array(index, KEY_TOKEN_TYPE)? {
            None => vec![attr::NORMAL; n],
            Some(a) => {
                if a.len() < n {
                    return Err(TokenizerError::LengthMismatch { key: KEY_TOKEN_TYPE, expected: n, found: a.len() });
                }
                a[..n]
                    .iter()
                    .enumerate()
                    .map(|(i, v)| {
                        v.as_i64().map(attr_from_type).ok_or(TokenizerError::BadElement {
                            key: KEY_TOKEN_TYPE,
                            index: i,
                            expected: "integer",
                        })
                    })
                    .collect::<Result<Vec<u16>, _>>()?
            }
        };

        let mut texts = Vec::with_capacity(n);
        let mut text_to_id = FxHashMap::with_capacity_and_hasher(n, Default::default());
        for (i, v) in tokens.iter().enumerate() {
            let id = i as u32;
            let text =
                v.as_str().ok_or(TokenizerError::BadElement { key: KEY_TOKENS, index: i, expected: "string" })?;
            if text.len() > Limits::TOKEN_BYTES {
                let what = format!("{KEY_TOKENS}[{i}] in bytes");
                return Err(TokenizerError::Limit { what, size: text.len(), max: Limits::TOKEN_BYTES });
            }
            // llama.cpp renames empty tokens so that they can never match text.
            let text = if text.is_empty() { format!("[EMPTY_{i}]") } else { text.to_string() };
            if let Some(&first) = text_to_id.get(&text) {
                return Err(TokenizerError::DuplicateToken { text, first, second: id });
            }
            text_to_id.insert(text.clone(), id);
            texts.push(text);
        }

        // Per-type defaults (llama.cpp `load`, "determine vocab type").
        let (def_bos, def_eos, def_unk, mut add_bos, mut add_space_prefix, clean_spaces) = match kind {
            Kind::Spm => (Some(1), Some(2), Some(0), true, true, false),
            Kind::Bpe => {
                (if pre.no_bos { None } else { Some(11) }, Some(11), None, pre.add_bos, false, !pre.keep_spaces)
            }
        };
        if let Some(v) = opt_bool(index, KEY_ADD_PREFIX)? {
            add_space_prefix = v;
        }

        let bos = special_id(index, KEY_BOS, def_bos, n)?;
        let eos = special_id(index, KEY_EOS, def_eos, n)?;
        let unk = special_id(index, "tokenizer.ggml.unknown_token_id", def_unk, n)?;
        let mut eot = special_id(index, "tokenizer.ggml.eot_token_id", None, n)?;
        let mut eom = special_id(index, "tokenizer.ggml.eom_token_id", None, n)?;
        let mut fim_pre = special_id(index, "tokenizer.ggml.fim_pre_token_id", None, n)?;
        let mut fim_suf = special_id(index, "tokenizer.ggml.fim_suf_token_id", None, n)?;
        let mut fim_mid = special_id(index, "tokenizer.ggml.fim_mid_token_id", None, n)?;
        let mut fim_pad = special_id(index, "tokenizer.ggml.fim_pad_token_id", None, n)?;
        let mut fim_rep = special_id(index, "tokenizer.ggml.fim_rep_token_id", None, n)?;
        let mut fim_sep = special_id(index, "tokenizer.ggml.fim_sep_token_id", None, n)?;
        // Deprecated names, read after the fim_* ones as llama.cpp does.
        fim_pre = special_id(index, "tokenizer.ggml.prefix_token_id", fim_pre, n)?;
        fim_suf = special_id(index, "tokenizer.ggml.suffix_token_id", fim_suf, n)?;
        fim_mid = special_id(index, "tokenizer.ggml.middle_token_id", fim_mid, n)?;

        if let Some(v) = opt_bool(index, KEY_ADD_BOS)? {
            add_bos = v;
        }
        let add_eos = opt_bool(index, KEY_ADD_EOS)?.unwrap_or(false);
        if add_bos && bos.is_none() {
            return Err(TokenizerError::MissingSpecialToken { flag_key: KEY_ADD_BOS, id_key: KEY_BOS });
        }
        if add_eos && eos.is_none() {
            return Err(TokenizerError::MissingSpecialToken { flag_key: KEY_ADD_EOS, id_key: KEY_EOS });
        }

        // Find unset EOT/EOM/FIM tokens by their text and make them CONTROL. llama.cpp walks
        // an unordered_map, so which of several candidates wins is unspecified there; we take
        // the lowest id.
        for (slot, names) in [
            (&mut eot, EOT_TEXTS),
            (&mut eom, &["<|eom_id|>"][..]),
            (&mut fim_pre, FIM_PRE_TEXTS),
            (&mut fim_suf, FIM_SUF_TEXTS),
            (&mut fim_mid, FIM_MID_TEXTS),
            (&mut fim_pad, FIM_PAD_TEXTS),
            (&mut fim_rep, FIM_REP_TEXTS),
            (&mut fim_sep, FIM_SEP_TEXTS),
        ] {
            if slot.is_none() {
                *slot = names.iter().filter_map(|t| text_to_id.get(*t).copied()).min();
                if let Some(id) = *slot {
                    attrs[id as usize] |= attr::CONTROL;
                }
            }
        }
        let _ = (fim_pre, fim_suf, fim_mid); // only their CONTROL override matters here

        // Control tokens named "unused..." are unused.
        for (text, a) in texts.iter().zip(attrs.iter_mut()) {
            if *a & attr::CONTROL != 0 && text.contains("unused") {
                *a |= attr::UNUSED;
            }
        }

        // End-of-generation set.
        let mut eog: HashSet<u32> = [fim_pad, fim_rep, fim_sep].into_iter().flatten().collect();
        for &text in EOG_TEXTS {
            if let Some(&id) = text_to_id.get(text) {
                eog.insert(id);
                attrs[id as usize] |= attr::CONTROL;
            }
        }
        // gpt-oss: always render these.
        for name in ["<|channel|>", "<|message|>", "<|start|>", "<|constrain|>"] {
            if let Some(&id) = text_to_id.get(name) {
                attrs[id as usize] = attr::USER_DEFINED;
            }
        }
        eog.extend([eos, eot, eom].into_iter().flatten());
        // o200k_harmony / solar-open: "<|end|>" is not EOG when "<|return|>"/"<|call|>" or
        // "<|calls|>"/"<|flush|>" are.
        let in_eog = |eog: &HashSet<u32>, name: &str| text_to_id.get(name).is_some_and(|id| eog.contains(id));
        let has_call = in_eog(&eog, "<|call|>") || in_eog(&eog, "<|calls|>");
        let drop_end = (in_eog(&eog, "<|return|>") || in_eog(&eog, "<|flush|>")) && has_call && in_eog(&eog, "<|end|>");
        if drop_end {
            if let Some(&id) = text_to_id.get("<|end|>") {
                eog.remove(&id);
                attrs[id as usize] = attr::USER_DEFINED;
            }
        }
        // gemma4 / paddleocr: "</s>" is not EOG next to "<|tool_response>".
        if in_eog(&eog, "<|tool_response>") && in_eog(&eog, "</s>") {
            if let Some(&id) = text_to_id.get("</s>") {
                eog.remove(&id);
                attrs[id as usize] = attr::NORMAL;
            }
        }

        let mut special_by_len: Vec<u32> = (0..n as u32)
            .filter(|&id| attrs[id as usize] & (attr::CONTROL | attr::USER_DEFINED | attr::UNKNOWN) != 0)
            .collect();
        // llama.cpp uses an unstable sort; equal lengths keep id order here.
        special_by_len.sort_by(|&a, &b| texts[b as usize].len().cmp(&texts[a as usize].len()));

        let mut vocab = Vocab {
            kind,
            texts,
            scores,
            attrs,
            text_to_id,
            bos,
            eos,
            unk,
            add_bos,
            add_eos,
            add_space_prefix,
            clean_spaces,
            eog,
            special_by_len,
        };
        vocab.apply_model_attrs(index)?;
        Ok(vocab)
    }

    /// llama.cpp's "Handle per token attributes": strip flags chosen by model name.
    fn apply_model_attrs(&mut self, index: &GgufIndex) -> Result<(), TokenizerError> {
        let name = opt_str(index, "general.name")?.unwrap_or("").to_lowercase();
        let pre = opt_str(index, KEY_PRE)?.unwrap_or("");
        let arch = opt_str(index, "general.architecture")?.unwrap_or("");
        let contains_any = |s: &str, subs: &[&str]| subs.iter().any(|sub| s.contains(sub));
        let set = |vocab: &mut Vocab, text: &str, bit: u16, on: bool| {
            if let Some(&id) = vocab.text_to_id.get(text) {
                let a = &mut vocab.attrs[id as usize];
                *a = if on { *a | bit } else { *a & !bit };
            }
        };
        if contains_any(pre, &["jina-v2-de", "jina-v2-es", "jina-v2-code"])
            || contains_any(arch, &["nomic-bert-moe", "jina-bert-v3"])
        {
            set(self, "<mask>", attr::LSTRIP, true);
        } else if contains_any(&name, &["phi-3", "phi3"]) {
            for &id in &self.special_by_len {
                self.attrs[id as usize] |= attr::RSTRIP;
            }
            set(self, "</s>", attr::RSTRIP, true);
            for text in ["<unk>", "<s>", "<|endoftext|>"] {
                set(self, text, attr::RSTRIP, false);
            }
        } else if contains_any(&name, &["modern-bert"]) {
            set(self, "[MASK]", attr::LSTRIP, true);
        }
        Ok(())
    }

    pub fn n_tokens(&self) -> usize {
        self.texts.len()
    }

    pub fn attr(&self, id: u32) -> u16 {
        self.attrs.get(id as usize).copied().unwrap_or(0)
    }

    pub fn id(&self, text: &str) -> Option<u32> {
        self.text_to_id.get(text).copied()
    }

    /// llama.cpp `byte_to_token` for SPM: `<0xXX>`, else the byte itself as a token.
    pub fn spm_byte_token(&self, b: u8) -> Option<u32> {
        self.id(&format!("<0x{b:02X}>")).or_else(|| {
            if b.is_ascii() {
                self.id(std::str::from_utf8(&[b]).unwrap_or(""))
            } else {
                None
            }
        })
    }
}
