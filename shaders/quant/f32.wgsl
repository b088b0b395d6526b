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
