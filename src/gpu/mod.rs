//! The GPU runtime: one context (instance, adapter, device, queue) and the decode kernels, built
//! once; compressed tensors uploaded once and decoded in WGSL into caller-owned buffers.

#[cfg(feature = "cli")]
pub mod bench;
pub mod bert;
mod decode;
mod linear;
pub mod shaders;

pub use decode::{GpuGroup, Slice, Timing, padded};
pub use linear::{Linear, WeightType, piece_steps};

use crate::error::{Error, Result};
use wgpu::util::DeviceExt;

/// How to choose and open the GPU.
#[derive(Clone, Debug, Default)]
pub struct GpuOptions {
    /// `vulkan`, `metal`, `dx12`, `gl` or `all`; `None`: Vulkan, Metal or DX12, or `VRAMZIP_BACKEND`.
    pub backend: Option<String>,
    /// Ask for a smaller `max_storage_buffer_binding_size` than the adapter offers (for tests of
    /// the large-tensor path).
    pub max_binding_bytes: Option<u64>,
}

/// Parses a backend name.
pub fn parse_backends(name: Option<&str>) -> Result<wgpu::Backends> {
    let env = std::env::var("VRAMZIP_BACKEND").ok();
    Ok(
        match name
            .or(env.as_deref())
            .map(|s| s.to_ascii_lowercase())
            .as_deref()
        {
            None | Some("") => wgpu::Backends::PRIMARY,
            Some("all") => wgpu::Backends::all(),
            Some("vulkan") => wgpu::Backends::VULKAN,
            Some("metal") => wgpu::Backends::METAL,
            Some("dx12") => wgpu::Backends::DX12,
            Some("gl") => wgpu::Backends::GL,
            Some(other) => {
                return Err(Error::InvalidArgument(format!(
                    "backend '{other}': use vulkan, metal, dx12, gl or all"
                )));
            }
        },
    )
}

fn instance(backends: wgpu::Backends) -> wgpu::Instance {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
    desc.backends = backends;
    wgpu::Instance::new(desc)
}

/// One line per adapter wgpu sees: name, backend, type, driver and key limits.
pub fn list_adapters(backend: Option<&str>) -> Result<Vec<String>> {
    let inst = instance(parse_backends(backend)?);
    let adapters = pollster::block_on(inst.enumerate_adapters(parse_backends(backend)?));
    Ok(adapters
        .iter()
        .map(|a| {
            let (i, l) = (a.get_info(), a.limits());
            format!(
                "{} ({:?}, {:?}), driver {} {}; max storage binding {} MiB, max buffer {} MiB, workgroup memory {} KiB, timestamps {}",
                i.name, i.backend, i.device_type, i.driver, i.driver_info,
                l.max_storage_buffer_binding_size >> 20, l.max_buffer_size >> 20,
                l.max_compute_workgroup_storage_size >> 10,
                a.features().contains(wgpu::Features::TIMESTAMP_QUERY)
            )
        })
        .collect())
}

/// One shader with its explicit bind group layout, and its pipelines, one per set of override
/// constants, each built the first time it is used (most programs use a few of them).
#[derive(Debug)]
struct Kernel {
    name: &'static str,
    /// The entry point, where the module has several.
    entry: Option<&'static str>,
    module: wgpu::ShaderModule,
    bind_layout: wgpu::BindGroupLayout,
    layout: wgpu::PipelineLayout,
    variants: Vec<Vec<(&'static str, f64)>>,
    pipelines: Vec<std::sync::OnceLock<wgpu::ComputePipeline>>,
}

impl Kernel {
    fn new(
        device: &wgpu::Device,
        name: &'static str,
        source: &str,
        entries: &[wgpu::BindGroupLayoutEntry],
        variants: Vec<Vec<(&'static str, f64)>>,
    ) -> Self {
        let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some(name),
            source: wgpu::ShaderSource::Wgsl(source.into()),
        });
        let bind_layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some(name),
            entries,
        });
        let layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some(name),
            bind_group_layouts: &[Some(&bind_layout)],
            immediate_size: 0,
        });
        let pipelines = variants
            .iter()
            .map(|_| std::sync::OnceLock::new())
            .collect();
        Kernel {
            name,
            entry: None,
            module,
            bind_layout,
            layout,
            variants,
            pipelines,
        }
    }

    /// One kernel per entry point of `source`, all on one bind group layout and one module.
    fn entries(
        device: &wgpu::Device,
        source: &str,
        layout: &[wgpu::BindGroupLayoutEntry],
        names: &[&'static str],
    ) -> Vec<Self> {
        let first = Kernel::new(device, names[0], source, layout, vec![vec![]]);
        names
            .iter()
            .map(|&name| Kernel {
                name,
                entry: Some(name),
                module: first.module.clone(),
                bind_layout: first.bind_layout.clone(),
                layout: first.layout.clone(),
                variants: vec![vec![]],
                pipelines: vec![std::sync::OnceLock::new()],
            })
            .collect()
    }

    /// The pipeline of variant `i`.
    fn pipeline(&self, device: &wgpu::Device, i: usize) -> &wgpu::ComputePipeline {
        self.pipelines[i].get_or_init(|| {
            device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(self.name),
                layout: Some(&self.layout),
                module: &self.module,
                entry_point: self.entry,
                compilation_options: wgpu::PipelineCompilationOptions {
                    constants: &self.variants[i],
                    ..Default::default()
                },
                cache: None,
            })
        })
    }
}

