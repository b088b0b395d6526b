// Rotary position embedding, in place, one invocation per rotated pair:
//   token t sits at position start + t; pair i of every head rotates by
//   θ_i = freq_scale · (pos · theta_scale^i / freq_factors[i]),  theta_scale = freq_base^(-2/n_rot)
// θ is built as ggml builds it, by i repeated f32 multiplications (theta_scale comes from the
// host's powf), so it matches the CPU reference bit for bit wherever f32 multiplication is
// correctly rounded. Only cos/sin differ: the angle is first reduced to [-π, π] here
// (Cody–Waite, 2π in three parts), because GPU cos/sin are only specified on that range.
// Pairs: mode 0 (llama) (x[2i], x[2i+1]); mode 1 (NeoX) (x[i], x[i + n_rot/2]).
// Elements n_rot..head_dim of a head are left untouched.
// x: (n_tokens, n_heads, head_dim) row-major f32.

override WG: u32 = 64u; // workgroup size, set by the host (ops/rope.rs)

struct Params {
    n_tokens: u32,
    n_heads: u32,
    head_dim: u32,
    n_rot: u32,        // even, <= head_dim
    start: u32,        // position of token 0
    mode: u32,         // 0 = interleaved (llama), 1 = NeoX
    has_factors: u32,  // 0: freq_factors is ignored (all ones)
    theta_scale: f32,  // freq_base^(-2/n_rot), computed on the host
    freq_scale: f32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;    // (n_tokens, n_heads, head_dim)
@group(0) @binding(2) var<storage, read> freq_factors: array<f32>; // (n_rot / 2), read only if has_factors

// 2π = TWO_PI_HI + TWO_PI_MID + TWO_PI_LO; HI and MID have 8 significant bits, so k·HI and
// k·MID are exact for |k| < 2^16 (angles up to ~4·10^5 rad).
const TWO_PI_HI: f32 = 6.28125;
const TWO_PI_MID: f32 = 1.9378662109375e-3;
const TWO_PI_LO: f32 = -2.559031372584286e-6;
const INV_TWO_PI: f32 = 0.15915494309189535;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let t = wid.y;
    let half = p.n_rot / 2u;
    let j = wid.x * WG + lid.x; // (head, pair) within the token
    if (t >= p.n_tokens || j >= p.n_heads * half) {
        return;
    }
    let head = j / half;
    let i = j % half;

    var theta_base = f32(p.start + t);
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

    let base = (t * p.n_heads + head) * p.head_dim;
    var a = base + 2u * i;
    var b = a + 1u;
    if (p.mode == 1u) {
        a = base + i;
        b = a + half;
    }
    let x0 = x[a];
    let x1 = x[b];
    x[a] = x0 * c - x1 * s;
    x[b] = x0 * s + x1 * c;
}
