//! CPU dequantization to f32: the reference that every faster path (SIMD, GPU kernels) is
//! tested against, so it is written to be read rather than to be fast.
//!
//! Each format has one small function that turns one block into its weights, with the
//! block's byte layout in a comment above it. The layouts and the arithmetic are those of
//! ggml (`ggml-common.h`, `dequantize_row_*` in `ggml-quants.c`): all multi-byte fields are
//! little-endian, `f16` is IEEE half precision, and every product is computed in f32 in
//! ggml's order (e.g. `(d * sc) * q - (dmin * m)`, no fused multiply-add), so results match
//! gguf-py's `gguf.quants.dequantize` (tests/dequant.rs) and ggml's scalar code bit for bit.
//!
//! Throughout, a "nibble" is 4 bits: in the legacy 32-weight formats byte `j` of `qs` holds
//! weight `j` in its low nibble and weight `j + 16` in its high nibble.

use half::{bf16, f16};

use crate::{GgufError, TensorType};

/// Weights per K-quant super-block (ggml's `QK_K`).
const QK_K: usize = 256;

/// The types [`dequantize`] reads, in the order the error message lists them.
const SUPPORTED: &[TensorType] = &[
    TensorType::F32,
    TensorType::F16,
    TensorType::BF16,
    TensorType::Q4_0,
    TensorType::Q4_1,
    TensorType::Q5_0,
    TensorType::Q5_1,
    TensorType::Q8_0,
    TensorType::Q2_K,
    TensorType::Q3_K,
    TensorType::Q4_K,
    TensorType::Q5_K,
    TensorType::Q6_K,
];

/// Dequantizes `bytes`, holding `out.len()` elements of type `ty`, into `out`.
///
/// `out.len()` must be a whole number of `ty`'s blocks and `bytes.len()` exactly the size of
/// those blocks; anything else, and any type this build cannot dequantize, is a
/// [`GgufError::Dequant`] that says what is wrong. Never panics.
pub fn dequantize(ty: TensorType, bytes: &[u8], out: &mut [f32]) -> Result<(), GgufError> {
    use TensorType::*;
    check_lengths(ty, bytes.len(), out.len())?;
    match ty {
        F32 => blocks(bytes, out, f32_block),
        F16 => blocks(bytes, out, f16_block),
        BF16 => blocks(bytes, out, bf16_block),
        Q4_0 => blocks(bytes, out, q4_0_block),
        Q4_1 => blocks(bytes, out, q4_1_block),
        Q5_0 => blocks(bytes, out, q5_0_block),
        Q5_1 => blocks(bytes, out, q5_1_block),
        Q8_0 => blocks(bytes, out, q8_0_block),
        Q2_K => blocks(bytes, out, q2_k_block),
        Q3_K => blocks(bytes, out, q3_k_block),
        Q4_K => blocks(bytes, out, q4_k_block),
        Q5_K => blocks(bytes, out, q5_k_block),
        Q6_K => blocks(bytes, out, q6_k_block),
        // check_lengths has already refused every other type.
        _ => return Err(unsupported(ty)),
    }
    Ok(())
}

/// Dequantizes one row of a tensor (or any run of whole blocks). The same operation as
/// [`dequantize`]: in GGUF a block never straddles two rows, so a row of `ne0` elements is
/// its own whole number of blocks, at byte offset `row * ty.bytes_for(ne0)`.
pub fn dequantize_row(ty: TensorType, bytes: &[u8], out: &mut [f32]) -> Result<(), GgufError> {
    dequantize(ty, bytes, out)
}

fn unsupported(ty: TensorType) -> GgufError {
    let names: Vec<&str> = SUPPORTED.iter().map(|t| t.name()).collect();
    GgufError::Dequant {
        ty,
        detail: format!(
            "unsupported tensor type {ty}: Hearth dequantizes only {}; re-quantize the model \
             to one of these (e.g. llama-quantize ... Q4_K_M)",
            names.join(", ")
        ),
    }
}

