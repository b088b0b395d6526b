// block_q8_0 (34 bytes): d: f16, qs: [i8; 32].  w[j] = d * q[j].  One piece per block.
const QK: u32 = 32u;
const BLOCK_BYTES: u32 = 34u;

fn dequant_piece(row_off: u32, piece: u32, out: ptr<function, array<vec4<f32>, 8>>) {
    let b = row_off + piece * BLOCK_BYTES;
    let d = read_f16(b);
    for (var k = 0u; k < 8u; k++) {
        let q = read_u32(b + 2u + 4u * k);
        // Sign-extend each byte: shift it to the top, then arithmetic-shift it down.
        let v = vec4<i32>(i32(q << 24u), i32(q << 16u), i32(q << 8u), i32(q)) >> vec4<u32>(24u);
        (*out)[k] = vec4<f32>(v) * d;
    }
}

// GEMV slices (common.wgsl): four per block; slice t is weights 8t..8t+8.
const SLICES_PER_BLOCK: u32 = 4u;

fn slice_x(s: u32) -> vec2<u32> {
    let v = 8u * (s / 4u) + 2u * (s % 4u);
    return vec2<u32>(v, v + 1u);
}

fn slice_word(row_off: u32, s: u32) -> u32 {
    return row_off + (s / 4u) * BLOCK_BYTES + 2u + 8u * (s % 4u);
}

fn slice_dot(row_off: u32, s: u32, xa: vec4<f32>, xb: vec4<f32>, sx: vec2<f32>) -> f32 {
    let d = read_f16(row_off + (s / 4u) * BLOCK_BYTES);
    let q = slice_word(row_off, s);
    return d * (dot(sbytes4(read_u32(q)), xa) + dot(sbytes4(read_u32(q + 4u)), xb));
}
