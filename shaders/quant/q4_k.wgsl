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

// GEMV slices (common.wgsl): 32 per block; slice 8g + k is word k of group g's 32 bytes:
// weights 64g+4k.. (low nibbles, sub-block 2g) and 64g+32+4k.. (high, sub-block 2g+1).
const SLICES_PER_BLOCK: u32 = 32u;

fn slice_x(s: u32) -> vec2<u32> {
    let v = 64u * (s / 32u) + 16u * ((s % 32u) / 8u) + s % 8u;
    return vec2<u32>(v, v + 8u);
}

fn slice_word(row_off: u32, s: u32) -> u32 {
    return row_off + (s / 32u) * BLOCK_BYTES + 16u + 4u * (s % 32u);
}

fn slice_dot(row_off: u32, s: u32, xa: vec4<f32>, xb: vec4<f32>, sx: vec2<f32>) -> f32 {
    let b = row_off + (s / 32u) * BLOCK_BYTES;
    let sm = scale_min_pair(b + 4u, (s % 32u) / 8u);
    let q = read_u32(slice_word(row_off, s));
    let dots = sm.x * dot(nibbles_lo(q), xa) + sm.z * dot(nibbles_hi(q), xb);
    return read_f16(b) * dots - read_f16(b + 2u) * (sm.y * sx.x + sm.w * sx.y);
}