/// Checks that `ty` is supported, that `n_elements` is a whole number of blocks, and that
/// `n_bytes` is exactly their size.
fn check_lengths(ty: TensorType, n_bytes: usize, n_elements: usize) -> Result<(), GgufError> {
    if !SUPPORTED.contains(&ty) {
        return Err(unsupported(ty));
    }
    let fail = |detail: String| Err(GgufError::Dequant { ty, detail });
    // Block and type sizes are small constants (at most 256 and 292).
    let block = ty.block_size() as usize;
    let type_size = ty.type_size() as usize;
    let (n_blocks, left_over) = (n_elements / block, n_elements % block);
    if left_over != 0 {
        return fail(format!(
            "{n_elements} elements is not a whole number of {block}-element blocks \
             ({left_over} left over)"
        ));
    }
    match n_blocks.checked_mul(type_size) {
        Some(expected) if expected == n_bytes => Ok(()),
        Some(expected) => fail(format!(
            "{n_elements} elements ({n_blocks} blocks of {type_size} bytes) take {expected} \
             bytes, but {n_bytes} bytes were given"
        )),
        None => fail(format!("{n_elements} elements take more bytes than fit in memory")),
    }
}

/// Runs `block_fn` over each `B`-byte block of `bytes` and its `N` weights in `out`. The
/// lengths have been checked to match, so the two sequences have the same length.
fn blocks<const B: usize, const N: usize>(bytes: &[u8], out: &mut [f32], block_fn: impl Fn(&[u8; B], &mut [f32; N])) {
    for (b, y) in bytes.chunks_exact(B).zip(out.chunks_exact_mut(N)) {
        // chunks_exact yields slices of exactly B and N items: these conversions succeed.
        if let (Ok(b), Ok(y)) = (b.try_into(), y.try_into()) {
            block_fn(b, y);
        }
    }
}

/// The little-endian f16 at `b[i..i + 2]`, widened (exactly) to f32.
fn f16_at(b: &[u8], i: usize) -> f32 {
    f16::from_le_bytes([b[i], b[i + 1]]).to_f32()
}

// ---------------------------------------------------------------------------------------
// Plain floats. Blocks of one element.

// F32: [u8; 4], little-endian IEEE single.
fn f32_block(b: &[u8; 4], y: &mut [f32; 1]) {
    y[0] = f32::from_le_bytes(*b);
}

// F16: [u8; 2], little-endian IEEE half.
fn f16_block(b: &[u8; 2], y: &mut [f32; 1]) {
    y[0] = f16::from_le_bytes(*b).to_f32();
}

// BF16: [u8; 2], little-endian bfloat16 (the top 16 bits of an f32).
fn bf16_block(b: &[u8; 2], y: &mut [f32; 1]) {
    y[0] = bf16::from_le_bytes(*b).to_f32();
}

// ---------------------------------------------------------------------------------------
// Legacy formats: blocks of 32 weights with one scale (and, for the _1 kinds, an offset).

// block_q4_0 (18 bytes): d: f16, qs: [u8; 16] (32 nibbles).
// w[j] = d * (q[j] - 8).
fn q4_0_block(b: &[u8; 18], y: &mut [f32; 32]) {
    let d = f16_at(b, 0);
    let qs = &b[2..18];
    for j in 0..16 {
        let lo = (qs[j] & 0x0F) as i32 - 8;
        let hi = (qs[j] >> 4) as i32 - 8;
        y[j] = lo as f32 * d;
        y[j + 16] = hi as f32 * d;
    }
}

// block_q4_1 (20 bytes): d: f16, m: f16, qs: [u8; 16] (32 nibbles).
// w[j] = d * q[j] + m.
fn q4_1_block(b: &[u8; 20], y: &mut [f32; 32]) {
    let d = f16_at(b, 0);
    let m = f16_at(b, 2);
    let qs = &b[4..20];
    for j in 0..16 {
        y[j] = (qs[j] & 0x0F) as f32 * d + m;
        y[j + 16] = (qs[j] >> 4) as f32 * d + m;
    }
}

// The 5th bit of weight `j` of a Q5 block: bit j of the little-endian u32 `qh`, as 0 or 16.
fn q5_high_bit(qh: u32, j: usize) -> u8 {
    (((qh >> j) & 1) as u8) << 4
}

