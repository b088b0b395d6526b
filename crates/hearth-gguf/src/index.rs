use std::collections::{BTreeMap, HashMap};

use crate::{GgufError, TensorType, Value, ValueType};

pub const DEFAULT_ALIGNMENT: u64 = 32;
/// ggml's GGML_MAX_DIMS.
pub const MAX_DIMS: u32 = 4;

// Limits on counts that no real model comes near. They bound memory and recursion when a
// file lies and its length is not yet known (a stream); with a known length, every count is
// also checked against the bytes left.
const MAX_KV: u64 = 1 << 16;
const MAX_TENSORS: u64 = 1 << 16;
/// Largest real vocabularies (~260k tokens, ~500k merges) fit with room to spare. Each
/// element becomes a [`Value`], so this also caps memory per array.
const MAX_ARRAY_LEN: u64 = 1 << 22;
/// Array elements in all of the metadata together. `MAX_ARRAY_LEN` alone bounds one array,
/// but not 65536 keys of them: a file of u8 arrays held ~32 bytes of `Value` per byte, so a
/// 100 MB file (or stream) could take gigabytes. Real files have ~1M elements at most
/// (tokens, scores, types and merges of a 262k vocabulary).
const MAX_ARRAY_ELEMENTS: u64 = 1 << 23;
const MAX_STRING_LEN: u64 = 1 << 26;
const MAX_ARRAY_DEPTH: u32 = 4;

/// One tensor's entry in the index.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    pub name: String,
    /// ggml order: `dims[0]` is the contiguous (row) length, `dims[1]` the number of rows.
    pub dims: Vec<u64>,
    pub ty: TensorType,
    /// Absolute offset of the first byte in the file.
    pub offset: u64,
    pub n_bytes: u64,
}

impl TensorInfo {
    pub fn n_elements(&self) -> u64 {
        // Checked at parse time not to overflow.
        self.dims.iter().product()
    }

    /// Byte range in the file.
    pub fn range(&self) -> std::ops::Range<u64> {
        self.offset..self.offset + self.n_bytes
    }
}

/// Everything in a GGUF file but the tensor data.
#[derive(Debug, Clone)]
pub struct GgufIndex {
    pub version: u32,
    pub metadata: BTreeMap<String, Value>,
    pub tensors: Vec<TensorInfo>,
    by_name: HashMap<String, usize>,
    pub alignment: u64,
    /// Absolute offset where tensor data starts.
    pub data_offset: u64,
}

/// The answer to "here is what has arrived so far".
#[derive(Debug, Clone)]
pub enum Parse {
    Complete(GgufIndex),
    /// The index is not complete: call again with a prefix of at least this many bytes.
    NeedMore {
        min_len: u64,
    },
}

/// Parses the header, metadata and tensor index from `prefix`, the first bytes of a GGUF
/// file. `file_len` is the length of the whole file where it is known (a file on disk, an
/// HTTP `Content-Length`): counts and tensor ranges are then checked against it, and running
/// out of bytes before `file_len` is a [`Parse::NeedMore`], past it a [`GgufError::Truncated`].
///
/// Parsing restarts from the beginning on each call; the index is a small part of a model,
/// so a caller that doubles its prefix pays little.
pub fn parse_index(prefix: &[u8], file_len: Option<u64>) -> Result<Parse, GgufError> {
    let file_len = file_len.map(|l| l.max(prefix.len() as u64));
    let mut cur = Cursor { buf: prefix, pos: 0, file_len, elements: 0 };
    match read_index(&mut cur) {
        Ok(index) => Ok(Parse::Complete(index)),
        Err(Stop::NeedMore(min_len)) => Ok(Parse::NeedMore { min_len }),
        Err(Stop::Invalid(e)) => Err(e),
    }
}

