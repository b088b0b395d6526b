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

// GEMV slices (common.wgsl): as Q4_0's, with 5th bits 4t..4t+4 and 16+4t..16+4t+4 of qh.
const SLICES_PER_BLOCK: u32 = 4u;

fn slice_x(s: u32) -> vec2<u32> {
    let v = 8u * (s / 4u) + s % 4u;
    return vec2<u32>(v, v + 4u);
}

fn slice_word(row_off: u32, s: u32) -> u32 {
    return row_off + (s / 4u) * BLOCK_BYTES + 6u + 4u * (s % 4u);
}

fn slice_dot(row_off: u32, s: u32, xa: vec4<f32>, xb: vec4<f32>, sx: vec2<f32>) -> f32 {
    let b = row_off + (s / 4u) * BLOCK_BYTES;
    let t = s % 4u;
    let qh = read_u32(b + 2u);
    let q = read_u32(slice_word(row_off, s));
    let lo = nibbles_lo(q) + 16.0 * bits4(qh >> (4u * t));
    let hi = nibbles_hi(q) + 16.0 * bits4(qh >> (16u + 4u * t));
    return read_f16(b) * (dot(lo, xa) + dot(hi, xb) - 16.0 * (sx.x + sx.y));
}
