// Byte access to GGUF blocks, shared by every quant format (see the other files here).
// The including kernel declares `w: array<u32>`: the tensor's raw GGUF bytes, little-endian,
// uploaded as-is (padded to a multiple of 4 bytes). Blocks are not 4-byte aligned (a Q4_0
// block is 18 bytes), so fields are read by byte address. All block sizes are even, so
// every f16 field sits at an even address and never straddles two words.
//
// Each format file defines, for the kernels:
//   const QK: u32           weights per block (1 for F32/F16)
//   const BLOCK_BYTES: u32  bytes per block
//   fn dequant_piece(row_off: u32, piece: u32, out: ptr<function, array<vec4<f32>, 8>>)
//     writes weights [32 * piece, 32 * piece + 32) of the row starting at byte row_off,
//     computed as ggml does (crates/hearth-gguf/src/dequant.rs), in f32.

// Weights per piece: the unit one thread dequantizes at a time (a Q4_0 block, an eighth of
// a K-quant super-block). Every quantized row length is a multiple of it.
const PIECE: u32 = 32u;

fn read_u8(a: u32) -> u32 {
    return (w[a >> 2u] >> ((a & 3u) * 8u)) & 0xffu;
}

// IEEE half bits (low 16 bits of h) to f32, exactly, subnormals included, so the scales and
// dequantized weights match ggml bit for bit. Kept by hand although unpack2x16float is core
// WGSL (naga needs SHADER_FLOAT16_IN_FLOAT32, which the tests' validator grants): whether
// every driver keeps subnormal halves through it was not checked. The F16 GEMV uses
// unpack2x16float for its weights (f16.wgsl says so).
fn f16_to_f32(h: u32) -> f32 {
    let sign = (h & 0x8000u) << 16u;
    let exp = (h >> 10u) & 0x1fu;
    let mant = h & 0x3ffu;
    if (exp == 0u) {
        // Zero or subnormal: mant × 2^-24, exact in f32.
        return bitcast<f32>(sign | bitcast<u32>(f32(mant) * 5.9604645e-8));
    }
    if (exp == 31u) {
        return bitcast<f32>(sign | 0x7f800000u | (mant << 13u)); // Inf, NaN
    }
    return bitcast<f32>(sign | ((exp + 112u) << 23u) | (mant << 13u));
}

// The f16 at byte a (a even).
fn read_f16(a: u32) -> f32 {
    return f16_to_f32(w[a >> 2u] >> ((a & 2u) * 8u));
}

// Four bytes at any alignment. The second word is read only when the bytes straddle it,
// so this never reads past the padded upload.
fn read_u32(a: u32) -> u32 {
    let i = a >> 2u;
    let s = (a & 3u) * 8u;
    if (s == 0u) {
        return w[i];
    }
    return (w[i] >> s) | (w[i + 1u] << (32u - s));
}

// The four bytes of a word as unsigned values, byte 0 first.
fn bytes4(q: u32) -> vec4<u32> {
    return vec4<u32>(q & 0xffu, (q >> 8u) & 0xffu, (q >> 16u) & 0xffu, q >> 24u);
}

// Scale and min of sub-block j (0..8) of a Q4_K / Q5_K block, 6 bits each, packed in the 12
// bytes at `a` (ggml's get_scale_min_k4):
//   j < 4:  scale = bytes[j] & 63,   min = bytes[j + 4] & 63
//   j >= 4: scale = low nibble of bytes[j + 4] | (top 2 bits of bytes[j - 4]) << 4
//           min   = high nibble of bytes[j + 4] | (top 2 bits of bytes[j]) << 4
fn scale_min_k4(a: u32, j: u32) -> vec2<u32> {
    if (j < 4u) {
        return vec2<u32>(read_u8(a + j) & 63u, read_u8(a + j + 4u) & 63u);
    }
    let hi = read_u8(a + j + 4u);
    return vec2<u32>((hi & 15u) | ((read_u8(a + j - 4u) >> 6u) << 4u), (hi >> 4u) | ((read_u8(a + j) >> 6u) << 4u));
}

// ---- Decode GEMV slices (gemv.wgsl) ----
// A row is cols / 8 slices of 8 weights. Each format file defines
//   const SLICES_PER_BLOCK: u32
//   fn slice_x(s: u32) -> vec2<u32>     where slice s's weights sit in the row: two runs of 4
//                                        columns, as indices of vec4s (xa, xb)
//   fn slice_word(row_off: u32, s: u32) -> u32
//                                        byte address of the slice's quant word(s), the load
//                                        the coalescing test traces (slice_dot reads there)
//   fn slice_dot(row_off: u32, s: u32, xa: vec4<f32>, xb: vec4<f32>, sx: vec2<f32>) -> f32
//                                        Σ w·x over the slice, given sx = (Σxa, Σxb) so that
//                                        offsets and minimums leave the per-weight math:
//                                        d·(Σq·x − 8·Σx) rather than Σ d·(q − 8)·x.
// The slices of one block are numbered so that neighbouring slices read neighbouring bytes.

// Low and high nibbles of the four bytes of q, byte 0 first.
fn nibbles_lo(q: u32) -> vec4<f32> {
    return vec4<f32>(bytes4(q & 0x0f0f0f0fu));
}

fn nibbles_hi(q: u32) -> vec4<f32> {
    return vec4<f32>(bytes4((q >> 4u) & 0x0f0f0f0fu));
}

// The four bytes of q as signed values, byte 0 first.
fn sbytes4(q: u32) -> vec4<f32> {
    let v = vec4<i32>(bitcast<i32>(q << 24u), bitcast<i32>(q << 16u), bitcast<i32>(q << 8u), bitcast<i32>(q));
    return vec4<f32>(v >> vec4<u32>(24u));
}

// Bits 0..3 of h as 0.0 / 1.0, bit 0 first.
fn bits4(h: u32) -> vec4<f32> {
    return vec4<f32>((vec4<u32>(h) >> vec4<u32>(0u, 1u, 2u, 3u)) & vec4<u32>(1u));
}

// The signed byte at a.
fn read_i8(a: u32) -> f32 {
    return f32(bitcast<i32>(read_u8(a) << 24u) >> 24u);
}

// Scale (x) and min (y) of sub-blocks 2g and 2g + 1 of a Q4_K / Q5_K block's 12 scale bytes
// at a, as f32: (sc_lo, m_lo, sc_hi, m_hi).
fn scale_min_pair(a: u32, g: u32) -> vec4<f32> {
    let lo = scale_min_k4(a, 2u * g);
    let hi = scale_min_k4(a, 2u * g + 1u);
    return vec4<f32>(f32(lo.x), f32(lo.y), f32(hi.x), f32(hi.y));
}
