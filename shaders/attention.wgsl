// Causal grouped-query attention over an f16 KV cache, decode (1 token) and prefill alike:
//   token t (at position start + t) sees cache positions 0..=start + t, or, on a sliding
//   layer (window > 0), only the last `window` of them;
//   out[t, h] = Σ_p softmax_p(q[t, h] · k[p, kvh] / √head_dim) · v[p, kvh],  kvh = h / group
// with group = n_heads / n_kv_heads.
// One workgroup per (token, KV head, batch of up to G query heads of its group): the heads of
// a batch share each K and V word (neighbouring invocations read the same address).
// Positions are taken in chunks of CHUNK with an online softmax (running max m, sum l, and
// rescaled accumulator o per head), so any cache length fits in workgroup memory.
// All arithmetic in f32.
// q, out: (n_tokens, n_heads, HD) row-major f32.
// k_cache, v_cache: (positions, n_kv_heads, HD) f16, two per u32 (element 2w in the low half
// of word w): rows of n_kv_heads · HD / 2 words; see kv_cache.wgsl.

// Set by the host (ops/attention.rs):
override WG: u32 = 64u;    // workgroup size
override CHUNK: u32 = 64u; // cache positions per step of the online softmax
override G: u32 = 8u;      // query heads per workgroup, <= group
override HD: u32 = 64u;    // head_dim, even

struct Params {
    n_tokens: u32,
    n_heads: u32,
    n_kv_heads: u32, // divides n_heads
    start: u32,      // position of token 0
    scale: f32,      // 1/√HD
    window: u32,     // 0: every position; else each token sees its last `window` positions
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> q: array<f32>;             // (n_tokens, n_heads, HD)
@group(0) @binding(2) var<storage, read> k_cache: array<u32>;       // (positions, n_kv_heads, HD / 2)
@group(0) @binding(3) var<storage, read> v_cache: array<u32>;       // (positions, n_kv_heads, HD / 2)
@group(0) @binding(4) var<storage, read_write> out: array<f32>;     // (n_tokens, n_heads, HD)

var<workgroup> q_sh: array<f32, G * HD>;    // the batch's query heads
var<workgroup> o_sh: array<f32, G * HD>;    // their unnormalised outputs
var<workgroup> s_sh: array<f32, G * CHUNK>; // scores, then probabilities, of this chunk
var<workgroup> m_sh: array<f32, G>;         // running max per head
var<workgroup> l_sh: array<f32, G>;         // running sum of exp(score - m) per head
var<workgroup> a_sh: array<f32, G>;         // this chunk's rescale factor exp(m_old - m_new)

// The first cache position a token that sees `n_pos` positions attends to.
fn first_pos(n_pos: u32) -> u32 {
    return select(0u, n_pos - p.window, p.window != 0u && n_pos > p.window);
}

const F32_LOWEST: f32 = -3.40282346638528859811704183484516925440e38; // exactly -f32::MAX (Tint rejects a rounded literal above it)

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let t = wid.y;
    if (t >= p.n_tokens) {
        return; // uniform per workgroup
    }
    let group = p.n_heads / p.n_kv_heads;
    let batches = (group + G - 1u) / G;
    let kvh = wid.x / batches;
    let g0 = (wid.x % batches) * G;
    let ng = min(G, group - g0); // heads in this workgroup
    let h0 = kvh * group + g0;   // its first query head
    let words = HD / 2u;
    let row_words = p.n_kv_heads * words;
    let kv0 = kvh * words; // this KV head's first word in a cache row
    let n_pos = p.start + t + 1u;

    let qo0 = (t * p.n_heads + h0) * HD; // the batch's heads are contiguous in q and out
    for (var i = lid.x; i < ng * HD; i += WG) {
        q_sh[i] = q[qo0 + i];
        o_sh[i] = 0.0;
    }
    if (lid.x < ng) {
        m_sh[lid.x] = F32_LOWEST;
        l_sh[lid.x] = 0.0;
    }
    workgroupBarrier();

    for (var c0 = first_pos(n_pos); c0 < n_pos; c0 += CHUNK) {
        let cnt = min(CHUNK, n_pos - c0);
        // Scores, one (position j, head g) per item; the heads of one position are adjacent.
        for (var i = lid.x; i < cnt * ng; i += WG) {
            let j = i / ng;
            let g = i % ng;
            let k0 = (c0 + j) * row_words + kv0;
            var dot = 0.0;
            for (var w = 0u; w < words; w++) {
                let k = unpack2x16float(k_cache[k0 + w]);
                dot += q_sh[g * HD + 2u * w] * k.x + q_sh[g * HD + 2u * w + 1u] * k.y;
            }
            s_sh[g * CHUNK + j] = dot * p.scale;
        }
        workgroupBarrier();
        // New running max and the factor that rescales what was accumulated before.
        if (lid.x < ng) {
            let m_old = m_sh[lid.x];
            var m_new = m_old;
            for (var j = 0u; j < cnt; j++) {
                m_new = max(m_new, s_sh[lid.x * CHUNK + j]);
            }
            m_sh[lid.x] = m_new;
            a_sh[lid.x] = exp(m_old - m_new);
        }
        workgroupBarrier();
        for (var i = lid.x; i < cnt * ng; i += WG) {
            let j = i / ng;
            let g = i % ng;
            s_sh[g * CHUNK + j] = exp(s_sh[g * CHUNK + j] - m_sh[g]);
        }
        workgroupBarrier();
        if (lid.x < ng) {
            var sum = 0.0;
            for (var j = 0u; j < cnt; j++) {
                sum += s_sh[lid.x * CHUNK + j];
            }
            l_sh[lid.x] = l_sh[lid.x] * a_sh[lid.x] + sum;
        }
        // Weighted V, one (word w, head g) per item; the heads of one word are adjacent.
        for (var i = lid.x; i < words * ng; i += WG) {
            let w = i / ng;
            let g = i % ng;
            let o = g * HD + 2u * w;
            var acc = vec2<f32>(o_sh[o], o_sh[o + 1u]) * a_sh[g];
            for (var j = 0u; j < cnt; j++) {
                acc += s_sh[g * CHUNK + j] * unpack2x16float(v_cache[(c0 + j) * row_words + kv0 + w]);
            }
            o_sh[o] = acc.x;
            o_sh[o + 1u] = acc.y;
        }
        workgroupBarrier();
    }

    for (var i = lid.x; i < ng * HD; i += WG) {
        out[qo0 + i] = o_sh[i] / l_sh[i / HD];
    }
}
