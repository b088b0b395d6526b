// Rotary position embedding of Q and K, and the append of K and V to the KV cache, in one
// dispatch (the epilogue of the Q/K/V projection, as a kernel of its own):
//   q_out[t]              = RoPE(norm_q(q[t] + b_q), start + t)          (f32)
//   k_cache[start + t]    = f16(RoPE(norm_k(k[t] + b_k), start + t))
//   v_cache[start + t]    = f16(v[t] + b_v)
// The biases (Qwen2) are there when has_bias; norm_q and norm_k (Qwen3) are RMSNorm of each
// head with the head_dim weights g_q and g_k when has_qk_norm, else the identity; a layer
// that does not rotate (SmolLM3's every fourth) has n_rot = 0.
// q, k, v are read from `src` (the projection's output): token t's q at q_off + t·q_stride,
// its k and v at k_off / v_off + t·kv_stride (one [Q | K | V] row per token when the
// projection is one matmul, three regions when it is three).
//
// Token t sits at position start + t; pair i of every head rotates by
//   θ_i = freq_scale · (pos · theta_scale^i / freq_factors[i]),  theta_scale = freq_base^(-2/n_rot)
// θ is built as ggml builds it, by i repeated f32 multiplications (theta_scale comes from the
// host's powf), so it matches the CPU reference bit for bit wherever f32 multiplication is
// correctly rounded. Only cos/sin differ: the angle is first reduced to [-π, π] here
// (Cody–Waite, 2π in three parts), because GPU cos/sin are only specified on that range.
// Pairs: mode 0 (llama) (x[2i], x[2i+1]); mode 1 (NeoX) (x[i], x[i + n_rot/2]).
// Elements n_rot..head_dim of a head are not rotated.
//
// Cache layout per layer: (positions, n_kv_heads, head_dim) f16, row-major, two f16 per u32
// (element 2w in the low half of word w, 2w + 1 in the high half: pack2x16float, core WGSL),
// so a position's row is kv_dim / 2 words; head_dim is even.
// One invocation per pair of adjacent elements (a cache word): first the q_dim / 2 of Q, then
// the kv_dim / 2 of K and V together; workgroups along (items, tokens). Each invocation
// computes both of its outputs from the unrotated input, so nothing is rotated in place.

override WG: u32 = 64u; // workgroup size, set by the host (ops/rope.rs)

