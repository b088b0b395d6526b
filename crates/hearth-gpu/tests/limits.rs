//! The GPU engine at lowered adapter limits: a table split across storage bindings, and a
//! model and context that cannot fit, refused before anything is uploaded.

use std::sync::Arc;

use hearth_gguf::{read_index, FileSource};
use hearth_gpu::{Gpu, GpuEngine, GpuError, GpuOptions};
use hearth_model::{Engine, Logits};
use hearth_testdata::{json, model_path};

fn open() -> (FileSource, hearth_gguf::GgufIndex) {
    let src = FileSource::open(model_path()).expect("open model");
    let index = read_index(&src).expect("read GGUF index");
    (src, index)
}

fn gpu(options: GpuOptions) -> Arc<Gpu> {
    Arc::new(Gpu::new_blocking(&options).unwrap_or_else(|e| panic!("GPU tests need an adapter: {e}")))
}

#[test]
fn tables_split_across_bindings_give_the_same_logits() {
    let (src, index) = open();
    let case = &json("oracle/smollm2_exact_greedy.json")[0];
    let prompt: Vec<u32> =
        case["prompt_tokens"].as_array().unwrap().iter().map(|t| t.as_u64().unwrap() as u32).collect();

    let mut whole = GpuEngine::load(gpu(GpuOptions::default()), &index, &src, 64).unwrap();
    let want = whole.forward(&prompt, Logits::Last).unwrap();

    // 8 MB bindings: the 30 MB Q8_0 embedding (tied output) spans four.
    let limit = 8 << 20;
    let options = GpuOptions { max_storage_buffer_binding_size: Some(limit), ..Default::default() };
    let embd = index.tensor("token_embd.weight").unwrap().n_bytes;
    assert!(embd > 3 * limit, "the test needs a table over three bindings ({embd} bytes)");
    let mut split = GpuEngine::load(gpu(options), &index, &src, 64).unwrap();
    let got = split.forward(&prompt, Logits::Last).unwrap();
    // Each part is one dispatch of the embedding and of the logits matmul.
    let parts = embd.div_ceil(limit) as usize;
    assert!(split.last_call().dispatches >= whole.last_call().dispatches + 2 * (parts - 1), "{:?}", split.last_call());

    // The same kernels on the same rows: bit for bit.
    let max = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    eprintln!("split into {parts} bindings: max |Δ| {max:e} against one binding");
    assert_eq!(got, want);
    // And the oracle's top logits still hold (as in oracle.rs).
    for pair in case["last_logits_top64"].as_array().unwrap() {
        let (id, logit) = (pair[0].as_u64().unwrap() as usize, pair[1].as_f64().unwrap());
        assert!((f64::from(got[id]) - logit).abs() < 2e-2, "token {id}: {} vs oracle {logit}", got[id]);
    }
}

#[test]
fn a_model_and_context_too_large_are_refused_before_upload() {
    let (src, index) = open();
    // 2 MB buffers: the KV cache of one layer at 8192 positions (3.1 MB) cannot fit.
    let options = GpuOptions { max_buffer_size: Some(2 << 20), ..Default::default() };
    let gpu = gpu(options);
    let err = match GpuEngine::load(gpu.clone(), &index, &src, 8192) {
        Ok(_) => panic!("loaded past the limits"),
        Err(e) => e,
    };
    let msg = err.to_string();
    assert!(matches!(err, GpuError::TooLarge { .. }), "{err:?}");
    assert!(msg.contains("KV cache") && msg.contains("smaller model or context"), "{msg}");
    eprintln!("{msg}");
    // Refused by the plan, before any tensor was read: a source that fails every read
    // gives the same error.
    struct NoReads;
    impl hearth_gguf::ReadAt for NoReads {
        fn len(&self) -> u64 {
            u64::MAX
        }
        fn read_exact_at(&self, _: u64, _: &mut [u8]) -> std::io::Result<()> {
            panic!("read a tensor before checking the memory plan")
        }
    }
    assert!(matches!(GpuEngine::load(gpu, &index, &NoReads, 8192), Err(GpuError::TooLarge { .. })));
}

