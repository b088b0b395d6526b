//! The device: adapter, limits, and pipeline creation that fails loudly.

use crate::ops::Strategy;
use crate::GpuError;

/// Choices made when opening the device.
#[derive(Debug, Clone, Default)]
pub struct GpuOptions {
    /// Ask for at most this storage-buffer binding size, below the adapter's. Tests use it
    /// to exercise tensors split across bindings without needing a 4 GB model.
    pub max_storage_buffer_binding_size: Option<u64>,
    /// Ask for at most this buffer size (tests of the out-of-memory path).
    pub max_buffer_size: Option<u64>,
    /// Ask for at most this many workgroups per dispatch dimension (tests of the grids a
    /// model's shapes need against the device limit).
    pub max_compute_workgroups_per_dimension: Option<u32>,
    /// Lay the heavy kernels out this way whatever the adapter is, e.g. the Reduce kernels
    /// that real GPUs get, run end to end on lavapipe in CI. `None`: [`Strategy::for_adapter`].
    pub strategy: Option<Strategy>,
    /// Ask for WebGPU's default limits only (what every browser grants without being asked,
    /// e.g. 8 storage buffers per stage and 16 KiB of workgroup memory), not the adapter's:
    /// tests build every kernel under them.
    pub webgpu_default_limits: bool,
    /// Ask for timestamp queries where the adapter has them (`Gpu::device.features()` then
    /// holds `TIMESTAMP_QUERY`, and `TIMESTAMP_QUERY_INSIDE_PASSES` for per-kernel profiles):
    /// for measurements, never needed to run a model.
    pub timestamps: bool,
}

/// An open device and what it can do. Kernels take `&Gpu`.
pub struct Gpu {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub info: wgpu::AdapterInfo,
    /// The limits granted: the adapter's own (not wgpu's conservative defaults), lowered
    /// only where [`GpuOptions`] asked.
    pub limits: wgpu::Limits,
    pub features: wgpu::Features,
    /// [`GpuOptions::strategy`].
    strategy: Option<Strategy>,
    /// Pipelines built so far (compiling them is most of a model load on CPU adapters).
    pipelines: std::sync::atomic::AtomicUsize,
    /// Bytes of the buffers made through [`Gpu::create_buffer`] (every buffer a model
    /// keeps), less those released: what the memory plan must equal.
    allocated: std::sync::atomic::AtomicU64,
    /// The first error no error scope caught (wgpu's default handler panics natively): kept
    /// here by the device's handler and reported by [`Gpu::uncaptured_error`].
    uncaptured: std::sync::Arc<std::sync::Mutex<Option<String>>>,
    /// Browser only: a pipeline's compile errors arrive as a promise, which must not be
    /// blocked on; [`Gpu::compute_pipeline`] leaves them here for [`Gpu::check_pipelines`].
    #[cfg(target_arch = "wasm32")]
    pending: std::cell::RefCell<Vec<PendingCheck>>,
    /// Unit tests: every pipeline built (source, entry, constants), for checks wgpu does not
    /// make natively (workgroup memory against the limit: browsers check it).
    #[cfg(test)]
    pub(crate) built: std::sync::Mutex<Vec<BuiltPipeline>>,
}

/// A pipeline's source, entry point and override values.
#[cfg(test)]
pub(crate) type BuiltPipeline = (String, String, Vec<(String, f64)>);

#[cfg(target_arch = "wasm32")]
type PendingCheck = (String, std::pin::Pin<Box<dyn std::future::Future<Output = Option<wgpu::Error>>>>);

