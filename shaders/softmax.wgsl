// Softmax over rows, one workgroup per row:
//   y[r, i] = exp(x[r, i] - max_j x[r, j]) / Σ_j exp(x[r, j] - max_j x[r, j])
// Max and sum are reduced in workgroup memory; the sum accumulates in f32.
// `main`: x → y.  `in_place`: y → y (a buffer cannot be bound both read-only and writable in
// one dispatch, so the in-place form is its own entry point).
// x, y: (n_rows, n_cols) row-major f32. Row = wid.y * num_workgroups.x + wid.x: the host
// spreads rows over a 2D grid past the per-dimension dispatch limit (ops::elementwise::grid).

override WG: u32 = 256u; // workgroup size, a power of two; set by the host (ops/softmax.rs)

struct Params {
    n_cols: u32,
    n_rows: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;       // (n_rows, n_cols); `main` only
@group(0) @binding(2) var<storage, read_write> y: array<f32>; // (n_rows, n_cols)

var<workgroup> partial: array<f32, WG>;

const F32_LOWEST: f32 = -3.40282346638528859811704183484516925440e38; // exactly -f32::MAX (Tint rejects a rounded literal above it)

// Max of `v` over the workgroup (every invocation gets it).
fn workgroup_max(v: f32, lid: u32) -> f32 {
    partial[lid] = v;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride /= 2u) {
        if (lid < stride) {
            partial[lid] = max(partial[lid], partial[lid + stride]);
        }
        workgroupBarrier();
    }
    let r = partial[0];
    workgroupBarrier(); // partial is reused by the next reduction
    return r;
}

// Sum of `v` over the workgroup (every invocation gets it).
fn workgroup_sum(v: f32, lid: u32) -> f32 {
    partial[lid] = v;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride /= 2u) {
        if (lid < stride) {
            partial[lid] += partial[lid + stride];
        }
        workgroupBarrier();
    }
    let r = partial[0];
    workgroupBarrier();
    return r;
}

@compute @workgroup_size(WG)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    let row = wid.y * groups.x + wid.x;
    if (row >= p.n_rows) {
        return; // uniform per workgroup
    }
    let base = row * p.n_cols;
    var m = F32_LOWEST;
    for (var i = lid.x; i < p.n_cols; i += WG) {
        m = max(m, x[base + i]);
    }
    m = workgroup_max(m, lid.x);
    var sum = 0.0;
    for (var i = lid.x; i < p.n_cols; i += WG) {
        let e = exp(x[base + i] - m);
        y[base + i] = e;
        sum += e;
    }
    let inv = 1.0 / workgroup_sum(sum, lid.x);
    for (var i = lid.x; i < p.n_cols; i += WG) {
        y[base + i] *= inv; // this invocation wrote y[base + i] above
    }
}

@compute @workgroup_size(WG)
fn in_place(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    let row = wid.y * groups.x + wid.x;
    if (row >= p.n_rows) {
        return;
    }
    let base = row * p.n_cols;
    var m = F32_LOWEST;
    for (var i = lid.x; i < p.n_cols; i += WG) {
        m = max(m, y[base + i]);
    }
    m = workgroup_max(m, lid.x);
    var sum = 0.0;
    for (var i = lid.x; i < p.n_cols; i += WG) {
        let e = exp(y[base + i] - m);
        y[base + i] = e;
        sum += e;
    }
    let inv = 1.0 / workgroup_sum(sum, lid.x);
    for (var i = lid.x; i < p.n_cols; i += WG) {
        y[base + i] *= inv;
    }
}
