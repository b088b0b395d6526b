// F16: little-endian IEEE halves, one per 2 bytes (a row may start mid-word). Rows may be
// any length: a piece past the row's end reads as zeros.
const QK: u32 = 1u;
const BLOCK_BYTES: u32 = 2u;

fn dequant_piece(row_off: u32, piece: u32, out: ptr<function, array<vec4<f32>, 8>>) {
    for (var k = 0u; k < 8u; k++) {
        var v = vec4<f32>(0.0);
        for (var e = 0u; e < 4u; e++) {
            let col = piece * PIECE + 4u * k + e;
            if (col < p.cols) {
                v[e] = read_f16(row_off + 2u * col);
            }
        }
        (*out)[k] = v;
    }
}

// GEMV slices (common.wgsl): slice s is columns 8s..8s+8, four words. Needs cols % 8 == 0
// (rows then start on a word). unpack2x16float is exact for normal halves; a driver may
// flush subnormal weights (|w| < 6.1e-5) to zero.
const SLICES_PER_BLOCK: u32 = 1u;

fn slice_x(s: u32) -> vec2<u32> {
    return vec2<u32>(2u * s, 2u * s + 1u);
}

fn slice_word(row_off: u32, s: u32) -> u32 {
    return row_off + 16u * s;
}

fn slice_dot(row_off: u32, s: u32, xa: vec4<f32>, xb: vec4<f32>, sx: vec2<f32>) -> f32 {
    let i = slice_word(row_off, s) >> 2u;
    let a = vec4<f32>(unpack2x16float(w[i]), unpack2x16float(w[i + 1u]));
    let b = vec4<f32>(unpack2x16float(w[i + 2u]), unpack2x16float(w[i + 3u]));
    return dot(a, xa) + dot(b, xb);
}
