//! Upload of compressed tensors in groups, and the recording of their decode.
//!
//! A group is what one dispatch decodes: the parts of many tensors concatenated into one set of
//! buffers, with a descriptor per *piece* (a tensor, or a range of its blocks when the tensor is
//! too large for one binding). Tensors stored verbatim travel in the group too and are copied.

use super::GpuContext;
use crate::codec::{self, LANES, huffman};
use crate::error::{Error, Result};
use crate::format::{Archive, TensorEntry};
use std::collections::HashMap;
use wgpu::util::DeviceExt;

/// One piece as the shader reads it (`struct Piece` in decode.wgsl).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct PieceDesc {
    n: u32,
    width: u32,
    sym_bits: u32,
    raw_bits: u32,
    chunk_groups: u32,
    groups: u32,
    first_block: u32,
    raw_base: u32,
    table_base: u32,
    out_base: u32,
    pad: [u32; 2],
}

/// Where a group puts (a slice of) one tensor in its output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Slice {
    /// Original tensor name.
    pub name: String,
    /// Byte offset in the group's output.
    pub offset: u64,
    /// Bytes of the tensor in this group.
    pub bytes: u64,
    /// Where those bytes start within the tensor (0 unless the tensor spans several groups).
    pub tensor_offset: u64,
    /// For a coded slice: its first block in the group, and the output words of a block.
    pub blocks: Option<(u32, u32)>,
}

#[derive(Debug)]
pub(super) struct Coded {
    pieces: wgpu::Buffer,
    block_info: wgpu::Buffer,
    chunk_bits: wgpu::Buffer,
    stream: wgpu::Buffer,
    raw: wgpu::Buffer,
    table: wgpu::Buffer,
    pub(super) blocks: u64,
    pub(super) escapes: bool,
}

impl Coded {
    /// Bindings 1 to 6 of the decode shader, in order.
    pub(super) fn buffers(&self) -> [&wgpu::Buffer; 6] {
        [
            &self.pieces,
            &self.block_info,
            &self.chunk_bits,
            &self.stream,
            &self.raw,
            &self.table,
        ]
    }
}

/// Tensors stored verbatim: their bytes, and (source, destination, length) of each copy.
type Stored = (wgpu::Buffer, Vec<(u64, u64, u64)>);

/// Tensors resident in VRAM in compressed form (stored ones verbatim), decoded by one dispatch.
#[derive(Debug)]
pub struct GpuGroup {
    /// What the output holds, in order.
    pub slices: Vec<Slice>,
    /// Bytes of output one decode writes (each slice padded to whole words).
    pub output_bytes: u64,
    /// Bytes this group holds in VRAM.
    pub resident_bytes: u64,
    pub(super) coded: Option<Coded>,
    stored: Option<Stored>,
}

impl GpuGroup {
    /// The slice of tensor `name` in this group.
    pub fn slice(&self, name: &str) -> Option<&Slice> {
        self.slices.iter().find(|s| s.name == name)
    }

    /// Where byte `at` of tensor `name` is decoded: the block of this group that holds it, and
    /// the byte within that block's output, for [`GpuContext::record_decode_blocks`]. `None` if
    /// the group does not hold that byte coded.
    pub fn locate(&self, name: &str, at: u64) -> Option<(u32, u64)> {
        self.slices.iter().filter(|s| s.name == name).find_map(|s| {
            let (first, block_words) = s.blocks?;
            let within = at.checked_sub(s.tensor_offset).filter(|&w| w < s.bytes)?;
            let block_bytes = 4 * block_words as u64;
            Some((first + (within / block_bytes) as u32, within % block_bytes))
        })
    }
}

/// GPU time of recorded work, and how it was measured.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    /// Seconds per iteration.
    pub seconds: f64,
    /// True when measured with GPU timestamps, false for wall time around a device wait.
    pub timestamps: bool,
}

/// Size in bytes of an output region: whole 32-bit words.
pub fn padded(bytes: u64) -> u64 {
    bytes.div_ceil(4) * 4
}

