// Appends a batch's K and V rows to one layer's KV cache, stored as f16:
//   cache[start + t, j] = f16(new[t, j])
// Cache layout per layer: (positions, n_kv_heads, head_dim) f16, row-major, two f16 per u32
// (element 2w in the low half of word w, 2w + 1 in the high half: pack2x16float, core WGSL),
// so a position's row is kv_dim / 2 words; kv_dim = n_kv_heads · head_dim must be even.
// One invocation per cache word; workgroups along (words of a row, tokens).

override WG: u32 = 64u; // workgroup size, set by the host (ops/attention.rs)

struct Params {
    n_tokens: u32,
    kv_dim: u32, // n_kv_heads · head_dim, even
    start: u32,  // cache position of token 0
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> k_new: array<f32>;         // (n_tokens, kv_dim)
@group(0) @binding(2) var<storage, read> v_new: array<f32>;         // (n_tokens, kv_dim)
@group(0) @binding(3) var<storage, read_write> k_cache: array<u32>; // (positions, kv_dim / 2)
@group(0) @binding(4) var<storage, read_write> v_cache: array<u32>; // (positions, kv_dim / 2)

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let t = wid.y;
    let w = wid.x * WG + lid.x;
    let row_words = p.kv_dim / 2u;
    if (t >= p.n_tokens || w >= row_words) {
        return;
    }
    let src = t * p.kv_dim + 2u * w;
    let dst = (p.start + t) * row_words + w;
    k_cache[dst] = pack2x16float(vec2<f32>(k_new[src], k_new[src + 1u]));
    v_cache[dst] = pack2x16float(vec2<f32>(v_new[src], v_new[src + 1u]));
}
