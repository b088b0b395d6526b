//! Model hyper-parameters: read from GGUF metadata once, here, into a typed [`Config`] that
//! the rest of the code uses. Nothing else looks at metadata keys.

use hearth_gguf::{GgufIndex, Value};

use crate::ModelError;

/// The architectures the forward pass implements. Mistral, TinyLlama and SmolLM2 are all
/// written as `llama` in GGUF.
const SUPPORTED_ARCHITECTURES: &[&str] = &["llama"];

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub architecture: String,
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
}

#[derive(Debug, Clone, PartialEq)]
pub struct RopeConfig {
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
        if !SUPPORTED_ARCHITECTURES.contains(&arch) {
            return Err(ModelError::UnsupportedArchitecture(arch.to_string()));
        }
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
        // llama.cpp refuses partial rotation for `llama` ("invalid n_rot"); so do we, rather
        // than run a model it would not.
        if n_rot != head_dim {
            return Err(bad(&m.key("rope.dimension_count"), n_rot, "must equal the head size for llama models"));
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

        Ok(Config {
            architecture: arch.to_string(),
            dim,
            n_layers,
            n_heads,
            n_kv_heads,
            head_dim,
            ffn_dim,
            vocab_size,
            max_context,
            norm_eps,
            rope: RopeConfig { freq_base, n_rot, freq_scale, llama3 },
        })
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
