//! Weights as stored in the file. A matrix keeps its GGUF dtype; rows are dequantized when a
//! matmul reads them, so quantization is a property of the weight, not a copy of the model.

use std::sync::Arc;

use hearth_gguf::{dequantize, GgufIndex, ReadAt, TensorInfo, TensorSource, TensorType};

use crate::{Config, ModelError};

/// A weight matrix of `rows` × `cols`, row-major: row `r` (one output feature) is `cols`
/// contiguous elements, i.e. ggml dims `[cols, rows]`. `y = W x` means `y[r] = row(r) · x`.
#[derive(Debug, Clone)]
pub struct Matrix {
    pub name: String,
    pub ty: TensorType,
    pub rows: usize,
    pub cols: usize,
    row_bytes: usize,
    data: Arc<[u8]>,
}

impl Matrix {
    /// A matrix over `data` in dtype `ty` (GPU tests build references this way). Checks that
    /// the bytes hold exactly `rows` rows and that the dtype can be dequantized.
    pub fn new(name: &str, ty: TensorType, rows: usize, cols: usize, data: Arc<[u8]>) -> Result<Self, ModelError> {
        let shape_err = || ModelError::BadShape {
            tensor: name.to_string(),
            expected: vec![cols as u64, rows as u64],
            found: vec![data.len() as u64],
        };
        let row_bytes = ty.bytes_for(cols as u64).ok_or_else(shape_err)? as usize;
        if rows == 0 || data.len() != rows * row_bytes {
            return Err(shape_err());
        }
        let mut probe = vec![0f32; cols];
        dequantize(ty, &data[..row_bytes], &mut probe)
            .map_err(|_| ModelError::UnsupportedTensorType { tensor: name.to_string(), ty })?;
        Ok(Matrix { name: name.to_string(), ty, rows, cols, row_bytes, data })
    }

    /// The raw bytes, rows back to back in the file's block layout.
    pub fn bytes(&self) -> &[u8] {
        &self.data
    }

    /// Dequantizes row `r` into `out` (`cols` long).
    pub fn row_into(&self, r: usize, out: &mut [f32]) {
        let bytes = &self.data[r * self.row_bytes..(r + 1) * self.row_bytes];
        // Cannot fail: the type and row length were checked when the matrix was loaded.
        let _ = dequantize(self.ty, bytes, out);
    }
}

/// Per-layer weights of any backend: `M` is how it holds a matrix, `V` a norm vector.
/// Shapes are (rows × cols) as in [`Matrix`].
#[derive(Debug)]
pub struct Layer<M, V> {
    pub attn_norm: V, // (dim)
    pub wq: M,        // (n_heads · head_dim) × dim
    pub wk: M,        // (n_kv_heads · head_dim) × dim
    pub wv: M,        // (n_kv_heads · head_dim) × dim
    /// [b_q; b_k; b_v] (q_dim + 2 kv_dim), added after the projections, when the file has
    /// any of them (Qwen2; llama.cpp reads them for every family); a missing one is zeros.
    pub qkv_bias: Option<V>,
    /// [g_q; g_k] (2 head_dim): per-head RMSNorm weights of queries and keys (Qwen3).
    pub qk_norm: Option<V>,
    pub wo: M, // dim × (n_heads · head_dim)
    /// RMSNorm weights of the attention block's output before the residual add (Gemma 3)
    pub post_attn_norm: Option<V>,
    pub ffn_norm: V, // (dim)
    pub w_gate: M,   // ffn_dim × dim
    pub w_up: M,     // ffn_dim × dim
    pub w_down: M,   // dim × ffn_dim
    /// RMSNorm weights of the FFN's output before the residual add (Gemma 3)
    pub post_ffn_norm: Option<V>,
}

/// A model's weights on any backend (every family: what one lacks is `None`).
#[derive(Debug)]
pub struct LlamaWeights<M, V> {
    pub token_embd: Arc<M>, // vocab × dim: row t is token t's embedding
    pub layers: Vec<Layer<M, V>>,
    pub output_norm: V, // (dim)
    pub output: Arc<M>, // vocab × dim; the embedding itself when tied (SmolLM2)
    /// θ divisors per rotated pair (n_rot / 2), from `rope_freqs.weight` (Llama 3.1+) or
    /// computed from llama3 scaling metadata; `None` means all ones.
    pub rope_freq_factors: Option<Vec<f32>>,
}

/// The CPU reference's weights: matrices in their file dtype, norms in f32.
pub type Weights = LlamaWeights<Matrix, Vec<f32>>;
pub type LayerWeights = Layer<Matrix, Vec<f32>>;

