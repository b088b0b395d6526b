// Decode GEMV (one token) for GPUs: y[r] = Σ_c W[r, c] · x[c], with the fusions of fuse.wgsl.
// W: (rows, cols) row-major in its GGUF block layout, raw bytes in u32 words (as matmul.wgsl);
// x: (cols) f32 read as vec4;  y: (y_stride) f32, columns 0..rows.
//
// The host prepends quant/common.wgsl, one quant/<format>.wgsl (slice_x, slice_word,
// slice_dot), fuse.wgsl with its constants, and `const R` (rows of W per workgroup: it sizes
// a function-scope array, which WGSL cannot do with an override).
//
// Mapping (ops/matmul.rs has the why): a workgroup owns R rows; a row is cols / 8 slices of
// 8 weights, and thread t takes slices t, t + WG, ... Neighbouring threads take neighbouring
// slices, which the formats number so that they read neighbouring bytes of W and of x. Each
// thread loads its 8 x values once, as two vec4, with their sums, and uses them for all R
// rows. Partial sums (and Σx² under NORM) are reduced in workgroup memory in two stages (two
// barriers, no subgroups: browsers lack them). Workgroups: x + y * (dispatched x) is the
// output group: R outputs, or R / 2 under SWIGLU (their gate rows, then their up rows).

override WG: u32 = 256u;   // threads per workgroup: a power of two, at least 32 * R
override SLICES: u32 = 1u; // cols / 8, so the slice loop has a known trip count

struct Params {
    rows: u32,
    cols: u32,
    n_tokens: u32,
    row_bytes: u32,
    y_stride: u32,
    eps: f32,   // NORM
    fuse: u32,  // the fusion's code (bit 0 norm, bits 1.. the epilogue): read only under RUNTIME
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> w: array<u32>;       // (rows, row_bytes) bytes
@group(0) @binding(2) var<storage, read> x: array<vec4<f32>>; // (cols / 4)
@group(0) @binding(3) var<storage, read_write> y: array<f32>; // (y_stride)

// Outputs per workgroup, and rows of partial sums: R rows of W, then Σx² under NORM.
const OUT_R: u32 = select(R, R / 2u, GATED);
const SLOTS: u32 = select(R, R + 1u, NORM);

var<workgroup> partial: array<f32, SLOTS * WG>; // [slot][thread]

@compute @workgroup_size(WG)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    let out0 = (wid.x + wid.y * nwg.x) * OUT_R;
    if (out0 >= out_rows()) {
        return; // uniform per workgroup, so no barrier is skipped by part of it
    }
    // Byte offsets of the workgroup's R rows of W (under SWIGLU: OUT_R gate rows, then the
    // matching up rows). Outputs past the end compute the last one again and are not stored.
    var row_off: array<u32, R>;
    for (var r = 0u; r < R; r++) {
        row_off[r] = weight_row(out0 + r % OUT_R, r >= OUT_R) * p.row_bytes;
    }
    var acc: array<f32, R>;
    var sum_sq = 0.0;
    for (var s = lid.x; s < SLICES; s += WG) {
        let xi = slice_x(s);
        var xa = x[xi.x];
        var xb = x[xi.y];
        if (NORM) {
            sum_sq += dot(xa, xa) + dot(xb, xb);
            xa *= norm4(xi.x);
            xb *= norm4(xi.y);
        }
        let sx = vec2<f32>(dot(xa, vec4<f32>(1.0)), dot(xb, vec4<f32>(1.0)));
        for (var r = 0u; r < R; r++) {
            acc[r] += slice_dot(row_off[r], s, xa, xb, sx);
        }
    }
    for (var r = 0u; r < R; r++) {
        partial[r * WG + lid.x] = acc[r];
    }
    if (NORM) {
        partial[R * WG + lid.x] = sum_sq;
    }
    workgroupBarrier();
    // Stage 1: 32 threads per slot each fold WG / 32 partials into place j of that slot.
    // Thread (slot, j) alone reads places j, j + 32, ... and writes place j.
    for (var i = lid.x; i < 32u * SLOTS; i += WG) {
        let r = i / 32u;
        let j = i % 32u;
        var s = 0.0;
        for (var k = j; k < WG; k += 32u) {
            s += partial[r * WG + k];
        }
        partial[r * WG + j] = s;
    }
    workgroupBarrier();
    if (lid.x < OUT_R && out0 + lid.x < out_rows()) {
        var sums: array<f32, SLOTS>;
        for (var r = 0u; r < SLOTS; r++) {
            for (var j = 0u; j < 32u; j++) {
                sums[r] += partial[r * WG + j];
            }
        }
        let scale = norm_scale(sums[SLOTS - 1u]);
        if (GATED) {
            y[out0 + lid.x] = gate_act(sums[lid.x] * scale) * (sums[lid.x + OUT_R] * scale);
        } else {
            put(out0 + lid.x, sums[lid.x] * scale);
        }
    }
}

// For the coalescing test (ops/matmul.rs): the byte addresses of thread t's first loads in
// row 0, from the same functions `main` loads through: its first slice's quant word, and its
// first x vec4. Bound only by the test (binding 4 is not in `main`'s layout).
@group(0) @binding(4) var<storage, read_write> trace: array<u32>; // (2 WG)

@compute @workgroup_size(WG)
fn trace_loads(@builtin(local_invocation_id) lid: vec3<u32>) {
    trace[2u * lid.x] = slice_word(0u, lid.x);
    trace[2u * lid.x + 1u] = 16u * slice_x(lid.x).x;
}