struct Params {
    n_tokens: u32,
    n_heads: u32,
    n_kv_heads: u32,
    head_dim: u32,     // even
    n_rot: u32,        // even, <= head_dim
    start: u32,        // position of token 0
    mode: u32,         // 0 = interleaved (llama), 1 = NeoX
    has_factors: u32,  // 0: freq_factors is ignored (all ones)
    theta_scale: f32,  // freq_base^(-2/n_rot), computed on the host
    freq_scale: f32,
    q_stride: u32,     // elements of src between tokens' q
    kv_stride: u32,    // elements of src between tokens' k (and v)
    q_off: u32,        // elements of src before token 0's q
    k_off: u32,
    v_off: u32,
    has_bias: u32,     // 0: bias is ignored
    has_qk_norm: u32,  // 0: qk_norm is ignored
    eps: f32,          // the Q/K norms' epsilon
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;             // the projection's output
@group(0) @binding(2) var<storage, read> freq_factors: array<f32>;    // (n_rot / 2), read only if has_factors
@group(0) @binding(3) var<storage, read_write> q_out: array<f32>;     // (n_tokens, n_heads, head_dim)
@group(0) @binding(4) var<storage, read_write> k_cache: array<u32>;   // (positions, kv_dim / 2)
@group(0) @binding(5) var<storage, read_write> v_cache: array<u32>;   // (positions, kv_dim / 2)
@group(0) @binding(6) var<storage, read> bias: array<f32>;            // [b_q; b_k; b_v], read only if has_bias
@group(0) @binding(7) var<storage, read> qk_norm: array<f32>;         // [g_q; g_k], read only if has_qk_norm

// 2π = TWO_PI_HI + TWO_PI_MID + TWO_PI_LO; HI and MID have 8 significant bits, so k·HI and
// k·MID are exact for |k| < 2^16 (angles up to ~4·10^5 rad).
const TWO_PI_HI: f32 = 6.28125;
const TWO_PI_MID: f32 = 1.9378662109375e-3;
const TWO_PI_LO: f32 = -2.559031372584286e-6;
const INV_TWO_PI: f32 = 0.15915494309189535;

// A head of q or k: where it starts in src, in bias, and its norm weights in qk_norm.
struct Head {
    src: u32,
    bias: u32,
    norm: u32,
    scale: f32, // RMSNorm's 1/√(mean of squares + eps) over the biased head, or 1
}

// Element d of `h` plus its bias.
fn biased(h: Head, d: u32) -> f32 {
    var x = src[h.src + d];
    if (p.has_bias != 0u) {
        x += bias[h.bias + d];
    }
    return x;
}

// Element d of `h` as the attention sees it before rotation: biased, then normalised.
fn loaded(h: Head, d: u32) -> f32 {
    var x = biased(h, d);
    if (p.has_qk_norm != 0u) {
        x = x * h.scale * qk_norm[h.norm + d];
    }
    return x;
}

// The head at src[at], with bias[bias_at] and norm weights at qk_norm[norm_at]: its norm
// scale computed here, by every invocation of the head (head_dim loads each: cheaper than a
// second dispatch at the sizes of a decode step).
fn head_at(at: u32, bias_at: u32, norm_at: u32) -> Head {
    var h = Head(at, bias_at, norm_at, 1.0);
    if (p.has_qk_norm != 0u) {
        var sum_sq = 0.0;
        for (var d = 0u; d < p.head_dim; d++) {
            let x = biased(h, d);
            sum_sq += x * x;
        }
        h.scale = inverseSqrt(sum_sq / f32(p.head_dim) + p.eps);
    }
    return h;
}

// Element d of head `h`, rotated for position `pos`.
fn rotated(h: Head, d: u32, pos: u32) -> f32 {
    if (d >= p.n_rot) {
        return loaded(h, d);
    }
    let half = p.n_rot / 2u;
    var i = d / 2u; // the pair
    var a = 2u * i;
    var b = a + 1u;
    var second = d % 2u == 1u;
    if (p.mode == 1u) {
        i = d % half;
        a = i;
        b = a + half;
        second = d >= half;
    }
    var theta_base = f32(pos);
    for (var k = 0u; k < i; k++) {
        theta_base *= p.theta_scale;
    }
    if (p.has_factors != 0u) {
        theta_base = theta_base / freq_factors[i];
    }
    let theta = p.freq_scale * theta_base;
    let k = round(theta * INV_TWO_PI);
    let r = ((theta - k * TWO_PI_HI) - k * TWO_PI_MID) - k * TWO_PI_LO;
    let c = cos(r);
    let s = sin(r);
    let x0 = loaded(h, a);
    let x1 = loaded(h, b);
    return select(x0 * c - x1 * s, x0 * s + x1 * c, second);
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let t = wid.y;
    let j = wid.x * WG + lid.x;
    let hd = p.head_dim;
    let q_words = p.n_heads * hd / 2u;
    let kv_words = p.n_kv_heads * hd / 2u;
    if (t >= p.n_tokens || j >= q_words + kv_words) {
        return;
    }
    let pos = p.start + t;
    if (j < q_words) {
        let e = 2u * j;
        let first = e / hd * hd;
        let h = head_at(p.q_off + t * p.q_stride + first, first, 0u);
        let d = e % hd;
        let o = t * 2u * q_words + e;
        q_out[o] = rotated(h, d, pos);
        q_out[o + 1u] = rotated(h, d + 1u, pos);
    } else {
        let w = j - q_words;
        let e = 2u * w;
        let d = e % hd;
        let first = e / hd * hd;
        let q_dim = 2u * q_words;
        let h = head_at(p.k_off + t * p.kv_stride + first, q_dim + first, hd);
        let dst = pos * kv_words + w;
        k_cache[dst] = pack2x16float(vec2<f32>(rotated(h, d, pos), rotated(h, d + 1u, pos)));
        // v as a head of its own, never normalised nor rotated: its two elements, biased.
        let v = Head(p.v_off + t * p.kv_stride + first, q_dim + 2u * kv_words + first, 0u, 1.0);
        v_cache[dst] = pack2x16float(vec2<f32>(biased(v, d), biased(v, d + 1u)));
    }
}
