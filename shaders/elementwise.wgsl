// Element-wise ops over n f32 values, in place, one thread per element:
//   swiglu: x[i] = silu(x[i]) * y[i]   (x = gate, y = up; silu(v) = v / (1 + exp(-v)))
//   geglu:  x[i] = gelu(x[i]) * y[i]   (GELU, tanh approximation: Gemma)
// (for gate and up projections that are two matmuls; fuse.wgsl fuses it otherwise).
// x: (n) f32, read and written;  y: (n) f32.
// Element index = (wid.y * num_workgroups.x + wid.x) * WG + lid.x: the host spreads the
// workgroups over a 2D grid when n / WG exceeds the per-dimension dispatch limit (65535).

override WG: u32 = 256u; // workgroup size; set by the host (ops/elementwise.rs)

struct Params {
    n: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> x: array<f32>; // (n)
@group(0) @binding(2) var<storage, read> y: array<f32>;       // (n)

fn index(wid: vec3<u32>, groups: vec3<u32>, lid: vec3<u32>) -> u32 {
    return (wid.y * groups.x + wid.x) * WG + lid.x;
}

// x * sigmoid(x) without overflow: exp only ever sees a non-positive argument, so it lies
// in [0, 1] and the result is finite (and NaN-free) for every finite x.
fn silu(v: f32) -> f32 {
    let e = exp(-abs(v));
    let s = select(e / (1.0 + e), 1.0 / (1.0 + e), v >= 0.0);
    return v * s;
}

@compute @workgroup_size(WG)
fn swiglu(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    let i = index(wid, groups, lid);
    if (i < p.n) {
        x[i] = silu(x[i]) * y[i];
    }
}

// GELU, tanh approximation, as ggml's ggml_gelu_f32 (and fuse.wgsl's gelu); tanh's argument is
// clamped where tanh is ±1 in f32 anyway.
fn gelu(v: f32) -> f32 {
    let u = clamp(0.7978845608028654 * v * (1.0 + 0.044715 * v * v), -10.0, 10.0);
    return 0.5 * v * (1.0 + tanh(u));
}

@compute @workgroup_size(WG)
fn geglu(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    let i = index(wid, groups, lid);
    if (i < p.n) {
        x[i] = gelu(x[i]) * y[i];
    }
}
