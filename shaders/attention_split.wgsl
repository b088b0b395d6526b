// Split-K decode attention (flash-decoding) over the f16 KV cache, for GPUs: the one token of a
// decode step at position `start` attends to cache positions first..=start (first = 0, or
// start + 1 − window on a sliding layer), spread over
//   n_splits = ceil((start + 1 − first) / SPLIT)
// workgroups per KV head, so a long context keeps the whole GPU reading the cache instead of
// one workgroup per head. Each workgroup takes SPLIT positions and up to G query heads of one
// KV head (they share each K and V load):
//   1. scores: a K row of the head is HD / 8 slices of 16 bytes; neighbouring invocations take
//      neighbouring slices of a row (coalesced), dot them with the heads' query slices, and
//      the slices' partial dots are summed through workgroup memory, P positions per pass;
//   2. max and sum of exp, in parallel: R invocations per head each reduce every R-th score,
//      then combine the R results;
//   3. Σ p · V: one invocation per (head, V word), neighbouring words on neighbouring
//      invocations.
// With one split the output is written normalised; with more, each split writes its
// unnormalised output with its max m and sum l to `part`, and `merge` (one workgroup per query
// head) combines them: out = Σ_s e^(m_s − M) o_s / Σ_s e^(m_s − M) l_s, M = max_s m_s.
// All arithmetic in f32. Layouts as in attention.wgsl; HD must be a multiple of 8.

// Set by the host (ops/attention.rs):
override WG: u32 = 64u;    // workgroup size, >= G · R
override G: u32 = 8u;      // query heads per workgroup, <= group
override HD: u32 = 64u;    // head_dim, a multiple of 8
override SPLIT: u32 = 256u; // cache positions per workgroup

const R: u32 = 8u; // invocations per head in the max and sum reductions

