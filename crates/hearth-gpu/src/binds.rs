//! The kernels a model needs and every bind group of its forward pass, built once at load:
//! a step only rewrites the parameter slots they point at (see `step.rs`).

use hearth_gguf::TensorType;
use hearth_model::Config;

use crate::buffers::{Activations, KvLayer};
use crate::ops::attention::{self, Attention, KvWrite};
use crate::ops::elementwise::{self, Elementwise, Kind};
use crate::ops::embedding::{self, Embedding};
use crate::ops::matmul::{self, MatMul};
use crate::ops::rmsnorm::{self, RmsNorm};
use crate::ops::rope::{self, Rope};
use crate::ops::sample::{self, Argmax, ArgmaxBind, Sample};
use crate::step::{Bound, Rows, StepBuffer};
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
            matmuls: w
                .matmul_shapes()
                .into_iter()
                .map(|(ty, cols)| MatMul::new(gpu, ty, &cols))
                .collect::<Result<_, _>>()?,
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
    pub slot: matmul::Slot,
    pub decode: wgpu::BindGroup,
    pub prefill: wgpu::BindGroup,
}

pub struct LayerBinds {
    pub attn_norm: Bound<rmsnorm::Slot>,
    pub q: Vec<MatPart>,
    pub k: Vec<MatPart>,
    pub v: Vec<MatPart>,
    pub rope_q: Bound<rope::Slot>,
    pub rope_k: Bound<rope::Slot>,
    pub kv_write: Bound<attention::KvWriteSlot>,
    pub attention: Bound<attention::Slot>,
    pub wo: Vec<MatPart>,
    pub ffn_norm: Bound<rmsnorm::Slot>,
    pub gate: Vec<MatPart>,
    pub up: Vec<MatPart>,
    pub down: Vec<MatPart>,
}

/// Final norm and logits, for the last position (from `x_last`) or for all of a batch.
pub struct HeadBinds {
    pub norm: Bound<rmsnorm::Slot>,
    pub output: Vec<MatPart>,
}

pub struct Binds {
    pub embed: Vec<Bound<embedding::Slot>>, // one per part of the table
    pub layers: Vec<LayerBinds>,
    /// x += xb, over (n, dim): both residual adds of every layer.
    pub add: Bound<elementwise::Slot>,
    /// gate = silu(gate) ⊙ up, over (n, ffn_dim).
    pub swiglu: Bound<elementwise::Slot>,
    pub last: HeadBinds,
    pub all: HeadBinds,
    pub argmax: Bound<sample::ArgmaxSlot, ArgmaxBind>,
    pub sample: Bound<sample::SampleSlot>,
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
                let slot = matmul::Slot { ty: m.ty, rows: part.rows.len(), cols: m.cols, y_stride: m.rows, tokens };
                let y = wgpu::BufferBinding { buffer: y, offset: 4 * part.rows.start as u64, size: None };
                let op = self.ops.matmul(m.ty);
                let cols = m.cols as u32;
                let i = self.step.slot(self.gpu, &slot);
                let params = self.step.binding(i);
                let bind = |n| op.bind(self.gpu, cols, n, params.clone(), whole(&part.buffer), whole(x), y.clone());
                let (decode, prefill) = (bind(1), bind(2));
                MatPart { slot, decode, prefill }
            })
            .collect()
    }

    fn norm(&mut self, x: &wgpu::Buffer, w: &wgpu::Buffer, y: &wgpu::Buffer, rows: Rows) -> Bound<rmsnorm::Slot> {
        let slot = rmsnorm::Slot { dim: self.c.dim, eps: self.c.norm_eps, rows };
        let i = self.step.slot(self.gpu, &slot);
        let params = self.step.binding(i);
        Bound { bind: self.ops.rmsnorm.bind(self.gpu, params, whole(x), whole(w), whole(y)), slot }
    }

    fn rope(&mut self, x: &wgpu::Buffer, n_heads: usize, factors: Option<&wgpu::Buffer>) -> Bound<rope::Slot> {
        let slot = rope::Slot { n_heads };
        let i = self.step.slot(self.gpu, &slot);
        let params = self.step.binding(i);
        Bound { bind: self.ops.rope.bind(self.gpu, params, whole(x), factors.map(whole)), slot }
    }

    fn layer(
        &mut self,
        l: &crate::weights::GpuLayer,
        a: &Activations,
        kv: &KvLayer,
        f: Option<&wgpu::Buffer>,
    ) -> LayerBinds {
        let c = self.c;
        let gpu = self.gpu;
        let kv_slot = attention::KvWriteSlot { kv_dim: c.kv_dim() };
        let i = self.step.slot(gpu, &kv_slot);
        let params = self.step.binding(i);
        let kv_write = Bound {
            bind: self.ops.kv_write.bind(gpu, params, whole(&a.k), whole(&a.v), whole(&kv.k), whole(&kv.v)),
            slot: kv_slot,
        };
        let att_slot = attention::Slot { n_heads: c.n_heads, n_kv_heads: c.n_kv_heads, head_dim: c.head_dim };
        let i = self.step.slot(gpu, &att_slot);
        let params = self.step.binding(i);
        let attention = Bound {
            bind: self.ops.attention.bind(gpu, params, whole(&a.q), whole(&kv.k), whole(&kv.v), whole(&a.att)),
            slot: att_slot,
        };
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

    fn elementwise(
        &mut self,
        op: &Elementwise,
        width: usize,
        x: &wgpu::Buffer,
        y: &wgpu::Buffer,
    ) -> Bound<elementwise::Slot> {
        let slot = elementwise::Slot { width };
        let i = self.step.slot(self.gpu, &slot);
        let params = self.step.binding(i);
        Bound { bind: op.bind(self.gpu, params, whole(x), whole(y)), slot }
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
                let slot = embedding::Slot { rows: part.rows.clone(), dim: c.dim, ty: w.token_embd.ty };
                let i = b.step.slot(gpu, &slot);
                let step = &*b.step;
                let params = step.binding(i);
                let bind = ops.embedding.bind(gpu, params, whole(&part.buffer), step.ids(), whole(&a.x));
                Bound { bind, slot }
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
        let slot = sample::ArgmaxSlot { vocab: c.vocab_size };
        let i = b.step.slot(gpu, &slot);
        let params = b.step.binding(i);
        let argmax = Bound { bind: ops.argmax.bind(gpu, params, whole(&a.logits), whole(&a.sampled)), slot };
        let slot = sample::SampleSlot { vocab: c.vocab_size };
        let i = b.step.slot(gpu, &slot);
        let params = b.step.binding(i);
        let sample = Bound { bind: ops.sample.bind(gpu, params, whole(&a.logits), whole(&a.sampled)), slot };
        Binds { embed, layers, add, swiglu, last, all, argmax, sample }
    }
}
