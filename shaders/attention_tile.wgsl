// Causal grouped-query attention over the f16 KV cache, one thread per (token, KV head), for
// CPU-backed adapters (lavapipe, SwiftShader). Same operands, parameters and result as
// attention.wgsl:
//   out[t, h] = Σ_p softmax_p(q[t, h] · k[p, kvh] · scale) · v[p, kvh],  p in 0..=start + t
// (the last `window` of those on a sliding layer)
//
// On those adapters every buffer or workgroup-memory load is a per-lane gather, so the
// workgroup-memory version spends its time loading q and scores. Here a thread keeps its G
// query heads (the whole group of its KV head) and their accumulators in registers, reads
// each K and V row of its KV head once for all G heads, and runs the online softmax
// position by position (running max m, sum l, rescale a). Neighbouring threads are
// neighbouring tokens of one KV head, so they read the same cache rows.
//
// This file is a template: the host (ops/attention.rs, `tile_source`) sets WG, G and HD and
// writes out the `{{...}}` lines unrolled over heads and head_dim (loop-indexed register
// arrays end up in scratch memory, per lane, on these compilers). HD is a multiple of 8: a
// cache row of one KV head is HD / 8 vec4<u32> words, eight f16 each (element 2w in the low
// half of word w, as kv_cache.wgsl writes them).

struct Params {
    n_tokens: u32,
    n_heads: u32,
    n_kv_heads: u32,
    start: u32,
    scale: f32,
    window: u32, // 0: every position; else each token sees its last `window` positions
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> q: array<vec4<f32>>;         // (n_tokens, n_heads, HD / 4)
@group(0) @binding(2) var<storage, read> k_cache: array<vec4<u32>>;   // (positions, n_kv_heads, HD / 8)
@group(0) @binding(3) var<storage, read> v_cache: array<vec4<u32>>;   // (positions, n_kv_heads, HD / 8)
@group(0) @binding(4) var<storage, read_write> out: array<vec4<f32>>; // (n_tokens, n_heads, HD / 4)

const F32_LOWEST: f32 = -3.40282346638528859811704183484516925440e38; // exactly -f32::MAX (Tint rejects a rounded literal above it)

// Eight f16 (one vec4<u32>) as two vec4<f32>: elements 0..4 and 4..8.
fn lo4(w: vec4<u32>) -> vec4<f32> {
    return vec4<f32>(unpack2x16float(w.x), unpack2x16float(w.y));
}
fn hi4(w: vec4<u32>) -> vec4<f32> {
    return vec4<f32>(unpack2x16float(w.z), unpack2x16float(w.w));
}

@compute @workgroup_size(WG)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    let i = (wid.x + wid.y * nwg.x) * WG + lid.x;
    let t = i % p.n_tokens;
    let kvh = i / p.n_tokens;
    if (kvh >= p.n_kv_heads) {
        return;
    }
    let n_pos = p.start + t + 1u;
    let first = select(0u, n_pos - p.window, p.window != 0u && n_pos > p.window);
    let row = p.n_kv_heads * (HD / 8u); // vec4<u32> per cache position
    let kv0 = kvh * (HD / 8u);
    let qbase = (t * p.n_heads + kvh * G) * (HD / 4u); // the group's heads are contiguous
    // q_G_J: elements 4J..4J+4 of head G;  acc_G_J: its output so far;  m_G, l_G: softmax state
    {{DECLARE}}
    for (var pos = first; pos < n_pos; pos++) {
        let kb = pos * row + kv0;
        {{POSITION}}
    }
    {{STORE}}
}
