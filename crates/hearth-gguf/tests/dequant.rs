//! Dequantization against an outside oracle.
//!
//! `tests/fixtures/dequant.gguf` is written by `tests/fixtures/make_dequant_fixture.py`
//! with llama.cpp's Python package (gguf-py): for each type T it holds a tensor `T` and an
//! F32 tensor `T.expected` that gguf-py's `gguf.quants.dequantize` made from the same bytes.
//! See the script for how the bytes were made (quantized random data, or random blocks with
//! valid f16 scales for the K-quants gguf-py cannot quantize).
//!
//! Budget: every element within 1 ulp of the oracle (f32 units in the last place, with
//! +0 == -0), and no NaN. gguf-py computes in f32 in ggml's operation order, so the
//! expected (and current) result is bit-exact: max ulp 0. The budget allows 1 ulp so that a
//! harmless reassociation does not fail the test, but nothing like a wrong scale or bit.

use hearth_gguf::{dequantize, dequantize_row, parse_index, GgufError, GgufIndex, Parse, TensorType};

const MAX_ULPS: u32 = 1;

/// Every type Hearth dequantizes; the fixture must cover each one.
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

const UNSUPPORTED: &[TensorType] = &[
    TensorType::Q8_1,
    TensorType::Q8_K,
    TensorType::IQ2_XXS,
    TensorType::IQ2_XS,
    TensorType::IQ3_XXS,
    TensorType::IQ1_S,
    TensorType::IQ4_NL,
    TensorType::IQ3_S,
    TensorType::IQ2_S,
    TensorType::IQ4_XS,
    TensorType::I8,
    TensorType::I16,
    TensorType::I32,
    TensorType::I64,
    TensorType::F64,
    TensorType::IQ1_M,
    TensorType::TQ1_0,
    TensorType::TQ2_0,
    TensorType::MXFP4,
];

