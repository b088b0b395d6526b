//! The kernels a model needs and every bind group of its forward pass, built once at load:
//! a step only rewrites the parameter slots they point at (see `step.rs`).

use hearth_gguf::TensorType;
use hearth_model::Config;

use crate::buffers::{Activations, KvLayer};
use crate::ops::attention::{Attention, KvWrite};
use crate::ops::elementwise::{Elementwise, Kind};
use crate::ops::embedding::Embedding;
use crate::ops::matmul::MatMul;
use crate::ops::rmsnorm::RmsNorm;
use crate::ops::rope::Rope;
use crate::ops::sample::{Argmax, ArgmaxBind, Sample};
use crate::step::{Rows, Slot, StepBuffer};
use crate::weights::{GpuMatrix, GpuWeights};
use crate::{Gpu, GpuError};

/// One pipeline per kernel (and per weight dtype for matmul).
pub struct Ops {
    pub embedding: Embedding,
    pub rmsnorm: RmsNorm,
    pub matmuls: Vec<MatMul>,
    pub rope: Rope,
    pub kv_write: KvWrite,
    pub attention: Attention,
    pub add: Elementwise,
    pub swiglu: Elementwise,
    pub argmax: Argmax,
    pub sample: Sample,
}

impl Ops {
    pub fn new(gpu: &Gpu, c: &Config, w: &GpuWeights) -> Result<Self, GpuError> {
        Ok(Ops {
            embedding: Embedding::new(gpu, w.token_embd.ty)?,
            rmsnorm: RmsNorm::new(gpu)?,
            matmuls: w.matmul_types().into_iter().map(|ty| MatMul::new(gpu, ty)).collect::<Result<_, _>>()?,
            rope: Rope::new(gpu)?,
            kv_write: KvWrite::new(gpu)?,
            attention: Attention::new(gpu, c.head_dim as u32, c.gqa_group() as u32)?,
            add: Elementwise::new(gpu, Kind::Add)?,
            swiglu: Elementwise::new(gpu, Kind::SwiGlu)?,
            argmax: Argmax::new(gpu)?,
            sample: Sample::new(gpu)?,
        })
    }

    pub fn matmul(&self, ty: TensorType) -> &MatMul {
        // Ops::new made one for every type in the weights.
        self.matmuls.iter().find(|m| m.ty == ty).expect("a matmul pipeline per weight type")
    }
}

/// One part of a matmul, bound for both pipelines (decode: 1 token; prefill: a tile).
pub struct MatPart {
    pub ty: TensorType,
    pub rows: u32,
    pub cols: u32,
    pub decode: wgpu::BindGroup,
    pub prefill: wgpu::BindGroup,
}

pub struct LayerBinds {
    pub attn_norm: wgpu::BindGroup,
    pub q: Vec<MatPart>,
    pub k: Vec<MatPart>,
    pub v: Vec<MatPart>,
    pub rope_q: wgpu::BindGroup,
    pub rope_k: wgpu::BindGroup,
    pub kv_write: wgpu::BindGroup,
    pub attention: wgpu::BindGroup,
    pub wo: Vec<MatPart>,
    pub ffn_norm: wgpu::BindGroup,
    pub gate: Vec<MatPart>,
    pub up: Vec<MatPart>,
    pub down: Vec<MatPart>,
}

/// Final norm and logits, for the last position (from `x_last`) or for all of a batch.
pub struct HeadBinds {
    pub norm: wgpu::BindGroup,
    pub output: Vec<MatPart>,
}

pub struct Binds {
    pub embed: Vec<wgpu::BindGroup>, // one per part of the table
    pub layers: Vec<LayerBinds>,
    /// x += xb, over (n, dim): both residual adds of every layer.
    pub add: wgpu::BindGroup,
    /// gate = silu(gate) ⊙ up, over (n, ffn_dim).
    pub swiglu: wgpu::BindGroup,
    pub last: HeadBinds,
    pub all: HeadBinds,
    pub argmax: ArgmaxBind,
    pub sample: wgpu::BindGroup,
}

/// Dispatches per step, at most: the bound on parameter slots.
pub fn max_dispatches(w: &GpuWeights) -> usize {
    let layer: usize = w
        .layers
        .iter()
        .map(|l| {
            9 + [&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down].iter().map(|m| m.parts.len()).sum::<usize>()
        })
        .sum();
    w.token_embd.parts.len() + layer + 2 + 2 * w.output.parts.len() + 3
}

struct Builder<'a> {
    gpu: &'a Gpu,
    ops: &'a Ops,
    step: &'a mut StepBuffer,
    c: &'a Config,
}

fn whole(b: &wgpu::Buffer) -> wgpu::BufferBinding<'_> {
    b.as_entire_buffer_binding()
}