impl Gpu {
    /// Opens the best adapter. Core WGSL only: no optional feature is required, so the
    /// same kernels run in every browser.
    pub async fn new(options: &GpuOptions) -> Result<Gpu, GpuError> {
        let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
        let adapter = instance
            .request_adapter(&wgpu::RequestAdapterOptions {
                power_preference: wgpu::PowerPreference::HighPerformance,
                force_fallback_adapter: false,
                compatible_surface: None,
                apply_limit_buckets: false, // we want the adapter's real limits
            })
            .await
            .map_err(|e| GpuError::NoAdapter(e.to_string()))?;
        let mut limits = if options.webgpu_default_limits { wgpu::Limits::default() } else { adapter.limits() };
        if let Some(n) = options.max_storage_buffer_binding_size {
            limits.max_storage_buffer_binding_size = limits.max_storage_buffer_binding_size.min(n);
        }
        if let Some(n) = options.max_buffer_size {
            limits.max_buffer_size = limits.max_buffer_size.min(n);
        }
        if let Some(n) = options.max_compute_workgroups_per_dimension {
            limits.max_compute_workgroups_per_dimension = limits.max_compute_workgroups_per_dimension.min(n);
        }
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("hearth"),
                required_features: if options.timestamps {
                    adapter.features()
                        & (wgpu::Features::TIMESTAMP_QUERY | wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES)
                } else {
                    wgpu::Features::empty()
                },
                required_limits: limits.clone(),
                ..Default::default()
            })
            .await
            .map_err(|e| GpuError::RequestDevice(e.to_string()))?;
        let uncaptured: std::sync::Arc<std::sync::Mutex<Option<String>>> = Default::default();
        let slot = uncaptured.clone();
        device.on_uncaptured_error(std::sync::Arc::new(move |e: wgpu::Error| {
            if let Ok(mut first) = slot.lock() {
                first.get_or_insert_with(|| e.to_string());
            }
        }));
        Ok(Gpu {
            uncaptured,
            info: adapter.get_info(),
            features: adapter.features(),
            limits,
            strategy: options.strategy,
            pipelines: Default::default(),
            allocated: Default::default(),
            device,
            queue,
            #[cfg(target_arch = "wasm32")]
            pending: Default::default(),
            #[cfg(test)]
            built: Default::default(),
        })
    }

    /// How the heavy kernels lay out their work here: the override asked for in
    /// [`GpuOptions`], else what suits the adapter. Read when pipelines are built, after any
    /// fix-up of `info` (the browser adds the adapter's label to its name).
    pub fn strategy(&self) -> Strategy {
        self.strategy.unwrap_or_else(|| Strategy::for_adapter(&self.info))
    }

    /// [`Gpu::new`], blocking (native only).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn new_blocking(options: &GpuOptions) -> Result<Gpu, GpuError> {
        pollster::block_on(Self::new(options))
    }

    /// Compiles `source` and builds a compute pipeline for `entry`, with `constants` for its
    /// `override` declarations. Errors name the kernel and carry the compiler's message:
    /// natively at once; in the browser from [`Gpu::check_pipelines`], which the model load
    /// awaits before it returns.
    pub fn compute_pipeline(
        &self,
        kernel: &str,
        source: &str,
        entry: &str,
        constants: &[(&str, f64)],
    ) -> Result<wgpu::ComputePipeline, GpuError> {
        #[cfg(test)]
        self.built.lock().unwrap().push((
            source.to_string(),
            entry.to_string(),
            constants.iter().map(|&(k, v)| (k.to_string(), v)).collect(),
        ));
        self.pipelines.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let module = self.device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some(kernel),
            source: wgpu::ShaderSource::Wgsl(source.into()),
        });
        let pipeline = self.device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(kernel),
            layout: None,
            module: &module,
            entry_point: Some(entry),
            compilation_options: wgpu::PipelineCompilationOptions { constants, ..Default::default() },
            cache: None,
        });
        #[cfg(not(target_arch = "wasm32"))]
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(GpuError::Shader { kernel: kernel.to_string(), message: e.to_string() });
        }
        #[cfg(target_arch = "wasm32")]
        self.pending.borrow_mut().push((kernel.to_string(), Box::pin(scope.pop())));
        Ok(pipeline)
    }

    /// The first GPU error that no error scope caught (a validation error, say), as a
    /// [`GpuError::Uncaptured`]; the device's results since then are not to be trusted.
    /// Checked after every readback.
    pub fn uncaptured_error(&self) -> Result<(), GpuError> {
        match self.uncaptured.lock().ok().and_then(|e| e.clone()) {
            Some(message) => Err(GpuError::Uncaptured(message)),
            None => Ok(()),
        }
    }

    /// Compute pipelines built on this device so far.
    pub fn pipelines_built(&self) -> usize {
        self.pipelines.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Waits for the compile results [`Gpu::compute_pipeline`] could not wait for (browser
    /// only; natively they were checked already).
    pub async fn check_pipelines(&self) -> Result<(), GpuError> {
        #[cfg(target_arch = "wasm32")]
        {
            let pending = std::mem::take(&mut *self.pending.borrow_mut());
            for (kernel, check) in pending {
                if let Some(e) = check.await {
                    return Err(GpuError::Shader { kernel, message: e.to_string() });
                }
            }
        }
        Ok(())
    }

    /// A buffer, counted in [`Gpu::allocated`]. Every buffer a model keeps is made here
    /// (scratch that lives for one call, like a test's readback, need not be).
    pub fn create_buffer(&self, desc: &wgpu::BufferDescriptor) -> wgpu::Buffer {
        self.allocated.fetch_add(desc.size, std::sync::atomic::Ordering::Relaxed);
        self.device.create_buffer(desc)
    }

    /// Takes `bytes` off [`Gpu::allocated`]: a counted buffer was dropped (the per-matrix
    /// copies of weights stacked into one buffer).
    pub(crate) fn release(&self, bytes: u64) {
        self.allocated.fetch_sub(bytes, std::sync::atomic::Ordering::Relaxed);
    }

    /// Bytes of GPU buffers made through [`Gpu::create_buffer`] and not released: after a
    /// model loads, exactly its [`crate::MemoryPlan::total`] (tested).
    pub fn allocated(&self) -> u64 {
        self.allocated.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// A buffer holding `contents`, counted at the size wgpu gives it (whole words).
    fn buffer_with(&self, label: &str, contents: &[u8], usage: wgpu::BufferUsages) -> wgpu::Buffer {
        use wgpu::util::DeviceExt;
        let size = if contents.is_empty() { 0 } else { (contents.len() as u64).div_ceil(4) * 4 };
        self.allocated.fetch_add(size, std::sync::atomic::Ordering::Relaxed);
        self.device.create_buffer_init(&wgpu::util::BufferInitDescriptor { label: Some(label), contents, usage })
    }

    /// A storage buffer holding `data`.
    pub fn upload<T: bytemuck::Pod>(&self, label: &str, data: &[T]) -> wgpu::Buffer {
        let usage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST;
        self.buffer_with(label, bytemuck::cast_slice(data), usage)
    }

    /// A uniform buffer holding one parameter struct.
    pub fn uniform<T: bytemuck::Pod>(&self, label: &str, params: &T) -> wgpu::Buffer {
        self.buffer_with(label, bytemuck::bytes_of(params), wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST)
    }

    /// Copies `buffer` back to the CPU and waits (tests, and the sampled token id). Native
    /// only: the browser must await the mapping instead of blocking.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn read_back<T: bytemuck::Pod>(&self, buffer: &wgpu::Buffer) -> Result<Vec<T>, GpuError> {
        let size = buffer.size();
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback"),
            size,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut enc = self.device.create_command_encoder(&Default::default());
        enc.copy_buffer_to_buffer(buffer, 0, &staging, 0, size);
        self.queue.submit([enc.finish()]);
        let slice = staging.slice(..);
        let (tx, rx) = std::sync::mpsc::channel();
        slice.map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        self.device.poll(wgpu::PollType::wait_indefinitely()).map_err(|e| GpuError::Readback(e.to_string()))?;
        rx.recv().map_err(|e| GpuError::Readback(e.to_string()))?.map_err(|e| GpuError::Readback(e.to_string()))?;
        let view = slice.get_mapped_range().map_err(|e| GpuError::Readback(e.to_string()))?;
        let out = bytemuck::cast_slice(&view).to_vec();
        drop(view);
        staging.unmap();
        Ok(out)
    }
}
