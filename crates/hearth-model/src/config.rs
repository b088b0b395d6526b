//! Model hyper-parameters: read from GGUF metadata once, here, into a typed [`Config`] that
//! the rest of the code uses. Nothing else looks at metadata keys.

use hearth_gguf::{GgufIndex, Value};

use crate::ops::{Activation, RopeMode};
use crate::ModelError;

/// The architectures the forward pass implements (`general.architecture`). Mistral,
/// TinyLlama and SmolLM2 are all written as `llama` in GGUF.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// Llama 2 and 3, TinyLlama, SmolLM2, Mistral: the baseline every other is a delta from.
    Llama,
    /// Qwen2, Qwen2.5, DeepSeek-R1-Distill-Qwen: Q/K/V biases, NeoX RoPE.
    Qwen2,
    /// Qwen3: per-head Q and K RMSNorm before RoPE, NeoX RoPE, head size of its own.
    Qwen3,
    /// SmolLM3: Llama, but every fourth layer skips RoPE.
    SmolLm3,
    /// Gemma 3: embeddings × √dim, per-head Q/K norms, post-attention and post-FFN norms,
    /// GELU-gated FFN, interleaved sliding-window attention with its own RoPE base.
    Gemma3,
}

impl Family {
    pub const ALL: [Family; 5] = [Family::Llama, Family::Qwen2, Family::Qwen3, Family::SmolLm3, Family::Gemma3];

    /// The name GGUF gives it.
    pub fn gguf_name(self) -> &'static str {
        match self {
            Family::Llama => "llama",
            Family::Qwen2 => "qwen2",
            Family::Qwen3 => "qwen3",
            Family::SmolLm3 => "smollm3",
            Family::Gemma3 => "gemma3",
        }
    }

    fn from_gguf_name(name: &str) -> Option<Family> {
        Family::ALL.into_iter().find(|f| f.gguf_name() == name)
    }

    /// How RoPE pairs a head's elements (llama.cpp's `llama_model_rope_type`).
    pub fn rope_mode(self) -> RopeMode {
        match self {
            Family::Llama | Family::SmolLm3 => RopeMode::Interleaved,
            Family::Qwen2 | Family::Qwen3 | Family::Gemma3 => RopeMode::Neox,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub architecture: String,
    /// What the forward pass switches on (see [`Family`]).
    pub family: Family,
    /// Model width (`embedding_length`).
    pub dim: usize,
    pub n_layers: usize,
    pub n_heads: usize,
    /// Key/value heads; `n_heads / n_kv_heads` query heads share one (GQA). Equal for MHA.
    pub n_kv_heads: usize,
    pub head_dim: usize,
    /// Hidden width of the SwiGLU feed-forward network.
    pub ffn_dim: usize,
    pub vocab_size: usize,
    /// Context the model was trained for (`context_length`).
    pub max_context: usize,
    pub norm_eps: f32,
    pub rope: RopeConfig,
    /// Each query and key head is RMS-normalised with its own weights (`attn_q_norm`,
    /// `attn_k_norm`, head_dim long) before RoPE: Qwen3.
    pub qk_norm: bool,
    /// Layer `l` skips RoPE when `(l + 1) % n == 0` (SmolLM3, n = 4, as llama.cpp fixes it);
    /// `None`: every layer rotates.
    pub no_rope_every: Option<usize>,
    /// Token embeddings are multiplied by this before the first layer (Gemma 3: √dim).
    pub embed_scale: Option<f32>,
    /// The attention block's and the FFN's outputs are RMS-normalised, each with its own
    /// weights (`post_attention_norm`, `post_ffw_norm`), before they join the residual stream
    /// (Gemma 3).
    pub post_norms: bool,
    /// The FFN gate's activation: SiLU (SwiGLU) or GELU (GeGLU, Gemma 3).
    pub ffn_act: Activation,
    /// Attention scores are q·k times this: 1/√head_dim.
    pub attn_scale: f32,
    /// Sliding-window attention on some layers (Gemma 3), `None` for none.
    pub sliding: Option<Sliding>,
}

/// Interleaved sliding-window attention: a query at position i of a sliding layer sees only
/// positions j with i − j < `window` (llama.cpp's `LLAMA_SWA_TYPE_STANDARD`); those layers
/// rotate with their own RoPE base, unscaled.
#[derive(Debug, Clone, PartialEq)]
pub struct Sliding {
    pub window: usize,
    /// Per layer: whether it slides.
    pub layers: Vec<bool>,
    /// RoPE θ base of sliding layers (`rope.freq_base_swa`, 10 000 when absent).
    pub freq_base: f32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RopeConfig {
    /// Which elements of a head are rotated together.
    pub mode: RopeMode,
    /// θ base: pair i of a head rotates by pos · base^(-2i/n_rot).
    pub freq_base: f32,
    /// Leading dimensions of each head that are rotated (`rope.dimension_count`).
    pub n_rot: usize,
    /// Linear position scaling (`rope.scaling.factor` with type linear): θ is multiplied by
    /// this (1/factor).
    pub freq_scale: f32,
    /// Llama 3 style scaling as parameters, when given as metadata. A GGUF converted by
    /// llama.cpp instead ships the resulting per-pair factors as tensor `rope_freqs.weight`,
    /// which the weights loader reads; either way the forward pass divides θ_i by a factor.
    pub llama3: Option<Llama3Scaling>,
}

/// Meta's Llama 3.1 RoPE frequency scaling parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Llama3Scaling {
    pub factor: f32,
    pub low_freq_factor: f32,
    pub high_freq_factor: f32,
    pub original_context: f32,
}

impl Llama3Scaling {
    /// Per-pair divisors for θ_i (`n_rot / 2` of them), following Meta's reference
    /// `apply_scaling`: high frequencies unchanged, low frequencies divided by `factor`, a
    /// smooth blend between.
    pub fn freq_factors(&self, freq_base: f32, n_rot: usize) -> Vec<f32> {
        let low_freq_wavelen = self.original_context / self.low_freq_factor;
        let high_freq_wavelen = self.original_context / self.high_freq_factor;
        (0..n_rot / 2)
            .map(|i| {
                let freq = freq_base.powf(-2.0 * i as f32 / n_rot as f32);
                let wavelen = 2.0 * std::f32::consts::PI / freq;
                if wavelen < high_freq_wavelen {
                    1.0
                } else if wavelen > low_freq_wavelen {
                    self.factor
                } else {
                    let smooth = (self.original_context / wavelen - self.low_freq_factor)
                        / (self.high_freq_factor - self.low_freq_factor);
                    // scaled freq = (1 - smooth) · freq / factor + smooth · freq
                    1.0 / ((1.0 - smooth) / self.factor + smooth)
                }
            })
            .collect()
    }
}

/// Reads `{arch}.*` keys and names the key in every error.
struct Meta<'a> {
    index: &'a GgufIndex,
    arch: &'a str,
}

