//! The forward pass, once, in f32: the CPU reference. One pass for every family, its steps
//! switched by the config (biases, Q/K norms, which layers rotate, windows, post-norms, the
//! gate's activation), so that it reads like the Llama paper with the deltas marked.

use hearth_gguf::{GgufIndex, ReadAt};

use crate::ops::{
    add_assign, attention, gated, matmul, rmsnorm_heads, rmsnorm_in_place, rmsnorm_rows, AttentionShape, Rope,
};
use crate::weights::Weights;
use crate::{Config, ModelError};

pub struct Model {
    pub config: Config,
    pub weights: Weights,
    rope: Rope,
    /// The rotation of sliding-window layers, where it differs (Gemma 3's base 10 000).
    rope_local: Option<Rope>,
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
        let rope = Rope::of_model(&config, weights.rope_freq_factors.clone());
        let rope_local = Rope::local(&config);
        Ok(Model { config, weights, rope, rope_local })
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
            if let Some(scale) = c.embed_scale {
                row.iter_mut().for_each(|v| *v *= scale); // Gemma 3: × √dim
            }
        }
        let angles = |rope: &Rope| -> Vec<Vec<(f32, f32)>> { (start..start + n).map(|p| rope.cos_sin(p)).collect() };
        let rope_cs = angles(&self.rope);
        let rope_cs_local = self.rope_local.as_ref().map(angles);

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
            if let Some(bias) = &lw.qkv_bias {
                // Qwen2: q, k, v += their biases
                let (bq, rest) = bias.split_at(q_dim);
                let (bk, bv) = rest.split_at(kv_dim);
                for (m, b) in [(&mut q, bq), (&mut k, bk), (&mut v, bv)] {
                    m.chunks_exact_mut(b.len()).for_each(|row| add_assign(row, b));
                }
            }
            if let Some(norm) = &lw.qk_norm {
                // Qwen3, Gemma 3: each query and key head RMS-normalised, before RoPE
                let (gq, gk) = norm.split_at(c.head_dim);
                rmsnorm_heads(&mut q, gq, c.norm_eps);
                rmsnorm_heads(&mut k, gk, c.norm_eps);
            }
            let window = c.window(l);
            if c.rotates(l) {
                // Gemma 3's sliding layers rotate with their own base
                let (rope, cs) = match (&self.rope_local, &rope_cs_local) {
                    (Some(local), Some(cs)) if window.is_some() => (local, cs),
                    _ => (&self.rope, &rope_cs),
                };
                for t in 0..n {
                    rope.apply(&mut q[t * q_dim..(t + 1) * q_dim], &cs[t]);
                    rope.apply(&mut k[t * kv_dim..(t + 1) * kv_dim], &cs[t]);
                }
            }
            cache.k[l].extend_from_slice(&k);
            cache.v[l].extend_from_slice(&v);
            let (n_heads, n_kv_heads, head_dim, scale) = (c.n_heads, c.n_kv_heads, c.head_dim, c.attn_scale);
            let shape = AttentionShape { n_heads, n_kv_heads, head_dim, scale, window };
            attention(&mut att, &q, &cache.k[l], &cache.v[l], start, shape);
            matmul(&mut xb, &att, &lw.wo);
            self.add_to_residual(&mut x, &mut xb, lw.post_attn_norm.as_deref());

            // Feed-forward block: x += W_down · (act(W_gate·norm(x)) ⊙ W_up·norm(x)), act =
            // SiLU (SwiGLU) or GELU (Gemma's GeGLU)
            rmsnorm_rows(&mut xb, &x, &lw.ffn_norm, c.norm_eps);
            matmul(&mut gate, &xb, &lw.w_gate);
            matmul(&mut up, &xb, &lw.w_up);
            gated(&mut gate, &up, c.ffn_act);
            matmul(&mut xb, &gate, &lw.w_down);
            self.add_to_residual(&mut x, &mut xb, lw.post_ffn_norm.as_deref());
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

    /// `x += out`, `out` first RMS-normalised with `post_norm` where the model has one
    /// (Gemma 3's post-attention and post-FFN norms).
    fn add_to_residual(&self, x: &mut [f32], out: &mut [f32], post_norm: Option<&[f32]>) {
        if let Some(g) = post_norm {
            out.chunks_exact_mut(g.len()).for_each(|row| rmsnorm_in_place(row, g, self.config.norm_eps));
        }
        add_assign(x, out);
    }
}
