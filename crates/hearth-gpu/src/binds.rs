//! The kernels a model needs and every bind group of its forward pass, built once at load:
//! a step only rewrites the parameter slots they point at (see `step.rs`).

use hearth_gguf::TensorType;
use hearth_model::Config;

use crate::buffers::{Activations, KvLayer};
use crate::ops::attention::{self, Attention};
use crate::ops::elementwise::{self, Elementwise, Kind};
use crate::ops::embedding::{self, Embedding};
use crate::ops::matmul::{self, Fuse, MatMul};
use crate::ops::norm_add::{self, NormAdd};
use crate::ops::rope::{self, Extras, RopeKv};
use crate::ops::sample::{self, Argmax, ArgmaxBind, Sample};
use crate::step::{Bound, Rows, StepBuffer};
use crate::weights::{GpuLayer, GpuMatrix, GpuWeights, Proj};
use crate::{Gpu, GpuError};

/// One pipeline per kernel (and per weight dtype and fusion for matmul).
pub struct Ops {
    pub embedding: Embedding,
    pub matmuls: Vec<MatMul>,
    pub rope_kv: RopeKv,
    pub attention: Attention,
    /// For gate and up projections that could not be stacked (one matmul each), if any:
    /// SwiGLU or GeGLU.
    pub swiglu: Option<Elementwise>,
    /// For post-norms (Gemma 3), if the model has them.
    pub norm_add: Option<NormAdd>,
    pub argmax: Argmax,
    pub sample: Sample,
}

impl Ops {
    pub fn new(gpu: &Gpu, c: &Config, w: &GpuWeights) -> Result<Self, GpuError> {
        Ok(Ops {
            embedding: Embedding::new(gpu, w.token_embd.ty)?,
            matmuls: w
                .matmul_shapes()
                .into_iter()
                .map(|s| MatMul::new(gpu, s.ty, &s.shapes, &s.batched))
                .collect::<Result<_, _>>()?,
            rope_kv: RopeKv::new(gpu)?,
            attention: Attention::new(gpu, c.head_dim as u32, c.gqa_group() as u32)?,
            swiglu: match w.layers.iter().any(|l| matches!(l.gate_up, Proj::Separate(_))) {
                true => Some(Elementwise::new(gpu, Kind::gated(c.ffn_act))?),
                false => None,
            },
            norm_add: if c.post_norms { Some(NormAdd::new(gpu)?) } else { None },
            argmax: Argmax::new(gpu)?,
            sample: Sample::new(gpu)?,
        })
    }

    pub fn matmul(&self, ty: TensorType) -> &MatMul {
        // Ops::new made one for every type in the weights.
        self.matmuls.iter().find(|m| m.ty == ty).expect("a matmul pipeline per weight type")
    }

    fn matmul_mut(&mut self, ty: TensorType) -> Option<&mut MatMul> {
        self.matmuls.iter_mut().find(|m| m.ty == ty)
    }

    /// The SwiGLU for unstacked gate and up projections: built where a layer has them.
    pub fn swiglu(&self) -> &Elementwise {
        self.swiglu.as_ref().expect("a SwiGLU pipeline where gate and up are separate")
    }

    /// The post-norm's norm + add: built where the model has post-norms.
    pub fn norm_add(&self) -> &NormAdd {
        self.norm_add.as_ref().expect("a norm + add pipeline where layers have post-norms")
    }
}

/// One part of a matmul, bound for the decode pipeline (1 token) and, where batches pass
/// through it, the prefill one (a tile of tokens).
pub struct MatPart {
    pub slot: matmul::Slot,
    pub decode: wgpu::BindGroup,
    pub prefill: Option<wgpu::BindGroup>,
}

