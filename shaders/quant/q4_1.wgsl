// block_q4_1 (20 bytes): d: f16, m: f16, qs: [u8; 16] (nibbles as Q4_0).
// w[j] = d * q[j] + m.  One piece per block.
const QK: u32 = 32u;
const BLOCK_BYTES: u32 = 20u;

fn dequant_piece(row_off: u32, piece: u32, out: ptr<function, array<vec4<f32>, 8>>) {
    let b = row_off + piece * BLOCK_BYTES;
    let d = read_f16(b);
    let m = read_f16(b + 2u);
    for (var k = 0u; k < 4u; k++) {
        let q = bytes4(read_u32(b + 4u + 4u * k));
        (*out)[k] = vec4<f32>(q & vec4<u32>(15u)) * d + m;
        (*out)[k + 4u] = vec4<f32>(q >> vec4<u32>(4u)) * d + m;
    }
}

// GEMV slices (common.wgsl): as Q4_0's; w = d·q + m.
const SLICES_PER_BLOCK: u32 = 4u;

fn slice_x(s: u32) -> vec2<u32> {
    let v = 8u * (s / 4u) + s % 4u;
    return vec2<u32>(v, v + 4u);
}

fn slice_word(row_off: u32, s: u32) -> u32 {
    return row_off + (s / 4u) * BLOCK_BYTES + 4u + 4u * (s % 4u);
}

fn slice_dot(row_off: u32, s: u32, xa: vec4<f32>, xb: vec4<f32>, sx: vec2<f32>) -> f32 {
    let b = row_off + (s / 4u) * BLOCK_BYTES;
    let q = read_u32(slice_word(row_off, s));
    return read_f16(b) * (dot(nibbles_lo(q), xa) + dot(nibbles_hi(q), xb)) + read_f16(b + 2u) * (sx.x + sx.y);
}
