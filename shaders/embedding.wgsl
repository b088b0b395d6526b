// Embedding lookup: y[t, :] = row ids[t] of the (vocab, dim) table, dequantized to f32, times
// `scale` (Gemma 3's √dim; 1 for the others).
// W: rows row_start .. row_start + n_rows of the table (all of it, unless it is split by rows
//    across bindings), (n_rows, dim) row-major in its GGUF block layout; row r is
//    `row_bytes` bytes at byte (r - row_start) * row_bytes of `w`, as raw bytes in u32
//    words (as in matmul.wgsl).
// ids: (n_tokens) u32, each < vocab (the host checks). A token whose row is not in this
//    part of the table is left untouched: one dispatch per part fills y.
// y: (n_tokens, dim) row-major f32.
//
// The host prepends quant/common.wgsl and one quant/<format>.wgsl (PIECE, dequant_piece;
// `p.cols` there is this kernel's `dim`), as for matmul (ops/embedding.rs).
// One workgroup per token (x + y * dispatched x), threads striding over 32-weight pieces.

override WG: u32 = 64u; // threads per workgroup; set by the host

struct Params {
    n_rows: u32, // rows of the table in `w`
    cols: u32,   // dim
    n_tokens: u32,
    row_bytes: u32, // bytes per row of W: dim / QK * BLOCK_BYTES
    row_start: u32, // the table row that `w` starts with
    scale: f32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> w: array<u32>;       // (n_rows, row_bytes) bytes, padded to words
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
    let r = ids[t] - p.row_start; // wraps to a huge value below row_start
    if (r >= p.n_rows) {
        return; // another part of the table has this token's row
    }
    let row_off = r * p.row_bytes;
    let n_pieces = (p.cols + PIECE - 1u) / PIECE;
    for (var pc = lid.x; pc < n_pieces; pc += WG) {
        var wv: array<vec4<f32>, 8>;
        dequant_piece(row_off, pc, &wv);
        for (var k = 0u; k < 8u; k++) {
            for (var e = 0u; e < 4u; e++) {
                let col = pc * PIECE + 4u * k + e;
                if (col < p.cols) {
                    y[t * p.cols + col] = wv[k][e] * p.scale;
                }
            }
        }
    }
}