/// A decoder layer's six dispatches (more where projections could not be stacked).
pub struct LayerBinds {
    /// RMSNorm(x) · [W_q; W_k; W_v] → qkv
    pub qkv: Vec<MatPart>,
    /// RoPE(q) → q; RoPE(k), v → the KV cache
    pub rope_kv: Bound<rope::Slot>,
    pub attention: Bound<attention::Slot, attention::Binds>,
    /// x += att · W_o (or, with a post-norm, block_out = att · W_o)
    pub wo: Vec<MatPart>,
    /// x += RMSNorm(block_out) (Gemma 3's post-attention norm)
    pub post_attn: Option<Bound<norm_add::Slot>>,
    /// silu(RMSNorm(x) · W_gate) ⊙ RMSNorm(x) · W_up → gate
    pub gate_up: Vec<MatPart>,
    /// The SwiGLU, when gate and up were two matmuls.
    pub swiglu: Option<Bound<elementwise::Slot>>,
    /// x += gate · W_down (or, with a post-norm, block_out = gate · W_down)
    pub down: Vec<MatPart>,
    /// x += RMSNorm(block_out) (Gemma 3's post-FFN norm)
    pub post_ffn: Option<Bound<norm_add::Slot>>,
}

/// The logits, RMSNorm(x) · W_outputᵀ, for the last position (from `x_last`) or for all of a
/// batch.
pub struct HeadBinds {
    pub output: Vec<MatPart>,
}

pub struct Binds {
    pub embed: Vec<Bound<embedding::Slot>>, // one per part of the table
    pub layers: Vec<LayerBinds>,
    pub last: HeadBinds,
    /// Built on first use ([`Binds::all_logits`]): a chat never asks for them, and the output
    /// matrix's prefill pipeline is among the slowest to compile (23.6 s of SmolLM2's 61 s on
    /// SwiftShader).
    pub all: Option<HeadBinds>,
    pub argmax: Bound<sample::ArgmaxSlot, ArgmaxBind>,
    pub sample: Bound<sample::SampleSlot>,
}

struct Builder<'a> {
    gpu: &'a Gpu,
    ops: &'a Ops,
    step: &'a mut StepBuffer,
    c: &'a Config,
    batch: usize,
}

fn whole(b: &wgpu::Buffer) -> wgpu::BufferBinding<'_> {
    b.as_entire_buffer_binding()
}

