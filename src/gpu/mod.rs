//! The GPU layer: adapter and device (own or borrowed), limits and features, buffers and their
//! pool, the pipeline cache keyed by (shader, entry point, override constants), readback and
//! timestamps. It knows no model.

mod class;
mod pool;
pub mod reflect;
// Unstable internals (the embedded WGSL sources and kernel names): public for the crate's tests
// only.
#[doc(hidden)]
pub mod shaders;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::error::{Error, Result};
pub use class::{AdapterClass, KernelClass};
#[doc(hidden)]
pub use pool::BufferPool;

/// Distinct read-write placeholders ([`Gpu::placeholder_rw_n`]): the most absent writable
/// operands of one dispatch (`sort_fused` without gradient pieces or subgroup pieces has 3).
pub const RW_PLACEHOLDERS: usize = 4;

/// How long a blocking wait on the GPU may take before it is reported as a hang.
pub const GPU_WAIT_TIMEOUT: Duration = Duration::from_secs(600);

/// Key of a cached pipeline: shader, entry point, storage types and override constants (as f64
/// bits).
type PipelineKey = (shaders::Kernel, shaders::ShaderTypes, Vec<(String, u64)>);

struct Inner {
    device: wgpu::Device,
    queue: wgpu::Queue,
    info: wgpu::AdapterInfo,
    limits: wgpu::Limits,
    class: AdapterClass,
    modules: Mutex<HashMap<(shaders::Shader, shaders::ShaderTypes), wgpu::ShaderModule>>,
    pipelines: Mutex<HashMap<PipelineKey, wgpu::ComputePipeline>>,
    pool: Mutex<BufferPool>,
    errors: Arc<Mutex<Vec<String>>>,
    /// Small zeroed buffers bound where a kernel's optional operand is absent: one for
    /// read-only bindings, and [`RW_PLACEHOLDERS`] distinct ones for read-write bindings (a
    /// writable binding may not alias any other binding of its dispatch).
    placeholder: wgpu::Buffer,
    placeholders_rw: Vec<wgpu::Buffer>,
    /// The subgroup size the kernels may rely on, probed on first use.
    subgroups: std::sync::OnceLock<Option<u32>>,
}

/// A wgpu device and queue with ttrec's caches. Cheap to clone (shared).
///
/// [`Gpu::new`] opens ttrec's own device (a GPU first, else a CPU Vulkan such as lavapipe;
/// `TTREC_ADAPTER` and `WGPU_BACKEND` choose); an application that owns a wgpu device hands it
/// over with [`Gpu::from_device`] (see `examples/embed_in_app.rs`).
///
/// ```
/// let gpu = ttrec::gpu::Gpu::new()?;
/// println!("computing on {gpu:?}");
/// # Ok::<(), ttrec::Error>(())
/// ```
#[derive(Clone)]
pub struct Gpu {
    inner: Arc<Inner>,
}

/// The limits a device is created with (`--limits`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum DeviceLimits {
    /// The adapter's own limits: the most it allows.
    #[default]
    Adapter,
    /// WebGPU's default limits ([`wgpu::Limits::default`]: 128 MiB storage bindings, 256 MiB
    /// buffers, 8 storage buffers per stage, 16 KiB of workgroup memory, ...), which every
    /// WebGPU implementation grants without asking: a run that passes under them fits a browser.
    Webgpu,
}

/// Options for choosing an adapter.
#[derive(Clone, Debug, Default)]
pub struct AdapterOptions {
    /// Case-insensitive substring of the adapter name to use (default: `TTREC_ADAPTER`).
    pub name: Option<String>,
    /// The limits to create the device with.
    pub limits: DeviceLimits,
}

impl AdapterOptions {
    /// Options from the environment: `TTREC_ADAPTER` picks an adapter by name; `WGPU_BACKEND`
    /// (vulkan, metal, dx12, gl) limits the backends searched.
    pub fn from_env() -> Self {
        AdapterOptions {
            name: std::env::var("TTREC_ADAPTER")
                .ok()
                .filter(|s| !s.is_empty()),
            limits: DeviceLimits::Adapter,
        }
    }

    /// Options from the environment, with the device created under `limits`.
    pub fn with_limits(limits: DeviceLimits) -> Self {
        AdapterOptions {
            limits,
            ..Self::from_env()
        }
    }
}