impl GgufIndex {
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.metadata.get(key)
    }

    fn require(&self, key: &str) -> Result<&Value, GgufError> {
        self.get(key).ok_or_else(|| GgufError::MissingKey { key: key.to_string() })
    }

    fn wrong(&self, key: &str, expected: &'static str, v: &Value) -> GgufError {
        GgufError::WrongType { key: key.to_string(), expected, found: v.type_name() }
    }

    pub fn get_str(&self, key: &str) -> Result<&str, GgufError> {
        let v = self.require(key)?;
        v.as_str().ok_or_else(|| self.wrong(key, "string", v))
    }

    pub fn get_u64(&self, key: &str) -> Result<u64, GgufError> {
        let v = self.require(key)?;
        v.as_u64().ok_or_else(|| self.wrong(key, "unsigned integer", v))
    }

    pub fn get_f32(&self, key: &str) -> Result<f32, GgufError> {
        let v = self.require(key)?;
        v.as_f32().ok_or_else(|| self.wrong(key, "number", v))
    }

    pub fn get_bool(&self, key: &str) -> Result<bool, GgufError> {
        let v = self.require(key)?;
        v.as_bool().ok_or_else(|| self.wrong(key, "bool", v))
    }

    pub fn get_array(&self, key: &str) -> Result<&[Value], GgufError> {
        let v = self.require(key)?;
        v.as_array().ok_or_else(|| self.wrong(key, "array", v))
    }

    /// `general.architecture`, e.g. "llama".
    pub fn architecture(&self) -> Result<&str, GgufError> {
        self.get_str("general.architecture")
    }

    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.by_name.get(name).map(|&i| &self.tensors[i])
    }

    /// The bytes of tensor `name` within `file`, which must hold at least up to its end.
    pub fn tensor_data<'a>(&self, file: &'a [u8], name: &str) -> Result<&'a [u8], GgufError> {
        let t = self.tensor(name).ok_or_else(|| GgufError::MissingTensor(name.to_string()))?;
        let r = t.range();
        // `try_from`, not `as`: on a 32-bit target (wasm) an offset past 4 GiB must not wrap
        // around to some other bytes of the file.
        let (start, end) = (usize::try_from(r.start).ok(), usize::try_from(r.end).ok());
        start.zip(end).and_then(|(s, e)| file.get(s..e)).ok_or_else(|| GgufError::Truncated {
            what: format!("tensor {:?}", t.name),
            needed: r.end,
            len: file.len() as u64,
        })
    }
}

enum Stop {
    NeedMore(u64),
    Invalid(GgufError),
}

