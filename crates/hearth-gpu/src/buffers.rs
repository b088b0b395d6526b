//! Activation buffers for a batch of up to `batch` tokens, the f16 KV cache, and the staging
//! buffers results come back through. All allocated once, at load.

use hearth_model::Config;

use crate::ops::attention::split_partials;
use crate::Gpu;

/// Bytes of a storage buffer of `words` f32/u32 (at least one). Sizes are u64 products on
/// every target: usize is 32 bits on wasm32.
pub(crate) fn storage_bytes(words: u64) -> u64 {
    4 * words.max(1)
}

/// Bytes of a mappable buffer for `bytes`: whole mapping granules.
pub(crate) fn staging_bytes(bytes: u64) -> u64 {
    bytes.div_ceil(8) * 8
}

fn storage(gpu: &Gpu, label: &str, words: u64) -> wgpu::Buffer {
    gpu.create_buffer(&wgpu::BufferDescriptor {
        label: Some(label),
        size: storage_bytes(words),
        usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    })
}

fn staging(gpu: &Gpu, label: &str, bytes: u64) -> wgpu::Buffer {
    gpu.create_buffer(&wgpu::BufferDescriptor {
        label: Some(label),
        size: staging_bytes(bytes),
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    })
}

/// Row-major f32 activations, B = the prefill batch.
pub struct Activations {
    pub x: wgpu::Buffer, // (B, dim) the residual stream
    /// The Q/K/V projection's output: (B, q_dim + 2 kv_dim) when it is one matmul, else the
    /// three regions of [`Activations::qkv_regions`].
    pub qkv: wgpu::Buffer,
    pub q: wgpu::Buffer,   // (B, n_heads, head_dim) rotated queries
    pub att: wgpu::Buffer, // (B, n_heads, head_dim) attention output
    /// Split-K decode attention's partials: (context / SPLIT, n_heads, head_dim + 2).
    pub att_part: wgpu::Buffer,
    pub gate: wgpu::Buffer,   // (B, ffn_dim) silu(gate) ⊙ up (gate alone before, when unfused)
    pub up: wgpu::Buffer,     // (B, ffn_dim), when gate and up are separate matmuls
    pub x_last: wgpu::Buffer, // (dim) the last token's x, for logits of the last position only
    /// (B, dim) Wo's or W_down's output before its post-norm joins it to x (Gemma 3); one
    /// word for models without post-norms.
    pub block_out: wgpu::Buffer,
    pub logits: wgpu::Buffer,  // (B, vocab); row 0 only when the last position's are wanted
    pub sampled: wgpu::Buffer, // (1) u32 the token picked on the device
    /// (B, vocab) f32, mappable: logits come back through it.
    pub logits_readback: wgpu::Buffer,
    /// (2) u32 each, mappable: the sampled id (8 bytes, the mapping granularity). Two, so a
    /// pipelined step can copy its token while the previous one's is being read.
    pub token_readback: [wgpu::Buffer; 2],
}

/// Elements between regions of `qkv` (64 f32 = 256 bytes, the largest storage-offset
/// alignment WebGPU allows), so each region can be bound at its start.
const REGION_ALIGN: usize = 64;

