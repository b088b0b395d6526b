// Token selection on the device, so that a decode step reads back one u32, not the logits.
// logits: (n) f32;  out: (1) u32, the chosen token id.
//
// Logits are ranked by an order-preserving u32 key of their bits (order_key), and ties go to
// the lower token id, as in hearth_model's sampler. NaN ranks as -inf; +inf is not supported.
//
// argmax (greedy), two dispatches:
//   argmax_partial: workgroup g reduces logits[g·chunk, min((g+1)·chunk, n)) to its best
//     (key, id) pair in partials;  argmax_final: one workgroup reduces the n_partials pairs.
//
// sample: one workgroup; temperature → top-k → top-p → min-p → draw with the host's u, the
// chain of hearth_model::Sampler (top-p and min-p at temperature 1, the draw at temperature):
//   1. Radix select of the K = min(top_k, K_MAX, n) best tokens (top_k = 0 means K_MAX). Each
//      token has a unique 64-bit rank (order_key(logit), ~id); 8-bit digits are fixed from
//      the top, one pass over the logits each, with a 256-bin histogram in workgroup memory,
//      until the chosen bin holds exactly the tokens still needed (usually 2-3 passes).
//   2. One more pass collects the K tokens whose rank prefix is ≥ the selected one; a bitonic
//      sort in workgroup memory orders them best first.
//   3. top-p: keep the shortest prefix whose softmax mass (temperature 1) reaches top_p;
//      min-p: then drop candidates with logit < best + ln(min_p); keep at least one.
//   4. Softmax at temperature over the kept candidates; prefix sum; the first candidate
//      whose cumulative weight exceeds u·total is drawn.
// Limits: at most K_MAX (256) candidates: with top_k = 0 or > K_MAX the tail beyond the
// K_MAX most likely tokens is never drawn. temperature ≤ 0 is greedy (K = 1).

override WG: u32 = 256u;    // threads per workgroup, a power of two; set by the host (ops/sample.rs)
override K_MAX: u32 = 256u; // most candidates kept by `sample`, a power of two; set by the host

const RADIX: u32 = 256u; // histogram bins: the select fixes 8 bits of the rank per pass

struct Params {
    n: u32,           // vocabulary size
    top_k: u32,       // 0 = off (K_MAX)
    top_p: f32,       // ≥ 1 = off
    min_p: f32,       // ≤ 0 = off
    temperature: f32, // ≤ 0 = greedy
    u: f32,           // the host's uniform random number in [0, 1)
    chunk: u32,       // argmax: logits per workgroup of argmax_partial
    n_partials: u32,  // argmax: workgroups of argmax_partial
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> logits: array<f32>;         // (n)
@group(0) @binding(2) var<storage, read_write> partials: array<u32>; // (n_partials, 2): (key, id)
@group(0) @binding(3) var<storage, read_write> out: array<u32>;      // (1)

const NO_ID: u32 = 0xffffffffu;
const NEG_INF_KEY: u32 = 0x007fffffu; // order_key(-inf)

// Monotone map of f32 onto u32 (a < b ⇔ key(a) < key(b)); NaN maps as -inf. With
// `canon_zero`, -0 ranks as +0 (argmax compares values; the sampler's sort does not).
fn order_key(v: f32, canon_zero: bool) -> u32 {
    var b = bitcast<u32>(v);
    if ((b & 0x7fffffffu) > 0x7f800000u) {
        b = 0xff800000u;
    }
    if (canon_zero && b == 0x80000000u) {
        b = 0u;
    }
    return select(b | 0x80000000u, ~b, (b & 0x80000000u) != 0u);
}

fn key_value(k: u32) -> f32 {
    return bitcast<f32>(select(~k, k & 0x7fffffffu, (k & 0x80000000u) != 0u));
}

// (kb, ib) ranks before (ka, ia): larger key, or the same key and a lower id.
fn better(ka: u32, ia: u32, kb: u32, ib: u32) -> bool {
    return kb > ka || (kb == ka && ib < ia);
}

// ---- argmax ----

var<workgroup> red_key: array<u32, WG>;
var<workgroup> red_id: array<u32, WG>;

// Reduces red_key/red_id to their best pair, left in slot 0.
fn reduce_best(lid: u32) {
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s /= 2u) {
        if (lid < s && better(red_key[lid], red_id[lid], red_key[lid + s], red_id[lid + s])) {
            red_key[lid] = red_key[lid + s];
            red_id[lid] = red_id[lid + s];
        }
        workgroupBarrier();
    }
}

@compute @workgroup_size(WG)
fn argmax_partial(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let start = wid.x * p.chunk;
    let end = min(start + p.chunk, p.n);
    var best_key = 0u; // below every real key
    var best_id = NO_ID;
    for (var i = start + lid.x; i < end; i += WG) {
        let k = order_key(logits[i], true);
        if (better(best_key, best_id, k, i)) {
            best_key = k;
            best_id = i;
        }
    }
    red_key[lid.x] = best_key;
    red_id[lid.x] = best_id;
    reduce_best(lid.x);
    if (lid.x == 0u) {
        partials[2u * wid.x] = red_key[0];
        partials[2u * wid.x + 1u] = red_id[0];
    }
}