/// What a backend does with each weight once [`LlamaWeights::load_with`] has found it,
/// checked its shape and read its bytes. The tensor names, shapes and the reading live
/// there, once, for every backend and every source (file, buffer, browser storage).
pub trait WeightLoader {
    type Matrix;
    type Vector;
    type Error: From<ModelError>;
    /// Tensor `info`, already checked to be `rows × cols`, with its `bytes` as stored.
    fn matrix(&self, info: &TensorInfo, rows: usize, cols: usize, bytes: Vec<u8>) -> Result<Self::Matrix, Self::Error>;
    /// A norm weight, already dequantized to f32 on the host.
    fn vector(&self, name: &str, values: Vec<f32>) -> Result<Self::Vector, Self::Error>;
}

/// Tensor `name`, checked to have ggml dims `expected` (GGUF may drop trailing 1s).
pub fn checked_tensor<'i>(index: &'i GgufIndex, name: &str, expected: &[u64]) -> Result<&'i TensorInfo, ModelError> {
    let info = index.tensor(name).ok_or_else(|| ModelError::MissingTensor(name.to_string()))?;
    let trim = |d: &[u64]| {
        let mut v = d.to_vec();
        while v.len() > 1 && v.last() == Some(&1) {
            v.pop();
        }
        v
    };
    if trim(&info.dims) != trim(expected) {
        return Err(ModelError::BadShape {
            tensor: info.name.clone(),
            expected: expected.to_vec(),
            found: info.dims.clone(),
        });
    }
    Ok(info)
}

/// The first tensor of `index` that [`LlamaWeights::load_with`] would not read for `config`
/// (a bias the forward pass has no place for, a fused `attn_qkv`, a vision tower), if any.
pub fn unused_tensor<'i>(config: &Config, index: &'i GgufIndex) -> Option<&'i str> {
    let global = ["token_embd.weight", "output_norm.weight", "output.weight", "rope_freqs.weight"];
    let mut layer = vec!["attn_norm.weight", "attn_q.weight", "attn_k.weight", "attn_v.weight", "attn_q.bias"];
    layer.extend(["attn_k.bias", "attn_v.bias", "attn_output.weight", "ffn_norm.weight", "ffn_gate.weight"]);
    layer.extend(["ffn_up.weight", "ffn_down.weight"]);
    if config.qk_norm {
        layer.extend(["attn_q_norm.weight", "attn_k_norm.weight"]);
    }
    if config.post_norms {
        layer.extend(["post_attention_norm.weight", "post_ffw_norm.weight"]);
    }
    let read = |name: &str| {
        if global.contains(&name) {
            return true;
        }
        let Some((i, rest)) = name.strip_prefix("blk.").and_then(|n| n.split_once('.')) else {
            return false;
        };
        i.parse::<usize>().is_ok_and(|i| i < config.n_layers) && layer.contains(&rest)
    };
    index.tensors.iter().map(|t| t.name.as_str()).find(|name| !read(name))
}

/// Reads a 1-D tensor of `len` elements as f32.
async fn read_vector<S: TensorSource + ?Sized>(
    index: &GgufIndex,
    src: &S,
    name: &str,
    len: usize,
) -> Result<Vec<f32>, ModelError> {
    let info = checked_tensor(index, name, &[len as u64])?;
    let bytes = src.tensor_bytes(info).await?;
    let mut out = vec![0f32; len];
    dequantize(info.ty, &bytes, &mut out)
        .map_err(|_| ModelError::UnsupportedTensorType { tensor: name.to_string(), ty: info.ty })?;
    Ok(out)
}

