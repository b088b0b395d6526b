//! Writing the GGUF header: metadata and tensor index, with tensor data offsets laid out
//! back to back at the alignment. Used to describe models that exist only procedurally
//! (`hearth bench --synthetic`) and by tests; tensor bytes are the caller's business, except
//! in [`with_metadata`], which copies a real model with some metadata changed.

use crate::{read_index, ReadAt, ReadError, TensorType, Value, DEFAULT_ALIGNMENT};

/// A tensor to lay out: name, ggml dims (innermost first), type.
pub struct TensorSpec {
    pub name: String,
    pub dims: Vec<u64>,
    pub ty: TensorType,
}

/// The header bytes (padded to the alignment, so data starts right after), and each tensor's
/// absolute (offset, length) in the file.
pub struct Header {
    pub bytes: Vec<u8>,
    pub tensors: Vec<(u64, u64)>,
    /// Length of the whole file.
    pub file_len: u64,
}

/// Lays out a GGUF v3 file. Panics only on a tensor whose element count is not a whole
/// number of blocks (a programming error: specs come from code, not from input).
pub fn write_header(metadata: &[(&str, Value)], tensors: &[TensorSpec]) -> Header {
    let align = DEFAULT_ALIGNMENT;
    let mut b = Vec::new();
    b.extend_from_slice(b"GGUF");
    b.extend_from_slice(&3u32.to_le_bytes());
    b.extend_from_slice(&(tensors.len() as u64).to_le_bytes());
    b.extend_from_slice(&(metadata.len() as u64).to_le_bytes());
    for (key, value) in metadata {
        put_str(&mut b, key);
        b.extend_from_slice(&(value.value_type() as u32).to_le_bytes());
        put_value(&mut b, value);
    }
    let mut offset = 0u64;
    let mut placed = Vec::new();
    for t in tensors {
        let n: u64 = t.dims.iter().product();
        let len = t.ty.bytes_for(n).expect("tensor spec is a whole number of blocks");
        put_str(&mut b, &t.name);
        b.extend_from_slice(&(t.dims.len() as u32).to_le_bytes());
        for d in &t.dims {
            b.extend_from_slice(&d.to_le_bytes());
        }
        b.extend_from_slice(&t.ty.id().to_le_bytes());
        b.extend_from_slice(&offset.to_le_bytes());
        placed.push((offset, len));
        offset = (offset + len).div_ceil(align) * align;
    }
    b.resize((b.len() as u64).div_ceil(align) as usize * align as usize, 0);
    let base = b.len() as u64;
    let tensors = placed.into_iter().map(|(o, l)| (base + o, l)).collect();
    Header { file_len: base + offset, bytes: b, tensors }
}

fn put_str(b: &mut Vec<u8>, s: &str) {
    b.extend_from_slice(&(s.len() as u64).to_le_bytes());
    b.extend_from_slice(s.as_bytes());
}

fn put_value(b: &mut Vec<u8>, v: &Value) {
    match v {
        Value::U8(x) => b.push(*x),
        Value::I8(x) => b.push(*x as u8),
        Value::U16(x) => b.extend_from_slice(&x.to_le_bytes()),
        Value::I16(x) => b.extend_from_slice(&x.to_le_bytes()),
        Value::U32(x) => b.extend_from_slice(&x.to_le_bytes()),
        Value::I32(x) => b.extend_from_slice(&x.to_le_bytes()),
        Value::F32(x) => b.extend_from_slice(&x.to_le_bytes()),
        Value::Bool(x) => b.push(u8::from(*x)),
        Value::String(s) => put_str(b, s),
        Value::Array(ty, items) => {
            b.extend_from_slice(&(*ty as u32).to_le_bytes());
            b.extend_from_slice(&(items.len() as u64).to_le_bytes());
            for item in items {
                put_value(b, item);
            }
        }
        Value::U64(x) => b.extend_from_slice(&x.to_le_bytes()),
        Value::I64(x) => b.extend_from_slice(&x.to_le_bytes()),
        Value::F64(x) => b.extend_from_slice(&x.to_le_bytes()),
    }
}