fn fixture() -> (Vec<u8>, GgufIndex) {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/dequant.gguf");
    let file = std::fs::read(path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
    match parse_index(&file, Some(file.len() as u64)) {
        Ok(Parse::Complete(index)) => (file, index),
        other => panic!("parsing {path}: {other:?}"),
    }
}

/// Distance in f32 ulps, on the ordered-integer line where +0 and -0 coincide.
fn ulps(a: f32, b: f32) -> u32 {
    fn ordered(x: f32) -> i64 {
        let i = x.to_bits() as i32 as i64;
        if i < 0 {
            i32::MIN as i64 - i
        } else {
            i
        }
    }
    (ordered(a) - ordered(b)).unsigned_abs().min(u32::MAX as u64) as u32
}

struct Report {
    name: String,
    ty: TensorType,
    n: usize,
    max_ulps: u32,
    max_abs: f32,
    worst: Option<(usize, f32, f32)>,
}

fn compare(name: &str, ty: TensorType, got: &[f32], expected: &[f32]) -> Report {
    assert_eq!(got.len(), expected.len(), "{name}: length");
    let mut r = Report { name: name.into(), ty, n: got.len(), max_ulps: 0, max_abs: 0.0, worst: None };
    for (i, (&g, &e)) in got.iter().zip(expected).enumerate() {
        assert!(!e.is_nan(), "{name}: the oracle has NaN at {i}: the fixture is broken");
        assert!(!g.is_nan(), "{name} ({ty}): NaN at element {i}, expected {e}");
        let u = ulps(g, e);
        if u > r.max_ulps {
            r.max_ulps = u;
            r.worst = Some((i, g, e));
        }
        r.max_abs = r.max_abs.max((g - e).abs());
    }
    r
}

fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

#[test]
fn matches_gguf_py_oracle() {
    let (file, index) = fixture();
    let mut reports = Vec::new();
    for t in &index.tensors {
        if t.name.ends_with(".expected") {
            continue;
        }
        let exp_name = format!("{}.expected", t.name);
        let exp = index.tensor(&exp_name).unwrap_or_else(|| panic!("{exp_name} missing"));
        assert_eq!(exp.ty, TensorType::F32, "{exp_name}");
        assert_eq!(exp.dims, t.dims, "{}: shape differs from its .expected", t.name);

        let bytes = index.tensor_data(&file, &t.name).unwrap();
        let mut got = vec![f32::NAN; t.n_elements() as usize];
        dequantize(t.ty, bytes, &mut got).unwrap_or_else(|e| panic!("{}: {e}", t.name));
        let expected = f32s(index.tensor_data(&file, &exp_name).unwrap());
        reports.push(compare(&t.name, t.ty, &got, &expected));

        // Row by row gives the same answer as the whole tensor.
        let ne0 = t.dims[0] as usize;
        let row_bytes = t.ty.bytes_for(t.dims[0]).unwrap() as usize;
        let mut row = vec![f32::NAN; ne0];
        for (r, chunk) in bytes.chunks(row_bytes).enumerate() {
            dequantize_row(t.ty, chunk, &mut row).unwrap();
            let whole = &got[r * ne0..(r + 1) * ne0];
            assert!(
                row.iter().zip(whole).all(|(a, b)| a.to_bits() == b.to_bits()),
                "{}: row {r} differs from the whole-tensor result",
                t.name
            );
        }
    }

    let mut failures = Vec::new();
    for r in &reports {
        let worst = match r.worst {
            Some((i, g, e)) => format!(" (worst at index {i}: got {g:e}, expected {e:e})"),
            None => String::new(),
        };
        eprintln!(
            "{:<10} {:<5} {:>5} elements: max ulps {}, max |diff| {:e}{worst}",
            r.name,
            r.ty.name(),
            r.n,
            r.max_ulps,
            r.max_abs
        );
        if r.max_ulps > MAX_ULPS {
            failures.push(format!("{} ({}): {} ulps{worst}", r.name, r.ty, r.max_ulps));
        }
    }
    assert!(failures.is_empty(), "over the budget of {MAX_ULPS} ulp: {failures:#?}");

    for ty in SUPPORTED {
        assert!(
            reports.iter().any(|r| r.ty == *ty && r.name == ty.name()),
            "the fixture has no tensor {ty}: regenerate it"
        );
    }
}

fn detail(ty: TensorType, bytes: &[u8], n: usize) -> String {
    let mut out = vec![0f32; n];
    match dequantize(ty, bytes, &mut out) {
        Err(GgufError::Dequant { ty: t, detail }) => {
            assert_eq!(t, ty);
            detail
        }
        other => panic!("{ty}: {n} elements from {} bytes gave {other:?}", bytes.len()),
    }
}

#[test]
fn wrong_lengths_are_errors_not_panics() {
    for &ty in SUPPORTED {
        let block = ty.block_size() as usize;
        let size = ty.type_size() as usize;
        let bytes = vec![0u8; 3 * size + 1];

        // element count not a whole number of blocks (for multi-element blocks)
        if block > 1 {
            let d = detail(ty, &bytes[..3 * size], 3 * block - 1);
            assert!(d.contains("whole number"), "{ty}: {d}");
        }
        // too few, too many bytes
        let d = detail(ty, &bytes[..3 * size - 1], 3 * block);
        assert!(d.contains(&format!("{}", 3 * size)), "{ty}: {d}");
        let d = detail(ty, &bytes, 3 * block);
        assert!(d.contains("bytes"), "{ty}: {d}");
        // bytes but no output, output but no bytes
        detail(ty, &bytes[..size], 0);
        detail(ty, &[], block);

        // the right lengths work, and zero blocks is fine
        let mut out = vec![f32::NAN; 3 * block];
        dequantize(ty, &bytes[..3 * size], &mut out).unwrap();
        assert!(out.iter().all(|v| *v == 0.0), "{ty}: zero bytes give zeros");
        dequantize(ty, &[], &mut []).unwrap();
    }
}

#[test]
fn unsupported_types_say_so() {
    for &ty in UNSUPPORTED {
        let n = ty.block_size() as usize;
        let bytes = vec![0u8; ty.type_size() as usize];
        let d = detail(ty, &bytes, n);
        assert!(d.contains(&format!("unsupported tensor type {ty}")), "{d}");
        assert!(d.contains("re-quantize"), "{d}");
        assert!(d.contains("Q4_K") && d.contains("Q8_0") && d.contains("F16"), "{d}");
        // the Display of the error is the whole story
        let mut out = vec![0f32; n];
        let msg = dequantize(ty, &bytes, &mut out).unwrap_err().to_string();
        assert!(msg.starts_with(&format!("dequantizing {ty}: unsupported")), "{msg}");
    }
}

/// Throughput check: `cargo test -p hearth-gguf --release -- --ignored --nocapture`.
/// Dequantizes ~4 MB of each type 16 times into the same buffer (so page faults on a fresh
/// output do not dominate) and prints MB/s of quantized input.
#[test]
#[ignore]
fn throughput() {
    let (file, index) = fixture();
    for &ty in SUPPORTED {
        let src = index.tensor_data(&file, ty.name()).unwrap();
        let reps = (4 << 20) / src.len() + 1;
        let bytes: Vec<u8> = src.iter().copied().cycle().take(src.len() * reps).collect();
        let n = (bytes.len() as u64 / ty.type_size() * ty.block_size()) as usize;
        let mut out = vec![0f32; n];
        dequantize(ty, &bytes, &mut out).unwrap();
        let t = std::time::Instant::now();
        for _ in 0..16 {
            dequantize(ty, &bytes, &mut out).unwrap();
        }
        let mb = 16.0 * bytes.len() as f64 / 1e6;
        let s = t.elapsed().as_secs_f64();
        eprintln!("{ty:<5} {mb:>6.1} MB in {s:.3} s: {:>6.0} MB/s in", mb / s);
    }
}
