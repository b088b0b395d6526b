//! Models of real shapes with seeded random weights, for speed tests without a 4 GB
//! download (`hearth bench --synthetic`). The model is described by a real GGUF header and
//! its tensor bytes are generated on demand by a [`ReadAt`], so it goes through the one load
//! path like any file, and never sits in host memory whole.

use std::str::FromStr;

use hearth_gguf::{parse_index, write_header, GgufIndex, Header, Parse, ReadAt, TensorSpec, TensorType, Value};

use crate::ModelError;

/// Shapes of real models, and a tiny one for tests and quick checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyntheticShape {
    Llama2_7b,
    Llama3_8b,
    SmolLM2_135m,
    /// dim 256 (one K-quant super-block per row), 4 layers, GQA 2:1, head_dim 64.
    Tiny,
}

/// The weight formats of a synthetic model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuantMix {
    /// Every matrix in one format.
    Uniform(TensorType),
    /// llama.cpp's Q4_K_M (`llama_tensor_get_type`): Q4_K, except Q6_K for `attn_v` and
    /// `ffn_down` in the layers `use_more_bits` picks (the first and last eighth, and every
    /// third between) and for the output matrix.
    Q4KM,
}

impl QuantMix {
    /// `--quant` names: a format (`Q4_0`, …) or `Q4_K_M`.
    pub fn parse(name: &str, formats: &[TensorType]) -> Option<QuantMix> {
        if name.eq_ignore_ascii_case("Q4_K_M") {
            return Some(QuantMix::Q4KM);
        }
        formats.iter().copied().find(|t| t.name().eq_ignore_ascii_case(name)).map(QuantMix::Uniform)
    }

    /// The format of matrix `name` (its suffix after `blk.N.`) in layer `layer` of `layers`.
    fn format(self, name: &str, layer: u64, layers: u64) -> TensorType {
        match self {
            QuantMix::Uniform(ty) => ty,
            QuantMix::Q4KM => {
                let more_bits = layer < layers / 8 || layer >= 7 * layers / 8 || (layer - layers / 8) % 3 == 2;
                match name {
                    "output.weight" => TensorType::Q6_K,
                    "attn_v.weight" | "ffn_down.weight" if more_bits => TensorType::Q6_K,
                    _ => TensorType::Q4_K,
                }
            }
        }
    }

    /// The smallest block any of its formats has (rows must be whole blocks of each).
    fn block_size(self) -> u64 {
        match self {
            QuantMix::Uniform(ty) => ty.block_size(),
            QuantMix::Q4KM => TensorType::Q4_K.block_size(),
        }
    }
}

impl std::fmt::Display for QuantMix {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self {
            QuantMix::Uniform(ty) => write!(f, "{ty}"),
            QuantMix::Q4KM => f.write_str("Q4_K_M"),
        }
    }
}

struct Dims {
    dim: u64,
    layers: u64,
    heads: u64,
    kv_heads: u64,
    ffn: u64,
    vocab: u64,
    context: u64,
    rope_base: f32,
    tied: bool,
}

impl SyntheticShape {
    pub const NAMES: &'static [&'static str] = &["llama2-7b", "llama3-8b", "smollm2-135m", "tiny"];

    pub fn name(self) -> &'static str {
        match self {
            SyntheticShape::Llama2_7b => "llama2-7b",
            SyntheticShape::Llama3_8b => "llama3-8b",
            SyntheticShape::SmolLM2_135m => "smollm2-135m",
            SyntheticShape::Tiny => "tiny",
        }
    }

    fn dims(self) -> Dims {
        match self {
            SyntheticShape::Llama2_7b => Dims {
                dim: 4096,
                layers: 32,
                heads: 32,
                kv_heads: 32,
                ffn: 11008,
                vocab: 32000,
                context: 4096,
                rope_base: 10_000.0,
                tied: false,
            },
            SyntheticShape::Llama3_8b => Dims {
                dim: 4096,
                layers: 32,
                heads: 32,
                kv_heads: 8,
                ffn: 14336,
                vocab: 128_256,
                context: 8192,
                rope_base: 500_000.0,
                tied: false,
            },
            SyntheticShape::SmolLM2_135m => Dims {
                dim: 576,
                layers: 30,
                heads: 9,
                kv_heads: 3,
                ffn: 1536,
                vocab: 49152,
                context: 8192,
                rope_base: 100_000.0,
                tied: true,
            },
            SyntheticShape::Tiny => Dims {
                dim: 256,
                layers: 4,
                heads: 4,
                kv_heads: 2,
                ffn: 768,
                vocab: 1024,
                context: 512,
                rope_base: 10_000.0,
                tied: false,
            },
        }
    }
}

impl FromStr for SyntheticShape {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "llama2-7b" => Ok(SyntheticShape::Llama2_7b),
            "llama3-8b" => Ok(SyntheticShape::Llama3_8b),
            "smollm2-135m" => Ok(SyntheticShape::SmolLM2_135m),
            "tiny" => Ok(SyntheticShape::Tiny),
            _ => Err(format!("unknown synthetic model {s:?}; one of {}", SyntheticShape::NAMES.join(", "))),
        }
    }
}

