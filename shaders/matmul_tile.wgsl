// Quantized matrix × activations with a register tile per thread: y[t, r] = Σ_c W[r, c] · x[t, c].
// Same operands and parameters as matmul.wgsl; for CPU-backed adapters (lavapipe, SwiftShader).
//
// On those adapters a workgroup runs as SIMD lanes on one core and every load from a buffer
// is a per-lane gather, whatever the address pattern. What pays is reuse: each thread owns
// R_TILE rows × T_TILE tokens of y, so every x vector it loads serves R_TILE rows and every
// piece of 32 weights it dequantizes serves T_TILE tokens. No workgroup memory, no barriers.
//
// This file is a template. The host (ops/matmul.rs, `tile_source`) sets R_TILE, T_TILE and
// WG, and writes out the lines marked `{{...}}` fully unrolled: with the tile in loops the
// compiler keeps it in scratch memory indexed per lane, which measured 4-5× slower.
//
// Needs cols to be a whole number of 32-weight pieces (x is read as vec4 rows); the host uses
// matmul.wgsl for other shapes. Tokens past n_tokens and rows past `rows` are computed on
// clamped indices (so every read is in bounds) and not stored.

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
@group(0) @binding(1) var<storage, read> w: array<u32>;             // (rows, row_bytes) bytes
@group(0) @binding(2) var<storage, read> x: array<vec4<f32>>;       // (n_tokens, cols / 4)
@group(0) @binding(3) var<storage, read_write> y: array<f32>;       // (n_tokens, y_stride)

@compute @workgroup_size(WG)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    let group = wid.x + wid.y * nwg.x;
    let row0 = (group * WG + lid.x) * R_TILE;
    let t0 = wid.z * T_TILE;
    if (row0 >= p.rows || t0 >= p.n_tokens) {
        return;
    }
    let last_row = p.rows - 1u;
    let last_token = p.n_tokens - 1u;
    let x_row = p.cols / 4u;
    // acc_R_T: y[t0 + T, row0 + R];  xbase_T: x row of token t0 + T (clamped)
    {{DECLARE}}
    for (var pc = 0u; pc < p.cols / PIECE; pc++) {
        // x_T_K: columns [32 pc + 4 K, 32 pc + 4 K + 4) of token t0 + T
        {{LOAD_X}}
        var wv: array<vec4<f32>, 8>;
        // per row R: dequant_piece(row R, pc, &wv); acc_R_T += dot(wv, x_T) for every T
        {{ROWS}}
    }
    {{STORE}}
}
