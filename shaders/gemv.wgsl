// Decode GEMV (one token) for GPUs: y[r] = Σ_c W[r, c] · x[c].
// W: (rows, cols) row-major in its GGUF block layout, raw bytes in u32 words (as matmul.wgsl);
// x: (cols) f32 read as vec4;  y: (y_stride) f32, columns 0..rows.
//
// The host prepends quant/common.wgsl, one quant/<format>.wgsl (slice_x, slice_word,
// slice_dot) and `const R` (rows per workgroup: it sizes a function-scope array, which WGSL
// cannot do with an override).
//
// Mapping (ops/matmul.rs has the why): a workgroup owns R rows; a row is cols / 8 slices of
// 8 weights, and thread t takes slices t, t + WG, ... Neighbouring threads take neighbouring
// slices, which the formats number so that they read neighbouring bytes of W and of x. Each
// thread loads its 8 x values once, as two vec4, with their sums, and uses them for all R
// rows. Partial sums are reduced in workgroup memory in two stages (two barriers, no
// subgroups: browsers lack them). Workgroups: x + y * (dispatched x) is the row group.

override WG: u32 = 256u;   // threads per workgroup: a power of two, at least 32 * R
override SLICES: u32 = 1u; // cols / 8, so the slice loop has a known trip count

struct Params {
    rows: u32,
    cols: u32,
    n_tokens: u32,
    row_bytes: u32,
    y_stride: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> w: array<u32>;       // (rows, row_bytes) bytes
@group(0) @binding(2) var<storage, read> x: array<vec4<f32>>; // (cols / 4)
@group(0) @binding(3) var<storage, read_write> y: array<f32>; // (y_stride)

var<workgroup> partial: array<f32, R * WG>; // [row][thread]

@compute @workgroup_size(WG)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    let row0 = (wid.x + wid.y * nwg.x) * R;
    if (row0 >= p.rows) {
        return; // uniform per workgroup, so no barrier is skipped by part of it
    }
    let last = p.rows - 1u;
    var acc: array<f32, R>;
    for (var s = lid.x; s < SLICES; s += WG) {
        let xi = slice_x(s);
        let xa = x[xi.x];
        let xb = x[xi.y];
        let sx = vec2<f32>(dot(xa, vec4<f32>(1.0)), dot(xb, vec4<f32>(1.0)));
        for (var r = 0u; r < R; r++) {
            // Rows past the end compute the last row again and are not stored.
            acc[r] += slice_dot(min(row0 + r, last) * p.row_bytes, s, xa, xb, sx);
        }
    }
    for (var r = 0u; r < R; r++) {
        partial[r * WG + lid.x] = acc[r];
    }
    workgroupBarrier();
    // Stage 1: 32 threads per row each fold WG / 32 partials into slot j of that row. Thread
    // (r, j) alone reads slots j, j + 32, ... and writes slot j.
    if (lid.x < 32u * R) {
        let r = lid.x / 32u;
        let j = lid.x % 32u;
        var s = 0.0;
        for (var i = j; i < WG; i += 32u) {
            s += partial[r * WG + i];
        }
        partial[r * WG + j] = s;
    }
    workgroupBarrier();
    if (lid.x < R && row0 + lid.x < p.rows) {
        var s = 0.0;
        for (var j = 0u; j < 32u; j++) {
            s += partial[lid.x * WG + j];
        }
        y[row0 + lid.x] = s;
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
