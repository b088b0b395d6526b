//! Test-only helpers: a GGUF byte builder that can write both valid files and every kind of
//! malformed one, an allocation meter, and index comparison.
#![allow(dead_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use hearth_gguf::{GgufError, GgufIndex, TensorType, Value, ValueType};

// ---------------------------------------------------------------------------------------------
// Allocation meter: the peak number of live heap bytes on the current thread, so a test can
// assert that parsing a lying header never allocates more than a small bound.

struct Meter;

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn note(delta: isize) {
    // `try_with`: the allocator may run while the thread-locals are being torn down.
    let _ = LIVE.try_with(|live| {
        let now = live.get() + delta;
        live.set(now);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
    });
}

unsafe impl GlobalAlloc for Meter {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            note(layout.size() as isize);
        }
        p
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            note(layout.size() as isize);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        note(-(layout.size() as isize));
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            // Counts the moment both blocks may be live, as a copying realloc does.
            note(new_size as isize);
            note(-(layout.size() as isize));
        }
        p
    }
}

#[global_allocator]
static METER: Meter = Meter;

/// Runs `f` and returns its result with the peak heap bytes it held above what was live
/// when it started (this thread only).
pub fn peak_alloc<R>(f: impl FnOnce() -> R) -> (R, usize) {
    let base = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(base));
    let r = f();
    let peak = PEAK.with(Cell::get);
    (r, (peak - base).max(0) as usize)
}

/// Heap bytes any single parse of a lying header may use: far below what its counts claim.
pub const ALLOC_BOUND: usize = 1 << 20;

// ---------------------------------------------------------------------------------------------
// Encoding.

pub fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

pub fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

/// A GGUF string: u64 length, then the bytes (not necessarily UTF-8).
pub fn put_str(out: &mut Vec<u8>, s: &[u8]) {
    put_u64(out, s.len() as u64);
    out.extend_from_slice(s);
}

pub fn type_id(ty: ValueType) -> u32 {
    ty as u32
}