impl Builder<'_> {
    /// y = x Wᵀ with `fuse`, part by part: each part writes its rows of y, bound at element
    /// `y_at` + its first row. `norm`: RMSNorm's weights, under `fuse.norm`.
    #[allow(clippy::too_many_arguments)]
    fn matmul(
        &mut self,
        m: &GpuMatrix,
        fuse: Fuse,
        norm: Option<&wgpu::Buffer>,
        x: &wgpu::Buffer,
        y: &wgpu::Buffer,
        y_at: usize,
        tokens: Rows,
    ) -> Vec<MatPart> {
        let y_stride = fuse.out_rows(m.rows as u32) as usize;
        let eps = self.c.norm_eps;
        m.parts
            .iter()
            .map(|part| {
                let slot = matmul::Slot { ty: m.ty, rows: part.rows.len(), cols: m.cols, y_stride, tokens, fuse, eps };
                let offset = 4 * (y_at + part.rows.start) as u64;
                let y = wgpu::BufferBinding { buffer: y, offset, size: None };
                let op = self.ops.matmul(m.ty);
                let cols = m.cols as u32;
                let i = self.step.slot(self.gpu, &slot);
                let params = self.step.binding(i);
                let bind = |n| {
                    let (w, x) = (whole(&part.buffer), whole(x));
                    op.bind(self.gpu, fuse, cols, n, params.clone(), w, x, y.clone(), norm.map(whole))
                };
                let prefill = (tokens == Rows::Batch).then(|| bind(2));
                MatPart { slot, decode: bind(1), prefill }
            })
            .collect()
    }

    fn layer(&mut self, i: usize, l: &GpuLayer, a: &Activations, kv: &KvLayer, f: Option<&wgpu::Buffer>) -> LayerBinds {
        let c = self.c;
        let gpu = self.gpu;
        let (q_dim, kv_dim) = (c.q_dim(), c.kv_dim());
        let (qkv, layout) = match &l.qkv {
            Proj::Stacked(m) => (
                self.matmul(m, Fuse::NORM, Some(&l.attn_norm), &a.x, &a.qkv, 0, Rows::Batch),
                rope::Layout::rows(q_dim, kv_dim),
            ),
            Proj::Separate(ms) => {
                let (q_off, k_off, v_off) = Activations::qkv_regions(c, self.batch);
                let parts = ms
                    .iter()
                    .zip([q_off, k_off, v_off])
                    .flat_map(|(m, at)| self.matmul(m, Fuse::NORM, Some(&l.attn_norm), &a.x, &a.qkv, at, Rows::Batch))
                    .collect();
                (parts, rope::Layout { q_stride: q_dim, kv_stride: kv_dim, q_off, k_off, v_off })
            }
        };
        let slot = rope::Slot {
            rotate: c.rotates(i),
            bias: l.qkv_bias.is_some(),
            qk_norm: l.qk_norm.is_some(),
            eps: c.norm_eps,
            local_base: c.window(i).and(c.sliding.as_ref()).map(|s| s.freq_base),
            ..rope::Slot::plain(c.n_heads, c.n_kv_heads, layout)
        };
        let s = self.step.slot(gpu, &slot);
        let params = self.step.binding(s);
        let extras = Extras {
            freq_factors: f.map(whole),
            bias: l.qkv_bias.as_ref().map(whole),
            qk_norm: l.qk_norm.as_ref().map(whole),
        };
        let bind = self.ops.rope_kv.bind(gpu, params, whole(&a.qkv), extras, whole(&a.q), whole(&kv.k), whole(&kv.v));
        let rope_kv = Bound { bind, slot };
        let att_slot = attention::Slot {
            n_heads: c.n_heads,
            n_kv_heads: c.n_kv_heads,
            head_dim: c.head_dim,
            scale: c.attn_scale,
            window: c.window(i),
        };
        let i = self.step.slot(gpu, &att_slot);
        let params = self.step.binding(i);
        let attention = Bound {
            bind: self.ops.attention.bind(
                gpu,
                params,
                whole(&a.q),
                whole(&kv.k),
                whole(&kv.v),
                whole(&a.att),
                whole(&a.att_part),
            ),
            slot: att_slot,
        };
        let norm = Some(&l.ffn_norm);
        let gated = Fuse::norm_gated(c.ffn_act);
        let (gate_up, swiglu) = match &l.gate_up {
            Proj::Stacked(m) => (self.matmul(m, gated, norm, &a.x, &a.gate, 0, Rows::Batch), None),
            Proj::Separate(ms) => {
                let mut parts = self.matmul(&ms[0], Fuse::NORM, norm, &a.x, &a.gate, 0, Rows::Batch);
                parts.extend(self.matmul(&ms[1], Fuse::NORM, norm, &a.x, &a.up, 0, Rows::Batch));
                let slot = elementwise::Slot { width: c.ffn_dim };
                let i = self.step.slot(gpu, &slot);
                let params = self.step.binding(i);
                (parts, Some(Bound { bind: self.ops.swiglu().bind(gpu, params, whole(&a.gate), whole(&a.up)), slot }))
            }
        };
        let (wo, post_attn) = self.residual(&l.wo, &l.post_attn_norm, &a.att, a);
        let (down, post_ffn) = self.residual(&l.w_down, &l.post_ffn_norm, &a.gate, a);
        LayerBinds { qkv, rope_kv, attention, wo, post_attn, gate_up, swiglu, down, post_ffn }
    }

    /// x += input · Wᵀ: in the matmul's epilogue, or, under a post-norm, into `block_out` and
    /// then x += RMSNorm(block_out) by the norm + add kernel.
    fn residual(
        &mut self,
        m: &GpuMatrix,
        post_norm: &Option<wgpu::Buffer>,
        input: &wgpu::Buffer,
        a: &Activations,
    ) -> (Vec<MatPart>, Option<Bound<norm_add::Slot>>) {
        let fuse = GpuLayer::residual_fuse(post_norm);
        let Some(norm) = post_norm else {
            return (self.matmul(m, fuse, None, input, &a.x, 0, Rows::Batch), None);
        };
        let parts = self.matmul(m, fuse, None, input, &a.block_out, 0, Rows::Batch);
        let slot = norm_add::Slot { dim: self.c.dim, eps: self.c.norm_eps };
        let i = self.step.slot(self.gpu, &slot);
        let params = self.step.binding(i);
        let bind = self.ops.norm_add().bind(self.gpu, params, whole(&a.x), whole(&a.block_out), whole(norm));
        (parts, Some(Bound { bind, slot }))
    }
}

