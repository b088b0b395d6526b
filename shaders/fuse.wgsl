// What the matmul kernels (gemv.wgsl, matmul.wgsl, matmul_tile.wgsl) fuse around y = x Wᵀ, so
// that a decoder layer is six dispatches. The host prepends `const NORM: bool`,
// `const EPILOGUE: u32` and, when NORM, binding 4 (ops/matmul.rs, `fuse_header`); each is a
// separate pipeline, so the choices cost no branches at run time.
//
// NORM: x is RMS-normalised on the fly, RMSNorm(x) Wᵀ = (W (x ⊙ g)) / √(Σx² / cols + eps):
//   each x element is multiplied by its norm weight g as it is loaded, Σx² comes from the
//   same loads, and each output is scaled once. The normed x is never written.
// EPILOGUE:
//   STORE   y = v
//   ADD     y += v: the residual stream updated in place (Wo, W_down)
//   SWIGLU  W is [W_gate; W_up] (rows / 2 each, one buffer); output r is
//           silu(gate_r) · up_r, so y has rows / 2 columns. A workgroup computes the gate
//           and up rows of the same outputs.
//   GEGLU   as SWIGLU with GELU (tanh approximation) for silu: Gemma's FFN. Both are "gated".
//   RUNTIME the norm and the epilogue are read from p.fuse at run time: the Tile prefill
//           kernel, one pipeline per weight format instead of one per fusion, because each
//           of its unrolled 16 × 16 tiles takes ~20 s to compile on SwiftShader (the browser
//           load); the choices are selects and one uniform branch around the stores.
// CPU reference: hearth_model::ops::{rmsnorm, matmul, swiglu}.

const STORE: u32 = 0u;
const ADD: u32 = 1u;
const SWIGLU: u32 = 2u;
const RUNTIME: u32 = 3u;
const GEGLU: u32 = 4u;

// The compiled-in epilogue is a gated one (W is [W_gate; W_up]).
const GATED: bool = EPILOGUE == SWIGLU || EPILOGUE == GEGLU;

// The epilogue in force: EPILOGUE, or under RUNTIME the one p.fuse names.
fn epilogue() -> u32 {
    if (EPILOGUE == RUNTIME) {
        return p.fuse >> 1u;
    }
    return EPILOGUE;
}

// Whether x is normalised: NORM, and under RUNTIME bit 0 of p.fuse.
fn norm_on() -> bool {
    if (EPILOGUE == RUNTIME) {
        return (p.fuse & 1u) != 0u;
    }
    return NORM;
}

// The epilogue in force is a gated one.
fn gated() -> bool {
    let e = epilogue();
    return e == SWIGLU || e == GEGLU;
}

// x * sigmoid(x) without overflow: exp only ever sees a non-positive argument.
fn silu(v: f32) -> f32 {
    let e = exp(-abs(v));
    let s = select(e / (1.0 + e), 1.0 / (1.0 + e), v >= 0.0);
    return v * s;
}

// GELU, tanh approximation, as ggml's ggml_gelu_f32; tanh's argument is clamped where tanh is
// ±1 in f32 anyway, so that no implementation's exp overflows inside it.
fn gelu(v: f32) -> f32 {
    let u = clamp(0.7978845608028654 * v * (1.0 + 0.044715 * v * v), -10.0, 10.0);
    return 0.5 * v * (1.0 + tanh(u));
}

// The gate's activation of a gated epilogue.
fn gate_act(v: f32) -> f32 {
    if (epilogue() == GEGLU) {
        return gelu(v);
    }
    return silu(v);
}

// Columns of y this matmul produces.
fn out_rows() -> u32 {
    if (gated()) {
        return p.rows / 2u;
    }
    return p.rows;
}

// The row of W behind output row `o` (clamped into range, so that surplus outputs read valid
// rows and are simply not stored); `up`: its W_up row under SWIGLU.
fn weight_row(o: u32, up: bool) -> u32 {
    let r = min(o, out_rows() - 1u);
    if (gated() && up) {
        return r + p.rows / 2u;
    }
    return r;
}

// 1/√(Σx² / cols + eps), or 1 without NORM.
fn norm_scale(sum_sq: f32) -> f32 {
    if (NORM) {
        return select(1.0, inverseSqrt(sum_sq / f32(p.cols) + p.eps), norm_on());
    }
    return 1.0;
}

// Stores output v (already scaled) at y[i] (STORE, ADD).
fn put(i: u32, v: f32) {
    if (EPILOGUE == RUNTIME) {
        y[i] = select(0.0, y[i], epilogue() == ADD) + v;
    } else if (EPILOGUE == ADD) {
        y[i] = y[i] + v;
    } else {
        y[i] = v;
    }
}
