//! The GPU runtime: one context (instance, adapter, device, queue) and the decode kernels, built
//! once; compressed tensors uploaded once and decoded in WGSL into caller-owned buffers.

#[cfg(feature = "cli")]
pub mod bench;
mod decode;
mod kernels;
mod linear;
mod measure;
mod resident;
pub mod shaders;
mod transcode;
mod upload;

pub use kernels::{Access, Constants, Kernel, MAX_BATCH};
pub use linear::{Linear, Tuned, WeightType, Workspace, piece_steps};
pub use measure::Timing;
pub use resident::{Forms, Resident, ResidentChoice};
pub use upload::{GpuGroup, Slice, Source, padded};

use kernels::Kernels;

use crate::error::{Error, Result};

/// How to choose and open the GPU: `GpuOptions::default()` and the `with_` methods.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct GpuOptions {
    /// `vulkan`, `metal`, `dx12`, `gl` or `all`; `None`: Vulkan, Metal or DX12, or `VRAMZIP_BACKEND`.
    pub backend: Option<String>,
    /// Ask for a smaller `max_storage_buffer_binding_size` than the adapter offers (for tests of
    /// the large-tensor path).
    pub max_binding_bytes: Option<u64>,
    /// Where the decoders read the code table: a copy in workgroup memory (`true`), or the
    /// storage buffer through the cache (`false`); `None`: `VRAMZIP_DECODE_TABLE` (`workgroup`
    /// or `cache`), else workgroup memory. Both give the same bits; which is faster depends on
    /// the GPU, so both can be measured.
    pub table_in_workgroup: Option<bool>,
    /// Whether every decode takes the pipeline that tests each symbol for a shared codebook's
    /// escape, also where no table has one (`true`), or only where one has (`false`); `None`:
    /// `VRAMZIP_DECODE_ESCAPES` (`always` or `needed`), else only where needed. Both give the
    /// same bits; `true` measures what the test costs on a GPU, which decides whether per-tensor
    /// codes may have escapes (BENCHMARKS.md, layout v2 against v1).
    pub escape_test: Option<bool>,
}

impl GpuOptions {
    /// The backend: `vulkan`, `metal`, `dx12`, `gl` or `all`.
    pub fn with_backend(mut self, name: impl Into<String>) -> Self {
        self.backend = Some(name.into());
        self
    }
    /// A smaller storage-binding limit than the adapter offers (tests of the large-tensor path).
    pub fn with_max_binding_bytes(mut self, bytes: u64) -> Self {
        self.max_binding_bytes = Some(bytes);
        self
    }
    /// Where the decoders read the code table (see the field).
    pub fn with_table_in_workgroup(mut self, on: bool) -> Self {
        self.table_in_workgroup = Some(on);
        self
    }
    /// Whether every decode tests each symbol for an escape (see the field).
    pub fn with_escape_test(mut self, always: bool) -> Self {
        self.escape_test = Some(always);
        self
    }
}

/// Where the decoders read the code table: `opts`, else `VRAMZIP_DECODE_TABLE`, else workgroup
/// memory.
fn table_in_workgroup(opts: Option<bool>) -> Result<bool> {
    switch(opts, "VRAMZIP_DECODE_TABLE", ["cache", "workgroup"], true)
}

/// Whether every decode tests for escapes: `opts`, else `VRAMZIP_DECODE_ESCAPES`, else only where
/// a table has an escape.
fn escape_test_always(opts: Option<bool>) -> Result<bool> {
    switch(opts, "VRAMZIP_DECODE_ESCAPES", ["needed", "always"], false)
}

/// A measurement switch: `opts` if given, else the environment variable `var` naming one of
/// `[off, on]`, else `default`.
fn switch(opts: Option<bool>, var: &str, [off, on]: [&str; 2], default: bool) -> Result<bool> {
    if let Some(set) = opts {
        return Ok(set);
    }
    match std::env::var(var).ok().as_deref() {
        None | Some("") => Ok(default),
        Some(v) if v == on => Ok(true),
        Some(v) if v == off => Ok(false),
        Some(other) => Err(Error::InvalidArgument(format!(
            "{var} '{other}': use {off} or {on}"
        ))),
    }
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
    registry: kernels::Registry,
    binds: kernels::BindCache,
    /// The staging buffer of `read_back`, reused while large enough.
    staging: std::sync::Mutex<Option<wgpu::Buffer>>,
    /// Whether the decoders keep the code table in workgroup memory (else read it through the
    /// cache).
    pub table_in_workgroup: bool,
    /// Whether every decode takes the pipeline that tests each symbol for an escape, also where
    /// no table has one (a measurement of that test's cost).
    pub escape_test_always: bool,
    /// Fused-or-not choices measured on this device, by layer shape and batch.
    tuning: std::sync::Mutex<std::collections::HashMap<linear::TuneKey, bool>>,
    /// The first GPU error no error scope caught (wgpu's default would panic), or a lost device.
    fault: std::sync::Arc<std::sync::Mutex<Option<String>>>,
}

impl GpuContext {
    /// Opens the best adapter (high performance first) and builds the kernels.
    pub fn new(opts: &GpuOptions) -> Result<Self> {
        let backends = parse_backends(opts.backend.as_deref())?;
        let table = table_in_workgroup(opts.table_in_workgroup)?;
        let escape_test = escape_test_always(opts.escape_test)?;
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
        Self::with_device(info, device, queue, fault, table, escape_test)
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
        let (table, escape_test) = (table_in_workgroup(None)?, escape_test_always(None)?);
        Self::with_device(info, device, queue, fault, table, escape_test)
    }

    fn with_device(
        info: wgpu::AdapterInfo,
        device: wgpu::Device,
        queue: wgpu::Queue,
        fault: std::sync::Arc<std::sync::Mutex<Option<String>>>,
        table_in_workgroup: bool,
        escape_test_always: bool,
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
        for escapes in [false, true] {
            let constants = decode::decoder_constants(escapes, table_in_workgroup);
            kernels.decode.pipeline(&device, &constants);
        }
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
            registry: Default::default(),
            binds: Default::default(),
            staging: Default::default(),
            table_in_workgroup,
            escape_test_always,
            tuning: Default::default(),
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
