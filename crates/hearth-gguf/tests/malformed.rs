//! Hand-built GGUF files, valid and malformed: each bad input must give its typed error,
//! never a panic and never an allocation sized by a count the file merely claims.

mod common;

use common::*;
use hearth_gguf::{parse_index, GgufError, Parse, TensorType, Value, ValueType, MAX_DIMS};

/// Header bytes alone: magic, version, tensor count, metadata count.
fn header(version: u32, n_tensors: u64, n_kv: u64) -> Vec<u8> {
    let mut out = b"GGUF".to_vec();
    put_u32(&mut out, version);
    put_u64(&mut out, n_tensors);
    put_u64(&mut out, n_kv);
    out
}

/// The limit a `LimitExceeded` error reports (the parser's constants are private).
fn limit_of(e: &GgufError) -> u64 {
    match e {
        GgufError::LimitExceeded { limit, .. } => *limit,
        e => panic!("expected LimitExceeded, got {e:?}"),
    }
}

fn need_more(bytes: &[u8], file_len: Option<u64>) -> u64 {
    match parse_index(bytes, file_len) {
        Ok(Parse::NeedMore { min_len }) => min_len,
        other => panic!("expected NeedMore, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Header.

#[test]
fn wrong_magic() {
    for magic in [*b"GGUX", *b"FUGG", *b"lmgg", *b"ggjt", [0; 4], [0xff; 4]] {
        let mut g = sample(3);
        g.magic = magic;
        assert_eq!(error_both(&g.bytes()), GgufError::BadMagic { found: magic });
    }
    // Four bytes are enough to judge; fewer are not.
    assert_eq!(error_both(b"GGML"), GgufError::BadMagic { found: *b"GGML" });
    assert_eq!(need_more(b"GG", None), 4);
    assert!(matches!(error(b"GG", Some(2)), GgufError::Truncated { needed: 4, len: 2, .. }));
    assert!(matches!(error(b"", Some(0)), GgufError::Truncated { needed: 4, len: 0, .. }));
}

#[test]
fn unsupported_versions() {
    // 0x0300_0000 is version 3 written big-endian.
    for version in [0, 1, 4, 5, 0x0200_0000, 0x0300_0000, u32::MAX] {
        let mut g = sample(3);
        g.version = version;
        assert_eq!(error_both(&g.bytes()), GgufError::UnsupportedVersion(version));
    }
    // A real v1 header (u32 counts) is rejected at the version, before its counts are read.
    let mut v1 = b"GGUF".to_vec();
    put_u32(&mut v1, 1);
    put_u32(&mut v1, 0);
    put_u32(&mut v1, 0);
    assert_eq!(error_both(&v1), GgufError::UnsupportedVersion(1));
    for version in [2, 3] {
        assert_eq!(complete(&sample(version).bytes(), None).version, version);
    }
}

// ---------------------------------------------------------------------------------------------
// Truncation.

/// Every prefix of a valid file, declared as the whole file, is a typed error: `Truncated`
/// while the index is cut, `TensorOutOfBounds` once only tensor data is missing.
#[test]
fn truncated_at_every_prefix() {
    for version in [2, 3] {
        let built = sample(version).build();
        let full = built.bytes.len();
        let data_end = built.tensor_ranges.iter().map(|&(s, n)| s + n).max().unwrap();
        for p in 0..full {
            let prefix = &built.bytes[..p];
            let (r, peak) = peak_alloc(|| parse_index(prefix, Some(p as u64)));
            assert!(peak <= ALLOC_BOUND, "prefix {p}: allocated {peak} bytes");
            match r {
                Err(GgufError::Truncated { needed, len, .. }) if (p as u64) < built.info_end => {
                    assert_eq!(len, p as u64, "prefix {p}");
                    assert!(needed > len && needed <= built.info_end, "prefix {p}: needed {needed}");
                }
                Err(GgufError::TensorOutOfBounds { end, len, .. }) if (p as u64) >= built.info_end => {
                    assert_eq!(len, p as u64, "prefix {p}");
                    assert!(end > len, "prefix {p}");
                }
                Ok(Parse::Complete(_)) if p as u64 >= data_end => {}
                other => panic!("v{version} prefix {p} of {full} (index ends at {}): {other:?}", built.info_end),
            }
        }
    }
}

/// A declared length shorter than the prefix handed over is raised to the prefix.
#[test]
fn file_len_below_prefix_is_raised() {
    let bytes = sample(3).bytes();
    complete(&bytes, Some(0));
    complete(&bytes, Some(10));
}

// ---------------------------------------------------------------------------------------------
// Counts that lie.

#[test]
fn metadata_count_huge() {
    let e = error_both(&header(3, 0, u64::MAX));
    let limit = limit_of(&e);
    assert!(matches!(e, GgufError::LimitExceeded { value: u64::MAX, .. }));
    for n in [limit + 1, u64::MAX / 13 + 1, 1 << 63] {
        assert_eq!(limit_of(&error_both(&header(3, 0, n))), limit);
    }
    // At the limit the count is believable: a stream asks for more, a known length is short.
    let h = header(3, 0, limit);
    assert_eq!(need_more(&h, None), 24 + 8);
    assert!(matches!(error(&h, Some(24)), GgufError::Truncated { len: 24, .. }));
    assert!(matches!(error(&h, Some(1 << 16)), GgufError::Truncated { len: 65536, .. }));
    // A known length that could hold them all: read on.
    assert_eq!(need_more(&h, Some(1 << 24)), 32);
}

#[test]
fn metadata_count_just_too_big() {
    // Two pairs written, three claimed: the third key runs off the end.
    let mut g = Gguf::new(3).kv("a", Value::U8(1)).kv("b", Value::U32(2));
    g.n_kv = Some(3);
    let bytes = g.bytes();
    let len = bytes.len() as u64;
    assert!(
        matches!(error(&bytes, Some(len)), GgufError::Truncated { needed, len: l, .. } if needed > len && l == len)
    );
    assert_eq!(need_more(&bytes, None), len + 8);
    // Claiming more pairs than could fit in the bytes left fails before reading any of them.
    g.n_kv = Some(len);
    let bytes = g.bytes();
    let e = peak_alloc(|| error(&bytes, Some(len)));
    assert!(matches!(e.0, GgufError::Truncated { .. }), "{:?}", e.0);
    assert!(e.1 <= ALLOC_BOUND);
}

#[test]
fn tensor_count_huge() {
    let e = error_both(&header(3, u64::MAX, 0));
    let limit = limit_of(&e);
    assert!(matches!(e, GgufError::LimitExceeded { value: u64::MAX, .. }));
    assert_eq!(limit_of(&error_both(&header(3, limit + 1, 0))), limit);
    let h = header(3, limit, 0);
    assert_eq!(need_more(&h, None), 24 + 8);
    assert!(matches!(error(&h, Some(1 << 20)), GgufError::Truncated { .. }));
    // One tensor more than written.
    let mut g = sample(3);
    g.with_data = false;
    g.n_tensors = Some(5);
    let bytes = g.bytes();
    assert!(matches!(error(&bytes, Some(bytes.len() as u64)), GgufError::Truncated { .. }));
    assert_eq!(need_more(&bytes, None), bytes.len() as u64 + 8);
}

#[test]
fn string_length_huge() {
    // As a key.
    let mut key = header(3, 0, 1);
    put_u64(&mut key, u64::MAX);
    key.extend_from_slice(&[b'a'; 64]);
    let limit = limit_of(&error_both(&key));
    for n in [limit + 1, u64::MAX - 31, u64::MAX - 24] {
        let mut b = header(3, 0, 1);
        put_u64(&mut b, n);
        b.extend_from_slice(&[b'a'; 64]);
        assert_eq!(limit_of(&error_both(&b)), limit);
    }
    let mut at_limit = header(3, 0, 1);
    put_u64(&mut at_limit, limit);
    at_limit.extend_from_slice(&[b'a'; 64]);
    assert_eq!(need_more(&at_limit, None), 32 + limit);
    let (e, peak) = peak_alloc(|| error(&at_limit, Some(at_limit.len() as u64)));
    assert!(matches!(e, GgufError::Truncated { .. }), "{e:?}");
    assert!(peak <= ALLOC_BOUND);

    // As a value, and as a tensor name.
    let mut value = u64::MAX.to_le_bytes().to_vec();
    value.extend_from_slice(b"xyz");
    let b = Gguf::new(3).raw_kv(b"k", 8, &value).bytes();
    assert_eq!(limit_of(&error_both(&b)), limit);
    let mut g = Gguf::new(3).tensor(TensorSpec::new("t", TensorType::F32, &[1]));
    g.with_data = false;
    let mut b = g.bytes();
    b[24..32].copy_from_slice(&(limit + 1).to_le_bytes());
    assert_eq!(limit_of(&error_both(&b)), limit);
}

#[test]
fn array_length_huge() {
    for elem in [ValueType::U8, ValueType::U64, ValueType::String, ValueType::Array] {
        let payload = |n: u64| {
            let mut p = Vec::new();
            put_u32(&mut p, type_id(elem));
            put_u64(&mut p, n);
            p.extend_from_slice(&[0; 48]);
            Gguf::new(3).raw_kv(b"arr", 9, &p).bytes()
        };
        let e = error_both(&payload(u64::MAX));
        let limit = limit_of(&e);
        for n in [limit + 1, u64::MAX / 8 + 1, 1 << 62] {
            assert_eq!(limit_of(&error_both(&payload(n))), limit, "{elem:?}");
        }
        // At the limit: a stream waits (and holds only what has arrived), a known length is
        // too short for that many elements.
        let b = payload(limit);
        let (r, peak) = peak_alloc(|| parse_index(&b, None));
        assert!(peak <= ALLOC_BOUND, "{elem:?}: {peak} bytes");
        // The zero bytes that follow read as elements (0, "", or an empty u8 array) until
        // they run out.
        match r {
            Ok(Parse::NeedMore { min_len }) => assert!(min_len > b.len() as u64),
            other => panic!("{elem:?}: {other:?}"),
        }
        let (r, peak) = peak_alloc(|| parse_index(&b, Some(b.len() as u64)));
        assert!(peak <= ALLOC_BOUND);
        assert!(matches!(r, Err(GgufError::Truncated { .. })), "{elem:?}: {r:?}");
    }
}

#[test]
fn array_of_strings_cannot_fit() {
    // Ten strings need at least 80 bytes of lengths; only 40 follow.
    let mut p = Vec::new();
    put_u32(&mut p, type_id(ValueType::String));
    put_u64(&mut p, 10);
    p.extend_from_slice(&[0; 40]);
    let b = Gguf::new(3).raw_kv(b"arr", 9, &p).bytes();
    assert!(matches!(error(&b, Some(b.len() as u64)), GgufError::Truncated { .. }));
    // Streaming, the five empty strings that are there are read and the sixth is awaited.
    assert_eq!(need_more(&b, None), b.len() as u64 + 8);
}

/// Each array is within its limit, but together they would hold ~32 bytes of `Value` per
/// byte of file; the total is capped before the elements are read.
#[test]
fn array_elements_in_total() {
    let mut p = Vec::new();
    put_u32(&mut p, type_id(ValueType::U8));
    put_u64(&mut p, u64::MAX);
    let per_array = limit_of(&error_both(&Gguf::new(3).raw_kv(b"a", 9, &p).bytes()));
    let array = |n: u64| {
        let mut p = Vec::new();
        put_u32(&mut p, type_id(ValueType::U8));
        put_u64(&mut p, n);
        p.resize(12 + n as usize, 1);
        p
    };
    let full = array(per_array);
    let mut g = Gguf::new(3);
    for i in 0..6 {
        g = g.raw_kv(format!("a{i}").as_bytes(), 9, &full);
    }
    let bytes = g.bytes();
    let (r, peak) = peak_alloc(|| parse_index(&bytes, Some(bytes.len() as u64)));
    let total = match r {
        Err(GgufError::LimitExceeded { value, limit, .. }) => {
            assert!(value > limit && limit >= per_array, "{value} > {limit}");
            limit
        }
        other => panic!("{other:?}"),
    };
    // Memory stays near what the cap allows (a `Value` is 32 bytes), not what the file holds.
    let value_size = std::mem::size_of::<Value>() as u64;
    assert!((peak as u64) < 2 * total * value_size, "{peak} bytes for {} of file", bytes.len());
    assert!((peak as u64) < bytes.len() as u64 * value_size / 2);
    // Exactly at the cap is fine.
    let mut g = Gguf::new(3);
    let mut left = total;
    let mut i = 0;
    while left > 0 {
        let n = left.min(per_array);
        g = g.raw_kv(format!("a{i}").as_bytes(), 9, &array(n));
        left -= n;
        i += 1;
    }
    assert_eq!(complete(&g.bytes(), None).metadata.len(), i);
}

#[test]
fn nested_array_depth() {
    // `levels` arrays, each holding the next, the innermost holding one u8.
    let nested = |levels: usize| {
        let mut p = Vec::new();
        for _ in 1..levels {
            put_u32(&mut p, type_id(ValueType::Array));
            put_u64(&mut p, 1);
        }
        put_u32(&mut p, type_id(ValueType::U8));
        put_u64(&mut p, 1);
        p.push(7);
        Gguf::new(3).raw_kv(b"deep", 9, &p).bytes()
    };
    let ok = complete(&nested(4), None);
    let mut v = ok.get("deep").unwrap();
    for _ in 0..3 {
        v = &v.as_array().unwrap()[0];
    }
    assert_eq!(v, &Value::Array(ValueType::U8, vec![Value::U8(7)]));
    for levels in [5, 6, 100, 100_000] {
        match error_both(&nested(levels)) {
            GgufError::LimitExceeded { value: 5, limit: 4, .. } => {}
            e => panic!("{levels} levels: {e:?}"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Metadata contents.

#[test]
fn unknown_value_type() {
    for type_id in [13, 14, 100, u32::MAX] {
        let b = Gguf::new(3).kv("ok", Value::U8(1)).raw_kv(b"bad", type_id, &[0; 16]).bytes();
        assert_eq!(error_both(&b), GgufError::UnknownValueType { key: "bad".into(), type_id });
        // As an array's element type.
        let mut p = Vec::new();
        put_u32(&mut p, type_id);
        put_u64(&mut p, 1);
        p.extend_from_slice(&[0; 16]);
        let b = Gguf::new(3).raw_kv(b"arr", 9, &p).bytes();
        assert_eq!(error_both(&b), GgufError::UnknownValueType { key: "arr".into(), type_id });
    }
}

#[test]
fn invalid_utf8() {
    let bad: [&[u8]; 5] = [b"gen\xffral", b"\xc0\xaf", b"\xed\xa0\x80", b"ab\xe2\x82", b"\x80"];
    for s in bad {
        // A key: its bytes start after the 24-byte header and the 8-byte length.
        let b = Gguf::new(3).raw_kv(s, 4, &[0; 4]).bytes();
        assert_eq!(error_both(&b), GgufError::InvalidUtf8 { offset: 32 }, "{s:?}");

        // A string value after the key "k": 32 + 1 (key) + 4 (type) + 8 (length).
        let mut p = Vec::new();
        put_str(&mut p, s);
        let b = Gguf::new(3).raw_kv(b"k", 8, &p).bytes();
        assert_eq!(error_both(&b), GgufError::InvalidUtf8 { offset: 45 }, "{s:?}");

        // A string inside an array: + 4 (element type) + 8 (count) + 8 (first string, "")
        // + 8 (second string's length).
        let mut p = Vec::new();
        put_u32(&mut p, type_id(ValueType::String));
        put_u64(&mut p, 2);
        put_str(&mut p, b"");
        put_str(&mut p, s);
        let b = Gguf::new(3).raw_kv(b"k", 9, &p).bytes();
        assert_eq!(error_both(&b), GgufError::InvalidUtf8 { offset: 37 + 12 + 8 + 8 }, "{s:?}");

        // A tensor name.
        let mut g = Gguf::new(3).tensor(TensorSpec::new("", TensorType::F32, &[1]).raw_name(s));
        g.with_data = false;
        assert_eq!(error_both(&g.bytes()), GgufError::InvalidUtf8 { offset: 32 }, "{s:?}");
    }
}

#[test]
fn bad_bool() {
    for byte in [2u8, 0x80, 0xff] {
        let b = Gguf::new(3).raw_kv(b"flag", 7, &[byte]).bytes();
        assert!(matches!(error_both(&b), GgufError::WrongType { key, .. } if key == "flag"));
    }
}

#[test]
fn duplicate_key() {
    let b = Gguf::new(3).kv("a", Value::U8(1)).kv("b", Value::U8(2)).kv("a", Value::String("x".into())).bytes();
    assert_eq!(error_both(&b), GgufError::DuplicateKey("a".into()));
}

#[test]
fn duplicate_tensor() {
    let b = Gguf::new(3)
        .tensor(TensorSpec::new("w", TensorType::F32, &[8]))
        .tensor(TensorSpec::new("v", TensorType::F32, &[8]))
        .tensor(TensorSpec::new("w", TensorType::F16, &[8]))
        .bytes();
    assert_eq!(error_both(&b), GgufError::DuplicateTensor("w".into()));
}

// ---------------------------------------------------------------------------------------------
// Tensor infos.

fn one_tensor(t: TensorSpec) -> Vec<u8> {
    let mut g = Gguf::new(3).kv("general.architecture", Value::String("x".into())).tensor(t);
    g.with_data = false;
    g.bytes()
}

#[test]
fn unknown_tensor_type() {
    // 4 and 5 were Q4_2 and Q4_3, removed from ggml; 31..33 were Q4_0_4_4 and friends.
    for type_id in [4, 5, 31, 32, 33, 36, 40, 1000, u32::MAX] {
        let b = one_tensor(TensorSpec::new("w", TensorType::F32, &[32]).raw_type(type_id));
        assert_eq!(error_both(&b), GgufError::UnknownTensorType { tensor: "w".into(), type_id });
    }
}

#[test]
fn too_many_dims() {
    for n_dims in [MAX_DIMS + 1, 8, 1 << 20, u32::MAX] {
        let b = one_tensor(TensorSpec::new("w", TensorType::F32, &[1, 1, 1, 1]).n_dims(n_dims));
        assert_eq!(error_both(&b), GgufError::TooManyDims { tensor: "w".into(), n_dims, max: MAX_DIMS });
    }
    // MAX_DIMS itself is fine.
    let b = one_tensor(TensorSpec::new("w", TensorType::F32, &[2, 3, 4, 5]));
    assert_eq!(complete(&b, None).tensors[0].n_elements(), 120);
}

#[test]
fn zero_dims() {
    // No dimensions at all: a scalar, as ggml reads it.
    let b = Gguf::new(3).tensor(TensorSpec::new("s", TensorType::F32, &[])).bytes();
    let index = complete(&b, Some(b.len() as u64));
    assert_eq!(index.tensors[0].n_elements(), 1);
    assert_eq!(index.tensors[0].n_bytes, 4);
    // A quantized scalar cannot be: one element is not a block.
    let b = one_tensor(TensorSpec::new("s", TensorType::Q8_0, &[]));
    assert!(matches!(error_both(&b), GgufError::RaggedBlocks { ne0: 1, block: 32, .. }));
    // A zero-length dimension anywhere.
    for dims in [vec![0], vec![0, 4], vec![32, 0], vec![32, 2, 2, 0]] {
        let b = one_tensor(TensorSpec::new("e", TensorType::F32, &dims));
        assert_eq!(error_both(&b), GgufError::EmptyTensor { tensor: "e".into(), dims });
    }
}

#[test]
fn element_count_overflow() {
    let cases: [(TensorType, &[u64]); 6] = [
        (TensorType::F32, &[u64::MAX, 2]),
        (TensorType::F32, &[1 << 32, 1 << 32]),
        (TensorType::I8, &[1 << 62, 2]),
        (TensorType::F16, &[1 << 16, 1 << 16, 1 << 16, 1 << 16]),
        // The element count fits; its size in bytes does not.
        (TensorType::F32, &[i64::MAX as u64]),
        (TensorType::F64, &[1 << 61, 2]),
    ];
    for (ty, dims) in cases {
        let b = one_tensor(TensorSpec::new("w", ty, dims));
        assert_eq!(error_both(&b), GgufError::ShapeOverflow { tensor: "w".into(), dims: dims.to_vec() });
    }
    // Large but representable: the index is fine, the data is not in the file.
    let b = one_tensor(TensorSpec::new("w", TensorType::I8, &[1 << 62]));
    assert_eq!(complete(&b, None).tensors[0].n_bytes, 1 << 62);
    assert!(matches!(error(&b, Some(b.len() as u64)), GgufError::TensorOutOfBounds { .. }));
}

#[test]
fn ne0_not_a_multiple_of_block_size() {
    let cases: [(TensorType, &[u64]); 5] = [
        (TensorType::Q4_0, &[33, 2]),
        (TensorType::Q8_0, &[16]),
        (TensorType::Q4_K, &[32, 8]),
        (TensorType::Q6_K, &[255]),
        // The count is a multiple of 256; the row is not.
        (TensorType::Q4_K, &[128, 2]),
    ];
    for (ty, dims) in cases {
        let b = one_tensor(TensorSpec::new("q", ty, dims));
        assert_eq!(
            error_both(&b),
            GgufError::RaggedBlocks { tensor: "q".into(), ty, ne0: dims[0], block: ty.block_size() }
        );
    }
}

#[test]
fn misaligned_offset() {
    for offset in [1, 4, 16, 33, u64::MAX] {
        let b = one_tensor(TensorSpec::new("w", TensorType::F32, &[8]).at(offset));
        assert_eq!(error_both(&b), GgufError::MisalignedTensor { tensor: "w".into(), offset, alignment: 32 });
    }
    // With a custom alignment, 32 is no longer enough.
    let mut g = Gguf::new(3).alignment(64).tensor(TensorSpec::new("w", TensorType::F32, &[8]).at(32));
    g.with_data = false;
    assert_eq!(error_both(&g.bytes()), GgufError::MisalignedTensor { tensor: "w".into(), offset: 32, alignment: 64 });
    // The second tensor is checked too.
    let mut g = Gguf::new(3)
        .tensor(TensorSpec::new("a", TensorType::F32, &[8]))
        .tensor(TensorSpec::new("b", TensorType::F32, &[8]).at(40));
    g.with_data = false;
    assert_eq!(error_both(&g.bytes()), GgufError::MisalignedTensor { tensor: "b".into(), offset: 40, alignment: 32 });
}

#[test]
fn tensor_data_outside_file() {
    // Past the end of a known file.
    let built = Gguf::new(3).tensor(TensorSpec::new("w", TensorType::F32, &[8]).at(1 << 20)).build();
    let mut g = Gguf::new(3).tensor(TensorSpec::new("w", TensorType::F32, &[8]).at(1 << 20));
    g.with_data = false;
    let b = g.bytes();
    let len = b.len() as u64;
    let start = built.data_offset + (1 << 20);
    assert_eq!(error(&b, Some(len)), GgufError::TensorOutOfBounds { tensor: "w".into(), start, end: start + 32, len });
    // Streaming, the data may yet come.
    assert_eq!(complete(&b, None).tensors[0].offset, start);

    // One byte short.
    let mut b = Gguf::new(3).tensor(TensorSpec::new("w", TensorType::F32, &[8])).bytes();
    b.pop();
    let len = b.len() as u64;
    assert!(matches!(error(&b, Some(len)), GgufError::TensorOutOfBounds { end, .. } if end == len + 1));

    // Offsets whose absolute position overflows are out of bounds even for a stream.
    for offset in [!31u64, !31u64 - (1 << 10)] {
        let b = one_tensor(TensorSpec::new("w", TensorType::F32, &[1 << 20]).at(offset));
        assert!(matches!(error_both(&b), GgufError::TensorOutOfBounds { ref tensor, .. } if tensor == "w"));
    }
}

#[test]
fn bad_alignment() {
    for a in [0, 3, 24, 100, u32::MAX] {
        let b = Gguf::new(3).kv("general.alignment", Value::U32(a)).bytes();
        assert_eq!(error_both(&b), GgufError::BadAlignment(u64::from(a)));
    }
    let b = Gguf::new(3).kv("general.alignment", Value::U64(u64::MAX)).bytes();
    assert_eq!(error_both(&b), GgufError::BadAlignment(u64::MAX));
    let wrong = [
        (Value::String("32".into()), "string"),
        (Value::F32(32.0), "f32"),
        (Value::I32(-32), "i32"),
        (Value::Bool(true), "bool"),
        (Value::Array(ValueType::U32, vec![Value::U32(32)]), "array"),
    ];
    for (v, found) in wrong {
        let b = Gguf::new(3).kv("general.alignment", v).bytes();
        assert_eq!(
            error_both(&b),
            GgufError::WrongType { key: "general.alignment".into(), expected: "unsigned integer", found }
        );
    }
}

/// A huge (power-of-two) alignment puts the data far away; it must not overflow.
#[test]
fn huge_alignment() {
    let b = Gguf::new(3).kv("general.alignment", Value::U64(1 << 63)).bytes();
    assert_eq!(complete(&b, None).data_offset, 1 << 63);
    let mut g = Gguf::new(3)
        .kv("general.alignment", Value::U64(1 << 63))
        .tensor(TensorSpec::new("w", TensorType::F32, &[2]).at(1 << 63));
    g.with_data = false;
    assert!(matches!(error_both(&g.bytes()), GgufError::TensorOutOfBounds { .. }));
}

// ---------------------------------------------------------------------------------------------
// Valid files.

#[test]
fn round_trip_all_value_types_and_tensors() {
    for version in [2, 3] {
        let g = sample(version);
        let built = g.build();
        let len = built.bytes.len() as u64;
        let index = complete(&built.bytes, Some(len));
        assert_same_index(&index, &complete(&built.bytes, None));
        assert_eq!(index.version, version);
        assert_eq!(index.alignment, 32);
        assert_eq!(index.data_offset, built.data_offset);
        assert_eq!(index.data_offset % 32, 0);

        assert_eq!(index.architecture().unwrap(), "llama");
        assert_eq!(index.get_str("general.name").unwrap(), "tiny \u{1F525} hearth");
        assert_eq!(index.get("test.u8"), Some(&Value::U8(200)));
        assert_eq!(index.get("test.i8"), Some(&Value::I8(-5)));
        assert_eq!(index.get("test.u16"), Some(&Value::U16(65000)));
        assert_eq!(index.get("test.i16"), Some(&Value::I16(-30000)));
        assert_eq!(index.get("test.u32"), Some(&Value::U32(4_000_000_000)));
        assert_eq!(index.get("test.i32"), Some(&Value::I32(-2_000_000_000)));
        assert_eq!(index.get_f32("test.f32").unwrap(), 1.5);
        assert!(index.get_bool("test.bool").unwrap());
        assert_eq!(index.get_u64("test.u64").unwrap(), u64::MAX);
        assert_eq!(index.get("test.i64"), Some(&Value::I64(i64::MIN)));
        assert_eq!(index.get("test.f64"), Some(&Value::F64(-2.25)));
        assert_eq!(index.get_str("test.empty_string").unwrap(), "");
        assert_eq!(
            index.get("test.strings"),
            Some(&Value::Array(ValueType::String, vec![Value::String("a".into()), Value::String("".into())]))
        );
        assert_eq!(index.get("test.empty_array"), Some(&Value::Array(ValueType::F32, vec![])));
        assert_eq!(
            index.get("test.nested"),
            Some(&Value::Array(
                ValueType::Array,
                vec![
                    Value::Array(ValueType::I32, vec![Value::I32(1), Value::I32(-2)]),
                    Value::Array(ValueType::Bool, vec![Value::Bool(false)]),
                ]
            ))
        );
        assert_eq!(index.metadata.len(), 17);
        assert!(matches!(index.get_u64("general.name"), Err(GgufError::WrongType { .. })));
        assert!(matches!(index.get_u64("nope"), Err(GgufError::MissingKey { .. })));

        check_tensors(&g, &built, &index);
    }
}

/// Every tensor of `index` has the name, shape, type and absolute offset the builder wrote,
/// and `tensor_data` returns the very bytes placed there.
fn check_tensors(g: &Gguf, built: &Built, index: &hearth_gguf::GgufIndex) {
    assert_eq!(index.tensors.len(), g.tensors.len());
    for (i, (spec, t)) in g.tensors.iter().zip(&index.tensors).enumerate() {
        assert_eq!(t.name.as_bytes(), &spec.name[..]);
        assert_eq!(t.dims, spec.dims);
        assert_eq!(t.ty.id(), spec.type_id);
        let (start, n) = built.tensor_ranges[i];
        assert_eq!((t.offset, t.n_bytes), (start, n), "{}", t.name);
        assert_eq!(t.offset % index.alignment, 0);
        assert_eq!(index.tensor(&t.name), Some(t));
        let data = index.tensor_data(&built.bytes, &t.name).unwrap();
        assert_eq!(data, &built.bytes[start as usize..(start + n) as usize]);
        assert_eq!(data[0], i as u8 * 7 + 1, "{}: not the bytes written for it", t.name);
        // A buffer that stops one byte short of the tensor is reported, not sliced.
        let short = &built.bytes[..(start + n - 1) as usize];
        assert!(matches!(index.tensor_data(short, &t.name), Err(GgufError::Truncated { .. })));
    }
    assert!(matches!(index.tensor_data(&built.bytes, "missing"), Err(GgufError::MissingTensor(_))));
}

#[test]
fn custom_alignment() {
    for a in [1u32, 8, 64, 4096] {
        let g = Gguf::new(3)
            .kv("general.architecture", Value::String("x".into()))
            .alignment(a)
            .tensor(TensorSpec::new("a", TensorType::F32, &[3]))
            .tensor(TensorSpec::new("b", TensorType::Q8_0, &[32, 3]))
            .tensor(TensorSpec::new("c", TensorType::I8, &[5]));
        let built = g.build();
        let index = complete(&built.bytes, Some(built.bytes.len() as u64));
        assert_eq!(index.alignment, u64::from(a));
        assert_eq!(index.data_offset, built.info_end.div_ceil(u64::from(a)) * u64::from(a));
        check_tensors(&g, &built, &index);
    }
    // Any unsigned integer type may hold the alignment.
    let b = Gguf::new(3).kv("general.alignment", Value::U8(16)).bytes();
    assert_eq!(complete(&b, None).alignment, 16);
}

#[test]
fn empty_file_is_valid() {
    let b = header(2, 0, 0);
    let index = complete(&b, Some(24));
    assert!(index.metadata.is_empty() && index.tensors.is_empty());
    assert_eq!(index.data_offset, 32);
}

// ---------------------------------------------------------------------------------------------
// Inputs the fuzzer found.

/// Replays every file in tests/fuzz_regressions/ the way the fuzz target does: any answer
/// but a panic (or an allocation blow-up) passes.
#[test]
fn fuzz_regressions() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fuzz_regressions");
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "md") {
            continue;
        }
        let data = std::fs::read(&path).unwrap();
        for file_len in [Some(data.len() as u64), None] {
            let (r, peak) = peak_alloc(|| parse_index(&data, file_len));
            assert!(peak <= 64 * data.len().max(1 << 16), "{}: allocated {peak} bytes", path.display());
            if let Ok(Parse::Complete(index)) = r {
                for t in &index.tensors {
                    let _ = index.tensor_data(&data, &t.name);
                }
            }
        }
        n += 1;
    }
    eprintln!("replayed {n} fuzz regression inputs");
}