/// The payload of `v` (without its own type id).
pub fn put_value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::U8(x) => out.push(*x),
        Value::I8(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::U16(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I16(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::U32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::F32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::Bool(x) => out.push(u8::from(*x)),
        Value::String(s) => put_str(out, s.as_bytes()),
        Value::Array(elem, items) => {
            put_u32(out, type_id(*elem));
            put_u64(out, items.len() as u64);
            for item in items {
                assert_eq!(item.value_type(), *elem, "builder: array element of the wrong type");
                put_value(out, item);
            }
        }
        Value::U64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::F64(x) => out.extend_from_slice(&x.to_le_bytes()),
    }
}

// ---------------------------------------------------------------------------------------------
// The builder.

/// One tensor info as it will be written; every field may be made to lie.
#[derive(Clone, Debug)]
pub struct TensorSpec {
    pub name: Vec<u8>,
    /// Written as the dimension count unless `n_dims` overrides it.
    pub dims: Vec<u64>,
    pub n_dims: Option<u32>,
    pub type_id: u32,
    /// Offset relative to the data section; `None` places it after the previous tensor.
    pub offset: Option<u64>,
}

impl TensorSpec {
    pub fn new(name: &str, ty: TensorType, dims: &[u64]) -> Self {
        TensorSpec { name: name.as_bytes().to_vec(), dims: dims.to_vec(), n_dims: None, type_id: ty.id(), offset: None }
    }
    pub fn raw_type(mut self, type_id: u32) -> Self {
        self.type_id = type_id;
        self
    }
    pub fn at(mut self, offset: u64) -> Self {
        self.offset = Some(offset);
        self
    }
    pub fn n_dims(mut self, n: u32) -> Self {
        self.n_dims = Some(n);
        self
    }
    pub fn raw_name(mut self, name: &[u8]) -> Self {
        self.name = name.to_vec();
        self
    }
    /// Bytes the data takes, where the type and shape make sense.
    pub fn n_bytes(&self) -> u64 {
        let n = self.dims.iter().try_fold(1u64, |a, &d| a.checked_mul(d));
        match (TensorType::from_id(self.type_id), n) {
            (Some(ty), Some(n)) => ty.bytes_for(n).unwrap_or(0),
            _ => 0,
        }
    }
}

/// Builds a GGUF file byte by byte. Key-value pairs are kept encoded so that malformed ones
/// (unknown type ids, invalid UTF-8, lying lengths) can be written with [`Gguf::raw_kv`].
#[derive(Clone, Debug)]
pub struct Gguf {
    pub magic: [u8; 4],
    pub version: u32,
    /// Override for the tensor count written in the header.
    pub n_tensors: Option<u64>,
    /// Override for the metadata count written in the header.
    pub n_kv: Option<u64>,
    kvs: Vec<Vec<u8>>,
    pub tensors: Vec<TensorSpec>,
    /// Alignment used to lay out the data section (set `general.alignment` separately).
    pub alignment: u64,
    /// Bytes appended after everything.
    pub tail: Vec<u8>,
    /// Whether to write tensor data at all (the index alone otherwise).
    pub with_data: bool,
}

/// Where things ended up in a built file.
#[derive(Clone, Debug)]
pub struct Built {
    pub bytes: Vec<u8>,
    /// End of the last tensor info: a prefix this long is a complete index.
    pub info_end: u64,
    pub data_offset: u64,
    /// Absolute (offset, length) of each tensor's data.
    pub tensor_ranges: Vec<(u64, u64)>,
}

impl Default for Gguf {
    fn default() -> Self {
        Self::new(3)
    }
}

impl Gguf {
    pub fn new(version: u32) -> Self {
        Gguf {
            magic: *b"GGUF",
            version,
            n_tensors: None,
            n_kv: None,
            kvs: Vec::new(),
            tensors: Vec::new(),
            alignment: 32,
            tail: Vec::new(),
            with_data: true,
        }
    }

    /// A well-formed key-value pair.
    pub fn kv(mut self, key: &str, v: Value) -> Self {
        let mut e = Vec::new();
        put_str(&mut e, key.as_bytes());
        put_u32(&mut e, type_id(v.value_type()));
        put_value(&mut e, &v);
        self.kvs.push(e);
        self
    }

    /// A key-value pair with the given raw key bytes, type id and payload bytes.
    pub fn raw_kv(mut self, key: &[u8], type_id: u32, payload: &[u8]) -> Self {
        let mut e = Vec::new();
        put_str(&mut e, key);
        put_u32(&mut e, type_id);
        e.extend_from_slice(payload);
        self.kvs.push(e);
        self
    }

    /// Sets `general.alignment` (as a u32, as llama.cpp writes it) and lays data out with it.
    pub fn alignment(mut self, a: u32) -> Self {
        self.alignment = u64::from(a);
        self.kv("general.alignment", Value::U32(a))
    }

    pub fn tensor(mut self, t: TensorSpec) -> Self {
        self.tensors.push(t);
        self
    }

    pub fn build(&self) -> Built {
        let mut out = Vec::new();
        out.extend_from_slice(&self.magic);
        put_u32(&mut out, self.version);
        put_u64(&mut out, self.n_tensors.unwrap_or(self.tensors.len() as u64));
        put_u64(&mut out, self.n_kv.unwrap_or(self.kvs.len() as u64));
        for kv in &self.kvs {
            out.extend_from_slice(kv);
        }
        let align = self.alignment.max(1);
        let mut offsets = Vec::new();
        let mut next = 0u64;
        for t in &self.tensors {
            put_str(&mut out, &t.name);
            put_u32(&mut out, t.n_dims.unwrap_or(t.dims.len() as u32));
            for &d in &t.dims {
                put_u64(&mut out, d);
            }
            put_u32(&mut out, t.type_id);
            let off = t.offset.unwrap_or(next);
            put_u64(&mut out, off);
            offsets.push(off);
            next = off.saturating_add(t.n_bytes()).div_ceil(align).saturating_mul(align);
        }
        let info_end = out.len() as u64;
        let data_offset = info_end.div_ceil(align) * align;
        let mut ranges = Vec::new();
        for (t, &off) in self.tensors.iter().zip(&offsets) {
            ranges.push((data_offset.saturating_add(off), t.n_bytes()));
        }
        if self.with_data && !self.tensors.is_empty() {
            let end = ranges.iter().map(|&(s, n)| s.saturating_add(n)).max().unwrap_or(data_offset);
            let end = end.div_ceil(align) * align;
            assert!(end < 1 << 24, "builder: tensor data would be {end} bytes");
            out.resize(end as usize, 0);
            // Each tensor's bytes are a pattern seeded by its index, so a wrong offset shows.
            for (i, &(s, n)) in ranges.iter().enumerate() {
                for (j, b) in out[s as usize..(s + n) as usize].iter_mut().enumerate() {
                    *b = (j as u8).wrapping_mul(31).wrapping_add(i as u8 * 7 + 1);
                }
            }
        }
        out.extend_from_slice(&self.tail);
        Built { bytes: out, info_end, data_offset, tensor_ranges: ranges }
    }

    pub fn bytes(&self) -> Vec<u8> {
        self.build().bytes
    }
}

/// A small valid file exercising every value type and a few tensor types.
pub fn sample(version: u32) -> Gguf {
    Gguf::new(version)
        .kv("general.architecture", Value::String("llama".into()))
        .kv("general.name", Value::String("tiny \u{1F525} hearth".into()))
        .kv("test.u8", Value::U8(200))
        .kv("test.i8", Value::I8(-5))
        .kv("test.u16", Value::U16(65000))
        .kv("test.i16", Value::I16(-30000))
        .kv("test.u32", Value::U32(4_000_000_000))
        .kv("test.i32", Value::I32(-2_000_000_000))
        .kv("test.f32", Value::F32(1.5))
        .kv("test.bool", Value::Bool(true))
        .kv("test.u64", Value::U64(u64::MAX))
        .kv("test.i64", Value::I64(i64::MIN))
        .kv("test.f64", Value::F64(-2.25))
        .kv("test.empty_string", Value::String(String::new()))
        .kv("test.strings", Value::Array(ValueType::String, vec![Value::String("a".into()), Value::String("".into())]))
        .kv("test.empty_array", Value::Array(ValueType::F32, vec![]))
        .kv(
            "test.nested",
            Value::Array(
                ValueType::Array,
                vec![
                    Value::Array(ValueType::I32, vec![Value::I32(1), Value::I32(-2)]),
                    Value::Array(ValueType::Bool, vec![Value::Bool(false)]),
                ],
            ),
        )
        .tensor(TensorSpec::new("token_embd.weight", TensorType::F32, &[4, 3]))
        .tensor(TensorSpec::new("blk.0.attn_q.weight", TensorType::Q4_0, &[64, 2]))
        .tensor(TensorSpec::new("blk.0.ffn.weight", TensorType::Q6_K, &[256]))
        .tensor(TensorSpec::new("output_norm.weight", TensorType::F16, &[5]))
}

/// The index of a complete parse, or a panic naming what came back instead.
pub fn complete(bytes: &[u8], file_len: Option<u64>) -> GgufIndex {
    match hearth_gguf::parse_index(bytes, file_len) {
        Ok(hearth_gguf::Parse::Complete(i)) => i,
        other => panic!("expected a complete index, got {other:?}"),
    }
}

/// The error of a parse, or a panic naming what came back instead.
pub fn error(bytes: &[u8], file_len: Option<u64>) -> GgufError {
    match hearth_gguf::parse_index(bytes, file_len) {
        Err(e) => e,
        other => panic!("expected an error, got {other:?}"),
    }
}

/// The same error with the file length known and unknown, each within [`ALLOC_BOUND`].
pub fn error_both(bytes: &[u8]) -> GgufError {
    let (known, peak) = peak_alloc(|| error(bytes, Some(bytes.len() as u64)));
    assert!(peak <= ALLOC_BOUND, "parse with a known length allocated {peak} bytes");
    let (unknown, peak) = peak_alloc(|| error(bytes, None));
    assert!(peak <= ALLOC_BOUND, "parse with an unknown length allocated {peak} bytes");
    // Out-of-bounds tensors report the file length, unknown (u64::MAX) for a stream.
    let strip_len = |e: &GgufError| match e.clone() {
        GgufError::TensorOutOfBounds { tensor, start, end, .. } => {
            GgufError::TensorOutOfBounds { tensor, start, end, len: 0 }
        }
        e => e,
    };
    assert_eq!(strip_len(&known), strip_len(&unknown), "the error depends on whether the file length is known");
    known
}

/// Asserts two indexes are the same, field by field (floats compared through `Debug`, so
/// NaN equals NaN).
pub fn assert_same_index(a: &GgufIndex, b: &GgufIndex) {
    assert_eq!(a.version, b.version);
    assert_eq!(a.alignment, b.alignment);
    assert_eq!(a.data_offset, b.data_offset);
    assert_eq!(a.tensors, b.tensors);
    assert_eq!(a.metadata.len(), b.metadata.len());
    for ((ka, va), (kb, vb)) in a.metadata.iter().zip(&b.metadata) {
        assert_eq!(ka, kb);
        assert_eq!(format!("{va:?}"), format!("{vb:?}"), "metadata {ka:?} differs");
    }
}
