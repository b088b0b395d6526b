// block_q5_K (176 bytes): d: f16, dmin: f16, scales: [u8; 12] (as Q4_K), qh: [u8; 32]
// (5th bits: weight i uses bit i / 32 of byte i % 32), qs: [u8; 128] (low 4 bits, laid out
// as Q4_K's nibbles).  w = (d * sc) * q - (dmin * m), one (sc, m) per 32 weights.
// Piece j (0..8) of a block is sub-block j: nibble j % 2 of qs[32 (j / 2)..], bit j of qh.
const QK: u32 = 256u;
const BLOCK_BYTES: u32 = 176u;

fn dequant_piece(row_off: u32, piece: u32, out: ptr<function, array<vec4<f32>, 8>>) {
    let b = row_off + (piece / 8u) * BLOCK_BYTES;
    let j = piece % 8u;
    let d = read_f16(b);
    let dmin = read_f16(b + 2u);
    let sm = scale_min_k4(b + 4u, j);
    let dl = d * f32(sm.x);
    let ml = dmin * f32(sm.y);
    let qs = b + 48u + 32u * (j / 2u);
    let shift = vec4<u32>(4u * (j % 2u));
    for (var k = 0u; k < 8u; k++) {
        let lo = (bytes4(read_u32(qs + 4u * k)) >> shift) & vec4<u32>(15u);
        let hi = (bytes4(read_u32(b + 16u + 4u * k)) >> vec4<u32>(j)) & vec4<u32>(1u);
        (*out)[k] = dl * vec4<f32>(lo | (hi << vec4<u32>(4u))) - ml;
    }
}

// GEMV slices (common.wgsl): as Q4_K's, with 5th bits 2g and 2g+1 of qh[4k..4k+4].
const SLICES_PER_BLOCK: u32 = 32u;

fn slice_x(s: u32) -> vec2<u32> {
    let v = 64u * (s / 32u) + 16u * ((s % 32u) / 8u) + s % 8u;
    return vec2<u32>(v, v + 8u);
}

fn slice_word(row_off: u32, s: u32) -> u32 {
    return row_off + (s / 32u) * BLOCK_BYTES + 48u + 4u * (s % 32u);
}

fn slice_dot(row_off: u32, s: u32, xa: vec4<f32>, xb: vec4<f32>, sx: vec2<f32>) -> f32 {
    let b = row_off + (s / 32u) * BLOCK_BYTES;
    let g = (s % 32u) / 8u;
    let sm = scale_min_pair(b + 4u, g);
    let q = read_u32(slice_word(row_off, s));
    let qh = read_u32(b + 16u + 4u * (s % 8u));
    let lo = nibbles_lo(q) + 16.0 * vec4<f32>(bytes4((qh >> (2u * g)) & 0x01010101u));
    let hi = nibbles_hi(q) + 16.0 * vec4<f32>(bytes4((qh >> (2u * g + 1u)) & 0x01010101u));
    return read_f16(b) * (sm.x * dot(lo, xa) + sm.z * dot(hi, xb)) - read_f16(b + 2u) * (sm.y * sx.x + sm.w * sx.y);
}