// block_q5_0 (22 bytes): d: f16, qh: [u8; 4] (u32, bit j = 5th bit of weight j),
// qs: [u8; 16] (low 4 bits, 32 nibbles).
// w[j] = d * (q[j] - 16).
fn q5_0_block(b: &[u8; 22], y: &mut [f32; 32]) {
    let d = f16_at(b, 0);
    let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
    let qs = &b[6..22];
    for j in 0..16 {
        let lo = ((qs[j] & 0x0F) | q5_high_bit(qh, j)) as i32 - 16;
        let hi = ((qs[j] >> 4) | q5_high_bit(qh, j + 16)) as i32 - 16;
        y[j] = lo as f32 * d;
        y[j + 16] = hi as f32 * d;
    }
}

// block_q5_1 (24 bytes): d: f16, m: f16, qh: [u8; 4] (u32, bit j = 5th bit of weight j),
// qs: [u8; 16] (low 4 bits, 32 nibbles).
// w[j] = d * q[j] + m.
fn q5_1_block(b: &[u8; 24], y: &mut [f32; 32]) {
    let d = f16_at(b, 0);
    let m = f16_at(b, 2);
    let qh = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
    let qs = &b[8..24];
    for j in 0..16 {
        let lo = (qs[j] & 0x0F) | q5_high_bit(qh, j);
        let hi = (qs[j] >> 4) | q5_high_bit(qh, j + 16);
        y[j] = lo as f32 * d + m;
        y[j + 16] = hi as f32 * d + m;
    }
}

// block_q8_0 (34 bytes): d: f16, qs: [i8; 32].
// w[j] = d * q[j].
fn q8_0_block(b: &[u8; 34], y: &mut [f32; 32]) {
    let d = f16_at(b, 0);
    for j in 0..32 {
        y[j] = (b[2 + j] as i8) as f32 * d;
    }
}

// ---------------------------------------------------------------------------------------
// K-quants: super-blocks of 256 weights, split into sub-blocks of 16 or 32 weights that
// each have a small integer scale (and min), itself scaled by the f16 `d` (and `dmin`).
//
// The 2-, 3- and 6-bit kinds store the low bits of 128 weights as 32 bytes × 4 bit-pairs
// (or 64 bytes × 2 nibbles): weight `32*k + l` of a 128-weight half sits in byte `l` at
// shift `2*k` (or nibble `k/2` of byte `l + 32*(k%2)`). Sub-blocks are 16 weights, so byte
// `l` serves sub-block `l / 16` of each 32-weight group.

// block_q2_K (84 bytes): scales: [u8; 16] (per 16-weight sub-block: low nibble scale,
// high nibble min), qs: [u8; 64] (256 × 2 bits), d: f16, dmin: f16.
// w = (d * sc) * q - (dmin * m), q in 0..=3.
fn q2_k_block(b: &[u8; 84], y: &mut [f32; QK_K]) {
    let scales = &b[0..16];
    let qs = &b[16..80];
    let d = f16_at(b, 80);
    let dmin = f16_at(b, 82);
    for half in 0..2 {
        let q = &qs[32 * half..32 * half + 32];
        for k in 0..4 {
            for s in 0..2 {
                let sub = 8 * half + 2 * k + s;
                let dl = d * (scales[sub] & 0x0F) as f32;
                let ml = dmin * (scales[sub] >> 4) as f32;
                for l in 16 * s..16 * s + 16 {
                    let v = (q[l] >> (2 * k)) & 3;
                    y[128 * half + 32 * k + l] = dl * v as f32 - ml;
                }
            }
        }
    }
}

// The 16 sub-block scales of a Q3_K block, 6 bits each, packed in 12 bytes: scale j has its
// low 4 bits in nibble (j / 8) of byte (j % 8), and its high 2 bits at bit 2*(j / 4) of
// byte 8 + (j % 4). Stored with an offset of 32, so the values are -32..=31.
fn q3_k_scales(packed: &[u8]) -> [i32; 16] {
    let mut sc = [0i32; 16];
    for (j, s) in sc.iter_mut().enumerate() {
        let low = (packed[j % 8] >> (4 * (j / 8))) & 0x0F;
        let high = (packed[8 + j % 4] >> (2 * (j / 4))) & 3;
        *s = (low | (high << 4)) as i32 - 32;
    }
    sc
}