/// Words of each storage buffer of [`Activations`] (field order), and bytes of its two
/// readbacks: what [`Activations::new`] allocates and the memory plan counts.
pub(crate) struct ActivationSizes {
    pub storage: [(&'static str, u64); 11],
    pub logits_readback: u64,
    pub token_readback: u64,
}

impl ActivationSizes {
    pub fn new(c: &Config, batch: usize, context: usize) -> Self {
        let b = batch as u64;
        let [dim, q_dim, kv_dim, ffn_dim, vocab] =
            [c.dim, c.q_dim(), c.kv_dim(), c.ffn_dim, c.vocab_size].map(|d| d as u64);
        let qkv = Activations::qkv_regions(c, batch).2 as u64 + b * kv_dim;
        ActivationSizes {
            storage: [
                ("x", b * dim),
                ("qkv", qkv),
                ("q", b * q_dim),
                ("att", b * q_dim),
                ("att partials", split_partials(c.n_heads, c.head_dim, context)),
                ("gate", b * ffn_dim),
                ("up", b * ffn_dim),
                ("x_last", dim),
                ("block out", if c.post_norms { b * dim } else { 1 }),
                ("logits", b * vocab),
                ("sampled", 2),
            ],
            logits_readback: 4 * b * vocab,
            token_readback: 8,
        }
    }

    /// Bytes of every buffer.
    pub fn bytes(&self) -> impl Iterator<Item = u64> + '_ {
        let storage = self.storage.iter().map(|&(_, words)| storage_bytes(words));
        let readback = [self.logits_readback, self.token_readback, self.token_readback].map(staging_bytes);
        storage.chain(readback)
    }
}

impl Activations {
    pub fn new(gpu: &Gpu, c: &Config, batch: usize, context: usize) -> Self {
        let sizes = ActivationSizes::new(c, batch, context);
        let [x, qkv, q, att, att_part, gate, up, x_last, block_out, logits, sampled] =
            sizes.storage.map(|(label, words)| storage(gpu, label, words));
        let token = sizes.token_readback;
        Activations {
            x,
            qkv,
            q,
            att,
            att_part,
            gate,
            up,
            x_last,
            block_out,
            logits,
            sampled,
            logits_readback: staging(gpu, "logits readback", sizes.logits_readback),
            token_readback: [staging(gpu, "token readback 0", token), staging(gpu, "token readback 1", token)],
        }
    }

    /// Where separate Q, K and V projections of a `batch` write in `qkv`: element offsets of
    /// the (B, q_dim), (B, kv_dim) and (B, kv_dim) regions, each 256-byte aligned. (A batch is
    /// at most 64 and the config bounds q_dim and kv_dim by 2^24, so these fit 32 bits.)
    pub fn qkv_regions(c: &Config, batch: usize) -> (usize, usize, usize) {
        let k = (batch * c.q_dim()).next_multiple_of(REGION_ALIGN);
        let v = k + (batch * c.kv_dim()).next_multiple_of(REGION_ALIGN);
        (0, k, v)
    }
}

/// Keys and values of every position, per layer: (context, n_kv_heads, head_dim) f16, two
/// per u32 word (see `ops::attention`).
pub struct KvLayer {
    pub k: wgpu::Buffer,
    pub v: wgpu::Buffer,
}

/// Words of one layer's keys (or values).
pub(crate) fn kv_words(c: &Config, context: usize) -> u64 {
    context as u64 * c.kv_dim() as u64 / 2
}

pub fn kv_cache(gpu: &Gpu, c: &Config, context: usize) -> Vec<KvLayer> {
    let words = kv_words(c, context);
    (0..c.n_layers).map(|_| KvLayer { k: storage(gpu, "k cache", words), v: storage(gpu, "v cache", words) }).collect()
}

/// Copies `bytes` bytes of `buffer` (a mappable staging buffer, filled by submission
/// `after`) back. Natively this waits on the device, for `after` only when given (later
/// submissions keep running); in the browser the mapping resolves with the event loop, so
/// callers await it and never block the thread.
pub async fn read_mapped(
    gpu: &Gpu,
    buffer: &wgpu::Buffer,
    bytes: u64,
    after: Option<wgpu::SubmissionIndex>,
) -> Result<Vec<u8>, crate::GpuError> {
    use crate::GpuError;
    let slice = buffer.slice(..bytes.div_ceil(8) * 8);
    let (tx, rx) = futures_channel::oneshot::channel();
    slice.map_async(wgpu::MapMode::Read, move |r| {
        let _ = tx.send(r);
    });
    // Natively nothing drives the mapping but a poll; in the browser this returns at once.
    let wait = wgpu::PollType::Wait { submission_index: after, timeout: None };
    gpu.device.poll(wait).map_err(|e| GpuError::Readback(e.to_string()))?;
    rx.await
        .map_err(|_| GpuError::DeviceLost("the mapping was dropped".into()))?
        .map_err(|e| GpuError::Readback(e.to_string()))?;
    let view = slice.get_mapped_range().map_err(|e| GpuError::Readback(e.to_string()))?;
    let out = view[..bytes as usize].to_vec();
    drop(view);
    buffer.unmap();
    // What was read may come from work the device refused.
    gpu.uncaptured_error()?;
    Ok(out)
}
