// F32: plain little-endian floats, one per 4 bytes. Rows may be any length: a piece past
// the row's end reads as zeros.
const QK: u32 = 1u;
const BLOCK_BYTES: u32 = 4u;

fn dequant_piece(row_off: u32, piece: u32, out: ptr<function, array<vec4<f32>, 8>>) {
    let base = row_off >> 2u;
    for (var k = 0u; k < 8u; k++) {
        var v = vec4<f32>(0.0);
        for (var e = 0u; e < 4u; e++) {
            let col = piece * PIECE + 4u * k + e;
            if (col < p.cols) {
                v[e] = bitcast<f32>(w[base + col]);
            }
        }
        (*out)[k] = v;
    }
}

// GEMV slices (common.wgsl): slice s is columns 8s..8s+8, eight words. Needs cols % 8 == 0.
const SLICES_PER_BLOCK: u32 = 1u;

fn slice_x(s: u32) -> vec2<u32> {
    return vec2<u32>(2u * s, 2u * s + 1u);
}

fn slice_word(row_off: u32, s: u32) -> u32 {
    return row_off + 32u * s;
}

fn slice_dot(row_off: u32, s: u32, xa: vec4<f32>, xb: vec4<f32>, sx: vec2<f32>) -> f32 {
    let i = slice_word(row_off, s) >> 2u;
    let a = vec4<f32>(bitcast<f32>(w[i]), bitcast<f32>(w[i + 1u]), bitcast<f32>(w[i + 2u]), bitcast<f32>(w[i + 3u]));
    let b = vec4<f32>(bitcast<f32>(w[i + 4u]), bitcast<f32>(w[i + 5u]), bitcast<f32>(w[i + 6u]), bitcast<f32>(w[i + 7u]));
    return dot(a, xa) + dot(b, xb);
}
