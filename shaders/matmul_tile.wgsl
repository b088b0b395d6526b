// Quantized matrix × activations with a register tile per thread: y[t, r] = Σ_c W[r, c] · x[t, c].
// Same operands, parameters and fusions (fuse.wgsl) as matmul.wgsl; for CPU-backed adapters
// (lavapipe, SwiftShader).
//
// On those adapters a workgroup runs as SIMD lanes on one core and every load from a buffer
// is a per-lane gather, whatever the address pattern. What pays is reuse: each thread owns
// R_TILE rows × T_TILE tokens of y, so every x vector it loads serves R_TILE rows and every
// piece of 32 weights it dequantizes serves T_TILE tokens. No workgroup memory, no barriers.
// Under SWIGLU its rows are the gate rows of OUT_TILE = R_TILE / 2 outputs, then their up
// rows; under NORM it sums x² from the x it loads for its tokens.
//
// This file is a template. The host (ops/matmul.rs, `tile_source`) sets R_TILE, OUT_TILE,
// T_TILE and WG, and writes out the lines marked `{{...}}` fully unrolled: with the tile in
// loops the compiler keeps it in scratch memory indexed per lane, which measured 4-5× slower.
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
    eps: f32,   // NORM
    fuse: u32,  // the fusion's code (bit 0 norm, bits 1.. the epilogue): read only under RUNTIME
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> w: array<u32>;             // (rows, row_bytes) bytes
@group(0) @binding(2) var<storage, read> x: array<vec4<f32>>;       // (n_tokens, cols / 4)
@group(0) @binding(3) var<storage, read_write> y: array<f32>;       // (n_tokens, y_stride)

// Outputs per thread: OUT_TILE (R_TILE, or under SWIGLU R_TILE / 2); under RUNTIME the
// tile is laid out for SWIGLU and holds R_TILE outputs of the other epilogues.
fn tile_outs() -> u32 {
    if (EPILOGUE == RUNTIME && !gated()) {
        return R_TILE;
    }
    return OUT_TILE;
}

// The weight row behind row r of a thread's tile whose first output is out0.
fn tile_row(out0: u32, r: u32) -> u32 {
    if (gated()) {
        return weight_row(out0 + r % OUT_TILE, r >= OUT_TILE);
    }
    return weight_row(out0 + r, false);
}

@compute @workgroup_size(WG)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    let group = wid.x + wid.y * nwg.x;
    let out0 = (group * WG + lid.x) * tile_outs();
    let t0 = wid.z * T_TILE;
    if (out0 >= out_rows() || t0 >= p.n_tokens) {
        return;
    }
    let last_out = out_rows() - 1u;
    let last_token = p.n_tokens - 1u;
    let x_row = p.cols / 4u;
    // acc_R_T: row R of the tile · x of token t0 + T;  off_R: that row's byte offset in W;
    // xbase_T: x row of token t0 + T (clamped);  ss_T: its Σx² (NORM)
    {{DECLARE}}
    for (var pc = 0u; pc < p.cols / PIECE; pc++) {
        // x_T_K: columns [32 pc + 4 K, 32 pc + 4 K + 4) of token t0 + T (times g_K, the norm
        // weights of those columns, under NORM)
        {{LOAD_X}}
        var wv: array<vec4<f32>, 8>;
        // per row R: dequant_piece(off_R, pc, &wv); acc_R_T += dot(wv, x_T) for every T
        {{ROWS}}
    }
    {{STORE}}
}