struct Params {
    n_tokens: u32,   // 1
    n_heads: u32,
    n_kv_heads: u32, // divides n_heads
    start: u32,      // position of the token
    scale: f32,      // 1/√HD
    window: u32,     // 0: every position; else the token sees its last `window` positions
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> q: array<vec4<f32>>;       // (n_heads, HD / 4)
@group(0) @binding(2) var<storage, read> k_cache: array<vec4<u32>>; // (positions, n_kv_heads, HD / 8)
@group(0) @binding(3) var<storage, read> v_cache: array<u32>;       // (positions, n_kv_heads, HD / 2)
@group(0) @binding(4) var<storage, read_write> out: array<f32>;     // (n_heads, HD)
@group(0) @binding(5) var<storage, read_write> part: array<f32>;    // (n_splits, n_heads, HD + 2)

var<workgroup> q_sh: array<vec4<f32>, G * HD / 4u>; // the heads' queries
var<workgroup> dot_sh: array<f32, G * WG>;          // one pass's partial dots, per head
var<workgroup> s_sh: array<f32, G * SPLIT>;         // scores, then e^(score − m)
var<workgroup> max_sh: array<f32, G * R>;
var<workgroup> sum_sh: array<f32, G * R>;

const F32_LOWEST: f32 = -3.40282346638528859811704183484516925440e38; // exactly -f32::MAX (Tint rejects a rounded literal above it)

// The first position the token attends to.
fn first_pos() -> u32 {
    return select(0u, p.start + 1u - p.window, p.window != 0u && p.start + 1u > p.window);
}

fn splits() -> u32 {
    return (p.start - first_pos() + SPLIT) / SPLIT; // ceil((start + 1 − first) / SPLIT)
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let group = p.n_heads / p.n_kv_heads;
    let batches = (group + G - 1u) / G;
    let kvh = wid.x / batches;
    let g0 = (wid.x % batches) * G;
    let ng = min(G, group - g0); // heads in this workgroup
    let h0 = kvh * group + g0;   // its first query head
    let split = wid.y;
    let p0 = first_pos() + split * SPLIT;
    let cnt = min(SPLIT, p.start + 1u - p0); // positions in this split

    let q4 = HD / 4u;
    for (var i = lid.x; i < ng * q4; i += WG) {
        q_sh[i] = q[h0 * q4 + i];
    }
    workgroupBarrier();

    // 1. Scores. Invocation (jj, sl) dots slice sl of position base + jj with every head.
    let sl_n = HD / 8u;                // slices per row of one KV head
    let pass_n = WG / sl_n;            // positions per pass
    let row4 = p.n_kv_heads * sl_n;    // a cache row in vec4<u32>
    let jj = lid.x / sl_n;
    let sl = lid.x % sl_n;
    for (var base = 0u; base < cnt; base += pass_n) {
        let j = base + jj;
        if (jj < pass_n && j < cnt) {
            let kw = k_cache[(p0 + j) * row4 + kvh * sl_n + sl];
            let ka = vec4<f32>(unpack2x16float(kw.x), unpack2x16float(kw.y));
            let kb = vec4<f32>(unpack2x16float(kw.z), unpack2x16float(kw.w));
            for (var g = 0u; g < ng; g++) {
                dot_sh[g * WG + lid.x] = dot(q_sh[g * q4 + 2u * sl], ka) + dot(q_sh[g * q4 + 2u * sl + 1u], kb);
            }
        }
        workgroupBarrier();
        for (var i = lid.x; i < ng * pass_n; i += WG) {
            let g = i / pass_n;
            let jp = i % pass_n;
            if (base + jp < cnt) {
                var s = 0.0;
                for (var t = 0u; t < sl_n; t++) {
                    s += dot_sh[g * WG + jp * sl_n + t];
                }
                s_sh[g * SPLIT + base + jp] = s * p.scale;
            }
        }
        workgroupBarrier();
    }

    // 2. Max, then e^(s − max) and their sum: R invocations per head, then the R partials.
    let gr = lid.x / R;
    let r = lid.x % R;
    if (gr < ng) {
        var m = F32_LOWEST;
        for (var j = r; j < cnt; j += R) {
            m = max(m, s_sh[gr * SPLIT + j]);
        }
        max_sh[lid.x] = m;
    }
    workgroupBarrier();
    if (gr < ng) {
        var m = max_sh[gr * R];
        for (var t = 1u; t < R; t++) {
            m = max(m, max_sh[gr * R + t]);
        }
        var l = 0.0;
        for (var j = r; j < cnt; j += R) {
            let e = exp(s_sh[gr * SPLIT + j] - m);
            s_sh[gr * SPLIT + j] = e;
            l += e;
        }
        sum_sh[lid.x] = l;
    }
    workgroupBarrier();

    // 3. Σ p · V, one (head, word) per invocation.
    let words = HD / 2u;
    let row_words = p.n_kv_heads * words;
    let n_splits = splits();
    for (var i = lid.x; i < ng * words; i += WG) {
        let g = i / words;
        let w = i % words;
        var acc = vec2<f32>(0.0);
        for (var j = 0u; j < cnt; j++) {
            acc += s_sh[g * SPLIT + j] * unpack2x16float(v_cache[(p0 + j) * row_words + kvh * words + w]);
        }
        var l = 0.0;
        for (var t = 0u; t < R; t++) {
            l += sum_sh[g * R + t];
        }
        let h = h0 + g;
        if (n_splits == 1u) {
            out[h * HD + 2u * w] = acc.x / l;
            out[h * HD + 2u * w + 1u] = acc.y / l;
        } else {
            let at = (split * p.n_heads + h) * (HD + 2u);
            part[at + 2u * w] = acc.x;
            part[at + 2u * w + 1u] = acc.y;
            if (w == 0u) {
                var m = max_sh[g * R];
                for (var t = 1u; t < R; t++) {
                    m = max(m, max_sh[g * R + t]);
                }
                part[at + HD] = m;
                part[at + HD + 1u] = l;
            }
        }
    }
}

// Combines the splits of query head wid.x (only dispatched when there are several).
@compute @workgroup_size(WG)
fn merge(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let h = wid.x;
    let n_splits = splits();
    let stride = p.n_heads * (HD + 2u);
    var m = F32_LOWEST;
    for (var s = 0u; s < n_splits; s++) {
        m = max(m, part[s * stride + h * (HD + 2u) + HD]);
    }
    var l = 0.0;
    for (var s = 0u; s < n_splits; s++) {
        let at = s * stride + h * (HD + 2u);
        l += exp(part[at + HD] - m) * part[at + HD + 1u];
    }
    for (var d = lid.x; d < HD; d += WG) {
        var o = 0.0;
        for (var s = 0u; s < n_splits; s++) {
            let at = s * stride + h * (HD + 2u);
            o += exp(part[at + HD] - m) * part[at + d];
        }
        out[h * HD + d] = o / l;
    }
}
