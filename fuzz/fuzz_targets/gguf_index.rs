//! Arbitrary bytes into `parse_index`, as a whole file (length known) and as a stream (length
//! unknown), checking that the two answers agree, that a prefix never contradicts the whole,
//! and that a complete index describes tensors that really lie in the file. Small tensors are
//! dequantized too.
#![no_main]

use hearth_gguf::{dequantize, parse_index, GgufError, GgufIndex, Parse, MAX_DIMS};
use libfuzzer_sys::fuzz_target;

/// Tensors up to this many elements are dequantized (keeps each run fast).
const DEQUANT_MAX_ELEMENTS: u64 = 1 << 16;

fuzz_target!(|data: &[u8]| {
    let len = data.len() as u64;
    let known = parse_index(data, Some(len));
    let stream = parse_index(data, None);

    match (&stream, &known) {
        (Ok(Parse::NeedMore { min_len }), known) => {
            assert!(*min_len > len, "NeedMore {{ {min_len} }} for {len} bytes");
            // The same shortfall, with the length known, is a truncated file.
            assert!(matches!(known, Err(GgufError::Truncated { .. })), "stream wants more, known: {known:?}");
        }
        (Ok(Parse::Complete(s)), Ok(Parse::Complete(k))) => assert_same(s, k),
        // A complete index whose tensor data is not (all) in the file.
        (Ok(Parse::Complete(_)), Err(GgufError::TensorOutOfBounds { .. })) => {}
        (Err(se), Err(ke)) => {
            // With the length known, counts are also checked against it, which can stop the
            // parse earlier with `Truncated`; otherwise the error is the same.
            let same = se == ke
                || matches!(ke, GgufError::Truncated { .. })
                || matches!((se, ke), (GgufError::TensorOutOfBounds { .. }, GgufError::TensorOutOfBounds { .. }));
            assert!(same, "stream: {se:?}, known: {ke:?}");
        }
        (s, k) => panic!("stream: {s:?}, known: {k:?}"),
    }

    if let Ok(Parse::Complete(index)) = &known {
        check_complete(index, data);
    }

    // `data` as the prefix of a longer file of known length (an HTTP download under way):
    // the stream's answer, except that a shortfall past that length is `Truncated`.
    let longer = len + (u64::from(data.first().copied().unwrap_or(0)) << 8) + 1;
    match (parse_index(data, Some(longer)), &stream) {
        (Ok(Parse::NeedMore { min_len: a }), Ok(Parse::NeedMore { min_len: b })) => assert_eq!(a, *b),
        (Err(GgufError::Truncated { len: l, .. }), Ok(Parse::NeedMore { .. }) | Err(_)) => assert_eq!(l, longer),
        (Ok(Parse::Complete(a)), Ok(Parse::Complete(b))) => assert_same(&a, b),
        (Err(a), Err(b)) if a == *b => {}
        (
            Err(GgufError::TensorOutOfBounds { .. }),
            Ok(Parse::Complete(_)) | Err(GgufError::TensorOutOfBounds { .. }),
        ) => {}
        (l, s) => panic!("length {longer}: {l:?}, stream: {s:?}"),
    }

    // A prefix, read as a stream, never contradicts the whole: the same error, the same
    // index, or a request for more.
    if data.len() > 1 {
        let cut = data.len() / 2 + usize::from(data[0]) % (data.len() / 2);
        let prefix = &data[..cut];
        match parse_index(prefix, None) {
            Ok(Parse::NeedMore { min_len }) => assert!(min_len > cut as u64),
            Ok(Parse::Complete(p)) => match &stream {
                Ok(Parse::Complete(s)) => assert_same(&p, s),
                other => panic!("prefix {cut} complete, whole: {other:?}"),
            },
            Err(pe) => match &stream {
                Err(se) => assert_eq!(&pe, se, "prefix {cut} and whole disagree"),
                other => panic!("prefix {cut}: {pe:?}, whole: {other:?}"),
            },
        }
    }
});

fn assert_same(a: &GgufIndex, b: &GgufIndex) {
    assert_eq!(a.version, b.version);
    assert_eq!(a.alignment, b.alignment);
    assert_eq!(a.data_offset, b.data_offset);
    assert_eq!(a.tensors, b.tensors);
    // Debug, so that a NaN value equals itself.
    assert_eq!(format!("{:?}", a.metadata), format!("{:?}", b.metadata));
}

/// Every promise a complete index with a known length makes.
fn check_complete(index: &GgufIndex, data: &[u8]) {
    assert!(index.version == 2 || index.version == 3);
    assert!(index.alignment.is_power_of_two());
    assert_eq!(index.data_offset % index.alignment, 0);
    for t in &index.tensors {
        assert_eq!(index.tensor(&t.name), Some(t), "lookup of {:?}", t.name);
        assert!(t.dims.len() <= MAX_DIMS as usize);
        assert!(t.dims.iter().all(|&d| d > 0));
        assert!(t.offset >= index.data_offset);
        assert_eq!(t.offset % index.alignment, 0);
        let n = t.n_elements();
        assert_eq!(t.ty.bytes_for(n), Some(t.n_bytes));
        let bytes = index.tensor_data(data, &t.name).expect("a tensor of a complete index lies in the file");
        assert_eq!(bytes.len() as u64, t.n_bytes);
        if n <= DEQUANT_MAX_ELEMENTS {
            let mut out = vec![0f32; n as usize];
            // Unsupported types are an error; nothing may panic.
            let _ = dequantize(t.ty, bytes, &mut out);
        }
    }
}