// block_q3_K (110 bytes): hmask: [u8; 32] (3rd bit of each weight: weight i uses bit
// i / 32 of byte i % 32), qs: [u8; 64] (256 × low 2 bits), scales: [u8; 12] (16 signed
// 6-bit scales, see q3_k_scales), d: f16.
// w = (d * sc) * (q - 4 if the hmask bit is clear, else q), q in 0..=3.
fn q3_k_block(b: &[u8; 110], y: &mut [f32; QK_K]) {
    let hmask = &b[0..32];
    let qs = &b[32..96];
    let scales = q3_k_scales(&b[96..108]);
    let d = f16_at(b, 108);
    for half in 0..2 {
        let q = &qs[32 * half..32 * half + 32];
        for k in 0..4 {
            let bit = 1 << (4 * half + k); // hmask bit of weights 128*half + 32*k + (0..32)
            for s in 0..2 {
                let dl = d * scales[8 * half + 2 * k + s] as f32;
                for l in 16 * s..16 * s + 16 {
                    let low = ((q[l] >> (2 * k)) & 3) as i32;
                    let v = if hmask[l] & bit != 0 { low } else { low - 4 };
                    y[128 * half + 32 * k + l] = dl * v as f32;
                }
            }
        }
    }
}

// Scale and min of sub-block j (0..8) of a Q4_K / Q5_K block, 6 bits each, packed in 12
// bytes (ggml's get_scale_min_k4):
//   j < 4:  scale = bytes[j] & 63,   min = bytes[j + 4] & 63
//   j >= 4: scale = low nibble of bytes[j + 4] | (top 2 bits of bytes[j - 4]) << 4
//           min   = high nibble of bytes[j + 4] | (top 2 bits of bytes[j]) << 4
fn scale_min_k4(j: usize, packed: &[u8]) -> (u8, u8) {
    if j < 4 {
        (packed[j] & 63, packed[j + 4] & 63)
    } else {
        let sc = (packed[j + 4] & 0x0F) | ((packed[j - 4] >> 6) << 4);
        let m = (packed[j + 4] >> 4) | ((packed[j] >> 6) << 4);
        (sc, m)
    }
}

// block_q4_K (144 bytes): d: f16, dmin: f16, scales: [u8; 12] (8 × 6-bit scale and min,
// see scale_min_k4), qs: [u8; 128] (256 nibbles: each 64-weight group is 32 bytes, low
// nibbles are its first 32 weights, high nibbles the next 32).
// w = (d * sc) * q - (dmin * m), q in 0..=15, one (sc, m) per 32 weights.
fn q4_k_block(b: &[u8; 144], y: &mut [f32; QK_K]) {
    let d = f16_at(b, 0);
    let dmin = f16_at(b, 2);
    let scales = &b[4..16];
    let qs = &b[16..144];
    for g in 0..4 {
        let q = &qs[32 * g..32 * g + 32];
        for (h, shift) in [(0, 0), (1, 4)] {
            let (sc, m) = scale_min_k4(2 * g + h, scales);
            let dl = d * sc as f32;
            let ml = dmin * m as f32;
            for l in 0..32 {
                let v = (q[l] >> shift) & 0x0F;
                y[64 * g + 32 * h + l] = dl * v as f32 - ml;
            }
        }
    }
}

// block_q5_K (176 bytes): d: f16, dmin: f16, scales: [u8; 12] (as Q4_K), qh: [u8; 32]
// (5th bit of each weight: weight i uses bit i / 32 of byte i % 32), qs: [u8; 128] (low 4
// bits, laid out as Q4_K's nibbles).
// w = (d * sc) * q - (dmin * m), q in 0..=31, one (sc, m) per 32 weights.
fn q5_k_block(b: &[u8; 176], y: &mut [f32; QK_K]) {
    let d = f16_at(b, 0);
    let dmin = f16_at(b, 2);
    let scales = &b[4..16];
    let qh = &b[16..48];
    let qs = &b[48..176];
    for g in 0..4 {
        let q = &qs[32 * g..32 * g + 32];
        for (h, shift) in [(0, 0), (1, 4)] {
            let sub = 2 * g + h; // also the qh bit of this sub-block's weights
            let (sc, m) = scale_min_k4(sub, scales);
            let dl = d * sc as f32;
            let ml = dmin * m as f32;
            for l in 0..32 {
                let v = ((q[l] >> shift) & 0x0F) | (((qh[l] >> sub) & 1) << 4);
                y[32 * sub + l] = dl * v as f32 - ml;
            }
        }
    }
}