/// The GGUF read from `src` with each `(key, value)` of `set` replacing that key (or added),
/// its tensors copied unchanged: how tests make hostile variants of a real model.
pub fn with_metadata<R: ReadAt + ?Sized>(src: &R, set: &[(&str, Value)]) -> Result<Vec<u8>, ReadError> {
    let index = read_index(src)?;
    let mut metadata: Vec<(&str, Value)> = index
        .metadata
        .iter()
        .filter(|(k, _)| set.iter().all(|(key, _)| key != k))
        .map(|(k, v)| (k.as_str(), v.clone()))
        .collect();
    metadata.extend(set.iter().map(|(k, v)| (*k, v.clone())));
    let specs: Vec<TensorSpec> =
        index.tensors.iter().map(|t| TensorSpec { name: t.name.clone(), dims: t.dims.clone(), ty: t.ty }).collect();
    let header = write_header(&metadata, &specs);
    let mut bytes = header.bytes;
    bytes.resize(header.file_len as usize, 0);
    for (t, &(offset, len)) in index.tensors.iter().zip(&header.tensors) {
        src.read_exact_at(t.offset, &mut bytes[offset as usize..(offset + len) as usize])?;
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{parse_index, Parse, ValueType};

    #[test]
    fn metadata_is_replaced_and_tensors_copied() {
        let specs = [TensorSpec { name: "w".into(), dims: vec![32, 2], ty: TensorType::Q8_0 }];
        let h = write_header(&[("a", Value::U64(1)), ("b", Value::U64(2))], &specs);
        let mut file = h.bytes.clone();
        file.resize(h.file_len as usize, 0);
        let (at, len) = h.tensors[0];
        for (i, b) in file[at as usize..(at + len) as usize].iter_mut().enumerate() {
            *b = i as u8;
        }
        let long = Value::String("x".repeat(5000));
        let out = with_metadata(&file[..], &[("b", long.clone()), ("c", Value::Bool(true))]).unwrap();
        let Parse::Complete(index) = parse_index(&out, Some(out.len() as u64)).unwrap() else { panic!("incomplete") };
        assert_eq!(index.get_u64("a").unwrap(), 1);
        assert_eq!(index.get("b"), Some(&long));
        assert!(index.get_bool("c").unwrap());
        let w = index.tensor("w").unwrap();
        assert_eq!(out[w.offset as usize..(w.offset + w.n_bytes) as usize], file[at as usize..(at + len) as usize]);
    }

    #[test]
    fn written_headers_parse_back() {
        let meta = [
            ("general.architecture", Value::String("llama".into())),
            ("a.list", Value::Array(ValueType::F32, vec![Value::F32(1.5), Value::F32(-2.0)])),
            ("a.count", Value::U64(7)),
        ];
        let specs = [
            TensorSpec { name: "w".into(), dims: vec![64, 3], ty: TensorType::Q4_0 },
            TensorSpec { name: "n".into(), dims: vec![5], ty: TensorType::F32 },
        ];
        let h = write_header(&meta, &specs);
        let mut file = h.bytes.clone();
        file.resize(h.file_len as usize, 0);
        let Parse::Complete(index) = parse_index(&file, Some(h.file_len)).unwrap() else { panic!("incomplete") };
        assert_eq!(index.get_u64("a.count").unwrap(), 7);
        assert_eq!(index.get("a.list"), Some(&meta[1].1));
        let w = index.tensor("w").unwrap();
        assert_eq!((w.offset, w.n_bytes), h.tensors[0]);
        assert_eq!(w.n_bytes, 2 * 3 * 18);
        assert_eq!(index.tensor("n").unwrap().offset, h.tensors[1].0);
        assert_eq!(h.tensors[1].0 % 32, 0);
    }
}