/// A group being filled on the CPU.
#[derive(Default)]
struct Builder {
    pieces: Vec<PieceDesc>,
    block_info: Vec<[u32; 2]>,
    chunk_bits: Vec<u8>,
    stream: Vec<u8>,
    raw: Vec<u8>,
    table: Vec<u8>,
    tables: HashMap<u64, u32>,
    escapes: bool,
    stored: Vec<u8>,
    copies: Vec<(u64, u64, u64)>,
    slices: Vec<Slice>,
    out: u64,
}

impl Builder {
    /// A builder with room for `stream` and `raw` bytes, so appending never reallocates (each
    /// reallocation copies everything read so far, which showed in load times).
    fn with_capacity(stream: u64, raw: u64) -> Self {
        Builder {
            stream: Vec::with_capacity(stream as usize),
            raw: Vec::with_capacity(raw as usize),
            ..Default::default()
        }
    }
    fn is_empty(&self) -> bool {
        self.slices.is_empty()
    }
    fn fits(&self, limit: u64, stream: u64, raw: u64, out: u64, stored: u64) -> bool {
        self.stream.len() as u64 + stream + 4 <= limit
            && self.raw.len() as u64 + raw + 4 <= limit
            && self.out + out <= limit
            && self.stored.len() as u64 + stored <= limit
            && self.table.len() as u64 + 16384 <= limit
            && self.chunk_bits.len() as u64 + 2 * (self.block_info.len() as u64 + 1) * LANES as u64
                <= limit
    }
}

