// A sub-block's output joins the residual stream through its own RMSNorm (Gemma 3's
// post-attention and post-FFN norms):
//   x[t, :] += o[t, :] / √(mean(o[t, :]²) + eps) ⊙ w
// One workgroup per token (x + y · dispatched x): the sum of squares is reduced in workgroup
// memory, then every thread adds its strided elements. All arithmetic in f32.
// CPU reference: hearth_model::ops::rmsnorm_rows, then add_assign.

override WG: u32 = 64u; // threads per workgroup, a power of two; set by the host (ops/norm_add.rs)

struct Params {
    n_tokens: u32,
    dim: u32,
    eps: f32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> x: array<f32>; // (n_tokens, dim): the residual stream
@group(0) @binding(2) var<storage, read> o: array<f32>;       // (n_tokens, dim): the sub-block's output
@group(0) @binding(3) var<storage, read> w: array<f32>;       // (dim): the norm's weights

var<workgroup> partial: array<f32, WG>;

@compute @workgroup_size(WG)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    let t = wid.x + wid.y * nwg.x;
    if (t >= p.n_tokens) {
        return; // uniform per workgroup
    }
    let row = t * p.dim;
    var sum_sq = 0.0;
    for (var i = lid.x; i < p.dim; i += WG) {
        let v = o[row + i];
        sum_sq += v * v;
    }
    partial[lid.x] = sum_sq;
    workgroupBarrier();
    for (var half = WG / 2u; half > 0u; half /= 2u) {
        if (lid.x < half) {
            partial[lid.x] += partial[lid.x + half];
        }
        workgroupBarrier();
    }
    let scale = inverseSqrt(partial[0] / f32(p.dim) + p.eps);
    for (var i = lid.x; i < p.dim; i += WG) {
        x[row + i] += o[row + i] * scale * w[i];
    }
}
