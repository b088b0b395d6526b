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
