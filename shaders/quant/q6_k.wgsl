// block_q6_K (210 bytes): ql: [u8; 128] (low 4 bits), qh: [u8; 64] (high 2 bits),
// scales: [i8; 16] (one per 16 weights), d: f16 (at byte 208).
// Per 128-weight half h: weight 32k + l (k, l in 0..4, 0..32) has its low nibble in
// ql[64h + 32(k % 2) + l] (nibble k / 2), its high bits at shift 2k of qh[32h + l], and
// scale scales[8h + 2k + l / 16].  w = (d * sc) * (q - 32).
// Piece j (0..8) of a block is half j / 4, k = j % 4.
const QK: u32 = 256u;
const BLOCK_BYTES: u32 = 210u;

fn dequant_piece(row_off: u32, piece: u32, out: ptr<function, array<vec4<f32>, 8>>) {
    let b = row_off + (piece / 8u) * BLOCK_BYTES;
    let j = piece % 8u;
    let h = j / 4u;
    let k = j % 4u;
    let d = read_f16(b + 208u);
    // The two signed 8-bit scales of this piece (l < 16, l >= 16).
    let s0 = read_u8(b + 192u + 8u * h + 2u * k);
    let s1 = read_u8(b + 193u + 8u * h + 2u * k);
    let dl0 = d * f32(i32(s0 << 24u) >> 24u);
    let dl1 = d * f32(i32(s1 << 24u) >> 24u);
    let ql = b + 64u * h + 32u * (k % 2u);
    let qh = b + 128u + 32u * h;
    let lo_shift = vec4<u32>(4u * (k / 2u));
    let hi_shift = vec4<u32>(2u * k);
    for (var i = 0u; i < 8u; i++) {
        let lo = (bytes4(read_u32(ql + 4u * i)) >> lo_shift) & vec4<u32>(15u);
        let hi = (bytes4(read_u32(qh + 4u * i)) >> hi_shift) & vec4<u32>(3u);
        let q = vec4<i32>(lo | (hi << vec4<u32>(4u))) - vec4<i32>(32);
        (*out)[i] = select(dl1, dl0, i < 4u) * vec4<f32>(q);
    }
}

// GEMV slices (common.wgsl): 32 per block; slice 16h + 8c + k (half h, c in 0..2, k in 0..8)
// is ql[64h + 32c + 4k..+4] and qh[32h + 4k..+4]: weights 128h + 32c + 4k.. (low nibbles,
// high bits at shift 2c) and 128h + 64 + 32c + 4k.. (high nibbles, shift 4 + 2c).
const SLICES_PER_BLOCK: u32 = 32u;

fn slice_x(s: u32) -> vec2<u32> {
    let r = s % 32u;
    let v = 64u * (s / 32u) + 32u * (r / 16u) + 8u * ((r / 8u) % 2u) + r % 8u;
    return vec2<u32>(v, v + 16u);
}

fn slice_word(row_off: u32, s: u32) -> u32 {
    let r = s % 32u;
    return row_off + (s / 32u) * BLOCK_BYTES + 64u * (r / 16u) + 32u * ((r / 8u) % 2u) + 4u * (r % 8u);
}

fn slice_dot(row_off: u32, s: u32, xa: vec4<f32>, xb: vec4<f32>, sx: vec2<f32>) -> f32 {
    let b = row_off + (s / 32u) * BLOCK_BYTES;
    let r = s % 32u;
    let h = r / 16u;
    let c = (r / 8u) % 2u;
    let k = r % 8u;
    let ql = read_u32(slice_word(row_off, s));
    let qh = read_u32(b + 128u + 32u * h + 4u * k);
    let lo = vec4<i32>(bytes4(ql & 0x0f0f0f0fu) | (bytes4((qh >> (2u * c)) & 0x03030303u) << vec4<u32>(4u)));
    let hi = vec4<i32>(bytes4((ql >> 4u) & 0x0f0f0f0fu) | (bytes4((qh >> (4u + 2u * c)) & 0x03030303u) << vec4<u32>(4u)));
    let sc = b + 192u + 8u * h + k / 4u + 2u * c;
    let dl = read_f16(b + 208u);
    let dot_lo = dot(vec4<f32>(lo - vec4<i32>(32)), xa);
    let dot_hi = dot(vec4<f32>(hi - vec4<i32>(32)), xb);
    return dl * (read_i8(sc) * dot_lo + read_i8(sc + 4u) * dot_hi);
}