/// Dispatch grids against the device's workgroups per dimension: at 64, the ops that lay a
/// large grid out in two dimensions do (SmolLM2's logits matmul needs 768 workgroups) and
/// the logits are bit for bit those at the adapter's limit; at 4, the load is refused with a
/// typed error (wgpu would panic natively on such a dispatch, and compute garbage in a
/// browser).
#[test]
fn dispatch_grids_are_split_or_refused_at_the_device_limit() {
    let (src, index) = open();
    let prompt = [1u32, 504, 3458, 28, 2, 9, 281];
    let mut whole = GpuEngine::load(gpu(GpuOptions::default()), &index, &src, 64).unwrap();
    let want = whole.forward(&prompt, Logits::Last).unwrap();
    let low = GpuOptions { max_compute_workgroups_per_dimension: Some(64), ..Default::default() };
    let mut split = GpuEngine::load(gpu(low), &index, &src, 64).unwrap();
    assert_eq!(split.forward(&prompt, Logits::Last).unwrap(), want);

    let tiny = GpuOptions { max_compute_workgroups_per_dimension: Some(4), ..Default::default() };
    match GpuEngine::load(gpu(tiny), &index, &src, 64) {
        Err(e @ GpuError::TooManyWorkgroups { max: 4, .. }) => eprintln!("{e}"),
        Err(e) => panic!("another error: {e}"),
        Ok(_) => panic!("loaded with grids past the device limit"),
    }
}

/// An error no error scope catches (here a write past a buffer's end) is kept and reported
/// as `GpuError::Uncaptured`, by the engine's next readback too, instead of wgpu's default
/// handler panicking.
#[test]
fn uncaptured_gpu_errors_are_reported_not_panics() {
    let (src, index) = open();
    let gpu = gpu(GpuOptions::default());
    let mut engine = GpuEngine::load(gpu.clone(), &index, &src, 64).unwrap();
    engine.forward(&[1, 2, 3], Logits::Last).unwrap();
    assert!(gpu.uncaptured_error().is_ok());
    let small = gpu.upload("small", &[0f32; 4]);
    gpu.queue.write_buffer(&small, 0, &[0u8; 64]);
    let err = match engine.forward(&[4], Logits::Last) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("logits after a refused write"),
    };
    assert!(err.contains("GPU reported an error"), "{err}");
    assert!(matches!(gpu.uncaptured_error(), Err(GpuError::Uncaptured(_))));
}

/// Shapes no GPU kernel takes are refused as a model the GPU cannot run, saying which shape,
/// not as a kernel that "failed to compile" (issue 10). (Weight formats the GPU cannot read
/// are refused earlier, by the model's own check, naming the tensor and its format.)
#[test]
fn unsupported_shapes_and_formats_are_refused_as_such() {
    use hearth_gguf::TensorType;
    use hearth_gpu::ops::attention::Attention;
    use hearth_model::{QuantMix, SyntheticModel, SyntheticShape};
    let gpu = gpu(GpuOptions::default());
    for (head_dim, heads) in [(5, 1), (0, 1), (64, 0)] {
        match Attention::with_heads_per_workgroup(&gpu, head_dim, heads) {
            Err(e @ GpuError::Unsupported { .. }) => {
                let msg = e.to_string();
                assert!(msg.contains("cannot run on the GPU") && !msg.contains("compile"), "{msg}");
            }
            Err(e) => panic!("another error: {e}"),
            Ok(_) => panic!("an attention kernel for head size {head_dim}"),
        }
    }
    let model = SyntheticModel::new(SyntheticShape::Tiny, QuantMix::Uniform(TensorType::Q2_K), 1).unwrap();
    let err = GpuEngine::load(gpu, model.index(), &model, 64).err().expect("loaded Q2_K weights on the GPU");
    let msg = err.to_string();
    assert!(msg.contains("Q2_K") && msg.contains("cannot run") && !msg.contains("compile"), "{msg}");
}