impl GpuContext {
    pub(super) fn buffer(&self, label: &str, mut bytes: Vec<u8>) -> wgpu::Buffer {
        bytes.resize(padded(bytes.len().max(4) as u64) as usize, 0);
        self.device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some(label),
                contents: &bytes,
                usage: wgpu::BufferUsages::STORAGE
                    | wgpu::BufferUsages::COPY_SRC
                    | wgpu::BufferUsages::COPY_DST,
            })
    }

    fn binding_limit(&self) -> u64 {
        self.limits
            .max_storage_buffer_binding_size
            .min(self.limits.max_buffer_size)
    }

    /// Uploads `tensors` of `archive` for decoding: their compressed parts are read from the file
    /// and copied to the GPU as they are (nothing is decoded on the CPU; only the small decode
    /// tables and block starts are derived). Gives one group when everything fits the device's
    /// binding limit, else several, splitting large tensors by blocks.
    pub fn upload(&self, archive: &Archive, tensors: &[&TensorEntry]) -> Result<Vec<GpuGroup>> {
        let limit = self.binding_limit();
        let mut groups = Vec::new();
        let part_total = |f: fn(&crate::format::PartRanges) -> (u64, u64)| -> u64 {
            let sum: u64 = tensors
                .iter()
                .filter_map(|t| t.parts.as_ref())
                .map(|p| f(p).1 - f(p).0)
                .sum();
            (sum + 8).min(limit)
        };
        let (stream_cap, raw_cap) = (part_total(|p| p.stream), part_total(|p| p.raw));
        let mut b = Builder::with_capacity(stream_cap, raw_cap);
        for t in tensors {
            let name = &t.meta.name;
            let (Some(layout), Some(parts)) = (&t.layout, &t.parts) else {
                let bytes = padded(t.meta.bytes);
                if !b.fits(limit, 0, 0, bytes, bytes) {
                    groups.push(self.finish(std::mem::replace(
                        &mut b,
                        Builder::with_capacity(stream_cap, raw_cap),
                    ))?);
                    if !b.fits(limit, 0, 0, bytes, bytes) {
                        return Err(Error::TooLarge {
                            what: format!("stored tensor '{name}' on the GPU"),
                            size: bytes,
                            limit,
                        });
                    }
                }
                let mut data = archive.read(name)?;
                data.resize(bytes as usize, 0);
                b.copies.push((b.stored.len() as u64, b.out, bytes));
                b.stored.extend(data);
                b.slices.push(Slice {
                    name: name.clone(),
                    offset: b.out,
                    bytes: t.meta.bytes,
                    tensor_offset: 0,
                    blocks: None,
                });
                b.out += bytes;
                continue;
            };
            let index = archive.read_range(parts.chunks)?;
            let starts = codec::block_starts(&index);
            if starts.last().copied() != Some((parts.stream.1 - parts.stream.0) / 4) {
                return Err(Error::corrupt(
                    name,
                    "chunk index does not match the stream",
                ));
            }
            // The GPU table holds each symbol's top bits, unrotated, in a whole word (top << 16 |
            // length), so the shader needs neither the rotation nor a half-word select; the
            // escape is flagged with bit 15.
            let book = archive.codebook(t)?;
            let escape = book.escape() as u32;
            let lut: Vec<u32> = huffman::decode_table(&book.lens)
                .iter()
                .map(|&e| match (e >> 4) as u32 {
                    sym if sym == escape => 0x8000 | (e & 15) as u32,
                    sym => (codec::rotate_out(sym, layout.sym_bits) << 16) | (e & 15) as u32,
                })
                .collect();
            let block_groups = layout.block_groups();
            let block_raw = block_groups * layout.elems_per_group() * layout.raw_bits() as u64 / 8;
            let raw_len = parts.raw.1 - parts.raw.0;
            let blocks = layout.blocks();
            if blocks == 0 {
                // an empty tensor: nothing to decode, but it has its (empty) place in the output
                b.slices.push(Slice {
                    name: name.clone(),
                    offset: b.out,
                    bytes: 0,
                    tensor_offset: 0,
                    blocks: None,
                });
                continue;
            }
            let mut b0 = 0;
            while b0 < blocks {
                // the largest run of blocks from b0 that fits what is left of this group
                let size = |b1: u64| {
                    let stream = 4 * (starts[b1 as usize] - starts[b0 as usize]);
                    let raw = (b1 * block_raw).min(raw_len) - b0 * block_raw;
                    let out = 4 * ((b1 * block_groups).min(layout.groups()) - b0 * block_groups);
                    (stream, raw, out)
                };
                let fits = |b: &Builder, b1: u64| {
                    let (s, r, o) = size(b1);
                    b.fits(limit, s, r, o, 0)
                };
                if !fits(&b, b0 + 1) {
                    if b.is_empty() {
                        let (s, _, _) = size(b0 + 1);
                        return Err(Error::TooLarge {
                            what: format!("one block of '{name}' on the GPU (binding limit)"),
                            size: s,
                            limit,
                        });
                    }
                    groups.push(self.finish(std::mem::replace(
                        &mut b,
                        Builder::with_capacity(stream_cap, raw_cap),
                    ))?);
                    continue;
                }
                let (mut lo, mut hi) = (b0 + 1, blocks);
                while lo < hi {
                    let mid = (lo + hi).div_ceil(2);
                    if fits(&b, mid) {
                        lo = mid
                    } else {
                        hi = mid - 1
                    }
                }
                let b1 = lo;
                // keyed by where the table lies in the file, so a shared codebook is uploaded once
                let table_base = match b.tables.get(&parts.table.0) {
                    Some(&base) => base,
                    None => {
                        b.escapes |= lut.iter().any(|&e| e & 0x8000 != 0);
                        let base = (b.table.len() / 4) as u32;
                        b.table.extend_from_slice(bytemuck::cast_slice(&lut));
                        b.tables.insert(parts.table.0, base);
                        base
                    }
                };
                let first_block = b.block_info.len() as u32;
                let stream_base = (b.stream.len() / 4) as u64;
                for blk in b0..b1 {
                    let start = stream_base + starts[blk as usize] - starts[b0 as usize];
                    b.block_info.push([b.pieces.len() as u32, start as u32]);
                }
                let (s, r, o) = size(b1);
                let at =
                    |range: (u64, u64), skip: u64, len: u64| (range.0 + skip, range.0 + skip + len);
                b.chunk_bits.extend(
                    &index[(b0 * 2 * LANES as u64) as usize..(b1 * 2 * LANES as u64) as usize],
                );
                archive
                    .append_range(at(parts.stream, 4 * starts[b0 as usize], s), &mut b.stream)?;
                let raw_base = (b.raw.len() / 4) as u32;
                archive.append_range(at(parts.raw, b0 * block_raw, r), &mut b.raw)?;
                b.raw.resize(padded(b.raw.len() as u64) as usize, 0);
                let first_elem = b0 * block_groups * layout.elems_per_group();
                let n = (b1 * block_groups * layout.elems_per_group()).min(layout.n) - first_elem;
                b.pieces.push(PieceDesc {
                    n: n as u32,
                    width: layout.width,
                    sym_bits: layout.sym_bits,
                    raw_bits: layout.raw_bits(),
                    chunk_groups: layout.chunk_groups as u32,
                    groups: (o / 4) as u32,
                    first_block,
                    raw_base,
                    table_base,
                    out_base: (b.out / 4) as u32,
                    pad: [0; 2],
                });
                let bytes = n * layout.width as u64 / 8;
                b.slices.push(Slice {
                    name: name.clone(),
                    offset: b.out,
                    bytes,
                    tensor_offset: first_elem * layout.width as u64 / 8,
                    blocks: Some((first_block, block_groups as u32)),
                });
                b.out += padded(bytes);
                b0 = b1;
            }
        }
        if !b.is_empty() || groups.is_empty() {
            groups.push(self.finish(b)?);
        }
        Ok(groups)
    }

    /// Uploads one tensor as one group, which must fit a single binding (`what` names its use in
    /// the error).
    pub fn upload_one(&self, archive: &Archive, t: &TensorEntry, what: &str) -> Result<GpuGroup> {
        let mut groups = self.upload(archive, &[t])?;
        if groups.len() != 1 || groups[0].slices.len() != 1 {
            return Err(Error::TooLarge {
                what: format!("'{}' as {what} (it spans several bindings)", t.meta.name),
                size: t.meta.bytes,
                limit: self.limits.max_storage_buffer_binding_size,
            });
        }
        Ok(groups.remove(0))
    }

    fn finish(&self, b: Builder) -> Result<GpuGroup> {
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let coded = (!b.pieces.is_empty()).then(|| Coded {
            pieces: self.buffer("pieces", bytemuck::cast_slice(&b.pieces).to_vec()),
            block_info: self.buffer("block info", bytemuck::cast_slice(&b.block_info).to_vec()),
            chunk_bits: self.buffer("chunk index", b.chunk_bits),
            stream: self.buffer("stream", b.stream),
            raw: self.buffer("raw plane", b.raw),
            table: self.buffer("decode tables", b.table),
            blocks: b.block_info.len() as u64,
            escapes: b.escapes,
        });
        let stored = (!b.copies.is_empty()).then(|| (self.buffer("stored", b.stored), b.copies));
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(Error::Gpu(format!("uploading: {e}")));
        }
        let mut resident = stored.as_ref().map_or(0, |s| s.0.size());
        if let Some(c) = &coded {
            resident += c.buffers().iter().map(|b| b.size()).sum::<u64>();
        }
        Ok(GpuGroup {
            slices: b.slices,
            output_bytes: b.out,
            resident_bytes: resident,
            coded,
            stored,
        })
    }

    /// A buffer that can receive decoded tensors and be copied from.
    pub fn output_buffer(&self, bytes: u64) -> Result<wgpu::Buffer> {
        let size = padded(bytes.max(4));
        if size > self.limits.max_buffer_size {
            return Err(Error::TooLarge {
                what: "decode output buffer".into(),
                size,
                limit: self.limits.max_buffer_size,
            });
        }
        Ok(self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("vramzip output"),
            size,
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_SRC
                | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        }))
    }

    /// Records the decode of `group` into `encoder`, its output written at byte `offset` of `out`
    /// (a multiple of 4) as `group.slices` describes. One dispatch for all coded tensors, one copy
    /// per stored tensor. Nothing is submitted: the caller puts its matmul right after.
    pub fn record_decode(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        group: &GpuGroup,
        out: &wgpu::Buffer,
        offset: u64,
    ) -> Result<()> {
        if !offset.is_multiple_of(4) || offset + group.output_bytes > out.size() {
            return Err(Error::InvalidArgument(format!(
                "decode at offset {offset}: needs a multiple of 4 and {} bytes within the {}-byte output",
                group.output_bytes,
                out.size()
            )));
        }
        if let Some(c) = &group.coded {
            // Bind only the group's output range; binding offsets must be aligned, the rest of the
            // offset goes to the shader.
            let align = self.limits.min_storage_buffer_offset_alignment as u64;
            let bind_at = offset / align * align;
            let bind_size = padded(offset - bind_at + group.output_bytes).max(4);
            let params: [u32; 4] = [c.blocks as u32, ((offset - bind_at) / 4) as u32, 0, 0];
            let kernel = &self.kernels.decode;
            let out = (out, bind_at, bind_size);
            self.dispatch_decoder(encoder, kernel, c, &params, out, &[], c.blocks);
        }
        if let Some((stored, copies)) = &group.stored {
            for &(src, dst, len) in copies {
                encoder.copy_buffer_to_buffer(stored, src, out, offset + dst, len);
            }
        }
        Ok(())
    }

    /// Records the decode of the chosen `blocks` of `group` only (see [`GpuGroup::locate`]):
    /// block `blocks[i]` is written to bytes `offset + i * slot_bytes ..` of `out`, where
    /// `slot_bytes` is the largest block output of the group, returned. Random access: a few rows
    /// of a large compressed table without decoding the rest.
    pub fn record_decode_blocks(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        group: &GpuGroup,
        blocks: &[u32],
        out: &wgpu::Buffer,
        offset: u64,
    ) -> Result<u64> {
        let c = group.coded.as_ref().ok_or_else(|| {
            Error::InvalidArgument("the group has no coded tensors to select blocks from".into())
        })?;
        let slot_words = group
            .slices
            .iter()
            .filter_map(|s| s.blocks.map(|b| b.1))
            .max()
            .unwrap_or(0);
        let slot_bytes = 4 * slot_words as u64;
        let bytes = slot_bytes * blocks.len() as u64;
        if !offset.is_multiple_of(4) || offset + bytes > out.size() {
            return Err(Error::InvalidArgument(format!(
                "decode of {} blocks at offset {offset}: needs a multiple of 4 and {bytes} bytes within the {}-byte output",
                blocks.len(),
                out.size()
            )));
        }
        if let Some(bad) = blocks.iter().find(|&&b| b as u64 >= c.blocks) {
            return Err(Error::InvalidArgument(format!(
                "block {bad} of a group of {}",
                c.blocks
            )));
        }
        if blocks.is_empty() {
            return Ok(slot_bytes);
        }
        let align = self.limits.min_storage_buffer_offset_alignment as u64;
        let bind_at = offset / align * align;
        let params: [u32; 4] = [
            blocks.len() as u32,
            ((offset - bind_at) / 4) as u32,
            slot_words,
            0,
        ];
        let selection = self.buffer("block selection", bytemuck::cast_slice(blocks).to_vec());
        let kernel = &self.kernels.decode_select;
        let out = (out, bind_at, offset - bind_at + bytes);
        let n = blocks.len() as u64;
        self.dispatch_decoder(encoder, kernel, c, &params, out, &[&selection], n);
        Ok(slot_bytes)
    }

    /// Records one dispatch of a decoder kernel over `c`: `params` at binding 0, the compressed
    /// buffers at 1 to 6, `out` = (buffer, offset, size) bound at 7, `extra` from 8 on;
    /// `workgroups` one a block.
    #[allow(clippy::too_many_arguments)]
    fn dispatch_decoder(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        kernel: &super::Kernel,
        c: &Coded,
        params: &[u32; 4],
        out: (&wgpu::Buffer, u64, u64),
        extra: &[&wgpu::Buffer],
        workgroups: u64,
    ) {
        let out = wgpu::BindingResource::Buffer(wgpu::BufferBinding {
            buffer: out.0,
            offset: out.1,
            size: std::num::NonZeroU64::new(out.2),
        });
        let resources = c
            .buffers()
            .iter()
            .map(|b| b.as_entire_binding())
            .chain([out])
            .chain(extra.iter().map(|b| b.as_entire_binding()))
            .collect();
        let variant = c.escapes as usize;
        let workgroups = [workgroups as u32, 1];
        self.dispatch_with(encoder, kernel, variant, params, resources, workgroups);
    }

    /// Records a copy of the first `bytes` (rounded down to 16) of `src` to `dst` by a compute
    /// shader: the baseline decode is measured against, beside the copy engine's
    /// `copy_buffer_to_buffer`. Returns the bytes it copies.
    pub fn record_shader_copy(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        src: &wgpu::Buffer,
        dst: &wgpu::Buffer,
        bytes: u64,
    ) -> u64 {
        let bytes = bytes
            .min(src.size())
            .min(dst.size())
            .min(self.binding_limit())
            / 16
            * 16;
        if bytes == 0 {
            return 0;
        }
        let bind = |binding, buffer| wgpu::BindGroupEntry {
            binding,
            resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                buffer,
                offset: 0,
                size: std::num::NonZeroU64::new(bytes),
            }),
        };
        let group = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("copy"),
            layout: &self.kernels.copy.bind_layout,
            entries: &[bind(0, src), bind(1, dst)],
        });
        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some("vramzip copy"),
            timestamp_writes: None,
        });
        pass.set_pipeline(self.kernels.copy.pipeline(&self.device, 0));
        pass.set_bind_group(0, &group, &[]);
        // about four 16-byte steps per thread
        pass.dispatch_workgroups(
            (bytes / 16)
                .div_ceil(1024)
                .min(self.limits.max_compute_workgroups_per_dimension as u64) as u32,
            1,
            1,
        );
        bytes
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
        let view = staging
            .get_mapped_range(..)
            .map_err(|e| Error::Gpu(format!("read back: {e:?}")))?;
        Ok(view[..bytes as usize].to_vec())
    }

    /// Convenience: decodes one group on the GPU, waits, and returns its output bytes.
    pub fn decode_to_vec(&self, group: &GpuGroup) -> Result<Vec<u8>> {
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let out = self.output_buffer(group.output_bytes)?;
        let mut encoder = self.device.create_command_encoder(&Default::default());
        self.record_decode(&mut encoder, group, &out, 0)?;
        self.queue.submit([encoder.finish()]);
        let bytes = self.read_back(&out, group.output_bytes);
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(Error::Gpu(format!("decoding: {e}")));
        }
        bytes
    }

    /// Convenience: uploads and decodes one tensor on the GPU, waits, and returns its bytes.
    pub fn decode_tensor(&self, archive: &Archive, t: &TensorEntry) -> Result<Vec<u8>> {
        let mut bytes = vec![0u8; t.meta.bytes as usize];
        for group in self.upload(archive, &[t])? {
            let out = self.decode_to_vec(&group)?;
            for s in &group.slices {
                let (from, to) = (s.offset as usize, s.tensor_offset as usize);
                bytes[to..to + s.bytes as usize]
                    .copy_from_slice(&out[from..from + s.bytes as usize]);
            }
        }
        Ok(bytes)
    }

    /// Times `iters` repetitions of `record` (recorded into one encoder, submitted once): GPU
    /// timestamps around the whole when the device has them, else wall time around a wait.
    pub fn time(
        &self,
        iters: u32,
        record: &mut dyn FnMut(&mut wgpu::CommandEncoder) -> Result<()>,
    ) -> Result<Timing> {
        // warm up: pipelines, first touch of buffers
        let mut encoder = self.device.create_command_encoder(&Default::default());
        record(&mut encoder)?;
        self.queue.submit([encoder.finish()]);
        self.wait()?;
        let query = self.timestamps.then(|| {
            self.device.create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("timing"),
                ty: wgpu::QueryType::Timestamp,
                count: 2,
            })
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
            if ticks[1] > ticks[0] {
                let ns = (ticks[1] - ticks[0]) as f64 * self.queue.get_timestamp_period() as f64;
                return Ok(Timing {
                    seconds: ns * 1e-9 / iters as f64,
                    timestamps: true,
                });
            }
        }
        Ok(Timing {
            seconds: wall / iters as f64,
            timestamps: false,
        })
    }
}
