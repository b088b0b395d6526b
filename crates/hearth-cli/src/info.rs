use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use hearth_gpu::{human, Gpu, GpuOptions, MemoryPlan};
use hearth_model::Config;
use serde_json::json;

#[derive(Args)]
pub struct InfoArgs {
    /// Also say whether this model fits.
    #[arg(long, short = 'm')]
    model: Option<PathBuf>,
    /// Context size to plan for (default: the model's, at most 4096).
    #[arg(long)]
    ctx: Option<usize>,
    #[arg(long)]
    json: bool,
}

pub fn run(a: InfoArgs) -> Result<()> {
    let gpu = Gpu::new_blocking(&GpuOptions::default())?;
    let l = &gpu.limits;
    let features: Vec<String> = gpu.features.iter_names().map(|(n, _)| n.to_string()).collect();
    let mut out = json!({
        "adapter": { "name": gpu.info.name, "vendor": gpu.info.vendor, "device": gpu.info.device,
                     "type": format!("{:?}", gpu.info.device_type), "backend": format!("{:?}", gpu.info.backend),
                     "driver": gpu.info.driver, "driver_info": gpu.info.driver_info },
        "features": features,
        "limits": { "max_buffer_size": l.max_buffer_size,
                    "max_storage_buffer_binding_size": l.max_storage_buffer_binding_size,
                    "max_compute_workgroup_storage_size": l.max_compute_workgroup_storage_size,
                    "max_compute_invocations_per_workgroup": l.max_compute_invocations_per_workgroup,
                    "max_compute_workgroups_per_dimension": l.max_compute_workgroups_per_dimension,
                    "max_storage_buffers_per_shader_stage": l.max_storage_buffers_per_shader_stage },
    });
    if let Some(path) = &a.model {
        let loaded = crate::load::open(path)?;
        let config = Config::from_gguf(&loaded.index)?;
        let ctx = a.ctx.unwrap_or(config.max_context.min(4096));
        if ctx == 0 || ctx > config.max_context {
            anyhow::bail!("--ctx {ctx} is outside 1..={} (this model's trained context)", config.max_context);
        }
        // What the engine would allocate here, at the prefill batch it picks for this adapter.
        let plan = MemoryPlan::new(&config, &loaded.index, ctx, &gpu.limits);
        let fits = plan.check(&gpu.limits);
        out["model"] = json!({
            "path": path.display().to_string(), "context": ctx, "batch": plan.batch,
            "weights_bytes": plan.weights, "kv_cache_bytes": plan.kv_cache, "activation_bytes": plan.activations,
            "step_bytes": plan.step,
            "total_bytes": plan.total(), "largest_tensor": plan.largest_tensor.0, "largest_tensor_bytes": plan.largest_tensor.1,
            "fits": fits.is_ok(), "problem": fits.as_ref().err().map(|e| e.to_string()),
        });
    }
    if a.json {
        println!("{out}");
        return Ok(());
    }
    println!(
        "adapter   {} ({:?}, {:?}, driver {} {})",
        gpu.info.name, gpu.info.device_type, gpu.info.backend, gpu.info.driver, gpu.info.driver_info
    );
    println!("features  {}", if features.is_empty() { "none".to_string() } else { features.join(", ") });
    println!(
        "limits    buffer {}, storage binding {}, workgroup storage {} B, {} invocations/workgroup",
        human(l.max_buffer_size),
        human(l.max_storage_buffer_binding_size),
        l.max_compute_workgroup_storage_size,
        l.max_compute_invocations_per_workgroup
    );
    if let Some(m) = out.get("model") {
        println!(
            "model     {}: weights {}, KV cache {} (context {}), scratch {}; total {}",
            m["path"].as_str().unwrap_or(""),
            human(m["weights_bytes"].as_u64().unwrap_or(0)),
            human(m["kv_cache_bytes"].as_u64().unwrap_or(0)),
            m["context"],
            human(m["activation_bytes"].as_u64().unwrap_or(0)),
            human(m["total_bytes"].as_u64().unwrap_or(0)),
        );
        match m["problem"].as_str() {
            None => println!("fits      yes, within every per-buffer limit (WebGPU does not report total memory)"),
            Some(p) => println!("fits      no: {p}"),
        }
    }
    Ok(())
}