fn adapter_rank(info: &wgpu::AdapterInfo) -> u32 {
    let ty = match info.device_type {
        wgpu::DeviceType::DiscreteGpu => 40,
        wgpu::DeviceType::IntegratedGpu => 30,
        wgpu::DeviceType::VirtualGpu => 20,
        wgpu::DeviceType::Cpu => 10,
        wgpu::DeviceType::Other => 0,
    };
    // GL compute is a last resort: Mesa's GL llvmpipe is slower than lavapipe and lacks features.
    let backend = if info.backend == wgpu::Backend::Gl {
        0
    } else {
        5
    };
    ty + backend
}

/// The adapters of `backends`.
fn enumerate_adapters(backends: wgpu::Backends) -> Vec<wgpu::Adapter> {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
    desc.backends = backends;
    let instance = wgpu::Instance::new(desc);
    pollster::block_on(instance.enumerate_adapters(backends))
}

const NO_ADAPTER_HELP: &str = "install a Vulkan, Metal or DX12 driver; on Linux without a GPU, \
Mesa's CPU Vulkan driver lavapipe works: `apt-get install mesa-vulkan-drivers libvulkan1`";

impl Gpu {
    /// Picks an adapter (a real GPU before a CPU adapter, or the one named by `TTREC_ADAPTER`),
    /// honouring `WGPU_BACKEND`, and creates a device with the adapter's own limits.
    pub fn new() -> Result<Self> {
        Self::with_options(&AdapterOptions::from_env())
    }

    /// Every adapter ttrec may pick from (those of `WGPU_BACKEND`'s backends when it is set),
    /// the one [`Gpu::new`] picks without `TTREC_ADAPTER` first. An error when there is none,
    /// saying whether `WGPU_BACKEND` excluded adapters that exist.
    pub fn adapters() -> Result<Vec<wgpu::Adapter>> {
        // Without WGPU_BACKEND, GL is searched only when no Vulkan/Metal/DX12 adapter exists:
        // its compute is the slowest path, and probing it prints EGL noise on headless machines.
        let from_env = wgpu::Backends::from_env();
        let mut adapters = enumerate_adapters(from_env.unwrap_or(wgpu::Backends::PRIMARY));
        if adapters.is_empty() && from_env.is_none() {
            adapters = enumerate_adapters(wgpu::Backends::all());
        }
        if adapters.is_empty() {
            let env = std::env::var("WGPU_BACKEND").unwrap_or_default();
            let elsewhere: Vec<String> = match from_env {
                Some(_) => enumerate_adapters(wgpu::Backends::all())
                    .iter()
                    .map(|a| format!("{} ({:?})", a.get_info().name, a.get_info().backend))
                    .collect(),
                None => vec![],
            };
            return Err(Error::NoAdapter(if elsewhere.is_empty() {
                format!("wgpu found no adapter; {NO_ADAPTER_HELP}")
            } else {
                format!(
                    "WGPU_BACKEND={env} excludes every adapter on this machine; available on other backends: {}. Unset WGPU_BACKEND or name one of their backends",
                    elsewhere.join(", ")
                )
            }));
        }
        // Best first; among equals the last enumerated first (the one ttrec always picked).
        adapters.reverse();
        adapters.sort_by_key(|a| std::cmp::Reverse(adapter_rank(&a.get_info())));
        Ok(adapters)
    }

    /// Like [`Gpu::new`] with explicit options.
    pub fn with_options(opts: &AdapterOptions) -> Result<Self> {
        let adapters = Self::adapters()?;
        let names: Vec<String> = adapters
            .iter()
            .map(|a| format!("{} ({:?})", a.get_info().name, a.get_info().backend))
            .collect();
        let chosen = match &opts.name {
            Some(want) => {
                let want_l = want.to_lowercase();
                adapters
                    .into_iter()
                    .find(|a| a.get_info().name.to_lowercase().contains(&want_l))
                    .ok_or_else(|| {
                        Error::NoAdapter(format!(
                            "no adapter name contains {want:?} (--adapter or TTREC_ADAPTER); available: {}",
                            names.join(", ")
                        ))
                    })?
            }
            None => adapters.into_iter().next().expect("non-empty"),
        };
        Self::from_adapter_with(&chosen, opts.limits)
    }

    /// Creates the device on `adapter`, asking for its full limits and the features that help.
    pub fn from_adapter(adapter: &wgpu::Adapter) -> Result<Self> {
        Self::from_adapter_with(adapter, DeviceLimits::Adapter)
    }

