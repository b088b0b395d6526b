//! The numeric building blocks of the forward pass, in plain f32. These are the CPU
//! reference every GPU kernel is tested against, so they follow ggml's CPU arithmetic where
//! the order of operations changes results (RMSNorm and softmax sums in f64, RoPE angles by
//! repeated multiplication).

use rayon::prelude::*;

use crate::weights::Matrix;

/// `out[i] = x[i] / sqrt(mean(x²) + eps) * w[i]`.
pub fn rmsnorm(out: &mut [f32], x: &[f32], w: &[f32], eps: f32) {
    let scale = rms_scale(x, eps);
    for ((o, &xi), &wi) in out.iter_mut().zip(x).zip(w) {
        *o = xi * scale * wi;
    }
}

/// [`rmsnorm`] of `x` in place.
pub fn rmsnorm_in_place(x: &mut [f32], w: &[f32], eps: f32) {
    let scale = rms_scale(x, eps);
    for (xi, &wi) in x.iter_mut().zip(w) {
        *xi = *xi * scale * wi;
    }
}

/// `1 / sqrt(mean(x²) + eps)`, the sum in f64 as ggml sums it.
fn rms_scale(x: &[f32], eps: f32) -> f32 {
    let sum_sq: f64 = x.iter().map(|&v| f64::from(v * v)).sum();
    1.0 / ((sum_sq / x.len() as f64) as f32 + eps).sqrt()
}

/// Row-wise RMSNorm over `n` rows of `w.len()`.
pub fn rmsnorm_rows(out: &mut [f32], x: &[f32], w: &[f32], eps: f32) {
    let d = w.len();
    out.par_chunks_mut(d).zip(x.par_chunks(d)).for_each(|(o, xr)| rmsnorm(o, xr, w, eps));
}