impl Meta<'_> {
    fn key(&self, suffix: &str) -> String {
        format!("{}.{suffix}", self.arch)
    }

    fn opt(&self, suffix: &str) -> Option<&Value> {
        self.index.get(&self.key(suffix))
    }

    fn usize(&self, suffix: &str) -> Result<usize, ModelError> {
        let key = self.key(suffix);
        let v = self.index.get_u64(&key)?;
        positive(&key, v)
    }

    fn opt_usize(&self, suffix: &str) -> Result<Option<usize>, ModelError> {
        match self.opt(suffix) {
            None => Ok(None),
            Some(_) => self.usize(suffix).map(Some),
        }
    }

    fn opt_f32(&self, suffix: &str) -> Result<Option<f32>, ModelError> {
        match self.opt(suffix) {
            None => Ok(None),
            Some(_) => Ok(Some(self.index.get_f32(&self.key(suffix))?)),
        }
    }
}

/// Which of `n_layers` layers slide, as llama.cpp reads it: `attention.sliding_window_pattern`
/// as one bool per layer, or as n (every n-th layer is global: layer l slides unless
/// l % n == n − 1), 6 when the key is absent (Gemma 3).
fn sliding_layers(m: &Meta, n_layers: usize) -> Result<Vec<bool>, ModelError> {
    let key = m.key("attention.sliding_window_pattern");
    let n = match m.opt("attention.sliding_window_pattern") {
        None => 6,
        Some(Value::Array(_, items)) => {
            let flags: Option<Vec<bool>> = items.iter().map(Value::as_bool).collect();
            return match flags {
                Some(flags) if flags.len() == n_layers => Ok(flags),
                _ => Err(bad(&key, format!("{} values", items.len()), "must be one bool per layer")),
            };
        }
        Some(v) => match v.as_u64() {
            Some(n) if n <= MAX_DIM => n as usize,
            _ => return Err(bad(&key, format!("{v:?}"), "must be a layer count or one bool per layer")),
        },
    };
    Ok((0..n_layers).map(|l| n == 0 || l % n < n - 1).collect())
}