impl<M, V> LlamaWeights<M, V> {
    /// Finds every tensor the config calls for, checks its shape, reads it from `src` and
    /// hands it to `loader`, one at a time: only one tensor's bytes are held at once.
    /// `progress(done, total)` counts tensor bytes.
    pub async fn load_with<L, S>(
        config: &Config,
        index: &GgufIndex,
        src: &S,
        loader: &L,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<Self, L::Error>
    where
        L: WeightLoader<Matrix = M, Vector = V>,
        S: TensorSource + ?Sized,
    {
        let total: u64 = index.tensors.iter().map(|t| t.n_bytes).sum();
        let mut done = 0u64;
        // A tensor the forward pass would silently skip means a model it would run wrong.
        if let Some(name) = unused_tensor(config, index) {
            return Err(ModelError::Unsupported(format!(
                "tensor {name:?} of this {} model: Hearth does not run what it is for yet",
                config.architecture
            ))
            .into());
        }
        let (dim, q, kv, ffn) = (config.dim, config.q_dim(), config.kv_dim(), config.ffn_dim);
        // A macro rather than closures: each read awaits, and async closures borrowing
        // `done` and `progress` mutably would not outlive one call.
        macro_rules! matrix {
            ($name:expr, $rows:expr, $cols:expr) => {{
                let (rows, cols) = ($rows, $cols);
                let info = checked_tensor(index, &$name, &[cols as u64, rows as u64])?;
                let bytes = src.tensor_bytes(info).await.map_err(ModelError::from)?;
                done += info.n_bytes;
                progress(done, total);
                loader.matrix(info, rows, cols, bytes)?
            }};
        }
        macro_rules! vector {
            ($name:expr, $len:expr) => {{
                let name = $name;
                let values = read_vector(index, src, &name, $len).await?;
                done += index.tensor(&name).map_or(0, |t| t.n_bytes);
                progress(done, total);
                loader.vector(&name, values)?
            }};
        }
        // Vectors stacked into one, `None` when the file has none of them (a missing part
        // is zeros).
        macro_rules! stacked {
            ($label:expr, $parts:expr) => {{
                let parts: Vec<(String, usize)> = $parts;
                if parts.iter().any(|(name, _)| index.tensor(name).is_some()) {
                    let mut values = Vec::new();
                    for (name, len) in parts {
                        match index.tensor(&name) {
                            Some(info) => {
                                values.extend(read_vector(index, src, &name, len).await?);
                                done += info.n_bytes;
                                progress(done, total);
                            }
                            None => values.resize(values.len() + len, 0.0),
                        }
                    }
                    Some(loader.vector(&$label, values)?)
                } else {
                    None
                }
            }};
        }

        let token_embd = Arc::new(matrix!("token_embd.weight", config.vocab_size, dim));
        let mut layers = Vec::with_capacity(config.n_layers);
        for i in 0..config.n_layers {
            let name = |s: &str| format!("blk.{i}.{s}.weight");
            let bias = |s: &str| format!("blk.{i}.{s}.bias");
            let hd = config.head_dim;
            layers.push(Layer {
                attn_norm: vector!(name("attn_norm"), dim),
                wq: matrix!(name("attn_q"), q, dim),
                wk: matrix!(name("attn_k"), kv, dim),
                wv: matrix!(name("attn_v"), kv, dim),
                qkv_bias: stacked!(
                    bias("attn_qkv"),
                    vec![(bias("attn_q"), q), (bias("attn_k"), kv), (bias("attn_v"), kv)]
                ),
                qk_norm: match config.qk_norm {
                    true => {
                        let parts = vec![(name("attn_q_norm"), hd), (name("attn_k_norm"), hd)];
                        if let Some((missing, _)) = parts.iter().find(|(n, _)| index.tensor(n).is_none()) {
                            return Err(ModelError::MissingTensor(missing.clone()).into());
                        }
                        stacked!(format!("blk.{i}.attn_qk_norm"), parts)
                    }
                    false => None,
                },
                wo: matrix!(name("attn_output"), dim, q),
                post_attn_norm: match config.post_norms {
                    true => Some(vector!(name("post_attention_norm"), dim)),
                    false => None,
                },
                ffn_norm: vector!(name("ffn_norm"), dim),
                w_gate: matrix!(name("ffn_gate"), ffn, dim),
                w_up: matrix!(name("ffn_up"), ffn, dim),
                w_down: matrix!(name("ffn_down"), dim, ffn),
                post_ffn_norm: match config.post_norms {
                    true => Some(vector!(name("post_ffw_norm"), dim)),
                    false => None,
                },
            });
        }
        let output_norm = vector!("output_norm.weight".to_string(), dim);
        let output = match index.tensor("output.weight") {
            Some(_) => Arc::new(matrix!("output.weight", config.vocab_size, dim)),
            None => token_embd.clone(), // tied: the embedding's own weight
        };
        let rope = &config.rope;
        let rope_freq_factors = match index.tensor("rope_freqs.weight") {
            Some(_) => Some(read_vector(index, src, "rope_freqs.weight", rope.n_rot / 2).await?),
            None => rope.llama3.map(|s| s.freq_factors(rope.freq_base, rope.n_rot)),
        };
        progress(total, total);
        Ok(LlamaWeights { token_embd, layers, output_norm, output, rope_freq_factors })
    }
}

/// The CPU reference keeps each matrix's bytes as read.
struct CpuLoader;

impl WeightLoader for CpuLoader {
    type Matrix = Matrix;
    type Vector = Vec<f32>;
    type Error = ModelError;

    fn matrix(&self, info: &TensorInfo, rows: usize, cols: usize, bytes: Vec<u8>) -> Result<Matrix, ModelError> {
        // Matrix::new dequantizes one row: an unsupported dtype fails here, at load.
        Matrix::new(&info.name, info.ty, rows, cols, bytes.into())
    }

    fn vector(&self, _name: &str, values: Vec<f32>) -> Result<Vec<f32>, ModelError> {
        Ok(values)
    }
}

impl Weights {
    /// Reads every tensor the config calls for, one at a time, checking names and shapes.
    pub fn load<R: ReadAt + ?Sized>(config: &Config, index: &GgufIndex, src: &R) -> Result<Self, ModelError> {
        // A ReadAt's reads are ready at once: blocking on the load never waits.
        pollster::block_on(Self::load_with(config, index, src, &CpuLoader, &mut |_, _| {}))
    }
}