/// Dot product with eight independent partial sums, so the compiler can vectorise it without
/// reassociating floats.
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| x * y).sum();
    for (xa, xb) in ca.zip(cb) {
        for k in 0..8 {
            acc[k] += xa[k] * xb[k];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// Rows of W handled by one task: enough work per task, few enough tasks to balance.
const ROWS_PER_TASK: usize = 32;

/// `y = x Wᵀ`: `x` is n × cols (one token per row), `y` is n × rows.
/// Each task dequantizes a block of W's rows once and applies them to every token.
pub fn matmul(y: &mut [f32], x: &[f32], w: &Matrix) {
    let (rows, cols) = (w.rows, w.cols);
    let n = x.len() / cols;
    debug_assert_eq!(y.len(), n * rows);
    // Each block is (rows of the block) × n, W-row-major; scattered into y afterwards.
    let blocks: Vec<Vec<f32>> = (0..rows.div_ceil(ROWS_PER_TASK))
        .into_par_iter()
        .map(|b| {
            let r0 = b * ROWS_PER_TASK;
            let r1 = (r0 + ROWS_PER_TASK).min(rows);
            let mut wrow = vec![0f32; cols];
            let mut out = vec![0f32; (r1 - r0) * n];
            for r in r0..r1 {
                w.row_into(r, &mut wrow);
                for (t, xt) in x.chunks_exact(cols).enumerate() {
                    out[(r - r0) * n + t] = dot(&wrow, xt);
                }
            }
            out
        })
        .collect();
    for (b, block) in blocks.iter().enumerate() {
        let r0 = b * ROWS_PER_TASK;
        for (i, row_out) in block.chunks_exact(n).enumerate() {
            for (t, &v) in row_out.iter().enumerate() {
                y[t * rows + r0 + i] = v;
            }
        }
    }
}

/// How the two members of a rotated pair sit in a head vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RopeMode {
    /// Llama (ggml mode 0): pairs are adjacent, (x[2i], x[2i+1]).
    Interleaved,
    /// GPT-NeoX (ggml mode 2): pairs are split halves, (x[i], x[i + n_rot/2]).
    Neox,
}

/// Rotary position embedding parameters for one model.
#[derive(Debug, Clone)]
pub struct Rope {
    pub mode: RopeMode,
    pub head_dim: usize,
    pub n_rot: usize,
    pub freq_base: f32,
    pub freq_scale: f32,
    /// θ_i is divided by `freq_factors[i]` (Llama 3 scaling); `None` = all ones.
    pub freq_factors: Option<Vec<f32>>,
}

impl Rope {
    /// The rotation a model uses: its family's pairing (llama.cpp's `llama_model_rope_type`)
    /// with the config's base and scale, and `freq_factors` from the weights (Llama 3).
    pub fn of_model(config: &crate::Config, freq_factors: Option<Vec<f32>>) -> Rope {
        Rope {
            mode: config.rope.mode,
            head_dim: config.head_dim,
            n_rot: config.rope.n_rot,
            freq_base: config.rope.freq_base,
            freq_scale: config.rope.freq_scale,
            freq_factors,
        }
    }

    /// The rotation of a model's sliding-window layers where it differs from
    /// [`Rope::of_model`]'s: their own base, unscaled and without frequency factors (Gemma 3).
    pub fn local(config: &crate::Config) -> Option<Rope> {
        let sliding = config.sliding.as_ref()?;
        Some(Rope {
            mode: config.rope.mode,
            head_dim: config.head_dim,
            n_rot: config.rope.n_rot,
            freq_base: sliding.freq_base,
            freq_scale: 1.0,
            freq_factors: None,
        })
    }

    /// (cos, sin) for every rotated pair at position `pos`. θ_i = pos · base^(-2i/n_rot),
    /// computed as ggml does, by repeated f32 multiplication, then divided by the pair's
    /// frequency factor and multiplied by the linear scale.
    pub fn cos_sin(&self, pos: usize) -> Vec<(f32, f32)> {
        let theta_scale = self.freq_base.powf(-2.0 / self.n_rot as f32);
        let mut theta_base = pos as f32;
        (0..self.n_rot / 2)
            .map(|i| {
                let ff = self.freq_factors.as_ref().map_or(1.0, |f| f[i]);
                let theta = self.freq_scale * (theta_base / ff);
                theta_base *= theta_scale;
                (theta.cos(), theta.sin())
            })
            .collect()
    }

    /// Rotates every head of `x` (n_heads × head_dim) in place for position `pos`.
    pub fn apply(&self, x: &mut [f32], cs: &[(f32, f32)]) {
        let half = self.n_rot / 2;
        for head in x.chunks_exact_mut(self.head_dim) {
            for (i, &(c, s)) in cs.iter().enumerate() {
                let (a, b) = match self.mode {
                    RopeMode::Interleaved => (2 * i, 2 * i + 1),
                    RopeMode::Neox => (i, i + half),
                };
                let (x0, x1) = (head[a], head[b]);
                head[a] = x0 * c - x1 * s;
                head[b] = x0 * s + x1 * c;
            }
        }
    }
}

/// RMSNorm of every `w.len()`-long head of `x` in place, each with the same weights `w`
/// (Qwen3's per-head query and key norms).
pub fn rmsnorm_heads(x: &mut [f32], w: &[f32], eps: f32) {
    x.chunks_exact_mut(w.len()).for_each(|head| rmsnorm_in_place(head, w, eps));
}

/// In-place softmax; the normaliser is summed in f64.
pub fn softmax(x: &mut [f32]) {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0f64;
    for v in x.iter_mut() {
        *v = (*v - max).exp();
        sum += f64::from(*v);
    }
    let inv = (1.0 / sum) as f32;
    for v in x.iter_mut() {
        *v *= inv;
    }
}

/// The gate's activation in a gated FFN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// silu(x) = x / (1 + e^-x): SwiGLU (Llama, Qwen, SmolLM).
    Silu,
    /// GELU, tanh approximation, as ggml computes it in f32: GeGLU (Gemma).
    GeluTanh,
}

impl Activation {
    pub fn apply(self, x: f32) -> f32 {
        match self {
            Activation::Silu => x / (1.0 + (-x).exp()),
            Activation::GeluTanh => {
                const SQRT_2_OVER_PI: f32 = 0.797_884_6;
                0.5 * x * (1.0 + (SQRT_2_OVER_PI * x * (1.0 + 0.044715 * x * x)).tanh())
            }
        }
    }
}

/// A gated FFN's middle: `gate[i] = act(gate[i]) * up[i]`.
pub fn gated(gate: &mut [f32], up: &[f32], act: Activation) {
    for (g, &u) in gate.iter_mut().zip(up) {
        *g = act.apply(*g) * u;
    }
}

