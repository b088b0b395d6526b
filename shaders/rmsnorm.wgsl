// RMSNorm, one workgroup per row:
//   y[r, i] = x[r, i] / sqrt(mean_j(x[r, j]^2) + eps) * w[i]
// x, y: (n_rows, dim) row-major f32;  w: (dim) f32.
// The sum of squares is reduced in workgroup memory (no subgroups: browsers lack them).

override WG: u32 = 256u; // workgroup size, a power of two; set by the host (ops/rmsnorm.rs)

struct Params {
    dim: u32,
    n_rows: u32,
    eps: f32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;       // (n_rows, dim)
@group(0) @binding(2) var<storage, read> w: array<f32>;       // (dim)
@group(0) @binding(3) var<storage, read_write> y: array<f32>; // (n_rows, dim)

var<workgroup> partial: array<f32, WG>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let row = wid.x;
    if (row >= p.n_rows) {
        return; // uniform per workgroup, so no barrier is skipped by part of it
    }
    let base = row * p.dim;
    var sum = 0.0;
    for (var i = lid.x; i < p.dim; i += WG) {
        let v = x[base + i];
        sum += v * v;
    }
    partial[lid.x] = sum;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride /= 2u) {
        if (lid.x < stride) {
            partial[lid.x] += partial[lid.x + stride];
        }
        workgroupBarrier();
    }
    let scale = inverseSqrt(partial[0] / f32(p.dim) + p.eps);
    for (var i = lid.x; i < p.dim; i += WG) {
        y[base + i] = x[base + i] * scale * w[i];
    }
}