/// The batch sizes matrix-product pipelines are built for; a batch runs on the smallest that
/// holds it.
const BATCH_VARIANTS: [u32; 5] = [1, 2, 4, 8, 16];

/// The largest batch one matrix-product dispatch takes (`MAX_BATCH` in matmul_core.wgsl).
pub const MAX_BATCH: u32 = 16;

/// Which `BATCH_VARIANTS` entry computes `batch` (1..=16) columns.
fn batch_variant(batch: u32) -> usize {
    BATCH_VARIANTS
        .iter()
        .position(|&b| b >= batch)
        .unwrap_or(BATCH_VARIANTS.len() - 1)
}

/// The kernels, built once. Decode comes without escape support (per-tensor codebooks) and with
/// it (shared codebooks), as the fused product does, times its batch sizes.
#[derive(Debug)]
pub struct Kernels {
    decode: Kernel,
    decode_select: Kernel,
    copy: Kernel,
    gemv: Kernel,
    fused: Kernel,
    sum_pieces: Kernel,
}

/// The features that timing within an encoder needs.
const TIMESTAMPS: wgpu::Features =
    wgpu::Features::TIMESTAMP_QUERY.union(wgpu::Features::TIMESTAMP_QUERY_INSIDE_ENCODERS);

/// Instance, adapter, device, queue and kernels: build once, share everywhere.
#[derive(Debug)]
pub struct GpuContext {
    /// The adapter's description.
    pub info: wgpu::AdapterInfo,
    /// The device.
    pub device: wgpu::Device,
    /// Its queue.
    pub queue: wgpu::Queue,
    /// The limits the device was opened with.
    pub limits: wgpu::Limits,
    /// Whether timestamps can be written between commands of an encoder.
    pub timestamps: bool,
    kernels: Kernels,
    /// The first GPU error no error scope caught (wgpu's default would panic), or a lost device.
    fault: std::sync::Arc<std::sync::Mutex<Option<String>>>,
}

