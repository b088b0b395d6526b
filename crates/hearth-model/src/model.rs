//! The Llama forward pass, once, in f32: the CPU reference.

use hearth_gguf::{GgufIndex, ReadAt};

use crate::ops::{add_assign, attention, matmul, rmsnorm_rows, swiglu, Rope};
use crate::weights::Weights;
use crate::{Config, ModelError};

pub struct Model {
    pub config: Config,
    pub weights: Weights,
    rope: Rope,
}

/// Keys and values of every position seen so far, f32.
/// Layout per layer: `k[layer]` is (positions × n_kv_heads · head_dim), position-major.
pub struct KvCache {
    k: Vec<Vec<f32>>,
    v: Vec<Vec<f32>>,
    len: usize,
    capacity: usize,
    kv_dim: usize,
}

impl KvCache {
    /// Positions filled.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Most positions this cache will hold.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Forgets positions from `len` on (keeps a shared prefix between chat turns).
    pub fn truncate(&mut self, len: usize) {
        if len < self.len {
            self.len = len;
            for layer in self.k.iter_mut().chain(self.v.iter_mut()) {
                layer.truncate(len * self.kv_dim);
            }
        }
    }

    pub fn clear(&mut self) {
        for layer in self.k.iter_mut().chain(self.v.iter_mut()) {
            layer.clear();
        }
        self.len = 0;
    }
}

/// Which positions of a batch get logits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Logits {
    /// Only the last token's (prefill before sampling).
    Last,
    /// Every token's (perplexity).
    All,
}

impl Model {
    /// Reads config and weights from a GGUF, tensor by tensor.
    pub fn load<R: ReadAt + ?Sized>(index: &GgufIndex, src: &R) -> Result<Self, ModelError> {
        let config = Config::from_gguf(index)?;
        let weights = Weights::load(&config, index, src)?;
        let rope = Rope::llama(&config, weights.rope_freq_factors.clone());
        Ok(Model { config, weights, rope })
    }

    /// An empty cache for up to `capacity` positions (at most the trained context).
    pub fn new_cache(&self, capacity: usize) -> KvCache {
        let n = self.config.n_layers;
        KvCache {
            k: vec![Vec::new(); n],
            v: vec![Vec::new(); n],
            len: 0,
            capacity: capacity.max(1),
            kv_dim: self.config.kv_dim(),
        }
    }

    /// Runs `tokens` at positions `cache.len()..`, appends their keys and values to the
    /// cache, and returns logits (vocab per selected position, position-major).
    pub fn forward(&self, cache: &mut KvCache, tokens: &[u32], which: Logits) -> Result<Vec<f32>, ModelError> {
        let c = &self.config;
        let w = &self.weights;
        let n = tokens.len();
        if n == 0 {
            return Err(ModelError::EmptyInput);
        }
        let start = cache.len;
        if start + n > cache.capacity {
            return Err(ModelError::ContextFull { needed: start + n, max: cache.capacity });
        }
        if let Some(&id) = tokens.iter().find(|&&t| t as usize >= c.vocab_size) {
            return Err(ModelError::BadToken { id, n_vocab: c.vocab_size });
        }
        let (dim, q_dim, kv_dim) = (c.dim, c.q_dim(), c.kv_dim());

        // x: (n × dim) residual stream
        let mut x = vec![0f32; n * dim];
        for (row, &t) in x.chunks_exact_mut(dim).zip(tokens) {
            w.token_embd.row_into(t as usize, row);
        }
        let rope_cs: Vec<Vec<(f32, f32)>> = (start..start + n).map(|p| self.rope.cos_sin(p)).collect();

        let mut xb = vec![0f32; n * dim];
        let mut q = vec![0f32; n * q_dim];
        let mut k = vec![0f32; n * kv_dim];
        let mut v = vec![0f32; n * kv_dim];
        let mut att = vec![0f32; n * q_dim];
        let mut gate = vec![0f32; n * c.ffn_dim];
        let mut up = vec![0f32; n * c.ffn_dim];

        for (l, lw) in w.layers.iter().enumerate() {
            // Attention block: x += Wo · attention(RoPE(Wq·norm(x)), RoPE(Wk·norm(x)), Wv·norm(x))
            rmsnorm_rows(&mut xb, &x, &lw.attn_norm, c.norm_eps);
            matmul(&mut q, &xb, &lw.wq);
            matmul(&mut k, &xb, &lw.wk);
            matmul(&mut v, &xb, &lw.wv);
            for t in 0..n {
                self.rope.apply(&mut q[t * q_dim..(t + 1) * q_dim], &rope_cs[t]);
                self.rope.apply(&mut k[t * kv_dim..(t + 1) * kv_dim], &rope_cs[t]);
            }
            cache.k[l].extend_from_slice(&k);
            cache.v[l].extend_from_slice(&v);
            attention(&mut att, &q, &cache.k[l], &cache.v[l], start, c.n_heads, c.n_kv_heads, c.head_dim);
            matmul(&mut xb, &att, &lw.wo);
            add_assign(&mut x, &xb);

            // Feed-forward block: x += W_down · (silu(W_gate·norm(x)) ⊙ W_up·norm(x))
            rmsnorm_rows(&mut xb, &x, &lw.ffn_norm, c.norm_eps);
            matmul(&mut gate, &xb, &lw.w_gate);
            matmul(&mut up, &xb, &lw.w_up);
            swiglu(&mut gate, &up);
            matmul(&mut xb, &gate, &lw.w_down);
            add_assign(&mut x, &xb);
        }
        cache.len = start + n;

        let rows = match which {
            Logits::All => &x[..],
            Logits::Last => &x[(n - 1) * dim..],
        };
        let mut normed = vec![0f32; rows.len()];
        rmsnorm_rows(&mut normed, rows, &w.output_norm, c.norm_eps);
        let mut logits = vec![0f32; rows.len() / dim * c.vocab_size];
        matmul(&mut logits, &normed, &w.output);
        Ok(logits)
    }
}
