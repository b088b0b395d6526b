// block_q5_0 (22 bytes): d: f16, qh: u32 (bit j = 5th bit of weight j), qs: [u8; 16]
// (low 4 bits; byte j holds weight j in its low nibble, weight j + 16 in its high one).
// w[j] = d * (q[j] - 16).  One piece per block.
const QK: u32 = 32u;
const BLOCK_BYTES: u32 = 22u;

fn dequant_piece(row_off: u32, piece: u32, out: ptr<function, array<vec4<f32>, 8>>) {
    let b = row_off + piece * BLOCK_BYTES;
    let d = read_f16(b);
    let qh = vec4<u32>(read_u32(b + 2u));
    for (var k = 0u; k < 4u; k++) {
        let q = bytes4(read_u32(b + 6u + 4u * k));
        let j = vec4<u32>(4u * k) + vec4<u32>(0u, 1u, 2u, 3u);
        let lo = (q & vec4<u32>(15u)) | (((qh >> j) & vec4<u32>(1u)) << vec4<u32>(4u));
        let hi = (q >> vec4<u32>(4u)) | (((qh >> (j + vec4<u32>(16u))) & vec4<u32>(1u)) << vec4<u32>(4u));
        (*out)[k] = vec4<f32>(vec4<i32>(lo) - vec4<i32>(16)) * d;
        (*out)[k + 4u] = vec4<f32>(vec4<i32>(hi) - vec4<i32>(16)) * d;
    }
}