/// Dimensions beyond this are not a real model; refusing them keeps `a * b` from overflowing
/// a u64 (sizes are computed in u64 on every target: usize is 32 bits on wasm32).
const MAX_DIM: u64 = 1 << 24;

fn positive(key: &str, v: u64) -> Result<usize, ModelError> {
    if v == 0 || v > MAX_DIM {
        return Err(ModelError::BadConfig {
            key: key.to_string(),
            value: v.to_string(),
            why: format!("must be between 1 and {MAX_DIM}"),
        });
    }
    Ok(v as usize)
}

fn bad(key: &str, value: impl ToString, why: &str) -> ModelError {
    ModelError::BadConfig { key: key.to_string(), value: value.to_string(), why: why.to_string() }
}

impl Config {
    pub fn from_gguf(index: &GgufIndex) -> Result<Self, ModelError> {
        let arch = index.architecture()?;
        let family =
            Family::from_gguf_name(arch).ok_or_else(|| ModelError::UnsupportedArchitecture(arch.to_string()))?;
        let m = Meta { index, arch };

        if m.opt_usize("expert_count").unwrap_or(None).unwrap_or(0) > 0 {
            return Err(ModelError::Unsupported("mixture-of-experts models (Mixtral) are not supported yet".into()));
        }

        let dim = m.usize("embedding_length")?;
        let n_layers = m.usize("block_count")?;
        let n_heads = m.usize("attention.head_count")?;
        let n_kv_heads = m.opt_usize("attention.head_count_kv")?.unwrap_or(n_heads);
        if n_heads % n_kv_heads != 0 {
            return Err(bad(&m.key("attention.head_count_kv"), n_kv_heads, "must divide attention.head_count"));
        }
        let head_dim = match m.opt_usize("attention.key_length")? {
            Some(k) => k,
            None if dim % n_heads == 0 => dim / n_heads,
            None => return Err(bad(&m.key("attention.head_count"), n_heads, "must divide embedding_length")),
        };
        // q_dim (and kv_dim, which divides it) must be a dimension too, checked in u64, so
        // that on wasm32 (32-bit usize) q_dim() and kv_dim() cannot wrap.
        if n_heads as u64 * head_dim as u64 > MAX_DIM {
            let why = format!("times the head size {head_dim} must be at most {MAX_DIM}");
            return Err(bad(&m.key("attention.head_count"), n_heads, &why));
        }
        if let Some(v) = m.opt_usize("attention.value_length")? {
            if v != head_dim {
                return Err(bad(&m.key("attention.value_length"), v, "must equal the key length"));
            }
        }
        let ffn_dim = m.usize("feed_forward_length")?;
        let vocab_size = match m.opt_usize("vocab_size")? {
            Some(v) => v,
            None => positive("tokenizer.ggml.tokens", index.get_array("tokenizer.ggml.tokens")?.len() as u64)?,
        };
        let max_context = m.usize("context_length")?;
        let norm_eps = m.opt_f32("attention.layer_norm_rms_epsilon")?.unwrap_or(1e-5);
        if !(norm_eps.is_finite() && norm_eps > 0.0) {
            return Err(bad(&m.key("attention.layer_norm_rms_epsilon"), norm_eps, "must be a positive number"));
        }

        let n_rot = m.opt_usize("rope.dimension_count")?.unwrap_or(head_dim);
        // llama.cpp refuses partial rotation for every family here ("invalid n_rot", or an
        // assertion in its graph); so do we, rather than run a model it would not.
        if n_rot != head_dim {
            let why = format!("must equal the head size for {arch} models");
            return Err(bad(&m.key("rope.dimension_count"), n_rot, &why));
        }
        let freq_base = m.opt_f32("rope.freq_base")?.unwrap_or(10_000.0);
        if !(freq_base.is_finite() && freq_base > 1.0) {
            return Err(bad(&m.key("rope.freq_base"), freq_base, "must be a number above 1"));
        }
        // As llama.cpp (llama-model.cpp, load_hparams): a missing rope.scaling.type means
        // linear, and the factor may also come under the older key rope.scale_linear. So a
        // file with only a factor (older conversions) is linearly scaled, not left unscaled.
        let scaling_type = match m.opt("rope.scaling.type") {
            Some(v) => v.as_str().unwrap_or("").to_string(),
            None => "linear".to_string(),
        };
        let factor = match m.opt_f32("rope.scaling.factor")? {
            Some(f) => Some(f),
            None => m.opt_f32("rope.scale_linear")?,
        };
        let mut freq_scale = 1.0;
        let mut llama3 = None;
        match (scaling_type.as_str(), factor) {
            // linear without a factor scales by 1 in llama.cpp
            ("none", _) | ("", None) | ("linear", None) => {}
            (_, Some(f)) if f == 0.0 || f == 1.0 => {}
            ("linear", Some(f)) if f.is_finite() && f > 0.0 => freq_scale = 1.0 / f,
            ("llama3", Some(f)) if f.is_finite() && f > 0.0 => {
                llama3 = Some(Llama3Scaling {
                    factor: f,
                    low_freq_factor: m.opt_f32("rope.scaling.low_freq_factor")?.unwrap_or(1.0),
                    high_freq_factor: m.opt_f32("rope.scaling.high_freq_factor")?.unwrap_or(4.0),
                    original_context: m.opt_usize("rope.scaling.original_context_length")?.unwrap_or(8192) as f32,
                })
            }
            (other, _) => {
                return Err(ModelError::Unsupported(format!(
                    "RoPE scaling {other:?} with factor {factor:?} (supported: none, linear, llama3)"
                )))
            }
        }

        let gemma = family == Family::Gemma3;
        let sliding = match m.opt_usize("attention.sliding_window")? {
            Some(window) if gemma => {
                let layers = sliding_layers(&m, n_layers)?;
                let freq_base = m.opt_f32("rope.freq_base_swa")?.unwrap_or(10_000.0);
                if !(freq_base.is_finite() && freq_base > 1.0) {
                    return Err(bad(&m.key("rope.freq_base_swa"), freq_base, "must be a number above 1"));
                }
                Some(Sliding { window, layers, freq_base })
            }
            _ => None,
        };
        if let Some(cap) = m.opt_f32("final_logit_softcapping")?.filter(|&c| c != 0.0) {
            return Err(ModelError::Unsupported(format!("final logit soft-capping ({cap}) is not supported yet")));
        }
        if gemma && n_layers == 62 {
            // llama.cpp scales Gemma 3 27B's queries by 1/√(dim / heads), not 1/√head_dim.
            return Err(ModelError::Unsupported("Gemma 3 27B's query scale is not supported yet".into()));
        }

        Ok(Config {
            architecture: arch.to_string(),
            family,
            dim,
            n_layers,
            n_heads,
            n_kv_heads,
            head_dim,
            ffn_dim,
            vocab_size,
            max_context,
            norm_eps,
            rope: RopeConfig { mode: family.rope_mode(), freq_base, n_rot, freq_scale, llama3 },
            qk_norm: matches!(family, Family::Qwen3 | Family::Gemma3),
            no_rope_every: (family == Family::SmolLm3).then_some(4),
            embed_scale: gemma.then(|| (dim as f32).sqrt()),
            post_norms: gemma,
            ffn_act: if gemma { Activation::GeluTanh } else { Activation::Silu },
            attn_scale: 1.0 / (head_dim as f32).sqrt(),
            sliding,
        })
    }

    /// The attention window of layer `l`: `Some(window)` if it slides.
    pub fn window(&self, layer: usize) -> Option<usize> {
        let s = self.sliding.as_ref()?;
        s.layers.get(layer).copied().unwrap_or(false).then_some(s.window)
    }

    /// Whether layer `l` applies RoPE to its queries and keys.
    pub fn rotates(&self, layer: usize) -> bool {
        self.no_rope_every.is_none_or(|n| !(layer + 1).is_multiple_of(n))
    }

    /// Query heads per key/value head.
    pub fn gqa_group(&self) -> usize {
        self.n_heads / self.n_kv_heads
    }

    /// Width of one position's keys (or values) across all KV heads.
    pub fn kv_dim(&self) -> usize {
        self.n_kv_heads * self.head_dim
    }

    pub fn q_dim(&self) -> usize {
        self.n_heads * self.head_dim
    }
}