impl Binds {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        gpu: &Gpu,
        ops: &Ops,
        step: &mut StepBuffer,
        c: &Config,
        w: &GpuWeights,
        a: &Activations,
        kv: &[KvLayer],
        batch: usize,
    ) -> Binds {
        let mut b = Builder { gpu, ops, step, c, batch };
        let embed = w
            .token_embd
            .parts
            .iter()
            .map(|part| {
                let scale = c.embed_scale.unwrap_or(1.0);
                let slot = embedding::Slot { rows: part.rows.clone(), dim: c.dim, ty: w.token_embd.ty, scale };
                let i = b.step.slot(gpu, &slot);
                let step = &*b.step;
                let params = step.binding(i);
                let bind = ops.embedding.bind(gpu, params, whole(&part.buffer), step.ids(), whole(&a.x));
                Bound { bind, slot }
            })
            .collect();
        let layers = w
            .layers
            .iter()
            .zip(kv)
            .enumerate()
            .map(|(i, (l, kv))| b.layer(i, l, a, kv, w.rope_freqs.as_ref()))
            .collect();
        let norm = Some(&w.output_norm);
        let last = HeadBinds { output: b.matmul(&w.output, Fuse::NORM, norm, &a.x_last, &a.logits, 0, Rows::One) };
        let slot = sample::ArgmaxSlot { vocab: c.vocab_size };
        let i = b.step.slot(gpu, &slot);
        let params = b.step.binding(i);
        let argmax = Bound { bind: ops.argmax.bind(gpu, params, whole(&a.logits), whole(&a.sampled)), slot };
        let slot = sample::SampleSlot { vocab: c.vocab_size };
        let i = b.step.slot(gpu, &slot);
        let params = b.step.binding(i);
        let sample = Bound { bind: ops.sample.bind(gpu, params, whole(&a.logits), whole(&a.sampled)), slot };
        Binds { embed, layers, last, all: None, argmax, sample }
    }

    /// Builds the pipelines and bind groups for the logits of every position of a batch,
    /// unless built already.
    #[allow(clippy::too_many_arguments)]
    pub fn all_logits(
        &mut self,
        gpu: &Gpu,
        ops: &mut Ops,
        step: &mut StepBuffer,
        c: &Config,
        w: &GpuWeights,
        a: &Activations,
        batch: usize,
    ) -> Result<(), GpuError> {
        if self.all.is_some() {
            return Ok(());
        }
        let op = ops.matmul_mut(w.output.ty).ok_or_else(|| GpuError::Shader {
            kernel: format!("matmul {}", w.output.ty),
            message: "no pipeline for the output matrix's format".into(),
        })?;
        op.add_prefill(gpu, Fuse::NORM)?;
        let mut b = Builder { gpu, ops, step, c, batch };
        let output = b.matmul(&w.output, Fuse::NORM, Some(&w.output_norm), &a.x, &a.logits, 0, Rows::Batch);
        self.all = Some(HeadBinds { output });
        Ok(())
    }
}