// block_q6_K (210 bytes): ql: [u8; 128] (low 4 bits), qh: [u8; 64] (high 2 bits),
// scales: [i8; 16] (one per 16 weights), d: f16.
// Per 128-weight half: weight 32*k + l (k in 0..4, l in 0..32) has its low nibble in
// ql[64*half + l + 32*(k % 2)] (nibble k / 2) and its high bits at shift 2*k of
// qh[32*half + l].
// w = (d * sc) * (q - 32), q in 0..=63.
fn q6_k_block(b: &[u8; 210], y: &mut [f32; QK_K]) {
    let ql = &b[0..128];
    let qh = &b[128..192];
    let scales = &b[192..208];
    let d = f16_at(b, 208);
    for half in 0..2 {
        let ql = &ql[64 * half..64 * half + 64];
        let qh = &qh[32 * half..32 * half + 32];
        for k in 0..4 {
            for s in 0..2 {
                let dl = d * (scales[8 * half + 2 * k + s] as i8) as f32;
                for l in 16 * s..16 * s + 16 {
                    let low = (ql[l + 32 * (k % 2)] >> (4 * (k / 2))) & 0x0F;
                    let high = (qh[l] >> (2 * k)) & 3;
                    let v = (low | (high << 4)) as i32 - 32;
                    y[128 * half + 32 * k + l] = dl * v as f32;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_functions_match_the_type_table() {
        // Each kernel's array sizes are the ggml block layout; they must agree with
        // TensorType's table or `blocks` would skip data.
        fn sizes<const B: usize, const N: usize>(_: fn(&[u8; B], &mut [f32; N])) -> (u64, u64) {
            (N as u64, B as u64)
        }
        use TensorType::*;
        let table = [
            (F32, sizes(f32_block)),
            (F16, sizes(f16_block)),
            (BF16, sizes(bf16_block)),
            (Q4_0, sizes(q4_0_block)),
            (Q4_1, sizes(q4_1_block)),
            (Q5_0, sizes(q5_0_block)),
            (Q5_1, sizes(q5_1_block)),
            (Q8_0, sizes(q8_0_block)),
            (Q2_K, sizes(q2_k_block)),
            (Q3_K, sizes(q3_k_block)),
            (Q4_K, sizes(q4_k_block)),
            (Q5_K, sizes(q5_k_block)),
            (Q6_K, sizes(q6_k_block)),
        ];
        assert_eq!(table.len(), SUPPORTED.len());
        for (ty, (block, type_size)) in table {
            assert!(SUPPORTED.contains(&ty));
            assert_eq!((ty.block_size(), ty.type_size()), (block, type_size), "{ty}");
        }
    }

    #[test]
    fn q4_0_hand_made_block() {
        // d = 0.5; byte j holds weight j (low nibble) and weight j + 16 (high nibble).
        let mut b = [0u8; 18];
        b[0..2].copy_from_slice(&f16::from_f32(0.5).to_le_bytes());
        b[2] = 0x0F | (0x3 << 4); // w[0] = (15 - 8) * 0.5, w[16] = (3 - 8) * 0.5
        b[3] = 0x08; // w[1] = (8 - 8) * 0.5, w[17] = (0 - 8) * 0.5
        let mut y = [0f32; 32];
        dequantize(TensorType::Q4_0, &b, &mut y).unwrap();
        assert_eq!((y[0], y[16], y[1], y[17]), (3.5, -2.5, 0.0, -4.0));
        assert_eq!(y[2], -4.0); // nibble 0 -> -8 * 0.5
    }

    #[test]
    fn q3_k_scale_unpacking() {
        // Pack stored values 0..=63 (scale + 32) by hand, as ggml's quantize_row_q3_K does.
        let stored: [u8; 16] = [0, 63, 1, 62, 15, 16, 17, 31, 32, 33, 47, 48, 5, 40, 60, 9];
        let mut packed = [0u8; 12];
        for (j, &l) in stored.iter().enumerate() {
            if j < 8 {
                packed[j] = l & 0x0F;
            } else {
                packed[j - 8] |= (l & 0x0F) << 4;
            }
            packed[8 + j % 4] |= (l >> 4) << (2 * (j / 4));
        }
        let expected: Vec<i32> = stored.iter().map(|&l| l as i32 - 32).collect();
        assert_eq!(q3_k_scales(&packed).to_vec(), expected);
    }
}
