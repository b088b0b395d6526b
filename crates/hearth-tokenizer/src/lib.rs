//! Tokenizers that give exactly llama.cpp's token ids, built from a GGUF's `tokenizer.ggml.*`
//! metadata, and chat templates rendered the way Hugging Face renders them.
//!
//! Supported: `tokenizer.ggml.model = "llama"` (SentencePiece BPE with byte fallback) and
//! `"gpt2"` (byte-level BPE) with every `tokenizer.ggml.pre` of llama.cpp except those that
//! need a tokenizer of their own (gemma4, sarvam-moe, whitespace, kimi-k2, afmoe, tiny_aya,
//! superbpe): those, like other `tokenizer.ggml.model`s, are a typed error.
//! Each step mirrors a named llama.cpp function (`llama_vocab::load`,
//! `tokenizer_st_partition`, `llm_tokenizer_spm`/`_bpe`, `unicode_regex_split`,
//! `token_to_piece`, `detokenize`).

mod bpe;
mod decode;
mod error;
mod pretokenize;
mod special;
mod spm;
mod stream;
pub mod template;
mod unicode;
mod unicode_flags;
mod vocab;

use hearth_gguf::GgufIndex;

pub use error::TokenizerError;

/// Caps on vocabulary metadata, checked before anything is allocated for it, so that a small
/// hostile GGUF cannot make loading take minutes or gigabytes. Real vocabularies stay far
/// below: at most 262,144 tokens (Gemma 3), 280,147 merges (Llama 3), 256-byte tokens, and
/// pieces of ~1.4 MB in all (Qwen2).
pub struct Limits;

impl Limits {
    pub const TOKENS: usize = 1 << 21;
    pub const MERGES: usize = 1 << 22;
    /// Bytes of one token's text (a merge rule is two such texts and a space).
    pub const TOKEN_BYTES: usize = 4096;
    /// Bytes of every token's piece together: a byte-level BPE token renders characters
    /// outside GPT-2's byte table as `[UNK_BYTE_0x…<the whole token>]` (llama.cpp's
    /// `llama_decode_text`), quadratic in the token's length.
    pub const PIECE_BYTES: usize = 64 << 20;
}
pub use stream::StreamDecoder;

use bpe::Bpe;
use decode::Pieces;
use pretokenize::{PreTokenizer, PreType};
use special::Fragment;
use vocab::{attr, Kind, PreFlags, Vocab};

enum Model {
    Spm,
    Bpe(Bpe),
}

/// A vocabulary and its tokenizer. Build once with [`Tokenizer::from_gguf`]; every lookup
/// table is made there, and encoding or decoding never fails or panics.
pub struct Tokenizer {
    vocab: Vocab,
    model: Model,
    pieces: Pieces,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("kind", &self.vocab.kind)
            .field("n_vocab", &self.vocab.n_tokens())
            .field("bos", &self.vocab.bos)
            .field("eos", &self.vocab.eos)
            .finish_non_exhaustive()
    }
}

impl Tokenizer {
    /// Reads the tokenizer from GGUF metadata as llama.cpp's `llama_vocab::load` does.
    pub fn from_gguf(index: &GgufIndex) -> Result<Tokenizer, TokenizerError> {
        let model =
            vocab::opt_str(index, vocab::KEY_MODEL)?.ok_or(TokenizerError::MissingKey { key: vocab::KEY_MODEL })?;
        let (vocab, model) = match model {
            "llama" => (Vocab::load(index, Kind::Spm, PreFlags::default())?, Model::Spm),
            "gpt2" => {
                let pre_name = vocab::opt_str(index, vocab::KEY_PRE)?;
                let pre = PreType::lookup(pre_name)?;
                let splitter = PreTokenizer::new(pre.regexes)?;
                let bpe = Bpe::load(index, splitter, pre.flags.ignore_merges)?;
                (Vocab::load(index, Kind::Bpe, pre.flags)?, Model::Bpe(bpe))
            }
            "no_vocab" | "none" | "bert" | "t5" | "rwkv" | "plamo2" | "gemma4" | "hybriddna" | "whitespace" => {
                return Err(TokenizerError::UnsupportedModel(model.to_string()))
            }
            other => return Err(TokenizerError::UnknownModel(other.to_string())),
        };
        let pieces = Pieces::build(&vocab)?;
        Ok(Tokenizer { vocab, model, pieces })
    }

    /// llama.cpp `llama_tokenize(text, add_special = add_bos, parse_special)`, except that
    /// `add_bos` only prepends BOS (when the vocabulary has one) and never appends EOS/SEP.
    /// Use [`Tokenizer::add_bos_default`] for the model's own choice.
    ///
    /// With `parse_special`, CONTROL and UNKNOWN token texts (e.g. `<|im_start|>`) become
    /// their single ids; without it they are tokenized as plain text. USER_DEFINED token
    /// texts are split out either way, as llama.cpp does.
    pub fn encode(&self, text: &str, add_bos: bool, parse_special: bool) -> Vec<u32> {
        self.encode_fragments(special::partition(&self.vocab, text, parse_special, &[]), add_bos)
    }

    /// [`Tokenizer::encode`] with special tokens parsed except where they overlap a byte
    /// range of `plain`: a rendered chat prompt whose message contents (`plain`, from
    /// `ChatTemplate::render_spans`) are the user's text, so that typing `<|im_start|>`
    /// gives the plain tokens of those characters. Where no special text falls in `plain`,
    /// the tokens are those of `encode(text, add_bos, true)`.
    pub fn encode_chat(&self, text: &str, add_bos: bool, plain: &[std::ops::Range<usize>]) -> Vec<u32> {
        self.encode_fragments(special::partition(&self.vocab, text, true, plain), add_bos)
    }

