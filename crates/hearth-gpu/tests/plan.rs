//! The memory plan is what the engine allocates: after a load, the bytes of every buffer the
//! engine made ([`Gpu::allocated`]) equal [`MemoryPlan::total`], so `hearth info` and the
//! browser's "fits this GPU" say what a load will take (issue 10).

use std::sync::Arc;
use std::time::Instant;

use hearth_gguf::{read_index, FileSource, GgufIndex, ReadAt, TensorType};
use hearth_gpu::{Gpu, GpuEngine, GpuOptions, MemoryPlan};
use hearth_model::{Config, QuantMix, SyntheticModel, SyntheticShape};
use hearth_testdata::model_path;

fn check(options: GpuOptions, index: &GgufIndex, src: &(impl ReadAt + Sync), context: usize, what: &str) {
    let gpu = Arc::new(Gpu::new_blocking(&options).unwrap_or_else(|e| panic!("GPU tests need an adapter: {e}")));
    let config = Config::from_gguf(index).unwrap();
    let plan = MemoryPlan::new(&config, index, context, &gpu.limits);
    let t = Instant::now();
    let engine = GpuEngine::load(gpu.clone(), index, src, context).unwrap();
    eprintln!(
        "{what}: plan {} = weights {} + KV {} + scratch {} + step {} (batch {}); allocated {} ({:.1} s)",
        plan.total(),
        plan.weights,
        plan.kv_cache,
        plan.activations,
        plan.step,
        plan.batch,
        gpu.allocated(),
        t.elapsed().as_secs_f64()
    );
    assert_eq!(gpu.allocated(), plan.total(), "{what}: allocated vs planned");
    drop(engine);
}

#[test]
fn the_plan_equals_what_smollm2_allocates() {
    let src = FileSource::open(model_path()).unwrap();
    let index = read_index(&src).unwrap();
    check(GpuOptions::default(), &index, &src, 512, "SmolLM2, context 512");
    check(GpuOptions::default(), &index, &src, 33, "SmolLM2, context 33");
    // 8 MB bindings: the 30 MB embedding (tied output) split into parts, and a smaller batch.
    let split = GpuOptions { max_storage_buffer_binding_size: Some(8 << 20), ..Default::default() };
    check(split, &index, &src, 256, "SmolLM2, 8 MB bindings");
}

#[test]
fn the_plan_equals_what_a_7b_model_allocates() {
    // Q4_K_M: Q6_K attn_v and ffn_down in some layers, so some Q/K/V are not stacked.
    let model = SyntheticModel::new(SyntheticShape::Llama2_7b, QuantMix::Q4KM, 7).unwrap();
    assert!(model.index().tensors.iter().any(|t| t.ty == TensorType::Q6_K));
    check(GpuOptions::default(), model.index(), &model, 256, "synthetic Llama-2-7B Q4_K_M, context 256");
}