@compute @workgroup_size(WG)
fn argmax_final(@builtin(local_invocation_id) lid: vec3<u32>) {
    var best_key = 0u;
    var best_id = NO_ID;
    for (var g = lid.x; g < p.n_partials; g += WG) {
        let k = partials[2u * g];
        let i = partials[2u * g + 1u];
        if (better(best_key, best_id, k, i)) {
            best_key = k;
            best_id = i;
        }
    }
    red_key[lid.x] = best_key;
    red_id[lid.x] = best_id;
    reduce_best(lid.x);
    if (lid.x == 0u) {
        out[0] = select(red_id[0], 0u, red_id[0] == NO_ID); // n = 0: token 0, as the CPU
    }
}

// ---- sample ----

var<workgroup> hist: array<atomic<u32>, RADIX>;
var<workgroup> scan_a: array<u32, RADIX>;
var<workgroup> scan_b: array<u32, RADIX>;
var<workgroup> cand_key: array<u32, K_MAX>;
var<workgroup> cand_id: array<u32, K_MAX>;
var<workgroup> weight_a: array<f32, K_MAX>;
var<workgroup> weight_b: array<f32, K_MAX>;
var<workgroup> counter: atomic<u32>;
var<workgroup> sel_bin: u32;
var<workgroup> sel_above: u32;
var<workgroup> sel_count: u32;
var<workgroup> shared_u32: u32;

// The 64-bit rank of token i as (hi, lo): the higher, the better; unique per token.
fn rank(i: u32, canon_zero: bool) -> vec2<u32> {
    return vec2<u32>(order_key(logits[i], canon_zero), ~i);
}

// The top 8·d bits of a rank, right-aligned.
fn rank_top(r: vec2<u32>, d: u32) -> vec2<u32> {
    if (d == 0u) {
        return vec2<u32>(0u);
    }
    if (d <= 4u) {
        return vec2<u32>(0u, r.x >> (32u - 8u * d));
    }
    let s = 64u - 8u * d;
    if (s == 0u) {
        return r;
    }
    return vec2<u32>(r.x >> s, (r.y >> s) | (r.x << (32u - s)));
}

// Digit d (0 = the top byte) of a rank.
fn rank_digit(r: vec2<u32>, d: u32) -> u32 {
    if (d < 4u) {
        return (r.x >> (24u - 8u * d)) & 0xffu;
    }
    return (r.y >> (56u - 8u * d)) & 0xffu;
}

fn rank_ge(a: vec2<u32>, b: vec2<u32>) -> bool {
    return a.x > b.x || (a.x == b.x && a.y >= b.y);
}

// Broadcasts the value of `counter` to the workgroup as a uniform value.
fn uniform_counter(lid: u32) -> u32 {
    workgroupBarrier();
    if (lid == 0u) {
        shared_u32 = atomicLoad(&counter);
    }
    return workgroupUniformLoad(&shared_u32);
}

// Inclusive prefix sum of weight_a[0, len) in place (Hillis-Steele; len a power of two).
fn scan_weights(lid: u32, len: u32) {
    workgroupBarrier();
    for (var off = 1u; off < len; off *= 2u) {
        for (var j = lid; j < len; j += WG) {
            weight_b[j] = weight_a[j] + select(0.0, weight_a[max(j, off) - off], j >= off);
        }
        workgroupBarrier();
        for (var j = lid; j < len; j += WG) {
            weight_a[j] = weight_b[j];
        }
        workgroupBarrier();
    }
}

// The first candidate j < len whose cumulative weight (weight_a) exceeds `bound` (or
// reaches it, with `inclusive`); `fallback` if none.
fn first_past(lid: u32, len: u32, bound: f32, inclusive: bool, fallback: u32) -> u32 {
    if (lid == 0u) {
        atomicStore(&counter, fallback);
    }
    workgroupBarrier();
    for (var j = lid; j < len; j += WG) {
        if (weight_a[j] > bound || (inclusive && weight_a[j] >= bound)) {
            atomicMin(&counter, j);
        }
    }
    return uniform_counter(lid);
}