    /// Creates the device on `adapter` with `limits` (the adapter's, or WebGPU's defaults).
    pub fn from_adapter_with(adapter: &wgpu::Adapter, limits: DeviceLimits) -> Result<Self> {
        let info = adapter.get_info();
        let limits = match limits {
            DeviceLimits::Adapter => adapter.limits(),
            DeviceLimits::Webgpu => wgpu::Limits::default(),
        };
        // Subgroup operations let the lanes of a subgroup share loaded operands (see
        // shaders/tt_subgroup.wgsl); timestamps give per-node times; f16 in shaders lets TT
        // cores be stored in half precision (`--tt-precision f16`).
        let wanted = wgpu::Features::TIMESTAMP_QUERY
            | wgpu::Features::TIMESTAMP_QUERY_INSIDE_ENCODERS
            | wgpu::Features::SUBGROUP
            | wgpu::Features::SHADER_F16;
        let features = adapter.features() & wanted;
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("ttrec"),
            required_features: features,
            required_limits: limits.clone(),
            experimental_features: wgpu::ExperimentalFeatures::disabled(),
            memory_hints: wgpu::MemoryHints::Performance,
            trace: wgpu::Trace::Off,
        }))
        .map_err(|e| Error::Gpu(format!("creating a device on {}: {e}", info.name)))?;
        Ok(Self::from_parts(device, queue, info))
    }

    /// Uses a device and queue the application already owns (an app that renders with wgpu
    /// keeps one device). `info` names the adapter in reports; limits are read off the device.
    ///
    /// What ttrec needs of that device:
    /// - **Features: none.** It uses these when the device was created with them, and other
    ///   kernels otherwise: `SUBGROUP` (the subgroup TT kernels, when every subgroup has one
    ///   size), `TIMESTAMP_QUERY` and `TIMESTAMP_QUERY_INSIDE_ENCODERS` (per-node GPU times:
    ///   `profile_step`, `bench --profile`). Ask for them in `required_features` to get them.
    /// - **Limits: WebGPU's defaults** (`wgpu::Limits::default()`) suffice: every plan builds
    ///   and runs under them (tests/webgpu_limits.rs). Of the adapter's larger limits, those that
    ///   matter are `max_storage_buffer_binding_size` and `max_buffer_size` (the largest table,
    ///   core or batch buffer must fit one binding), then `max_compute_workgroups_per_dimension`
    ///   (large batches); `ttrec train` checks a run against them before any work. Request
    ///   `adapter.limits()` to train at full scale.
    /// - ttrec submits to `queue` itself (and, through the `*_into`/`*_from` calls and
    ///   [`crate::dlrm::Dlrm::score_into`], records into the app's encoders), and installs the
    ///   device's uncaptured-error handler, so that a validation error surfaces as a ttrec
    ///   [`Error::Gpu`] (an app with its own handler loses it).
    pub fn from_device(device: wgpu::Device, queue: wgpu::Queue, info: wgpu::AdapterInfo) -> Self {
        Self::from_parts(device, queue, info)
    }

    fn from_parts(device: wgpu::Device, queue: wgpu::Queue, info: wgpu::AdapterInfo) -> Self {
        let errors = Arc::new(Mutex::new(Vec::new()));
        let sink = errors.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            sink.lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(e.to_string());
        }));
        let limits = device.limits();
        let class = if info.device_type == wgpu::DeviceType::Cpu {
            AdapterClass::Cpu
        } else {
            AdapterClass::Gpu
        };
        let make_placeholder = |label| {
            device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size: 256,
                usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            })
        };
        let placeholder = make_placeholder("ttrec placeholder");
        let placeholders_rw = (0..RW_PLACEHOLDERS)
            .map(|_| make_placeholder("ttrec placeholder (read-write)"))
            .collect();
        Gpu {
            inner: Arc::new(Inner {
                placeholder,
                placeholders_rw,
                subgroups: std::sync::OnceLock::new(),
                device,
                queue,
                info,
                limits,
                class,
                modules: Mutex::new(HashMap::new()),
                pipelines: Mutex::new(HashMap::new()),
                pool: Mutex::new(BufferPool::default()),
                errors,
            }),
        }
    }

    pub fn device(&self) -> &wgpu::Device {
        &self.inner.device
    }
    pub fn queue(&self) -> &wgpu::Queue {
        &self.inner.queue
    }
    pub fn info(&self) -> &wgpu::AdapterInfo {
        &self.inner.info
    }
    pub fn limits(&self) -> &wgpu::Limits {
        &self.inner.limits
    }
    pub fn class(&self) -> AdapterClass {
        self.inner.class
    }
    /// Whether GPU timestamps can be written between passes.
    pub fn has_timestamps(&self) -> bool {
        self.device()
            .features()
            .contains(wgpu::Features::TIMESTAMP_QUERY)
    }
    /// Whether shaders may use f16 (`wgpu::Features::SHADER_F16`): TT cores stored as f16 need it.
    pub fn has_f16(&self) -> bool {
        self.device()
            .features()
            .contains(wgpu::Features::SHADER_F16)
    }

    /// Checks that this device can store TT cores at `precision`: f16 needs `SHADER_F16`, and an
    /// adapter without it is an error naming the adapter, the feature and `flag` (never a
    /// silent fallback to f32).
    pub fn check_precision(&self, precision: shaders::CorePrecision, flag: &str) -> Result<()> {
        if precision == shaders::CorePrecision::F16 && !self.has_f16() {
            return Err(Error::Gpu(format!(
                "{flag} f16 needs the SHADER_F16 feature (f16 in shaders), which adapter {} lacks; use {flag} f32 or another adapter (--adapter, WGPU_BACKEND)",
                self.adapter_name()
            )));
        }
        Ok(())
    }

    /// The subgroup size when the device has subgroup operations and every subgroup has the same
    /// size (lavapipe: the SIMD width, 8 with AVX2; NVIDIA: 32), which the subgroup kernels need
    /// for their fixed lane layout (tables turn them off with [`crate::tt::TtKernels`]). The
    /// size is checked once by running one workgroup of that many invocations: a driver whose
    /// subgroups are smaller than it reports (lavapipe forced to 1024-bit vectors reports 32
    /// lanes and runs 16) gets None, with a warning, and the portable kernels.
    pub fn subgroup_size(&self) -> Option<u32> {
        *self.inner.subgroups.get_or_init(|| {
            let lanes = self.reported_subgroup_size()?;
            match self.subgroups_work(lanes) {
                Ok(true) => Some(lanes),
                Ok(false) => {
                    log::warn!(
                        "{} reports subgroups of {lanes} lanes but does not run them as one: the subgroup kernels are off",
                        self.adapter_name()
                    );
                    None
                }
                Err(e) => {
                    log::warn!("probing subgroups of {lanes} lanes failed ({e}): the subgroup kernels are off");
                    None
                }
            }
        })
    }

    /// The subgroup size the adapter reports (fixed, a power of two in 4..=64), unchecked.
    fn reported_subgroup_size(&self) -> Option<u32> {
        let info = self.info();
        let fixed = info.subgroup_min_size == info.subgroup_max_size;
        let usable =
            (4..=64).contains(&info.subgroup_min_size) && info.subgroup_min_size.is_power_of_two();
        (self.device().features().contains(wgpu::Features::SUBGROUP) && fixed && usable)
            .then_some(info.subgroup_min_size)
    }

    /// Whether a workgroup of `lanes` invocations runs as one subgroup: each invocation's
    /// subgroup id is its local index, and a shuffle reads the lane it names.
    fn subgroups_work(&self, lanes: u32) -> Result<bool> {
        let source = format!(
            "@group(0) @binding(0) var<storage, read_write> out: array<u32>;
@compute @workgroup_size({lanes})
fn probe(@builtin(local_invocation_index) i: u32, @builtin(subgroup_invocation_id) lane: u32) {{
    out[2u * i] = lane;
    out[2u * i + 1u] = subgroupShuffle(i, {last}u - lane);
}}",
            last = lanes - 1
        );
        let device = self.device();
        let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some("ttrec subgroup probe"),
            source: wgpu::ShaderSource::Wgsl(source.into()),
        });
        let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some("ttrec subgroup probe"),
            layout: None,
            module: &module,
            entry_point: Some("probe"),
            compilation_options: Default::default(),
            cache: None,
        });
        let out = self.storage("ttrec subgroup probe", lanes as u64 * 8);
        let bind = device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("ttrec subgroup probe"),
            layout: &pipeline.get_bind_group_layout(0),
            entries: &[wgpu::BindGroupEntry {
                binding: 0,
                resource: out.as_entire_binding(),
            }],
        });
        let mut enc = device.create_command_encoder(&Default::default());
        {
            let mut pass = enc.begin_compute_pass(&Default::default());
            pass.set_pipeline(&pipeline);
            pass.set_bind_group(0, &bind, &[]);
            pass.dispatch_workgroups(1, 1, 1);
        }
        self.queue().submit([enc.finish()]);
        let got = self.read_u32(&out, 0, 2 * lanes as usize)?;
        Ok((0..lanes).all(|i| {
            let i_ = i as usize;
            got[2 * i_] == i && got[2 * i_ + 1] == lanes - 1 - i
        }))
    }
    /// "name (backend, device type)": how reports name the adapter.
    pub fn adapter_name(&self) -> String {
        let i = &self.inner.info;
        format!("{} ({:?}, {:?})", i.name, i.backend, i.device_type)
    }

    /// Returns the first GPU error raised since the last check, if any.
    pub fn take_error(&self) -> Result<()> {
        let mut errs = self.inner.errors.lock().unwrap_or_else(|p| p.into_inner());
        if errs.is_empty() {
            Ok(())
        } else {
            let msg = errs.join("; ");
            errs.clear();
            Err(Error::Gpu(msg))
        }
    }

    /// A compute pipeline for `kernel` specialised by override `constants`, built once and then
    /// served from the cache.
    pub fn pipeline(
        &self,
        kernel: shaders::Kernel,
        constants: &[(&str, f64)],
    ) -> Result<wgpu::ComputePipeline> {
        self.pipeline_typed(kernel, shaders::ShaderTypes::F32, constants)
    }

    /// [`Gpu::pipeline`] for a module specialised for `types` (the storage of TT cores).
    pub fn pipeline_typed(
        &self,
        kernel: shaders::Kernel,
        types: shaders::ShaderTypes,
        constants: &[(&str, f64)],
    ) -> Result<wgpu::ComputePipeline> {
        let key: PipelineKey = (
            kernel,
            types,
            constants
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_bits()))
                .collect(),
        );
        if let Some(p) = self
            .inner
            .pipelines
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
        {
            return Ok(p.clone());
        }
        let shader = kernel.shader();
        let entry = kernel.entry();
        // ttrec's own error, naming the limit, before wgpu's validation.
        reflect::check_limits(kernel, self.limits())?;
        let module = {
            let mut modules = self.inner.modules.lock().unwrap_or_else(|p| p.into_inner());
            match modules.get(&(shader, types)) {
                Some(m) => m.clone(),
                None => {
                    // The browser compiles the WGSL itself (Tint) and needs the `enable`
                    // directive of subgroup shaders; naga, on every native backend, rejects it.
                    let source = if self.info().backend == wgpu::Backend::BrowserWebGpu {
                        shader.webgpu_source_typed(types)
                    } else {
                        shader.source_typed(types)
                    };
                    let m = self
                        .device()
                        .create_shader_module(wgpu::ShaderModuleDescriptor {
                            label: Some(shader.name()),
                            source: wgpu::ShaderSource::Wgsl(source.into()),
                        });
                    modules.insert((shader, types), m.clone());
                    m
                }
            }
        };
        let label = format!("{}::{entry}", shader.name());
        let pipeline = self
            .device()
            .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(&label),
                layout: None,
                module: &module,
                entry_point: Some(entry),
                compilation_options: wgpu::PipelineCompilationOptions {
                    constants,
                    zero_initialize_workgroup_memory: false,
                },
                cache: None,
            });
        self.take_error()
            .map_err(|e| Error::Gpu(format!("building pipeline {label}: {e}")))?;
        self.inner
            .pipelines
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, pipeline.clone());
        Ok(pipeline)
    }

    /// Every pipeline built so far, as (kernel, override constants in the order the launcher
    /// gave them), sorted by kernel order then constants: what `ttrec kernels --export` writes.
    pub fn pipelines(&self) -> Vec<(shaders::Kernel, Vec<(String, f64)>)> {
        let mut out: Vec<(shaders::Kernel, Vec<(String, f64)>)> = self
            .inner
            .pipelines
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            // The export writes the f32 sources: f16 specialisations are not exported.
            .filter(|(_, t, _)| *t == shaders::ShaderTypes::F32)
            .map(|(k, _, c)| {
                let c = c.iter().map(|(n, v)| (n.clone(), f64::from_bits(*v)));
                (*k, c.collect())
            })
            .collect();
        let order = |k: &shaders::Kernel| shaders::Kernel::ALL.iter().position(|x| x == k);
        out.sort_by(|a, b| {
            order(&a.0)
                .cmp(&order(&b.0))
                .then_with(|| a.1.partial_cmp(&b.1).unwrap_or(std::cmp::Ordering::Equal))
        });
        out
    }

    /// Number of pipelines built so far (tests check that replays build none).
    pub fn pipelines_built(&self) -> usize {
        self.inner
            .pipelines
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }

    /// A storage buffer of at least `bytes` bytes (rounded up to 16), usable as copy source and
    /// destination.
    pub fn storage(&self, label: &str, bytes: u64) -> wgpu::Buffer {
        self.device().create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: bytes.max(16).div_ceil(16) * 16,
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_DST
                | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        })
    }

    /// A uniform buffer of `bytes` bytes.
    pub fn uniform(&self, label: &str, bytes: u64) -> wgpu::Buffer {
        self.device().create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: bytes.max(16).div_ceil(16) * 16,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        })
    }

    /// A storage buffer holding `data`.
    pub fn storage_from<T: bytemuck::Pod>(&self, label: &str, data: &[T]) -> wgpu::Buffer {
        let bytes: &[u8] = bytemuck::cast_slice(data);
        let buf = self.storage(label, bytes.len() as u64);
        if !bytes.is_empty() {
            self.queue().write_buffer(&buf, 0, bytes);
        }
        buf
    }

    /// Takes a pooled storage buffer of at least `bytes` bytes.
    /// Sizes are rounded up to a power of two, except where that would pass the device's
    /// buffer limit (then to 256 bytes).
    pub fn acquire(&self, bytes: u64) -> wgpu::Buffer {
        let mut size = pool::size_class(bytes);
        if size > self.limits().max_buffer_size {
            size = bytes.div_ceil(256) * 256;
        }
        let found = self
            .inner
            .pool
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take(size);
        found.unwrap_or_else(|| self.storage("ttrec pooled", size))
    }

    /// Returns a buffer taken with [`Gpu::acquire`] to the pool.
    pub fn release(&self, buffer: wgpu::Buffer) {
        self.inner
            .pool
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .put(buffer);
    }

    /// Waits for all submitted work, with [`GPU_WAIT_TIMEOUT`] as the limit.
    pub fn wait(&self) -> Result<()> {
        self.device()
            .poll(wgpu::PollType::Wait {
                submission_index: None,
                timeout: Some(GPU_WAIT_TIMEOUT),
            })
            .map_err(|e| Error::Gpu(format!("waiting for the GPU: {e}")))?;
        self.take_error()
    }

    /// Copies `bytes` bytes of `buffer` from `offset` back to the host.
    pub fn read_bytes(&self, buffer: &wgpu::Buffer, offset: u64, bytes: u64) -> Result<Vec<u8>> {
        if bytes == 0 {
            return Ok(Vec::new());
        }
        let padded = bytes.div_ceil(4) * 4;
        let staging = self.device().create_buffer(&wgpu::BufferDescriptor {
            label: Some("ttrec readback"),
            size: padded,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut enc = self.device().create_command_encoder(&Default::default());
        enc.copy_buffer_to_buffer(buffer, offset, &staging, 0, padded);
        self.queue().submit([enc.finish()]);
        let (tx, rx) = std::sync::mpsc::channel();
        staging.map_async(wgpu::MapMode::Read, .., move |r| {
            let _ = tx.send(r);
        });
        self.wait()?;
        rx.recv_timeout(Duration::from_secs(5))
            .map_err(|_| Error::Gpu("readback was never mapped".into()))?
            .map_err(|e| Error::Gpu(format!("mapping the readback buffer: {e}")))?;
        let view = staging
            .get_mapped_range(..)
            .map_err(|e| Error::Gpu(format!("readback: {e}")))?;
        let out = view[..bytes as usize].to_vec();
        drop(view);
        staging.unmap();
        Ok(out)
    }

    /// Reads `len` f32 values of `buffer` from element `start`.
    pub fn read_f32(&self, buffer: &wgpu::Buffer, start: usize, len: usize) -> Result<Vec<f32>> {
        let bytes = self.read_bytes(buffer, start as u64 * 4, len as u64 * 4)?;
        Ok(bytemuck::pod_collect_to_vec(&bytes))
    }

    /// Reads `len` u32 values of `buffer` from element `start`.
    pub fn read_u32(&self, buffer: &wgpu::Buffer, start: usize, len: usize) -> Result<Vec<u32>> {
        let bytes = self.read_bytes(buffer, start as u64 * 4, len as u64 * 4)?;
        Ok(bytemuck::pod_collect_to_vec(&bytes))
    }

    /// Writes `data` into `buffer` at the start of the next submit.
    pub fn write<T: bytemuck::Pod>(&self, buffer: &wgpu::Buffer, data: &[T]) {
        if !data.is_empty() {
            self.queue()
                .write_buffer(buffer, 0, bytemuck::cast_slice(data));
        }
    }

    /// A small zeroed storage buffer to bind where a kernel's optional operand is absent (the
    /// kernel's override constants keep it from being read).
    pub fn placeholder(&self) -> &wgpu::Buffer {
        &self.inner.placeholder
    }

    /// The placeholder for a read-write binding (never bound read-only in the same dispatch
    /// as [`Gpu::placeholder`]); the first of [`Gpu::placeholder_rw_n`].
    pub fn placeholder_rw(&self) -> &wgpu::Buffer {
        self.placeholder_rw_n(0)
    }

    /// Read-write placeholder `i` (below [`RW_PLACEHOLDERS`]): a dispatch with several absent
    /// writable operands binds a distinct one to each, since a writable binding may not alias
    /// another binding of the dispatch.
    pub fn placeholder_rw_n(&self, i: usize) -> &wgpu::Buffer {
        &self.inner.placeholders_rw[i]
    }

    /// Largest storage binding in bytes.
    pub fn max_binding(&self) -> u64 {
        self.limits()
            .max_storage_buffer_binding_size
            .min(self.limits().max_buffer_size)
    }
}

impl std::fmt::Debug for Gpu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Gpu({})", self.adapter_name())
    }
}