/// A synthetic model: its index, and its bytes on demand.
pub struct SyntheticModel {
    header: Header,
    index: GgufIndex,
    /// Per tensor: (absolute offset, length, type, is a norm).
    regions: Vec<(u64, u64, TensorType, bool)>,
    seed: u64,
}

impl SyntheticModel {
    /// Weight matrices in the formats of `quant`; norms in F32 (ones).
    pub fn new(shape: SyntheticShape, quant: QuantMix, seed: u64) -> Result<Self, ModelError> {
        let d = shape.dims();
        let block = quant.block_size();
        if !d.dim.is_multiple_of(block) {
            return Err(ModelError::Unsupported(format!(
                "{quant} needs rows that are a multiple of {block}; this shape has {}",
                d.dim
            )));
        }
        let hd = d.dim / d.heads;
        let meta: Vec<(&str, Value)> = vec![
            ("general.architecture", Value::String("llama".into())),
            ("general.name", Value::String(format!("synthetic {shape:?} {quant}"))),
            ("llama.embedding_length", Value::U32(d.dim as u32)),
            ("llama.block_count", Value::U32(d.layers as u32)),
            ("llama.attention.head_count", Value::U32(d.heads as u32)),
            ("llama.attention.head_count_kv", Value::U32(d.kv_heads as u32)),
            ("llama.feed_forward_length", Value::U32(d.ffn as u32)),
            ("llama.vocab_size", Value::U32(d.vocab as u32)),
            ("llama.context_length", Value::U32(d.context as u32)),
            ("llama.rope.freq_base", Value::F32(d.rope_base)),
            ("llama.attention.layer_norm_rms_epsilon", Value::F32(1e-5)),
        ];
        let m = |name: String, cols: u64, rows: u64| {
            let (layer, short) = match name.strip_prefix("blk.").and_then(|r| r.split_once('.')) {
                Some((i, short)) => (i.parse().unwrap_or(0), short.to_string()),
                None => (0, name.clone()),
            };
            TensorSpec { dims: vec![cols, rows], ty: quant.format(&short, layer, d.layers), name }
        };
        let v = |name: String, n: u64| TensorSpec { name, dims: vec![n], ty: TensorType::F32 };
        let mut specs = vec![m("token_embd.weight".into(), d.dim, d.vocab)];
        for i in 0..d.layers {
            specs.push(v(format!("blk.{i}.attn_norm.weight"), d.dim));
            specs.push(m(format!("blk.{i}.attn_q.weight"), d.dim, d.heads * hd));
            specs.push(m(format!("blk.{i}.attn_k.weight"), d.dim, d.kv_heads * hd));
            specs.push(m(format!("blk.{i}.attn_v.weight"), d.dim, d.kv_heads * hd));
            specs.push(m(format!("blk.{i}.attn_output.weight"), d.heads * hd, d.dim));
            specs.push(v(format!("blk.{i}.ffn_norm.weight"), d.dim));
            specs.push(m(format!("blk.{i}.ffn_gate.weight"), d.dim, d.ffn));
            specs.push(m(format!("blk.{i}.ffn_up.weight"), d.dim, d.ffn));
            specs.push(m(format!("blk.{i}.ffn_down.weight"), d.ffn, d.dim));
        }
        specs.push(v("output_norm.weight".into(), d.dim));
        if !d.tied {
            specs.push(m("output.weight".into(), d.dim, d.vocab));
        }
        if !d.ffn.is_multiple_of(block) {
            return Err(ModelError::Unsupported(format!("{quant} cannot hold rows of {}", d.ffn)));
        }
        let header = write_header(&meta, &specs);
        let index = match parse_index(&header.bytes, Some(header.file_len))? {
            Parse::Complete(index) => index,
            Parse::NeedMore { .. } => {
                return Err(ModelError::Unsupported("internal: synthetic header incomplete".into()))
            }
        };
        let regions =
            specs.iter().zip(&header.tensors).map(|(s, &(off, len))| (off, len, s.ty, s.dims.len() == 1)).collect();
        Ok(SyntheticModel { header, index, regions, seed })
    }

    pub fn index(&self) -> &GgufIndex {
        &self.index
    }
}

impl ReadAt for SyntheticModel {
    fn len(&self) -> u64 {
        self.header.file_len
    }

    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        let end = offset + buf.len() as u64;
        if end > self.header.file_len {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "read past the synthetic model"));
        }
        buf.fill(0);
        let hlen = self.header.bytes.len() as u64;
        if offset < hlen {
            let n = (hlen.min(end) - offset) as usize;
            buf[..n].copy_from_slice(&self.header.bytes[offset as usize..offset as usize + n]);
        }
        for (t, &(start, len, ty, norm)) in self.regions.iter().enumerate() {
            let (lo, hi) = (start.max(offset), (start + len).min(end));
            if lo >= hi {
                continue;
            }
            let bsize = ty.type_size();
            let mut block = vec![0u8; bsize as usize];
            let first = (lo - start) / bsize;
            let last = (hi - start - 1) / bsize;
            for b in first..=last {
                fill_block(&mut block, ty, norm, self.seed ^ ((t as u64) << 40) ^ b);
                let bstart = start + b * bsize;
                let (from, to) = (bstart.max(lo), (bstart + bsize).min(hi));
                buf[(from - offset) as usize..(to - offset) as usize]
                    .copy_from_slice(&block[(from - bstart) as usize..(to - bstart) as usize]);
            }
        }
        Ok(())
    }
}