impl Builder<'_> {
    /// y = x Wᵀ, part by part: each part writes its rows of y (bound at its first row).
    fn matmul(&mut self, m: &GpuMatrix, x: &wgpu::Buffer, y: &wgpu::Buffer, tokens: Rows) -> Vec<MatPart> {
        m.parts
            .iter()
            .map(|part| {
                let slot = self.step.slot(Slot::MatMul {
                    ty: m.ty,
                    rows: part.rows.len(),
                    cols: m.cols,
                    y_stride: m.rows,
                    tokens,
                });
                let y = wgpu::BufferBinding { buffer: y, offset: 4 * part.rows.start as u64, size: None };
                let op = self.ops.matmul(m.ty);
                let cols = m.cols as u32;
                let bind =
                    |n| op.bind(self.gpu, cols, n, self.step.params(slot), whole(&part.buffer), whole(x), y.clone());
                MatPart { ty: m.ty, rows: part.rows.len() as u32, cols, decode: bind(1), prefill: bind(2) }
            })
            .collect()
    }

    fn norm(&mut self, x: &wgpu::Buffer, w: &wgpu::Buffer, y: &wgpu::Buffer, rows: Rows) -> wgpu::BindGroup {
        let slot = self.step.slot(Slot::Norm { dim: self.c.dim, eps: self.c.norm_eps, rows });
        self.ops.rmsnorm.bind(self.gpu, self.step.params(slot), whole(x), whole(w), whole(y))
    }

    fn rope(&mut self, x: &wgpu::Buffer, n_heads: usize, factors: Option<&wgpu::Buffer>) -> wgpu::BindGroup {
        let slot = self.step.slot(Slot::Rope { n_heads });
        self.ops.rope.bind(self.gpu, self.step.params(slot), whole(x), factors.map(whole))
    }

    fn layer(
        &mut self,
        l: &crate::weights::GpuLayer,
        a: &Activations,
        kv: &KvLayer,
        f: Option<&wgpu::Buffer>,
    ) -> LayerBinds {
        let c = self.c;
        let kv_slot = self.step.slot(Slot::KvWrite { kv_dim: c.kv_dim() });
        let att_slot =
            self.step.slot(Slot::Attention { n_heads: c.n_heads, n_kv_heads: c.n_kv_heads, head_dim: c.head_dim });
        let (gpu, step) = (self.gpu, &*self.step);
        let kv_write =
            self.ops.kv_write.bind(gpu, step.params(kv_slot), whole(&a.k), whole(&a.v), whole(&kv.k), whole(&kv.v));
        let attention =
            self.ops.attention.bind(gpu, step.params(att_slot), whole(&a.q), whole(&kv.k), whole(&kv.v), whole(&a.att));
        LayerBinds {
            attn_norm: self.norm(&a.x, &l.attn_norm, &a.xb, Rows::Batch),
            q: self.matmul(&l.wq, &a.xb, &a.q, Rows::Batch),
            k: self.matmul(&l.wk, &a.xb, &a.k, Rows::Batch),
            v: self.matmul(&l.wv, &a.xb, &a.v, Rows::Batch),
            rope_q: self.rope(&a.q, c.n_heads, f),
            rope_k: self.rope(&a.k, c.n_kv_heads, f),
            kv_write,
            attention,
            wo: self.matmul(&l.wo, &a.att, &a.xb, Rows::Batch),
            ffn_norm: self.norm(&a.x, &l.ffn_norm, &a.xb, Rows::Batch),
            gate: self.matmul(&l.w_gate, &a.xb, &a.gate, Rows::Batch),
            up: self.matmul(&l.w_up, &a.xb, &a.up, Rows::Batch),
            down: self.matmul(&l.w_down, &a.gate, &a.xb, Rows::Batch),
        }
    }

    fn elementwise(&mut self, op: &Elementwise, width: usize, x: &wgpu::Buffer, y: &wgpu::Buffer) -> wgpu::BindGroup {
        let slot = self.step.slot(Slot::Elementwise { width });
        op.bind(self.gpu, self.step.params(slot), whole(x), whole(y))
    }
}

impl Binds {
    pub fn new(
        gpu: &Gpu,
        ops: &Ops,
        step: &mut StepBuffer,
        c: &Config,
        w: &GpuWeights,
        a: &Activations,
        kv: &[KvLayer],
    ) -> Binds {
        let mut b = Builder { gpu, ops, step, c };
        let embed = w
            .token_embd
            .parts
            .iter()
            .map(|part| {
                let rows = (part.rows.start, part.rows.end);
                let slot = b.step.slot(Slot::Embed { rows, dim: c.dim, ty: w.token_embd.ty });
                let step = &*b.step;
                ops.embedding.bind(gpu, step.params(slot), whole(&part.buffer), step.ids(), whole(&a.x))
            })
            .collect();
        let layers = w.layers.iter().zip(kv).map(|(l, kv)| b.layer(l, a, kv, w.rope_freqs.as_ref())).collect();
        let add = b.elementwise(&ops.add, c.dim, &a.x, &a.xb);
        let swiglu = b.elementwise(&ops.swiglu, c.ffn_dim, &a.gate, &a.up);
        let last = HeadBinds {
            norm: b.norm(&a.x_last, &w.output_norm, &a.xb, Rows::One),
            output: b.matmul(&w.output, &a.xb, &a.logits, Rows::One),
        };
        let all = HeadBinds {
            norm: b.norm(&a.x, &w.output_norm, &a.xb, Rows::Batch),
            output: b.matmul(&w.output, &a.xb, &a.logits, Rows::Batch),
        };
        let argmax_slot = b.step.slot(Slot::Argmax { vocab: c.vocab_size });
        let sample_slot = b.step.slot(Slot::Sample { vocab: c.vocab_size });
        let step = &*b.step;
        let argmax = ops.argmax.bind(gpu, step.params(argmax_slot), whole(&a.logits), whole(&a.sampled));
        let sample = ops.sample.bind(gpu, step.params(sample_slot), whole(&a.logits), whole(&a.sampled));
        Binds { embed, layers, add, swiglu, last, all, argmax, sample }
    }
}
