//! CPU dequantization to f32 (being written).
use crate::{GgufError, TensorType};

/// Dequantizes `n` elements of type `ty` from `bytes` into `out`.
pub fn dequantize(ty: TensorType, bytes: &[u8], out: &mut [f32]) -> Result<(), GgufError> {
    dequantize_row(ty, bytes, out)
}

pub fn dequantize_row(ty: TensorType, _bytes: &[u8], _out: &mut [f32]) -> Result<(), GgufError> {
    Err(GgufError::Dequant { ty, detail: "not yet implemented".into() })
}