@compute @workgroup_size(WG)
fn sample(@builtin(local_invocation_id) lid_: vec3<u32>) {
    let lid = lid_.x;
    let n = p.n;
    if (n == 0u) {
        if (lid == 0u) {
            out[0] = 0u;
        }
        return;
    }
    let greedy = p.temperature <= 0.0;
    var k = select(p.top_k, K_MAX, p.top_k == 0u || p.top_k > K_MAX);
    k = select(min(k, n), 1u, greedy);

    // 1. Radix select: after `digits` digits, the K best ranks are those whose top
    // 8·digits bits are ≥ `prefix`; `need` of them share the prefix exactly.
    var prefix = vec2<u32>(0u);
    var need = k;
    var digits = 0u;
    for (var d = 0u; d < 8u; d++) {
        for (var b = lid; b < RADIX; b += WG) {
            atomicStore(&hist[b], 0u);
        }
        workgroupBarrier();
        for (var i = lid; i < n; i += WG) {
            let r = rank(i, greedy);
            if (all(rank_top(r, d) == prefix)) {
                atomicAdd(&hist[rank_digit(r, d)], 1u);
            }
        }
        workgroupBarrier();
        // Suffix sums: scan_a[b] = tokens in bins ≥ b.
        for (var b = lid; b < RADIX; b += WG) {
            scan_a[b] = atomicLoad(&hist[b]);
        }
        workgroupBarrier();
        for (var off = 1u; off < RADIX; off *= 2u) {
            for (var b = lid; b < RADIX; b += WG) {
                scan_b[b] = scan_a[b] + select(0u, scan_a[min(b + off, RADIX - 1u)], b + off < RADIX);
            }
            workgroupBarrier();
            for (var b = lid; b < RADIX; b += WG) {
                scan_a[b] = scan_b[b];
            }
            workgroupBarrier();
        }
        // The bin holding the need-th best: exactly one b has S[b] ≥ need > S[b + 1].
        for (var b = lid; b < RADIX; b += WG) {
            let above = select(0u, scan_a[min(b + 1u, RADIX - 1u)], b + 1u < RADIX);
            if (scan_a[b] >= need && above < need) {
                sel_bin = b;
                sel_above = above;
                sel_count = scan_a[b] - above;
            }
        }
        let bin = workgroupUniformLoad(&sel_bin);
        let above = workgroupUniformLoad(&sel_above);
        let count = workgroupUniformLoad(&sel_count);
        need -= above;
        prefix = vec2<u32>((prefix.x << 8u) | (prefix.y >> 24u), (prefix.y << 8u) | bin);
        digits = d + 1u;
        if (count == need) {
            break; // the whole bin is in: the rank prefix now separates the K best
        }
    }

    // 2. Collect the K best (in any order), then sort them best first.
    if (lid == 0u) {
        atomicStore(&counter, 0u);
    }
    workgroupBarrier();
    for (var i = lid; i < n; i += WG) {
        let r = rank(i, greedy);
        if (rank_ge(rank_top(r, digits), prefix)) {
            let slot = atomicAdd(&counter, 1u);
            if (slot < K_MAX) {
                cand_key[slot] = r.x;
                cand_id[slot] = i;
            }
        }
    }
    workgroupBarrier();
    if (greedy) {
        if (lid == 0u) {
            out[0] = cand_id[0];
        }
        return;
    }
    var len = 1u; // the sort's width: K rounded up to a power of two, padded with the worst
    while (len < k) {
        len *= 2u;
    }
    for (var j = k + lid; j < len; j += WG) {
        cand_key[j] = 0u;
        cand_id[j] = NO_ID;
    }
    workgroupBarrier();
    for (var size = 2u; size <= len; size *= 2u) {
        for (var stride = size / 2u; stride > 0u; stride /= 2u) {
            for (var i = lid; i < len; i += WG) {
                let l = i ^ stride;
                if (l > i) {
                    let l_first = better(cand_key[i], cand_id[i], cand_key[l], cand_id[l]);
                    // Blocks with (i & size) == 0 put the best first, the others last.
                    if (l_first == ((i & size) == 0u)) {
                        let tk = cand_key[i];
                        let ti = cand_id[i];
                        cand_key[i] = cand_key[l];
                        cand_id[i] = cand_id[l];
                        cand_key[l] = tk;
                        cand_id[l] = ti;
                    }
                }
            }
            workgroupBarrier();
        }
    }
    if (lid == 0u) {
        shared_u32 = cand_key[0];
    }
    let best_key = workgroupUniformLoad(&shared_u32);
    if (best_key == NEG_INF_KEY) {
        // Every logit is -inf (or NaN): no distribution; take the lowest id, as the CPU.
        if (lid == 0u) {
            out[0] = cand_id[0];
        }
        return;
    }
    let best = key_value(best_key);

    // 3. top-p over softmax at temperature 1, then min-p.
    var keep = k;
    if (p.top_p < 1.0) {
        for (var j = lid; j < len; j += WG) {
            weight_a[j] = select(0.0, exp(key_value(cand_key[j]) - best), j < k);
        }
        scan_weights(lid, len);
        let total = weight_a[k - 1u];
        keep = first_past(lid, k, p.top_p * total, true, k - 1u) + 1u;
    }
    if (p.min_p > 0.0) {
        let threshold = best + log(p.min_p);
        if (lid == 0u) {
            atomicStore(&counter, keep);
        }
        workgroupBarrier();
        for (var j = lid; j < keep; j += WG) {
            if (key_value(cand_key[j]) < threshold) {
                atomicMin(&counter, j);
            }
        }
        keep = max(uniform_counter(lid), 1u);
    }

    // 4. Draw: the first candidate whose cumulative weight exceeds u · total.
    for (var j = lid; j < len; j += WG) {
        weight_a[j] = select(0.0, exp((key_value(cand_key[j]) - best) / p.temperature), j < keep);
    }
    scan_weights(lid, len);
    let total = weight_a[keep - 1u];
    let pick = first_past(lid, keep, p.u * total, false, keep - 1u);
    if (lid == 0u) {
        out[0] = cand_id[pick];
    }
}
