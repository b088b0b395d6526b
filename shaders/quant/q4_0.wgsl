// block_q4_0 (18 bytes): d: f16, qs: [u8; 16]; byte j holds weight j in its low nibble and
// weight j + 16 in its high nibble.  w[j] = d * (q[j] - 8).  One piece per block.
const QK: u32 = 32u;
const BLOCK_BYTES: u32 = 18u;

fn dequant_piece(row_off: u32, piece: u32, out: ptr<function, array<vec4<f32>, 8>>) {
    let b = row_off + piece * BLOCK_BYTES;
    let d = read_f16(b);
    for (var k = 0u; k < 4u; k++) {
        let q = bytes4(read_u32(b + 2u + 4u * k));
        (*out)[k] = vec4<f32>(vec4<i32>(q & vec4<u32>(15u)) - vec4<i32>(8)) * d;
        (*out)[k + 4u] = vec4<f32>(vec4<i32>(q >> vec4<u32>(4u)) - vec4<i32>(8)) * d;
    }
}
