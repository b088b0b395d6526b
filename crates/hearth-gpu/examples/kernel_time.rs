//! Times the matmul kernels of both strategies at SmolLM2 and 7B shapes on the default
//! adapter (a development aid for tuning, not a benchmark of record — that is `hearth bench`):
//! `cargo run --release -p hearth-gpu --example kernel_time [TOKENS]`.
//!
//! Each timed dispatch reads a different copy of the weights, rotating over at least
//! [`ROTATE_BYTES`], so that on a GPU the figure is DRAM bandwidth, not a warm L2 (50 MB on
//! an H100, 60 MB on an H200, 72 MB on an RTX 4090).
use std::time::Instant;

use hearth_gguf::TensorType;
use hearth_gpu::ops::matmul::{self, MatMul, Strategy};
use hearth_gpu::ops::{Kernel, Pass};
use hearth_gpu::{Gpu, GpuOptions};

/// Weight bytes the timed dispatches rotate over: more than any GPU's L2.
const ROTATE_BYTES: usize = 256 << 20;

fn time_matmul(gpu: &Gpu, strategy: Strategy, ty: TensorType, rows: usize, cols: usize, n: usize, reps: u32) {
    let op = MatMul::with_strategy(gpu, ty, strategy, &[cols]).unwrap();
    let bytes_len = rows * ty.bytes_for(cols as u64).unwrap() as usize;
    // Small, valid f16 scales everywhere: 0x1111 ≈ 6e-4.
    let bytes = vec![0x11u8; bytes_len];
    let p = op.params(rows, cols, n).unwrap();
    let params = gpu.uniform("p", &p);
    let copies = ROTATE_BYTES.div_ceil(bytes_len).max(1);
    let reps = reps.max(copies as u32); // every copy read once at least
    let ws: Vec<_> = (0..copies).map(|_| matmul::upload_weights(gpu, "w", &bytes)).collect();
    let x = gpu.upload("x", &vec![0.5f32; n * cols]);
    let y = gpu.upload("y", &vec![0f32; n * rows]);
    let binds: Vec<_> = ws
        .iter()
        .map(|w| {
            let (p, w, x, y) = (
                params.as_entire_buffer_binding(),
                w.as_entire_buffer_binding(),
                x.as_entire_buffer_binding(),
                y.as_entire_buffer_binding(),
            );
            op.bind(gpu, cols as u32, n as u32, p, w, x, y)
        })
        .collect();
    let run = |reps: u32| {
        let mut enc = gpu.device.create_command_encoder(&Default::default());
        {
            let mut pass = Pass::new(&mut enc);
            for i in 0..reps as usize {
                op.dispatch(&mut pass, &binds[i % binds.len()], &p);
            }
        }
        gpu.queue.submit([enc.finish()]);
        gpu.device.poll(wgpu::PollType::wait_indefinitely()).unwrap();
    };
    run(1);
    let t = Instant::now();
    run(reps);
    let s = t.elapsed().as_secs_f64() / reps as f64;
    println!(
        "matmul {strategy:?} {ty:5} {rows:6}x{cols:5} n={n:3}: {:8.3} ms  {:7.2} GB/s  {:7.2} GFLOP/s",
        s * 1e3,
        bytes_len as f64 / s / 1e9,
        2.0 * (rows * cols * n) as f64 / s / 1e9
    );
}

fn main() {
    let gpu = Gpu::new_blocking(&GpuOptions::default()).unwrap();
    println!("{}", gpu.info.name);
    if std::env::var("COMPILE").is_ok() {
        compile_times(&gpu);
        return;
    }
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args.get(1).map(|a| a.parse().unwrap()).unwrap_or(1);
    let reps = if n == 1 { 20 } else { 3 };
    for (ty, rows, cols) in [
        (TensorType::Q4_1, 1536, 576),
        (TensorType::Q4_1, 576, 1536),
        (TensorType::Q4_1, 576, 576),
        (TensorType::Q8_0, 49152, 576),
        (TensorType::Q4_0, 4096, 4096),
        (TensorType::Q4_K, 4096, 4096),
        (TensorType::Q6_K, 4096, 4096),
        (TensorType::F16, 1024, 1024),
    ] {
        for strategy in [Strategy::Reduce, Strategy::Tile] {
            time_matmul(&gpu, strategy, ty, rows, cols, n, reps);
        }
    }
}
/// Pipeline build time per strategy (`COMPILE=1`): the Tile kernels are large unrolled sources.
fn compile_times(gpu: &Gpu) {
    for ty in [TensorType::Q4_1, TensorType::Q8_0, TensorType::Q6_K] {
        for strategy in [Strategy::Reduce, Strategy::Tile] {
            let t = Instant::now();
            let _ = MatMul::with_strategy(gpu, ty, strategy, &[4096]).unwrap();
            println!("build {strategy:?} {ty}: {:.2} s", t.elapsed().as_secs_f64());
        }
    }
}
