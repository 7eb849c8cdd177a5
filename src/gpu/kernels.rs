//! The kernel registry: every shader of the runtime with its explicit bind group layout, built
//! once per context, and those that models register by name ([`GpuContext::kernels_of`]); their
//! pipelines, one per set of override constants, built on first use and chosen by the constants'
//! names; and the one helper that records a dispatch of any of them ([`GpuContext::dispatch`]).

use super::{GpuContext, shaders};
use wgpu::util::DeviceExt;

/// Override constants of one pipeline, by name (as the WGSL `override` declarations spell them).
pub type Constants<'a> = &'a [(&'static str, f64)];

/// A built pipeline and the override constants it was built with.
type Pipeline = (Vec<(&'static str, f64)>, wgpu::ComputePipeline);

/// One shader entry point with its explicit bind group layout, and its pipelines, one per set of
/// override constants, each built the first time it is used (most programs use a few of them).
#[derive(Debug)]
pub struct Kernel {
    name: &'static str,
    /// The entry point, where the module has several.
    entry: Option<&'static str>,
    module: wgpu::ShaderModule,
    pub(crate) bind_layout: wgpu::BindGroupLayout,
    layout: wgpu::PipelineLayout,
    pipelines: std::sync::Mutex<Vec<Pipeline>>,
}

impl Kernel {
    pub(crate) fn new(
        device: &wgpu::Device,
        name: &'static str,
        source: &str,
        entries: &[wgpu::BindGroupLayoutEntry],
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
        Kernel {
            name,
            entry: None,
            module,
            bind_layout,
            layout,
            pipelines: Default::default(),
        }
    }

    /// One kernel per entry point of `source`, all on one bind group layout and one module.
    pub(crate) fn entries(
        device: &wgpu::Device,
        source: &str,
        layout: &[wgpu::BindGroupLayoutEntry],
        names: &[&'static str],
    ) -> Vec<Self> {
        let first = Kernel::new(device, names[0], source, layout);
        names
            .iter()
            .map(|&name| Kernel {
                name,
                entry: Some(name),
                module: first.module.clone(),
                bind_layout: first.bind_layout.clone(),
                layout: first.layout.clone(),
                pipelines: Default::default(),
            })
            .collect()
    }

    /// Its name (the entry point's, where the module has several).
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The pipeline with these override constants, built on first use.
    pub(crate) fn pipeline(
        &self,
        device: &wgpu::Device,
        constants: Constants,
    ) -> wgpu::ComputePipeline {
        // a poisoned lock only means another thread panicked while building: the list is intact
        let mut built = self.pipelines.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, p)) = built.iter().find(|(c, _)| c == constants) {
            return p.clone();
        }
        let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(self.name),
            layout: Some(&self.layout),
            module: &self.module,
            entry_point: self.entry,
            compilation_options: wgpu::PipelineCompilationOptions {
                constants,
                ..Default::default()
            },
            cache: None,
        });
        built.push((constants.to_vec(), pipeline.clone()));
        pipeline
    }
}

/// The batch sizes matrix-product pipelines are built for; a batch runs on the smallest that
/// holds it.
const BATCH_VARIANTS: [u32; 5] = [1, 2, 4, 8, 16];

/// The largest batch one matrix-product dispatch takes (`MAX_BATCH` in matmul_core.wgsl).
pub const MAX_BATCH: u32 = 16;

/// The `BATCH` constant of the pipeline that computes `batch` (1..=16) columns.
pub(crate) fn batch_constant(batch: u32) -> (&'static str, f64) {
    let b = BATCH_VARIANTS
        .iter()
        .copied()
        .find(|&b| b >= batch)
        .unwrap_or(MAX_BATCH);
    ("BATCH", b as f64)
}

/// The `TABLE_IN_WORKGROUP` constant: whether the decoders copy the code table to workgroup
/// memory or read it through the cache.
pub(crate) fn table_constant(in_workgroup: bool) -> (&'static str, f64) {
    ("TABLE_IN_WORKGROUP", in_workgroup as u8 as f64)
}

/// The `ESCAPES` constant: whether any decode table bound has an escape code.
pub(crate) fn escapes_constant(escapes: bool) -> (&'static str, f64) {
    ("ESCAPES", escapes as u8 as f64)
}

/// How a registered kernel uses its bindings 1, 2, ... (binding 0 is always its uniform
/// parameters).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// A storage buffer the kernel only reads.
    Read,
    /// A storage buffer the kernel writes.
    ReadWrite,
}

