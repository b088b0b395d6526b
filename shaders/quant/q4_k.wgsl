// block_q4_K (144 bytes): d: f16, dmin: f16, scales: [u8; 12] (8 × 6-bit scale and min),
// qs: [u8; 128]: 64-weight group g is qs[32g..32g+32], low nibbles its first 32 weights,
// high nibbles the next 32.  w = (d * sc) * q - (dmin * m), one (sc, m) per 32 weights.
// Piece j (0..8) of a block is sub-block j: group j / 2, nibble j % 2.
const QK: u32 = 256u;
const BLOCK_BYTES: u32 = 144u;

fn dequant_piece(row_off: u32, piece: u32, out: ptr<function, array<vec4<f32>, 8>>) {
    let b = row_off + (piece / 8u) * BLOCK_BYTES;
    let j = piece % 8u;
    let d = read_f16(b);
    let dmin = read_f16(b + 2u);
    let sm = scale_min_k4(b + 4u, j);
    let dl = d * f32(sm.x);
    let ml = dmin * f32(sm.y);
    let qs = b + 16u + 32u * (j / 2u);
    let shift = vec4<u32>(4u * (j % 2u));
    for (var k = 0u; k < 8u; k++) {
        let q = (bytes4(read_u32(qs + 4u * k)) >> shift) & vec4<u32>(15u);
        (*out)[k] = dl * vec4<f32>(q) - ml;
    }
}
