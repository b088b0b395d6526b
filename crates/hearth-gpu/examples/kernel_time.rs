//! Times the matmul kernels of both strategies at SmolLM2 and 7B shapes on the default
//! adapter (a development aid for tuning, not a benchmark of record — that is `hearth bench`):
//! `cargo run --release -p hearth-gpu --example kernel_time [TOKENS]`. Two modes for
//! `scripts/gpu_check.sh`:
//! - `kernel_time gemv [small]`: the decode matmul (the adapter's own strategy: the GEMV on
//!   GPUs) at Llama-2-7B's shapes, Q4_0 and Q4_K, in GB/s of weights (`small`: about a
//!   quarter of each side, for CPU adapters);
//! - `kernel_time boundary`: the cost of a dispatch boundary: 200 one-workgroup dispatches
//!   that read-modify-write one storage buffer (wgpu puts a barrier between each two), minus
//!   the same 200 on 200 buffers (no barriers), timed with GPU timestamps where the adapter
//!   has them, else by the wall clock around submit and wait.
//!
//! Each timed dispatch reads a different copy of the weights, rotating over at least
//! [`ROTATE_BYTES`], so that on a GPU the figure is DRAM bandwidth, not a warm L2 (50 MB on
//! an H100, 60 MB on an H200, 72 MB on an RTX 4090).
use std::time::Instant;

use hearth_gguf::TensorType;
use hearth_gpu::ops::matmul::{self, Fuse, MatMul, Strategy};
use hearth_gpu::ops::{Kernel, Pass};
use hearth_gpu::{Gpu, GpuOptions};

/// Weight bytes the timed dispatches rotate over: more than any GPU's L2.
const ROTATE_BYTES: usize = 256 << 20;

fn time_matmul(gpu: &Gpu, strategy: Strategy, ty: TensorType, rows: usize, cols: usize, n: usize, reps: u32) {
    let op = MatMul::with_strategy(gpu, ty, strategy, &[(cols, Fuse::NONE)]).unwrap();
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
            op.bind(gpu, Fuse::NONE, cols as u32, n as u32, p, w, x, y, None)
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
    let gpu = Gpu::new_blocking(&GpuOptions { timestamps: true, ..Default::default() }).unwrap();
    println!("{} ({:?}, {:?} kernels)", gpu.info.name, gpu.info.backend, gpu.strategy());
    if std::env::var("COMPILE").is_ok() {
        compile_times(&gpu);
        return;
    }
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("gemv") => return gemv_7b(&gpu, args.get(2).is_some_and(|a| a == "small")),
        Some("boundary") => return boundary(&gpu),
        _ => {}
    }
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
            for fuse in [Fuse::NONE, Fuse::NORM, Fuse::ADD, Fuse::NORM_SWIGLU] {
                let t = Instant::now();
                let _ = MatMul::with_strategy(gpu, ty, strategy, &[(4096, fuse)]).unwrap();
                println!("build {strategy:?} {ty} {fuse:?}: {:.2} s", t.elapsed().as_secs_f64());
            }
        }
    }
}

/// The decode matmul at Llama-2-7B's shapes (W_q, W_gate/W_up, W_down) with the adapter's
/// strategy; `small`: each side about a quarter as long (whole K-quant blocks).
fn gemv_7b(gpu: &Gpu, small: bool) {
    let shapes =
        if small { [(1024, 1024), (2816, 1024), (1024, 2816)] } else { [(4096, 4096), (11008, 4096), (4096, 11008)] };
    for ty in [TensorType::Q4_0, TensorType::Q4_K] {
        for (rows, cols) in shapes {
            time_matmul(gpu, gpu.strategy(), ty, rows, cols, 1, 50);
        }
    }
}

/// Nanoseconds for `f` to record into a pass, submitted and waited for: the pass's own GPU
/// timestamps where the device has them (best of 5), else the wall clock.
fn time_pass(gpu: &Gpu, f: &dyn Fn(&mut Pass)) -> (f64, &'static str) {
    let timestamps = gpu.device.features().contains(wgpu::Features::TIMESTAMP_QUERY);
    let queries = timestamps.then(|| {
        gpu.device.create_query_set(&wgpu::QuerySetDescriptor { label: None, ty: wgpu::QueryType::Timestamp, count: 2 })
    });
    let buffer = |usage| {
        gpu.device.create_buffer(&wgpu::BufferDescriptor { label: None, size: 16, usage, mapped_at_creation: false })
    };
    let resolve = buffer(wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC);
    let read = buffer(wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST);
    let mut best = f64::MAX;
    for _ in 0..5 {
        let mut enc = gpu.device.create_command_encoder(&Default::default());
        {
            let mut pass = match &queries {
                Some(q) => Pass::timed(&mut enc, q, 0),
                None => Pass::new(&mut enc),
            };
            f(&mut pass);
        }
        if let Some(q) = &queries {
            enc.resolve_query_set(q, 0..2, &resolve, 0);
            enc.copy_buffer_to_buffer(&resolve, 0, &read, 0, Some(16));
        }
        let t = Instant::now();
        gpu.queue.submit([enc.finish()]);
        gpu.device.poll(wgpu::PollType::wait_indefinitely()).unwrap();
        let wall = t.elapsed().as_secs_f64() * 1e9;
        let ns = if queries.is_some() {
            read.slice(..).map_async(wgpu::MapMode::Read, |_| {});
            gpu.device.poll(wgpu::PollType::wait_indefinitely()).unwrap();
            let ticks: Vec<u64> = bytemuck::cast_slice(&read.slice(..).get_mapped_range().unwrap()).to_vec();
            read.unmap();
            ticks[1].saturating_sub(ticks[0]) as f64 * f64::from(gpu.queue.get_timestamp_period())
        } else {
            wall
        };
        best = best.min(ns);
    }
    (best, if queries.is_some() { "GPU timestamps" } else { "wall clock" })
}

fn boundary(gpu: &Gpu) {
    const N: usize = 200;
    let source = "@group(0) @binding(0) var<storage, read_write> b: array<u32>;\n\
                  @compute @workgroup_size(1) fn main() { b[0] = b[0] + 1u; }\n";
    let pipeline = gpu.compute_pipeline("boundary", source, "main", &[]).unwrap();
    let buffers: Vec<wgpu::Buffer> = (0..N).map(|_| gpu.upload("b", &[0u32; 64])).collect();
    let binds: Vec<wgpu::BindGroup> = buffers
        .iter()
        .map(|b| {
            gpu.device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: None,
                layout: &pipeline.get_bind_group_layout(0),
                entries: &[wgpu::BindGroupEntry { binding: 0, resource: b.as_entire_binding() }],
            })
        })
        .collect();
    let (dependent, timer) =
        time_pass(gpu, &|pass| (0..N).for_each(|_| pass.dispatch(&pipeline, &binds[0], [1, 1, 1])));
    let (independent, _) = time_pass(gpu, &|pass| binds.iter().for_each(|b| pass.dispatch(&pipeline, b, [1, 1, 1])));
    println!(
        "dispatch boundary ({timer}): {N} dependent dispatches {:.1} µs, {N} independent {:.1} µs: {:.2} µs per boundary",
        dependent / 1e3,
        independent / 1e3,
        (dependent - independent) / N as f64 / 1e3
    );
}