/// For programs (not the library) to call first thing in `main`: gives Mesa's drivers a private
/// runtime directory when `XDG_RUNTIME_DIR` is unset, so they do not print "error:
/// XDG_RUNTIME_DIR is invalid or not set" (which reads as ttrec's own error) on every device.
/// Does nothing when the variable is set or on non-Unix systems.
pub fn ensure_runtime_dir() {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if std::env::var_os("XDG_RUNTIME_DIR").is_some() {
            return;
        }
        let user = std::env::var("USER").unwrap_or_else(|_| "user".into());
        let dir = std::env::temp_dir().join(format!("ttrec-runtime-{user}"));
        let ok = std::fs::create_dir_all(&dir).is_ok()
            && std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).is_ok();
        if ok {
            // Called before any thread starts (see the doc), so changing the environment is sound.
            std::env::set_var("XDG_RUNTIME_DIR", dir);
        }
    }
}

/// Workgroup counts for `invocations` threads in groups of `wg`, folded into y when x would exceed
/// the per-dimension limit; kernels rebuild the linear id from `num_workgroups`.
pub fn grid(invocations: u64, wg: u32, max_dim: u32) -> [u32; 3] {
    let groups = invocations.div_ceil(wg as u64).max(1);
    if groups <= max_dim as u64 {
        [groups as u32, 1, 1]
    } else {
        let y = groups.div_ceil(max_dim as u64);
        let x = groups.div_ceil(y);
        [x as u32, y as u32, 1]
    }
}

#[cfg(test)]
mod tests {
    use super::adapter_rank;
    use wgpu::{AdapterInfo, Backend, DeviceType};

    /// The order `Gpu::new` picks adapters in: discrete before integrated before virtual GPUs
    /// before CPU adapters (lavapipe), and within a kind GL after the native backends.
    #[test]
    fn adapters_rank_gpus_first_and_gl_last_within_a_kind() {
        let rank = |t, b| adapter_rank(&AdapterInfo::new(t, b));
        let order = [
            rank(DeviceType::DiscreteGpu, Backend::Vulkan),
            rank(DeviceType::DiscreteGpu, Backend::Gl),
            rank(DeviceType::IntegratedGpu, Backend::Metal),
            rank(DeviceType::IntegratedGpu, Backend::Gl),
            rank(DeviceType::VirtualGpu, Backend::Dx12),
            rank(DeviceType::Cpu, Backend::Vulkan),
            rank(DeviceType::Cpu, Backend::Gl),
            rank(DeviceType::Other, Backend::Vulkan),
        ];
        assert!(order.windows(2).all(|w| w[0] > w[1]), "{order:?}");
    }
}