/// SwiGLU: `gate[i] = silu(gate[i]) * up[i]`.
pub fn swiglu(gate: &mut [f32], up: &[f32]) {
    gated(gate, up, Activation::Silu);
}

/// The shape of one attention call: heads, head size, the score scale and the window.
#[derive(Debug, Clone, Copy)]
pub struct AttentionShape {
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    /// Scores are q·k times this (1/√head_dim).
    pub scale: f32,
    /// A sliding layer's window: position i sees only j with i − j < window.
    pub window: Option<usize>,
}

/// Causal grouped-query attention for a batch whose first token sits at position `start`.
/// q, out: (n × n_heads · head_dim); k_cache, v_cache: (positions × n_kv_heads · head_dim),
/// already holding this batch. Query head h reads KV head h / (n_heads / n_kv_heads).
pub fn attention(out: &mut [f32], q: &[f32], k_cache: &[f32], v_cache: &[f32], start: usize, shape: AttentionShape) {
    let AttentionShape { n_heads, n_kv_heads, head_dim, scale, window } = shape;
    let (hd, q_dim, kv_dim) = (head_dim, n_heads * head_dim, n_kv_heads * head_dim);
    let group = n_heads / n_kv_heads;
    out.par_chunks_mut(q_dim).zip(q.par_chunks(q_dim)).enumerate().for_each(|(t, (out_t, q_t))| {
        let n_pos = start + t + 1; // token t sees positions first..=start+t
        let first = window.map_or(0, |w| n_pos.saturating_sub(w));
        let mut scores = vec![0f32; n_pos - first];
        for h in 0..n_heads {
            let kvh = h / group;
            let qh = &q_t[h * hd..(h + 1) * hd];
            for (i, s) in scores.iter_mut().enumerate() {
                let p = first + i;
                *s = dot(qh, &k_cache[p * kv_dim + kvh * hd..p * kv_dim + (kvh + 1) * hd]) * scale;
            }
            softmax(&mut scores);
            let oh = &mut out_t[h * hd..(h + 1) * hd];
            oh.fill(0.0);
            for (i, &s) in scores.iter().enumerate() {
                let p = first + i;
                let vp = &v_cache[p * kv_dim + kvh * hd..p * kv_dim + (kvh + 1) * hd];
                for (o, &vv) in oh.iter_mut().zip(vp) {
                    *o += s * vv;
                }
            }
        }
    });
}

/// `x += y`.
pub fn add_assign(x: &mut [f32], y: &[f32]) {
    for (a, &b) in x.iter_mut().zip(y) {
        *a += b;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_sums_to_one_and_keeps_order() {
        let mut x = vec![1.0, 3.0, -2.0, 3.0];
        softmax(&mut x);
        assert!((x.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(x[1] == x[3] && x[1] > x[0] && x[0] > x[2]);
    }

    #[test]
    fn rope_rotation_preserves_pair_norms_and_matches_closed_form() {
        let rope = Rope {
            mode: RopeMode::Interleaved,
            head_dim: 6,
            n_rot: 4,
            freq_base: 10000.0,
            freq_scale: 1.0,
            freq_factors: None,
        };
        let mut x = vec![1.0, 0.0, 0.0, 1.0, 5.0, 7.0];
        let cs = rope.cos_sin(3);
        rope.apply(&mut x, &cs);
        // pair 0 rotates by 3 rad, pair 1 by 3 · 10000^(-1/2) rad; the tail is untouched
        assert!((x[0] - 3f32.cos()).abs() < 1e-6 && (x[1] - 3f32.sin()).abs() < 1e-6);
        let t = 3.0 * 0.01f32;
        assert!((x[2] + t.sin()).abs() < 1e-6 && (x[3] - t.cos()).abs() < 1e-6);
        assert_eq!(&x[4..], &[5.0, 7.0]);
    }

    #[test]
    fn dot_matches_naive_sum_on_awkward_lengths() {
        for n in [1, 7, 8, 9, 31, 577] {
            let a: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin()).collect();
            let b: Vec<f32> = (0..n).map(|i| (i as f32 * 0.11).cos()).collect();
            let naive: f64 = a.iter().zip(&b).map(|(x, y)| f64::from(*x) * f64::from(*y)).sum();
            assert!((f64::from(dot(&a, &b)) - naive).abs() < 1e-4, "n = {n}");
        }
    }
}
