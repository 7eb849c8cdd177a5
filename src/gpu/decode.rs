//! Upload of compressed tensors and the recording of their decode.

use super::GpuContext;
use crate::codec::{self, Layout, huffman};
use crate::error::{Error, Result};
use crate::format::{Archive, TensorEntry};
use wgpu::util::DeviceExt;

/// A tensor resident in VRAM in its compressed form (or verbatim, for stored tensors).
#[derive(Debug)]
pub struct GpuTensor {
    /// Original name.
    pub name: String,
    /// Bytes of the decoded tensor.
    pub decoded_bytes: u64,
    /// Bytes this tensor holds in VRAM.
    pub resident_bytes: u64,
    data: Data,
}

#[derive(Debug)]
enum Data {
    Coded { layout: Layout, chunk_bits: wgpu::Buffer, block_start: wgpu::Buffer, stream: wgpu::Buffer, raw: wgpu::Buffer, table: wgpu::Buffer },
    Stored { bytes: wgpu::Buffer },
}

/// GPU time of recorded work, and how it was measured.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    /// Seconds per iteration.
    pub seconds: f64,
    /// True when measured with GPU timestamps, false for wall time around a device wait.
    pub timestamps: bool,
}

/// Size in bytes of the output region a tensor's decode writes: whole 32-bit words.
pub fn padded(bytes: u64) -> u64 {
    bytes.div_ceil(4) * 4
}