    fn encode_fragments(&self, fragments: Vec<Fragment<'_>>, add_bos: bool) -> Vec<u32> {
        let mut out = Vec::new();
        if add_bos {
            out.extend(self.vocab.bos);
        }
        match &self.model {
            Model::Spm => {
                // The space prefix goes on text at the start or right after a special token.
                let mut after_special = true;
                let mut buf = String::new();
                for f in fragments {
                    match f {
                        Fragment::Text(t) => {
                            buf.clear();
                            if self.vocab.add_space_prefix && after_special {
                                buf.push(' ');
                            }
                            buf.push_str(t);
                            let escaped = buf.replace(' ', "\u{2581}");
                            spm::tokenize(&self.vocab, &escaped, &mut out);
                            after_special = false;
                        }
                        Fragment::Token(id) => {
                            out.push(id);
                            after_special = true;
                        }
                    }
                }
            }
            Model::Bpe(bpe) => {
                for f in fragments {
                    match f {
                        Fragment::Text(t) => bpe.tokenize(&self.vocab, t, &mut out),
                        Fragment::Token(id) => out.push(id),
                    }
                }
            }
        }
        out
    }

    /// The bytes token `id` stands for: llama.cpp `token_to_piece(id, special = false)`.
    /// CONTROL and UNKNOWN tokens (BOS, `<|im_end|>`, ...) give nothing, as do UNUSED ones
    /// and out-of-range ids; BYTE tokens give their byte; a piece may be part of a UTF-8
    /// sequence.
    pub fn token_bytes(&self, id: u32) -> &[u8] {
        self.token_piece(id, false)
    }

    /// `token_to_piece` with a choice of `special`: with `true`, CONTROL and UNKNOWN tokens
    /// render as their text (for showing a prompt as the model sees it).
    pub fn token_piece(&self, id: u32, special: bool) -> &[u8] {
        if !special && self.vocab.attr(id) & (attr::UNKNOWN | attr::CONTROL) != 0 {
            return &[];
        }
        self.pieces.get(id)
    }

    /// llama.cpp `llama_detokenize(ids, remove_special = false, unparse_special = false)`:
    /// the pieces of [`Tokenizer::token_bytes`] joined, without the space an SPM vocabulary
    /// put before the first token (only when that token is not BOS, as in llama.cpp), and with `clean_spaces` applied where the vocabulary
    /// asks for it (gpt-2, llama3: `" ,"` → `","` and the like). Invalid UTF-8 becomes U+FFFD.
    pub fn decode(&self, ids: &[u32]) -> String {
        self.detokenize(ids, false, false)
    }

    /// llama.cpp `llama_detokenize` with its two switches: `remove_special` drops a leading
    /// BOS / trailing EOS that the vocabulary adds itself; `unparse_special` renders CONTROL
    /// tokens as their text.
    pub fn detokenize(&self, ids: &[u32], remove_special: bool, unparse_special: bool) -> String {
        match String::from_utf8(self.detokenize_bytes(ids, remove_special, unparse_special)) {
            Ok(s) => s,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        }
    }

    /// [`Tokenizer::detokenize`] before the lossy UTF-8 conversion: exactly llama.cpp's bytes.
    pub fn detokenize_bytes(&self, ids: &[u32], remove_special: bool, unparse_special: bool) -> Vec<u8> {
        decode::detokenize(&self.vocab, &self.pieces, ids, remove_special, unparse_special)
    }

    /// The vocabulary string of `id` (`▁Hello`, `Ġworld`, `<0x0A>`, `<|im_end|>`).
    pub fn token_text(&self, id: u32) -> Option<&str> {
        self.vocab.texts.get(id as usize).map(String::as_str)
    }

    /// The id whose vocabulary string is exactly `text`.
    pub fn token_id(&self, text: &str) -> Option<u32> {
        self.vocab.id(text)
    }

    pub fn n_vocab(&self) -> usize {
        self.vocab.n_tokens()
    }

    pub fn bos_id(&self) -> Option<u32> {
        self.vocab.bos
    }

    pub fn eos_id(&self) -> Option<u32> {
        self.vocab.eos
    }

    pub fn unk_id(&self) -> Option<u32> {
        self.vocab.unk
    }

    /// Whether the model wants BOS: `tokenizer.ggml.add_bos_token`, else llama.cpp's default
    /// (true for SPM and for the llama3/tekken/chameleon pre-tokenizers, false for other BPE).
    pub fn add_bos_default(&self) -> bool {
        self.vocab.add_bos && self.vocab.bos.is_some()
    }

    /// llama.cpp `llama_vocab_is_eog`: EOS, EOT, EOM, the FIM pad/repo/sep tokens, and tokens
    /// whose text is one llama.cpp treats as ending a turn (`<|eot_id|>`, `<|im_end|>`,
    /// `<|end|>`, `<|endoftext|>`, `<end_of_turn>`, ...). llama.cpp forces those tokens to
    /// CONTROL whatever their type in the file, and so does this tokenizer.
    pub fn is_end_of_generation(&self, id: u32) -> bool {
        self.vocab.eog.contains(&id)
    }

    /// Whether `id` is a CONTROL token (after llama.cpp's overrides).
    pub fn is_control(&self, id: u32) -> bool {
        self.vocab.attr(id) & attr::CONTROL != 0
    }
}
