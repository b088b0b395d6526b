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

// GEMV slices (common.wgsl): four per block; slice t is qs[4t..4t+4]: weights 4t..4t+4 (low
// nibbles) and 16+4t..16+4t+4 (high nibbles).
const SLICES_PER_BLOCK: u32 = 4u;

fn slice_x(s: u32) -> vec2<u32> {
    let v = 8u * (s / 4u) + s % 4u;
    return vec2<u32>(v, v + 4u);
}

fn slice_word(row_off: u32, s: u32) -> u32 {
    return row_off + (s / 4u) * BLOCK_BYTES + 2u + 4u * (s % 4u);
}

fn slice_dot(row_off: u32, s: u32, xa: vec4<f32>, xb: vec4<f32>, sx: vec2<f32>) -> f32 {
    let d = read_f16(row_off + (s / 4u) * BLOCK_BYTES);
    let q = read_u32(slice_word(row_off, s));
    return d * (dot(nibbles_lo(q), xa) + dot(nibbles_hi(q), xb) - 8.0 * (sx.x + sx.y));
}
