//! Weights as stored in the file. A matrix keeps its GGUF dtype; rows are dequantized when a
//! matmul reads them, so quantization is a property of the weight, not a copy of the model.

use std::sync::Arc;

use hearth_gguf::{dequantize, read_tensor, GgufIndex, ReadAt, TensorInfo, TensorType};

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

/// Per-layer weights. Shapes are (rows × cols) as in [`Matrix`].
#[derive(Debug)]
pub struct LayerWeights {
    pub attn_norm: Vec<f32>, // (dim)
    pub wq: Matrix,          // (n_heads · head_dim) × dim
    pub wk: Matrix,          // (n_kv_heads · head_dim) × dim
    pub wv: Matrix,          // (n_kv_heads · head_dim) × dim
    pub wo: Matrix,          // dim × (n_heads · head_dim)
    pub ffn_norm: Vec<f32>,  // (dim)
    pub w_gate: Matrix,      // ffn_dim × dim
    pub w_up: Matrix,        // ffn_dim × dim
    pub w_down: Matrix,      // dim × ffn_dim
}

#[derive(Debug)]
pub struct Weights {
    pub token_embd: Matrix, // vocab × dim: row t is token t's embedding
    pub layers: Vec<LayerWeights>,
    pub output_norm: Vec<f32>, // (dim)
    pub output: Matrix,        // vocab × dim; the embedding itself when tied (SmolLM2)
    /// θ divisors per rotated pair (n_rot / 2), from `rope_freqs.weight` (Llama 3.1+) or
    /// computed from llama3 scaling metadata; `None` means all ones.
    pub rope_freq_factors: Option<Vec<f32>>,
}

struct Loader<'a, R: ?Sized> {
    index: &'a GgufIndex,
    src: &'a R,
}

impl<R: ReadAt + ?Sized> Loader<'_, R> {
    fn info(&self, name: &str) -> Result<&TensorInfo, ModelError> {
        self.index.tensor(name).ok_or_else(|| ModelError::MissingTensor(name.to_string()))
    }

    fn check_shape(info: &TensorInfo, expected: &[u64]) -> Result<(), ModelError> {
        // GGUF may drop trailing 1s; compare with them removed.
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
        Ok(())
    }

    fn matrix(&self, name: &str, rows: usize, cols: usize) -> Result<Matrix, ModelError> {
        let info = self.info(name)?;
        Self::check_shape(info, &[cols as u64, rows as u64])?;
        // Matrix::new dequantizes one row: an unsupported dtype fails here, at load.
        Matrix::new(name, info.ty, rows, cols, read_tensor(self.src, info)?.into())
    }

    fn vector(&self, name: &str, len: usize) -> Result<Vec<f32>, ModelError> {
        let info = self.info(name)?;
        Self::check_shape(info, &[len as u64])?;
        let bytes = read_tensor(self.src, info)?;
        let mut out = vec![0f32; len];
        dequantize(info.ty, &bytes, &mut out)
            .map_err(|_| ModelError::UnsupportedTensorType { tensor: name.to_string(), ty: info.ty })?;
        Ok(out)
    }
}

impl Weights {
    /// Reads every tensor the config calls for, one at a time, checking names and shapes.
    pub fn load<R: ReadAt + ?Sized>(config: &Config, index: &GgufIndex, src: &R) -> Result<Self, ModelError> {
        let ld = Loader { index, src };
        let (dim, q, kv, ffn) = (config.dim, config.q_dim(), config.kv_dim(), config.ffn_dim);

        let token_embd = ld.matrix("token_embd.weight", config.vocab_size, dim)?;
        let mut layers = Vec::with_capacity(config.n_layers);
        for i in 0..config.n_layers {
            let name = |s: &str| format!("blk.{i}.{s}.weight");
            layers.push(LayerWeights {
                attn_norm: ld.vector(&name("attn_norm"), dim)?,
                wq: ld.matrix(&name("attn_q"), q, dim)?,
                wk: ld.matrix(&name("attn_k"), kv, dim)?,
                wv: ld.matrix(&name("attn_v"), kv, dim)?,
                wo: ld.matrix(&name("attn_output"), dim, q)?,
                ffn_norm: ld.vector(&name("ffn_norm"), dim)?,
                w_gate: ld.matrix(&name("ffn_gate"), ffn, dim)?,
                w_up: ld.matrix(&name("ffn_up"), ffn, dim)?,
                w_down: ld.matrix(&name("ffn_down"), dim, ffn)?,
            });
        }
        let output_norm = ld.vector("output_norm.weight", dim)?;
        let output = match index.tensor("output.weight") {
            Some(_) => ld.matrix("output.weight", config.vocab_size, dim)?,
            None => token_embd.clone(), // tied embeddings share the bytes (Arc)
        };
        let rope = &config.rope;
        let rope_freq_factors = match index.tensor("rope_freqs.weight") {
            Some(_) => Some(ld.vector("rope_freqs.weight", rope.n_rot / 2)?),
            None => rope.llama3.map(|s| s.freq_factors(rope.freq_base, rope.n_rot)),
        };
        Ok(Weights { token_embd, layers, output_norm, output, rope_freq_factors })
    }
}