impl GpuContext {
    /// Opens the best adapter (high performance first) and builds the kernels.
    pub fn new(opts: &GpuOptions) -> Result<Self> {
        let backends = parse_backends(opts.backend.as_deref())?;
        let inst = instance(backends);
        let adapter = pollster::block_on(inst.request_adapter(&wgpu::RequestAdapterOptions {
            power_preference: wgpu::PowerPreference::HighPerformance,
            force_fallback_adapter: false,
            compatible_surface: None,
            apply_limit_buckets: false,
        }))
        .map_err(|e| {
            Error::NoAdapter(format!(
                "{e} (backends {backends:?}; on Linux without a GPU install Mesa's software Vulkan driver: apt-get install mesa-vulkan-drivers)"
            ))
        })?;
        let info = adapter.get_info();
        let mut limits = adapter.limits();
        if let Some(max) = opts.max_binding_bytes {
            limits.max_storage_buffer_binding_size =
                limits.max_storage_buffer_binding_size.min(max);
        }
        let features = adapter.features() & TIMESTAMPS;
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("vramzip"),
            required_features: features,
            required_limits: limits,
            ..Default::default()
        }))
        .map_err(|e| Error::Gpu(format!("opening {}: {e}", info.name)))?;
        // wgpu's default handler panics on an error no scope caught; record it instead, so the next
        // wait() returns it as an Err.
        let fault = std::sync::Arc::new(std::sync::Mutex::new(None::<String>));
        let f = fault.clone();
        device.on_uncaptured_error(std::sync::Arc::new(move |e: wgpu::Error| {
            log::error!("GPU error: {e}");
            if let Ok(mut slot) = f.lock() {
                slot.get_or_insert_with(|| e.to_string());
            }
        }));
        let f = fault.clone();
        device.set_device_lost_callback(move |reason, message| {
            if let Ok(mut slot) = f.lock() {
                slot.get_or_insert_with(|| format!("device lost ({reason:?}): {message}"));
            }
        });
        Self::with_device(info, device, queue, fault)
    }

    /// Builds the kernels on a device the caller already has (an engine's own `wgpu::Device`
    /// and `Queue`), so that decoded weights land in the caller's buffers with no copy through
    /// the CPU. The device must have been opened with at least 7 storage buffers per shader
    /// stage; timestamps are used if it has `TIMESTAMP_QUERY` and
    /// `TIMESTAMP_QUERY_INSIDE_ENCODERS`. The device's error and device-lost handlers stay the
    /// caller's: vramzip sets none, so errors outside vramzip's own error scopes reach the
    /// caller's handler rather than [`GpuContext::wait`].
    pub fn from_device(device: wgpu::Device, queue: wgpu::Queue) -> Result<Self> {
        let info = device.adapter_info();
        let fault = std::sync::Arc::new(std::sync::Mutex::new(None::<String>));
        Self::with_device(info, device, queue, fault)
    }

    fn with_device(
        info: wgpu::AdapterInfo,
        device: wgpu::Device,
        queue: wgpu::Queue,
        fault: std::sync::Arc<std::sync::Mutex<Option<String>>>,
    ) -> Result<Self> {
        let limits = device.limits();
        if limits.max_storage_buffers_per_shader_stage < 7 {
            return Err(Error::Gpu(format!(
                "device on {} allows {} storage buffers per shader stage; vramzip needs 7",
                info.name, limits.max_storage_buffers_per_shader_stage
            )));
        }
        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let kernels = Kernels::new(&device);
        // the decoders are always used: build them now, where a failure is reported clearly
        kernels.decode.pipeline(&device, 0);
        kernels.decode.pipeline(&device, 1);
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(Error::Gpu(format!("building the kernels: {e}")));
        }
        Ok(GpuContext {
            info,
            timestamps: device.features().contains(TIMESTAMPS),
            device,
            queue,
            limits,
            kernels,
            fault,
        })
    }

    /// Adapter name, backend and driver in one line.
    pub fn describe(&self) -> String {
        format!(
            "{} ({:?}, driver {} {})",
            self.info.name, self.info.backend, self.info.driver, self.info.driver_info
        )
    }

    /// Waits until the GPU has finished everything submitted. An error the GPU reported since the
    /// last wait that no error scope caught (say, a validation error in work the caller recorded,
    /// or a lost device) comes back here, once.
    pub fn wait(&self) -> Result<()> {
        let polled = self.device.poll(wgpu::PollType::Wait {
            submission_index: None,
            timeout: None,
        });
        if let Some(fault) = self.fault.lock().ok().and_then(|mut f| f.take()) {
            return Err(Error::Gpu(fault));
        }
        polled
            .map(|_| ())
            .map_err(|e| Error::Gpu(format!("waiting for the device: {e}")))
    }
}

impl GpuContext {
    /// Records one dispatch of `kernel`'s pipeline `variant`, with `params` as the uniform at
    /// binding 0 and `buffers` bound whole at bindings 1, 2, ... `workgroups`: `[n, 1]` (spread
    /// over two dimensions when over the limit) or `[x, y]`.
    fn dispatch(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        kernel: &Kernel,
        variant: usize,
        params: &[u32],
        buffers: &[&wgpu::Buffer],
        workgroups: [u32; 2],
    ) {
        let resources = buffers.iter().map(|b| b.as_entire_binding()).collect();
        self.dispatch_with(encoder, kernel, variant, params, resources, workgroups);
    }