impl GpuContext {
    /// A storage buffer holding `bytes` (padded with zeros to whole words, at least one).
    fn filled_buffer(&self, label: &str, mut bytes: Vec<u8>) -> Result<wgpu::Buffer> {
        bytes.resize(padded(bytes.len().max(4) as u64) as usize, 0);
        let size = bytes.len() as u64;
        if size > self.limits.max_storage_buffer_binding_size {
            return Err(Error::TooLarge {
                what: format!("GPU buffer for '{label}' (splitting over several bindings is not implemented yet)"),
                size,
                limit: self.limits.max_storage_buffer_binding_size,
            });
        }
        Ok(self.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some(label),
            contents: &bytes,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
        }))
    }

    /// Uploads one tensor of `archive`: its compressed parts are read from the file and copied to
    /// the GPU as they are. Nothing is decoded on the CPU; only the small decode table and block
    /// starts are derived, from the code lengths and the chunk index.
    pub fn upload(&self, archive: &Archive, t: &TensorEntry) -> Result<GpuTensor> {
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let name = t.meta.name.clone();
        let data = match (&t.layout, &t.parts) {
            (Some(layout), Some(parts)) => {
                let len = |r: (u64, u64)| r.1 - r.0;
                let index = archive.read_range(parts.chunks)?;
                let starts = codec::block_starts(&index);
                if starts.last().copied() != Some(len(parts.stream) / 4) || starts.last().is_some_and(|&w| w > u32::MAX as u64) {
                    return Err(Error::corrupt(&name, "chunk index does not match the stream"));
                }
                let block_start: Vec<u32> = starts.iter().map(|&w| w as u32).collect();
                let chunk_bits = self.filled_buffer(&name, index)?;
                let block_start = self.filled_buffer(&name, bytemuck::cast_slice(&block_start).to_vec())?;
                let stream = self.filled_buffer(&name, archive.read_range(parts.stream)?)?;
                let raw = self.filled_buffer(&name, archive.read_range(parts.raw)?)?;
                let lut = huffman::decode_table(&archive.codebook(t)?.lens);
                let table = self.filled_buffer(&name, bytemuck::cast_slice(&lut).to_vec())?;
                Data::Coded { layout: *layout, chunk_bits, block_start, stream, raw, table }
            }
            _ => Data::Stored { bytes: self.filled_buffer(&name, archive.read(&name)?)? },
        };
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(Error::Gpu(format!("uploading '{name}': {e}")));
        }
        let resident_bytes = match &data {
            Data::Coded { chunk_bits, block_start, stream, raw, table, .. } => {
                [chunk_bits, block_start, stream, raw, table].iter().map(|b| b.size()).sum()
            }
            Data::Stored { bytes } => bytes.size(),
        };
        Ok(GpuTensor { name, decoded_bytes: t.meta.bytes, resident_bytes, data })
    }

    /// Uploads every tensor of `archive` whose name `keep` accepts (a whole model, or one
    /// transformer block).
    pub fn upload_all(&self, archive: &Archive, keep: impl Fn(&str) -> bool) -> Result<Vec<GpuTensor>> {
        archive.tensors.iter().filter(|t| keep(&t.meta.name)).map(|t| self.upload(archive, t)).collect()
    }

    /// A buffer that can receive decoded tensors and be copied from.
    pub fn output_buffer(&self, bytes: u64) -> Result<wgpu::Buffer> {
        let size = padded(bytes.max(4));
        if size > self.limits.max_storage_buffer_binding_size {
            return Err(Error::TooLarge { what: "decode output buffer".into(), size, limit: self.limits.max_storage_buffer_binding_size });
        }
        Ok(self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("vramzip output"),
            size,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        }))
    }

    /// Records the decode of `tensors` into `encoder`, tensor `i` written at byte `offsets[i]` of
    /// `out` (a multiple of 4; each writes whole 32-bit words, so up to 3 bytes past its end).
    /// Coded tensors share one compute pass. Nothing is submitted.
    pub fn record_decode(&self, encoder: &mut wgpu::CommandEncoder, tensors: &[&GpuTensor], out: &wgpu::Buffer, offsets: &[u64]) -> Result<()> {
        if tensors.len() != offsets.len() {
            return Err(Error::InvalidArgument("record_decode: one offset per tensor".into()));
        }
        let mut groups = Vec::new();
        for (t, &off) in tensors.iter().zip(offsets) {
            if off % 4 != 0 || off + padded(t.decoded_bytes) > out.size() {
                return Err(Error::InvalidArgument(format!(
                    "tensor '{}' at offset {off}: needs a multiple of 4 and {} bytes within the {}-byte output",
                    t.name, padded(t.decoded_bytes), out.size())));
            }
            match &t.data {
                Data::Stored { bytes } => {
                    if t.decoded_bytes > 0 {
                        encoder.copy_buffer_to_buffer(bytes, 0, out, off, padded(t.decoded_bytes));
                    }
                }
                Data::Coded { layout, chunk_bits, block_start, stream, raw, table } => {
                    let blocks = layout.blocks();
                    let too_big = |what: &str| Error::TooLarge { what: format!("tensor '{}': {what}", t.name), size: layout.n, limit: u32::MAX as u64 };
                    if layout.n > u32::MAX as u64 || (off / 4 + layout.groups()) > u32::MAX as u64 {
                        return Err(too_big("elements per dispatch"));
                    }
                    let params: [u32; 8] = [
                        layout.n as u32, layout.width, layout.sym_bits, layout.raw_bits(),
                        layout.chunk_groups as u32, layout.groups() as u32, blocks as u32, (off / 4) as u32,
                    ];
                    let params = self.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                        label: Some("decode params"),
                        contents: bytemuck::cast_slice(&params),
                        usage: wgpu::BufferUsages::UNIFORM,
                    });
                    let buffers = [&params, chunk_bits, block_start, stream, raw, table, out];
                    let entries: Vec<_> = buffers.iter().enumerate()
                        .map(|(i, b)| wgpu::BindGroupEntry { binding: i as u32, resource: b.as_entire_binding() })
                        .collect();
                    let bind = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
                        label: Some("decode"),
                        layout: &self.kernels.decode_layout,
                        entries: &entries,
                    });
                    let x = blocks.min(65535) as u32;
                    let y = blocks.div_ceil(65535) as u32;
                    groups.push((bind, x, y));
                }
            }
        }
        if !groups.is_empty() {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("vramzip decode"), timestamp_writes: None });
            pass.set_pipeline(&self.kernels.decode);
            for (bind, x, y) in &groups {
                pass.set_bind_group(0, bind, &[]);
                pass.dispatch_workgroups(*x, *y, 1);
            }
        }
        Ok(())
    }

    /// Reads `bytes` bytes from the start of `buffer` back to the CPU (submits and waits).
    pub fn read_back(&self, buffer: &wgpu::Buffer, bytes: u64) -> Result<Vec<u8>> {
        let size = padded(bytes.max(4));
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("read back"),
            size,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut encoder = self.device.create_command_encoder(&Default::default());
        encoder.copy_buffer_to_buffer(buffer, 0, &staging, 0, size);
        self.queue.submit([encoder.finish()]);
        let (tx, rx) = std::sync::mpsc::channel();
        staging.slice(..).map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        self.wait()?;
        rx.recv()
            .map_err(|_| Error::Gpu("read back: no answer from the device".into()))?
            .map_err(|e| Error::Gpu(format!("read back: {e}")))?;
        let view = staging.get_mapped_range(..).map_err(|e| Error::Gpu(format!("read back: {e:?}")))?;
        Ok(view[..bytes as usize].to_vec())
    }

    /// Convenience: decodes one tensor on the GPU, waits and returns its bytes.
    pub fn decode_to_vec(&self, t: &GpuTensor) -> Result<Vec<u8>> {
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let out = self.output_buffer(t.decoded_bytes)?;
        let mut encoder = self.device.create_command_encoder(&Default::default());
        self.record_decode(&mut encoder, &[t], &out, &[0])?;
        self.queue.submit([encoder.finish()]);
        let bytes = self.read_back(&out, t.decoded_bytes);
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(Error::Gpu(format!("decoding '{}': {e}", t.name)));
        }
        bytes
    }

    /// Times `iters` repetitions of `record` (recorded into one encoder, submitted once): GPU
    /// timestamps around the whole when the device has them, else wall time around a wait.
    pub fn time(&self, iters: u32, record: &mut dyn FnMut(&mut wgpu::CommandEncoder) -> Result<()>) -> Result<Timing> {
        // warm up: pipelines, first-touch of buffers
        let mut encoder = self.device.create_command_encoder(&Default::default());
        record(&mut encoder)?;
        self.queue.submit([encoder.finish()]);
        self.wait()?;
        let query = self.timestamps.then(|| {
            self.device.create_query_set(&wgpu::QuerySetDescriptor { label: Some("timing"), ty: wgpu::QueryType::Timestamp, count: 2 })
        });
        let mut encoder = self.device.create_command_encoder(&Default::default());
        if let Some(q) = &query {
            encoder.write_timestamp(q, 0);
        }
        for _ in 0..iters {
            record(&mut encoder)?;
        }
        let resolve = query.as_ref().map(|q| {
            encoder.write_timestamp(q, 1);
            let buf = self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("timestamps"),
                size: 16,
                usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            });
            encoder.resolve_query_set(q, 0..2, &buf, 0);
            buf
        });
        let t0 = std::time::Instant::now();
        self.queue.submit([encoder.finish()]);
        self.wait()?;
        let wall = t0.elapsed().as_secs_f64();
        if let Some(buf) = resolve {
            let bytes = self.read_back(&buf, 16)?;
            let ticks: &[u64] = bytemuck::cast_slice(&bytes);
            let ns = ticks[1].wrapping_sub(ticks[0]) as f64 * self.queue.get_timestamp_period() as f64;
            if ns > 0.0 && ticks[1] > ticks[0] {
                return Ok(Timing { seconds: ns * 1e-9 / iters as f64, timestamps: true });
            }
        }
        Ok(Timing { seconds: wall / iters as f64, timestamps: false })
    }
}
