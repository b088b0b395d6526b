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