impl From<GgufError> for Stop {
    fn from(e: GgufError) -> Self {
        Stop::Invalid(e)
    }
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: u64,
    file_len: Option<u64>,
    /// Array elements read so far, against `MAX_ARRAY_ELEMENTS`.
    elements: u64,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: u64, what: &dyn Fn() -> String) -> Result<&'a [u8], Stop> {
        let end = self.pos.checked_add(n).ok_or_else(|| GgufError::CountTooLarge {
            what: what(),
            value: n,
            len: self.file_len.unwrap_or(u64::MAX),
        })?;
        if let Some(len) = self.file_len {
            if end > len {
                return Err(GgufError::Truncated { what: what(), needed: end, len }.into());
            }
        }
        if end > self.buf.len() as u64 {
            return Err(Stop::NeedMore(end));
        }
        let bytes = &self.buf[self.pos as usize..end as usize];
        self.pos = end;
        Ok(bytes)
    }

    fn array<const N: usize>(&mut self, what: &dyn Fn() -> String) -> Result<[u8; N], Stop> {
        let b = self.take(N as u64, what)?;
        let mut out = [0u8; N];
        out.copy_from_slice(b);
        Ok(out)
    }

    fn u32(&mut self, what: &dyn Fn() -> String) -> Result<u32, Stop> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &dyn Fn() -> String) -> Result<u64, Stop> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    /// Rejects a count of `n` items of at least `min_size` bytes each that cannot fit in the
    /// rest of the file, or that passes `limit`.
    fn check_count(&self, n: u64, min_size: u64, limit: u64, what: &dyn Fn() -> String) -> Result<(), Stop> {
        if n > limit {
            return Err(GgufError::LimitExceeded { what: what(), value: n, limit }.into());
        }
        if let Some(len) = self.file_len {
            // Within `limit`, a count whose items run past the end of the file is what a cut-off
            // file looks like (a download that stopped early), so it is `Truncated`, naming the
            // bytes it needs, just as running out while reading would be. It used to be
            // `CountTooLarge`, which blamed a truncated file on a lying count; that error is now
            // kept for byte sizes that overflow.
            let end = n
                .checked_mul(min_size)
                .and_then(|b| b.checked_add(self.pos))
                .ok_or_else(|| GgufError::CountTooLarge { what: what(), value: n, len })?;
            if end > len {
                return Err(GgufError::Truncated { what: what(), needed: end, len }.into());
            }
        }
        Ok(())
    }

    fn string(&mut self, what: &dyn Fn() -> String) -> Result<String, Stop> {
        let len = self.u64(&|| format!("length of {}", what()))?;
        self.check_count(len, 1, MAX_STRING_LEN, &|| format!("length of {}", what()))?;
        let start = self.pos;
        let bytes = self.take(len, what)?;
        match std::str::from_utf8(bytes) {
            Ok(s) => Ok(s.to_string()),
            Err(_) => Err(GgufError::InvalidUtf8 { offset: start }.into()),
        }
    }

    fn value(&mut self, ty: ValueType, key: &str, depth: u32) -> Result<Value, Stop> {
        let what = || format!("value of {key:?}");
        Ok(match ty {
            ValueType::U8 => Value::U8(self.array::<1>(&what)?[0]),
            ValueType::I8 => Value::I8(self.array::<1>(&what)?[0] as i8),
            ValueType::U16 => Value::U16(u16::from_le_bytes(self.array(&what)?)),
            ValueType::I16 => Value::I16(i16::from_le_bytes(self.array(&what)?)),
            ValueType::U32 => Value::U32(self.u32(&what)?),
            ValueType::I32 => Value::I32(i32::from_le_bytes(self.array(&what)?)),
            ValueType::F32 => Value::F32(f32::from_le_bytes(self.array(&what)?)),
            ValueType::Bool => match self.array::<1>(&what)?[0] {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                b => {
                    return Err(GgufError::WrongType {
                        key: key.to_string(),
                        expected: "bool (0 or 1)",
                        found: if b > 1 { "byte > 1" } else { "byte" },
                    }
                    .into())
                }
            },
            ValueType::U64 => Value::U64(self.u64(&what)?),
            ValueType::I64 => Value::I64(i64::from_le_bytes(self.array(&what)?)),
            ValueType::F64 => Value::F64(f64::from_le_bytes(self.array(&what)?)),
            ValueType::String => Value::String(self.string(&what)?),
            ValueType::Array => {
                if depth >= MAX_ARRAY_DEPTH {
                    return Err(GgufError::LimitExceeded {
                        what: format!("array nesting depth of {key:?}"),
                        value: u64::from(depth) + 1,
                        limit: u64::from(MAX_ARRAY_DEPTH),
                    }
                    .into());
                }
                let type_id = self.u32(&what)?;
                let elem = ValueType::from_id(type_id)
                    .ok_or_else(|| GgufError::UnknownValueType { key: key.to_string(), type_id })?;
                let n = self.u64(&what)?;
                // Strings take at least their 8-byte length; arrays their 12-byte header.
                let min_size = elem.fixed_size().unwrap_or(if elem == ValueType::String { 8 } else { 12 });
                self.check_count(n, min_size, MAX_ARRAY_LEN, &|| format!("array length of {key:?}"))?;
                // Checked before any element is read, so the limit bounds memory too.
                self.elements += n;
                if self.elements > MAX_ARRAY_ELEMENTS {
                    return Err(GgufError::LimitExceeded {
                        what: format!("the number of metadata array elements (at {key:?})"),
                        value: self.elements,
                        limit: MAX_ARRAY_ELEMENTS,
                    }
                    .into());
                }
                let mut items = Vec::new();
                for _ in 0..n {
                    items.push(self.value(elem, key, depth + 1)?);
                }
                Value::Array(elem, items)
            }
        })
    }
}