/// Kernels registered by models, by module name: each module's entry points, in the order asked.
pub(crate) type Registry = std::sync::Mutex<Vec<(&'static str, Vec<std::sync::Arc<Kernel>>)>>;

/// The runtime's kernels, built once.
#[derive(Debug)]
pub(crate) struct Kernels {
    pub(crate) decode: Kernel,
    pub(crate) decode_select: Kernel,
    pub(crate) copy: Kernel,
    pub(crate) gemv: Kernel,
    pub(crate) gemv_fixed: Kernel,
    pub(crate) fixed_rows: Kernel,
    /// fixed_build.wgsl's passes: histogram, pack, starts, exceptions.
    pub(crate) fixed_build: [Kernel; 4],
    pub(crate) fused: Kernel,
    pub(crate) sum_pieces: Kernel,
}

pub(crate) fn storage_entry(binding: u32, read_only: bool) -> wgpu::BindGroupLayoutEntry {
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

pub(crate) fn uniform_entry() -> wgpu::BindGroupLayoutEntry {
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
    pub(crate) fn new(device: &wgpu::Device) -> Self {
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
        let copy = [storage_entry(0, true), storage_entry(1, false)];
        let gemv = [
            uniform_entry(),
            storage_entry(1, true),
            storage_entry(2, true),
            storage_entry(3, false),
            storage_entry(4, true),
        ];
        let build = [
            uniform_entry(),
            storage_entry(1, true),
            storage_entry(2, false),
            storage_entry(3, false),
        ];
        let fixed_build = Kernel::entries(
            device,
            shaders::FIXED_BUILD,
            &build,
            &[
                "fixed_histogram",
                "fixed_pack",
                "fixed_starts",
                "fixed_exceptions",
            ],
        );
        let sum = [
            uniform_entry(),
            storage_entry(1, true),
            storage_entry(2, false),
        ];
        Kernels {
            decode: Kernel::new(device, "decode", shaders::DECODE, &decode),
            decode_select: Kernel::new(device, "decode_select", shaders::DECODE_SELECT, &select),
            copy: Kernel::new(device, "copy", shaders::COPY, &copy),
            gemv: Kernel::new(device, "gemv", shaders::GEMV, &gemv),
            // the same bindings: W, x (or the rows asked for), y (or the rows), W as vectors
            gemv_fixed: Kernel::new(device, "gemv_fixed", shaders::GEMV_FIXED, &gemv),
            fixed_rows: Kernel::new(device, "fixed_rows", shaders::FIXED_ROWS, &gemv),
            fixed_build: fixed_build.try_into().expect("one kernel an entry point"),
            fused: Kernel::new(device, "fused", shaders::FUSED, &fused),
            sum_pieces: Kernel::new(device, "sum_pieces", shaders::SUM_PIECES, &sum),
        }
    }
}

impl GpuContext {
    /// The kernels `entries` of the WGSL `source`, registered under `module`: built the first
    /// time a module is asked for, from then on shared. Binding 0 of every entry is its uniform
    /// parameters; `access` gives bindings 1, 2, ... A model's own shaders (the BERT forward
    /// pass's, say) run this way, beside the runtime's, through [`GpuContext::dispatch`].
    /// Errors if the shader does not build on this device.
    pub fn kernels_of(
        &self,
        module: &'static str,
        source: &str,
        access: &[Access],
        entries: &[&'static str],
    ) -> crate::Result<Vec<std::sync::Arc<Kernel>>> {
        let mut registry = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, kernels)) = registry.iter().find(|(m, _)| *m == module) {
            return Ok(kernels.clone());
        }
        let layout: Vec<_> = std::iter::once(uniform_entry())
            .chain(
                access
                    .iter()
                    .enumerate()
                    .map(|(i, a)| storage_entry(i as u32 + 1, *a == Access::Read)),
            )
            .collect();
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let kernels: Vec<_> = Kernel::entries(&self.device, source, &layout, entries)
            .into_iter()
            .map(std::sync::Arc::new)
            .collect();
        for k in &kernels {
            k.pipeline(&self.device, &[]);
        }
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(crate::Error::Gpu(format!(
                "building the kernels of {module}: {e}"
            )));
        }
        registry.push((module, kernels.clone()));
        Ok(kernels)
    }

    /// Records one dispatch of `kernel`'s pipeline with `constants`, with `params` (the kernel's
    /// `#[repr(C)]` parameter struct, mirrored by its WGSL `Params`) as the uniform at binding 0
    /// and `buffers` bound whole at bindings 1, 2, ... `workgroups`: `[n, 1]` (spread over two
    /// dimensions when over the limit) or `[x, y]`. The uniform and the bind group are made the
    /// first time a dispatch has these parameters and buffers, then reused (see `BindCache`).
    pub fn dispatch<P: bytemuck::Pod>(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        kernel: &Kernel,
        constants: Constants,
        params: &P,
        buffers: &[&wgpu::Buffer],
        workgroups: [u32; 2],
    ) {
        let ranges: Vec<_> = buffers.iter().map(|&b| (b, 0, None)).collect();
        let cached = Binding::Cached;
        self.dispatch_ranges(
            encoder, kernel, constants, params, &ranges, workgroups, cached,
        );
    }

    /// As [`GpuContext::dispatch`], with buffer ranges `(buffer, offset, size)` (`None`: to the
    /// end) at bindings 1, 2, ..., and the bind group kept for the next dispatch of the same
    /// parameters and buffers or made for this one alone (`binding`).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn dispatch_ranges<P: bytemuck::Pod>(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        kernel: &Kernel,
        constants: Constants,
        params: &P,
        ranges: &[BufferRange],
        workgroups: [u32; 2],
        binding: Binding,
    ) {
        let bind = match binding {
            Binding::Cached => {
                let key = BindKey {
                    kernel: kernel as *const Kernel as usize,
                    params: bytemuck::bytes_of(params).to_vec(),
                    ranges: ranges.iter().map(|&(b, o, s)| (b.clone(), o, s)).collect(),
                };
                self.binds
                    .get_or_make(key, || self.bind_group(kernel, params, ranges))
            }
            Binding::Once => self.bind_group(kernel, params, ranges),
        };
        self.record_pass(encoder, kernel, constants, &bind, workgroups);
    }

    /// A bind group of `kernel` with `params` as its uniform and `ranges` at bindings 1, 2, ...
    fn bind_group<P: bytemuck::Pod>(
        &self,
        kernel: &Kernel,
        params: &P,
        ranges: &[BufferRange],
    ) -> wgpu::BindGroup {
        let params = self
            .device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some(kernel.name),
                contents: bytemuck::bytes_of(params),
                usage: wgpu::BufferUsages::UNIFORM,
            });
        let resources = ranges.iter().map(|&(buffer, offset, size)| {
            wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                buffer,
                offset,
                size: size.and_then(std::num::NonZeroU64::new),
            })
        });
        let entries: Vec<_> = std::iter::once(params.as_entire_binding())
            .chain(resources)
            .enumerate()
            .map(|(i, resource)| wgpu::BindGroupEntry {
                binding: i as u32,
                resource,
            })
            .collect();
        self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(kernel.name),
            layout: &kernel.bind_layout,
            entries: &entries,
        })
    }

    /// Records one compute pass: `kernel`'s pipeline with `constants`, bound to `bind`.
    fn record_pass(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        kernel: &Kernel,
        constants: Constants,
        bind: &wgpu::BindGroup,
        workgroups: [u32; 2],
    ) {
        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some(kernel.name),
            timestamp_writes: None,
        });
        pass.set_pipeline(&kernel.pipeline(&self.device, constants));
        pass.set_bind_group(0, bind, &[]);
        let [x, y] = workgroups;
        let max = self.limits.max_compute_workgroups_per_dimension;
        if y > 1 {
            pass.dispatch_workgroups(x, y, 1);
        } else {
            pass.dispatch_workgroups(x.min(max), x.div_ceil(max), 1);
        }
    }
}

