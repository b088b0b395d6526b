// Quantized matrix × activations: y[t, r] = Σ_c W[r, c] · x[t, c].
// W: (rows, cols) row-major in its GGUF block layout (ggml dims [cols, rows]); row r is
//    `row_bytes` bytes at byte r * row_bytes of `w`, as raw bytes in u32 words.
// x: (n_tokens, cols) row-major f32;  y: (n_tokens, y_stride) row-major f32, columns 0..rows.
//
// The format is not a parameter: the host prepends quant/common.wgsl and one
// quant/<format>.wgsl (which define PIECE and dequant_piece), since WGSL has no way to
// select a block layout per pipeline other than by source (ops/matmul.rs), and fuse.wgsl with
// its constants (RMSNorm of x, and y stored, added to, or SwiGLU'd).
//
// A workgroup takes ROWS rows of W (under SWIGLU: the gate rows of ROWS / 2 outputs, then
// their up rows) and TILE_N tokens; each row has WG / ROWS threads that stride
// over its 32-weight pieces, dequantize a piece once and apply it to every token of the tile.
// Partial sums live in workgroup memory (one slot per thread and token) and are reduced
// there (no subgroups: browsers lack them). Decode uses TILE_N = 1.
// Workgroups: x + y * (dispatched x) is the row group (rows can exceed 65535), z the tile.

override WG: u32 = 256u;   // threads per workgroup; set by the host
override ROWS: u32 = 4u;   // rows per workgroup; WG / ROWS must be a power of two
override TILE_N: u32 = 1u; // tokens per workgroup

struct Params {
    rows: u32,
    cols: u32,
    n_tokens: u32,
    row_bytes: u32, // bytes per row of W: cols / QK * BLOCK_BYTES
    y_stride: u32,  // elements between tokens in y (rows, unless y is part of a wider buffer)
    eps: f32,       // NORM
    fuse: u32,      // the fusion's code (bit 0 norm, bits 1.. the epilogue): read only under RUNTIME
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> w: array<u32>;       // (rows, row_bytes) bytes, padded to words
@group(0) @binding(2) var<storage, read> x: array<f32>;       // (n_tokens, cols)
@group(0) @binding(3) var<storage, read_write> y: array<f32>; // (n_tokens, y_stride)

var<workgroup> partial: array<f32, WG * TILE_N>; // [token][thread]
var<workgroup> scale: array<f32, TILE_N>;         // NORM: 1/rms per token of the tile

// x[i..i + 4], the columns from `col` on; columns past the row's end (F32/F16 rows of any
// length) read as zero.
// Under NORM multiplied by the norm weights (the 1/rms scale comes at the end).
fn load_x4(i: u32, col: u32) -> vec4<f32> {
    var v = vec4<f32>(0.0);
    if (col + 3u < p.cols) {
        v = vec4<f32>(x[i], x[i + 1u], x[i + 2u], x[i + 3u]);
    } else {
        for (var e = 0u; e < 4u; e++) {
            if (col + e < p.cols) {
                v[e] = x[i + e];
            }
        }
    }
    if (NORM) {
        for (var e = 0u; e < 4u; e++) {
            v[e] *= norm1(col + e);
        }
    }
    return v;
}

// NORM weight of column c, 0 past the end.
fn norm1(c: u32) -> f32 {
    return select(0.0, norm4(c / 4u)[c % 4u], c < p.cols);
}

@compute @workgroup_size(WG)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    let group = wid.x + wid.y * nwg.x;
    let t0 = wid.z * TILE_N;
    let half = select(ROWS, ROWS / 2u, GATED); // outputs per workgroup
    if (group * half >= out_rows() || t0 >= p.n_tokens) {
        return; // uniform per workgroup, so no barrier is skipped by part of it
    }
    let tpr = WG / ROWS; // threads per row
    let lane = lid.x % tpr;
    let slot = lid.x / tpr;
    let out = group * half + slot % half; // the output this thread's row feeds
    let row = weight_row(out, slot >= half);
    let nt = min(TILE_N, p.n_tokens - t0);

    if (NORM) {
        // Σx² per token of the tile, reduced over the whole workgroup.
        for (var t = 0u; t < nt; t++) {
            var s = 0.0;
            for (var c = lid.x; c < p.cols; c += WG) {
                let v = x[(t0 + t) * p.cols + c];
                s += v * v;
            }
            partial[t * WG + lid.x] = s;
        }
        workgroupBarrier();
        for (var stride = WG / 2u; stride > 0u; stride /= 2u) {
            if (lid.x < stride) {
                for (var t = 0u; t < nt; t++) {
                    partial[t * WG + lid.x] += partial[t * WG + lid.x + stride];
                }
            }
            workgroupBarrier();
        }
        if (lid.x < nt) {
            scale[lid.x] = norm_scale(partial[lid.x * WG]);
        }
        workgroupBarrier();
    }

    for (var t = 0u; t < TILE_N; t++) {
        partial[t * WG + lid.x] = 0.0;
    }
    let row_off = row * p.row_bytes;
    let n_pieces = (p.cols + PIECE - 1u) / PIECE;
    for (var pc = lane; pc < n_pieces; pc += tpr) {
        var wv: array<vec4<f32>, 8>;
        dequant_piece(row_off, pc, &wv);
        let c0 = pc * PIECE;
        for (var t = 0u; t < nt; t++) {
            let xo = (t0 + t) * p.cols + c0;
            var s = 0.0;
            for (var k = 0u; k < 8u; k++) {
                s += dot(wv[k], load_x4(xo + 4u * k, c0 + 4u * k));
            }
            partial[t * WG + lid.x] += s;
        }
    }
    workgroupBarrier();
    for (var stride = tpr / 2u; stride > 0u; stride /= 2u) {
        if (lane < stride) {
            for (var t = 0u; t < nt; t++) {
                partial[t * WG + lid.x] += partial[t * WG + lid.x + stride];
            }
        }
        workgroupBarrier();
    }
    if (out < out_rows() && slot < half) {
        for (var t = lane; t < nt; t += tpr) {
            let sc = select(1.0, scale[t], NORM);
            let v = partial[t * WG + lid.x - lane] * sc;
            let i = (t0 + t) * p.y_stride + out;
            if (GATED) {
                y[i] = gate_act(v) * (partial[t * WG + lid.x - lane + half * tpr] * sc);
            } else {
                put(i, v);
            }
        }
    }
}
