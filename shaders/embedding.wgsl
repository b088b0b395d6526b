// Embedding lookup: y[t, :] = row ids[t] of the (vocab, dim) matrix W, dequantized to f32.
// W: (vocab, dim) row-major in its GGUF block layout; row r is `row_bytes` bytes at byte
//    r * row_bytes of `w`, as raw bytes in u32 words (as in matmul.wgsl).
// ids: (n_tokens) u32, each < vocab (a larger id is clamped to vocab - 1; the host checks);
// y: (n_tokens, dim) row-major f32.
//
// The host prepends quant/common.wgsl and one quant/<format>.wgsl (PIECE, dequant_piece;
// `p.cols` there is this kernel's `dim`), as for matmul (ops/embedding.rs).
// One workgroup per token (x + y * dispatched x), threads striding over 32-weight pieces.

override WG: u32 = 64u; // threads per workgroup; set by the host

struct Params {
    vocab: u32,
    cols: u32, // dim
    n_tokens: u32,
    row_bytes: u32, // bytes per row of W: dim / QK * BLOCK_BYTES
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> w: array<u32>;       // (vocab, row_bytes) bytes, padded to words
@group(0) @binding(2) var<storage, read> ids: array<u32>;     // (n_tokens)
@group(0) @binding(3) var<storage, read_write> y: array<f32>; // (n_tokens, dim)

@compute @workgroup_size(WG)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    let t = wid.x + wid.y * nwg.x;
    if (t >= p.n_tokens) {
        return;
    }
    let row_off = min(ids[t], p.vocab - 1u) * p.row_bytes;
    let n_pieces = (p.cols + PIECE - 1u) / PIECE;
    for (var pc = lid.x; pc < n_pieces; pc += WG) {
        var wv: array<vec4<f32>, 8>;
        dequant_piece(row_off, pc, &wv);
        for (var k = 0u; k < 8u; k++) {
            for (var e = 0u; e < 4u; e++) {
                let col = pc * PIECE + 4u * k + e;
                if (col < p.cols) {
                    y[t * p.cols + col] = wv[k][e];
                }
            }
        }
    }
}