fn read_index(cur: &mut Cursor) -> Result<GgufIndex, Stop> {
    let magic: [u8; 4] = cur.array(&|| "the magic number".into())?;
    if &magic != b"GGUF" {
        return Err(GgufError::BadMagic { found: magic }.into());
    }
    let version = cur.u32(&|| "the version".into())?;
    if version != 2 && version != 3 {
        return Err(GgufError::UnsupportedVersion(version).into());
    }
    let n_tensors = cur.u64(&|| "the tensor count".into())?;
    let n_kv = cur.u64(&|| "the metadata count".into())?;
    // A tensor info takes at least 8 (name length) + 4 (n_dims) + 4 (type) + 8 (offset) bytes;
    // a key-value pair at least 8 (key length) + 4 (type) + 1 (value).
    cur.check_count(n_kv, 13, MAX_KV, &|| "the metadata count".into())?;

    let mut metadata = BTreeMap::new();
    for i in 0..n_kv {
        let key = cur.string(&|| format!("metadata key #{i}"))?;
        let type_id = cur.u32(&|| format!("type of {key:?}"))?;
        let ty =
            ValueType::from_id(type_id).ok_or_else(|| GgufError::UnknownValueType { key: key.clone(), type_id })?;
        let value = cur.value(ty, &key, 0)?;
        if metadata.insert(key.clone(), value).is_some() {
            return Err(GgufError::DuplicateKey(key).into());
        }
    }

    let alignment = match metadata.get("general.alignment") {
        None => DEFAULT_ALIGNMENT,
        Some(v) => {
            let a = v.as_u64().ok_or_else(|| GgufError::WrongType {
                key: "general.alignment".into(),
                expected: "unsigned integer",
                found: v.type_name(),
            })?;
            if a == 0 || !a.is_power_of_two() {
                return Err(GgufError::BadAlignment(a).into());
            }
            a
        }
    };

    cur.check_count(n_tensors, 24, MAX_TENSORS, &|| "the tensor count".into())?;
    struct Raw {
        name: String,
        dims: Vec<u64>,
        ty: TensorType,
        rel_offset: u64,
        n_bytes: u64,
    }
    let mut raw = Vec::new();
    let mut by_name = HashMap::new();
    for i in 0..n_tensors {
        let name = cur.string(&|| format!("name of tensor #{i}"))?;
        let n_dims = cur.u32(&|| format!("dimension count of {name:?}"))?;
        if n_dims > MAX_DIMS {
            return Err(GgufError::TooManyDims { tensor: name, n_dims, max: MAX_DIMS }.into());
        }
        let mut dims = Vec::with_capacity(n_dims as usize);
        for _ in 0..n_dims {
            dims.push(cur.u64(&|| format!("shape of {name:?}"))?);
        }
        let type_id = cur.u32(&|| format!("type of {name:?}"))?;
        let rel_offset = cur.u64(&|| format!("data offset of {name:?}"))?;
        let ty = TensorType::from_id(type_id)
            .ok_or_else(|| GgufError::UnknownTensorType { tensor: name.clone(), type_id })?;
        if dims.contains(&0) {
            return Err(GgufError::EmptyTensor { tensor: name, dims }.into());
        }
        let n_elements = dims
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d))
            .filter(|&n| n <= i64::MAX as u64)
            .ok_or_else(|| GgufError::ShapeOverflow { tensor: name.clone(), dims: dims.clone() })?;
        let ne0 = dims.first().copied().unwrap_or(1);
        if ne0 % ty.block_size() != 0 {
            return Err(GgufError::RaggedBlocks { tensor: name, ty, ne0, block: ty.block_size() }.into());
        }
        let n_bytes = ty
            .bytes_for(n_elements)
            .ok_or_else(|| GgufError::ShapeOverflow { tensor: name.clone(), dims: dims.clone() })?;
        if rel_offset % alignment != 0 {
            return Err(GgufError::MisalignedTensor { tensor: name, offset: rel_offset, alignment }.into());
        }
        if by_name.insert(name.clone(), i as usize).is_some() {
            return Err(GgufError::DuplicateTensor(name).into());
        }
        raw.push(Raw { name, dims, ty, rel_offset, n_bytes });
    }

    let data_offset = cur.pos.div_ceil(alignment).checked_mul(alignment).ok_or(GgufError::BadAlignment(alignment))?;
    let mut tensors = Vec::with_capacity(raw.len());
    for t in raw {
        let start = data_offset.checked_add(t.rel_offset);
        let end = start.and_then(|s| s.checked_add(t.n_bytes));
        let (start, end) = match (start, end, cur.file_len) {
            (Some(s), Some(e), Some(len)) if e <= len => (s, e),
            (Some(s), Some(e), None) => (s, e),
            (s, e, len) => {
                return Err(GgufError::TensorOutOfBounds {
                    tensor: t.name,
                    start: s.unwrap_or(u64::MAX),
                    end: e.unwrap_or(u64::MAX),
                    len: len.unwrap_or(u64::MAX),
                }
                .into())
            }
        };
        tensors.push(TensorInfo { name: t.name, dims: t.dims, ty: t.ty, offset: start, n_bytes: end - start });
    }

    Ok(GgufIndex { version, metadata, tensors, by_name, alignment, data_offset })
}