/// Whether a dispatch's bind group is kept for the next dispatch of the same parameters and
/// buffers (work repeated every token), or made for this one alone: one-off work on buffers that
/// must be freed as soon as the caller drops them (an upload's scratch, a decode read back once),
/// which the bind cache would keep alive.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Binding {
    Cached,
    Once,
}

/// A binding of a buffer range: (buffer, offset, size; `None` to the end).
pub(crate) type BufferRange<'a> = (&'a wgpu::Buffer, u64, Option<u64>);

/// What a bind group is made of: the kernel, its parameters, its buffer ranges.
#[derive(Hash, PartialEq, Eq)]
struct BindKey {
    kernel: usize,
    params: Vec<u8>,
    ranges: Vec<(wgpu::Buffer, u64, Option<u64>)>,
}

/// The bind groups (with their uniform buffers) of recent dispatches, so that a layer run again
/// on the same buffers (every token of an inference loop) binds what it bound before instead of
/// making a uniform buffer and a bind group per dispatch. Bounded: the least recently used go
/// first, and with them the buffers they kept alive.
#[derive(Debug, Default)]
pub(crate) struct BindCache(std::sync::Mutex<BindMap>);

#[derive(Default)]
struct BindMap {
    tick: u64,
    groups: std::collections::HashMap<BindKey, (wgpu::BindGroup, u64)>,
}

impl std::fmt::Debug for BindMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} bind groups", self.groups.len())
    }
}

/// Bind groups kept: several forward passes' worth of a small model's dispatches.
const BIND_CACHE: usize = 1024;

impl BindCache {
    fn get_or_make(&self, key: BindKey, make: impl FnOnce() -> wgpu::BindGroup) -> wgpu::BindGroup {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.tick += 1;
        let tick = map.tick;
        if let Some((group, used)) = map.groups.get_mut(&key) {
            *used = tick;
            return group.clone();
        }
        if map.groups.len() >= BIND_CACHE {
            // evict the older half at once, so eviction costs O(1) a dispatch on average
            let mut ages: Vec<u64> = map.groups.values().map(|(_, used)| *used).collect();
            let (_, median, _) = ages.select_nth_unstable(BIND_CACHE / 2);
            let median = *median;
            map.groups.retain(|_, (_, used)| *used > median);
        }
        let group = make();
        map.groups.insert(key, (group.clone(), tick));
        group
    }

    /// Bind groups held.
    pub(crate) fn len(&self) -> usize {
        self.0.lock().map_or(0, |m| m.groups.len())
    }
}