    /// As [`GpuContext::dispatch`], with any binding resources (a buffer range, say) at 1, 2, ...
    fn dispatch_with(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        kernel: &Kernel,
        variant: usize,
        params: &[u32],
        resources: Vec<wgpu::BindingResource>,
        workgroups: [u32; 2],
    ) {
        let params = self
            .device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some(kernel.name),
                contents: bytemuck::cast_slice(params),
                usage: wgpu::BufferUsages::UNIFORM,
            });
        let entries: Vec<_> = std::iter::once(params.as_entire_binding())
            .chain(resources)
            .enumerate()
            .map(|(i, resource)| wgpu::BindGroupEntry {
                binding: i as u32,
                resource,
            })
            .collect();
        let bind = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(kernel.name),
            layout: &kernel.bind_layout,
            entries: &entries,
        });
        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some(kernel.name),
            timestamp_writes: None,
        });
        pass.set_pipeline(kernel.pipeline(&self.device, variant));
        pass.set_bind_group(0, &bind, &[]);
        let [x, y] = workgroups;
        let max = self.limits.max_compute_workgroups_per_dimension;
        if y > 1 {
            pass.dispatch_workgroups(x, y, 1);
        } else {
            pass.dispatch_workgroups(x.min(max), x.div_ceil(max), 1);
        }
    }
}

fn storage_entry(binding: u32, read_only: bool) -> wgpu::BindGroupLayoutEntry {
    wgpu::BindGroupLayoutEntry {
        binding,
        visibility: wgpu::ShaderStages::COMPUTE,
        ty: wgpu::BindingType::Buffer {
            ty: wgpu::BufferBindingType::Storage { read_only },
            has_dynamic_offset: false,
            min_binding_size: None,
        },
        count: None,
    }
}

fn uniform_entry() -> wgpu::BindGroupLayoutEntry {
    wgpu::BindGroupLayoutEntry {
        binding: 0,
        visibility: wgpu::ShaderStages::COMPUTE,
        ty: wgpu::BindingType::Buffer {
            ty: wgpu::BufferBindingType::Uniform,
            has_dynamic_offset: false,
            min_binding_size: None,
        },
        count: None,
    }
}

impl Kernels {
    fn new(device: &wgpu::Device) -> Self {
        // bindings 1..=6 of the decoder: pieces, block info, chunk index, stream, raw, tables
        let coded = || (1..=6).map(|b| storage_entry(b, true));
        let decode: Vec<_> = std::iter::once(uniform_entry())
            .chain(coded())
            .chain([storage_entry(7, false)])
            .collect();
        let select: Vec<_> = decode
            .iter()
            .copied()
            .chain([storage_entry(8, true)])
            .collect();
        let fused: Vec<_> = std::iter::once(uniform_entry())
            .chain(coded())
            .chain([storage_entry(7, true), storage_entry(8, false)])
            .collect();
        let escapes = [false, true];
        let fused_variants = escapes
            .iter()
            .flat_map(|&e| {
                BATCH_VARIANTS
                    .iter()
                    .map(move |&b| vec![("ESCAPES", e as u8 as f64), ("BATCH", b as f64)])
            })
            .collect();
        let batches = BATCH_VARIANTS
            .iter()
            .map(|&b| vec![("BATCH", b as f64)])
            .collect();
        Kernels {
            decode: Kernel::new(
                device,
                "decode",
                shaders::DECODE,
                &decode,
                escapes
                    .iter()
                    .map(|&e| vec![("ESCAPES", e as u8 as f64)])
                    .collect(),
            ),
            decode_select: Kernel::new(
                device,
                "decode_select",
                shaders::DECODE_SELECT,
                &select,
                escapes
                    .iter()
                    .map(|&e| vec![("ESCAPES", e as u8 as f64)])
                    .collect(),
            ),
            copy: Kernel::new(
                device,
                "copy",
                shaders::COPY,
                &[storage_entry(0, true), storage_entry(1, false)],
                vec![vec![]],
            ),
            gemv: Kernel::new(
                device,
                "gemv",
                shaders::GEMV,
                &[
                    uniform_entry(),
                    storage_entry(1, true),
                    storage_entry(2, true),
                    storage_entry(3, false),
                ],
                batches,
            ),
            fused: Kernel::new(device, "fused", shaders::FUSED, &fused, fused_variants),
            sum_pieces: Kernel::new(
                device,
                "sum_pieces",
                shaders::SUM_PIECES,
                &[
                    uniform_entry(),
                    storage_entry(1, true),
                    storage_entry(2, false),
                ],
                vec![vec![]],
            ),
        }
    }
}