/// splitmix64: a fast, well-mixed stream from a seed; enough for random weights.
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

const F16_SMALL: [u8; 2] = [0x1f, 0x15]; // f16 ≈ 0.0012: a modest scale for every format

/// One block of plausible random weights: random quant bits, small finite scales. Norms
/// are all ones so activations keep a sane size.
fn fill_block(block: &mut [u8], ty: TensorType, norm: bool, seed: u64) {
    let mut s = seed;
    for chunk in block.chunks_mut(8) {
        let r = splitmix(&mut s).to_le_bytes();
        chunk.copy_from_slice(&r[..chunk.len()]);
    }
    let set_f16 = |block: &mut [u8], at: usize| block[at..at + 2].copy_from_slice(&F16_SMALL);
    match ty {
        TensorType::F32 => {
            let v: f32 = if norm { 1.0 } else { (splitmix(&mut s) >> 40) as f32 / (1u64 << 24) as f32 * 0.04 - 0.02 };
            block.copy_from_slice(&v.to_le_bytes());
        }
        TensorType::F16 | TensorType::BF16 => {
            // sign and low mantissa random, exponent of ~2^-7: small, finite
            block[1] = (block[1] & 0x80) | if ty == TensorType::F16 { 0x20 } else { 0x3c };
        }
        TensorType::Q4_0 | TensorType::Q5_0 | TensorType::Q8_0 => set_f16(block, 0),
        TensorType::Q4_1 | TensorType::Q5_1 | TensorType::Q4_K | TensorType::Q5_K => {
            set_f16(block, 0);
            set_f16(block, 2);
        }
        TensorType::Q2_K => {
            set_f16(block, 80);
            set_f16(block, 82);
        }
        TensorType::Q3_K => set_f16(block, 108),
        TensorType::Q6_K => set_f16(block, 208),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CpuEngine, Engine, Logits, Model};

    #[test]
    fn a_synthetic_smollm2_loads_and_runs() {
        let synth = SyntheticModel::new(SyntheticShape::SmolLM2_135m, QuantMix::Uniform(TensorType::Q8_0), 7).unwrap();
        let model = Model::load(synth.index(), &synth).unwrap();
        assert_eq!((model.config.dim, model.config.n_layers, model.config.n_kv_heads), (576, 30, 3));
        let mut engine = CpuEngine::new(model, 8);
        let logits = engine.forward(&[1, 2, 3], Logits::Last).unwrap();
        assert!(logits.iter().all(|l| l.is_finite()));
        // Reads at any offset agree with a whole read.
        let mut whole = vec![0u8; 4096];
        synth.read_exact_at(synth.index().data_offset, &mut whole).unwrap();
        let mut part = vec![0u8; 1000];
        synth.read_exact_at(synth.index().data_offset + 517, &mut part).unwrap();
        assert_eq!(&whole[517..1517], &part[..]);
    }

    #[test]
    fn k_quants_need_rows_of_256() {
        assert!(SyntheticModel::new(SyntheticShape::SmolLM2_135m, QuantMix::Uniform(TensorType::Q4_K), 1).is_err());
        assert!(SyntheticModel::new(SyntheticShape::Llama2_7b, QuantMix::Uniform(TensorType::Q4_K), 1).is_ok());
    }

    /// llama.cpp's Q4_K_M layout on Llama-2-7B: Q6_K `attn_v` and `ffn_down` in 16 of the 32
    /// layers (0-3, 28-31, and 6, 9, ..., 27), Q6_K output, Q4_K everywhere else.
    #[test]
    fn q4_k_m_mixes_formats_as_llama_cpp() {
        let synth = SyntheticModel::new(SyntheticShape::Llama2_7b, QuantMix::Q4KM, 1).unwrap();
        let ty = |name: &str| synth.index().tensor(name).unwrap().ty;
        let more: Vec<u64> = (0..32).filter(|i| ty(&format!("blk.{i}.attn_v.weight")) == TensorType::Q6_K).collect();
        let want: Vec<u64> = (0..4).chain((6..28).step_by(3)).chain(28..32).collect();
        assert_eq!(more, want);
        for i in 0..32 {
            assert_eq!(ty(&format!("blk.{i}.ffn_down.weight")), ty(&format!("blk.{i}.attn_v.weight")));
            for name in ["attn_q", "attn_k", "attn_output", "ffn_gate", "ffn_up"] {
                assert_eq!(ty(&format!("blk.{i}.{name}.weight")), TensorType::Q4_K, "{name} of layer {i}");
            }
        }
        assert_eq!(ty("output.weight"), TensorType::Q6_K);
        assert_eq!(ty("token_embd.weight"), TensorType::Q4_K);
        assert_eq!(QuantMix::parse("q4_k_m", &[]), Some(QuantMix::Q4KM));
    }
}
