//! Upload of compressed tensors in groups, output buffers, and reading results back.
//!
//! A group is what one dispatch decodes: the parts of many tensors concatenated into one set of
//! buffers, with a descriptor per *piece* (a tensor, or a range of its blocks when the tensor is
//! too large for one binding). Tensors stored verbatim travel in the group too and are copied.

use super::GpuContext;
use crate::codec::{self, Codebook, CodedTensor, Layout};
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
    index: wgpu::Buffer,
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
            &self.index,
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
    pub(super) stored: Option<Stored>,
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

/// Size in bytes of an output region: whole 32-bit words.
pub fn padded(bytes: u64) -> u64 {
    bytes.div_ceil(4) * 4
}

/// A tensor to upload.
#[derive(Clone, Copy, Debug)]
pub enum Source<'a> {
    /// An original tensor of an archive, coded or stored: its parts are read from the file, only
    /// the ranges each group needs.
    Archive(&'a Archive, &'a TensorEntry),
    /// A coded tensor in memory, under a name of the caller's choosing.
    Coded(&'a str, &'a CodedTensor),
}

/// The two parts of a coded tensor that are copied by ranges.
#[derive(Clone, Copy)]
enum Part {
    Stream,
    Raw,
}

/// Identifies a code table within one upload: (archive, where the table lies in its file), or
/// (0, the address of an in-memory codebook).
type TableKey = (usize, u64);

impl Source<'_> {
    fn name(&self) -> &str {
        match self {
            Source::Archive(_, t) => &t.meta.name,
            Source::Coded(name, _) => name,
        }
    }
    fn layout(&self) -> Option<Layout> {
        match self {
            Source::Archive(_, t) => t.layout().copied(),
            Source::Coded(_, c) => Some(c.layout),
        }
    }
    /// A stored tensor's bytes.
    fn stored(&self) -> Result<Vec<u8>> {
        match self {
            Source::Archive(a, t) => a.read(&t.meta.name),
            Source::Coded(name, _) => Err(Error::InvalidArgument(format!("'{name}' is coded"))),
        }
    }
    fn index(&self) -> Result<Vec<u8>> {
        match self {
            Source::Archive(a, t) => a.read_range(part_ranges(t)?.index),
            Source::Coded(_, c) => Ok(c.encoded.index.clone()),
        }
    }
    fn codebook(&self) -> Result<std::sync::Arc<Codebook>> {
        match self {
            Source::Archive(a, t) => Ok(std::sync::Arc::new(a.codebook(t)?)),
            Source::Coded(_, c) => Ok(c.codebook.clone()),
        }
    }
    fn table_key(&self) -> TableKey {
        match self {
            Source::Archive(a, t) => (
                *a as *const Archive as usize,
                t.parts().map_or(0, |p| p.table.0),
            ),
            Source::Coded(_, c) => (0, std::sync::Arc::as_ptr(&c.codebook) as usize as u64),
        }
    }
    /// Bytes of a part (0 for a stored tensor).
    fn part_bytes(&self, part: Part) -> u64 {
        match self {
            Source::Archive(_, t) => t.parts().map_or(0, |p| {
                let (s, e) = match part {
                    Part::Stream => p.stream,
                    Part::Raw => p.raw,
                };
                e - s
            }),
            Source::Coded(_, c) => match part {
                Part::Stream => c.encoded.stream.len() as u64,
                Part::Raw => c.encoded.raw.len() as u64,
            },
        }
    }
    /// Appends `len` bytes of a part, from byte `skip` of it, to `buf`.
    fn append(&self, part: Part, skip: u64, len: u64, buf: &mut Vec<u8>) -> Result<()> {
        match self {
            Source::Archive(a, t) => {
                let p = part_ranges(t)?;
                let start = match part {
                    Part::Stream => p.stream.0,
                    Part::Raw => p.raw.0,
                } + skip;
                a.append_range((start, start + len), buf)
            }
            Source::Coded(name, c) => {
                let bytes = match part {
                    Part::Stream => &c.encoded.stream,
                    Part::Raw => &c.encoded.raw,
                };
                let piece = bytes
                    .get(skip as usize..(skip + len) as usize)
                    .ok_or_else(|| Error::corrupt(name, "its parts are shorter than its layout"))?;
                buf.extend_from_slice(piece);
                Ok(())
            }
        }
    }
}

fn part_ranges(t: &TensorEntry) -> Result<crate::format::PartRanges> {
    t.parts()
        .copied()
        .ok_or_else(|| Error::InvalidArgument(format!("'{}' is not coded", t.meta.name)))
}

/// A group being filled on the CPU.
#[derive(Default)]
struct Builder {
    pieces: Vec<PieceDesc>,
    block_info: Vec<[u32; 4]>,
    index: Vec<u8>,
    stream: Vec<u8>,
    raw: Vec<u8>,
    table: Vec<u8>,
    tables: HashMap<TableKey, u32>,
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
    fn fits(&self, limit: u64, [stream, raw, out, index]: [u64; 4], stored: u64) -> bool {
        self.stream.len() as u64 + stream + 4 <= limit
            && self.raw.len() as u64 + raw + 4 <= limit
            && self.out + out <= limit
            && self.stored.len() as u64 + stored <= limit
            && self.table.len() as u64 + 8192 <= limit
            && self.index.len() as u64 + index + 4 <= limit
            && 16 * (self.block_info.len() as u64 + 1) <= limit
    }
}

impl GpuContext {
    /// A storage buffer holding `bytes` (padded to whole words), for kernels to read.
    pub fn storage_buffer(&self, label: &str, mut bytes: Vec<u8>) -> wgpu::Buffer {
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

    pub(super) fn binding_limit(&self) -> u64 {
        self.limits
            .max_storage_buffer_binding_size
            .min(self.limits.max_buffer_size)
    }

    /// Uploads `tensors` of `archive` for decoding: their compressed parts are read from the file
    /// and copied to the GPU as they are (nothing is decoded on the CPU; only the small decode
    /// tables and block starts are derived). Gives one group when everything fits the device's
    /// binding limit, else several, splitting large tensors by blocks.
    pub fn upload(&self, archive: &Archive, tensors: &[&TensorEntry]) -> Result<Vec<GpuGroup>> {
        let sources: Vec<_> = tensors
            .iter()
            .map(|t| Source::Archive(archive, t))
            .collect();
        self.upload_sources(&sources)
    }

    /// As [`GpuContext::upload`], from any mix of sources: tensors of archives, and coded tensors
    /// in memory (a [`crate::codec::shared::StreamEncoder`]'s output, say).
    pub fn upload_sources(&self, tensors: &[Source]) -> Result<Vec<GpuGroup>> {
        let limit = self.binding_limit();
        let mut groups = Vec::new();
        let part_total = |f: fn(&Source) -> u64| -> u64 {
            let sum: u64 = tensors.iter().map(f).sum();
            (sum + 8).min(limit)
        };
        let stream_cap = part_total(|t| t.part_bytes(Part::Stream));
        let raw_cap = part_total(|t| t.part_bytes(Part::Raw));
        let mut b = Builder::with_capacity(stream_cap, raw_cap);
        for t in tensors {
            let name = &t.name().to_string();
            let Some(layout) = &t.layout() else {
                // a stored tensor is copied as it is; one larger than a binding goes in pieces
                // over several groups, as coded tensors go by blocks
                let data = t.stored()?;
                let largest = limit / 4 * 4;
                if !Builder::default().fits(limit, [0, 0, largest, 0], largest) {
                    return Err(Error::TooLarge {
                        what: format!("stored tensor '{name}' on the GPU"),
                        size: data.len() as u64,
                        limit,
                    });
                }
                let pieces: Vec<&[u8]> = if data.is_empty() {
                    vec![&data[..]]
                } else {
                    data.chunks(largest as usize).collect()
                };
                let mut tensor_offset = 0;
                for piece in pieces {
                    let bytes = padded(piece.len() as u64);
                    if !b.fits(limit, [0, 0, bytes, 0], bytes) {
                        groups.push(self.finish(std::mem::replace(
                            &mut b,
                            Builder::with_capacity(stream_cap, raw_cap),
                        ))?);
                    }
                    b.copies.push((b.stored.len() as u64, b.out, bytes));
                    b.stored.extend_from_slice(piece);
                    b.stored
                        .resize(b.stored.len() + (bytes as usize - piece.len()), 0);
                    b.slices.push(Slice {
                        name: name.clone(),
                        offset: b.out,
                        bytes: piece.len() as u64,
                        tensor_offset,
                        blocks: None,
                    });
                    b.out += bytes;
                    tensor_offset += piece.len() as u64;
                }
                continue;
            };
            let (index, book) = (t.index()?, t.codebook()?);
            let (stream_bytes, raw_bytes) = (t.part_bytes(Part::Stream), t.part_bytes(Part::Raw));
            // what the CPU decoder would refuse, the GPU never takes
            let starts = codec::validate(layout, &book, &index, stream_bytes, raw_bytes, name)?;
            let block_groups = layout.block_groups();
            let block_raw = block_groups * layout.elems_per_group() * layout.raw_bits() as u64 / 8;
            let raw_len = raw_bytes;
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
                    let (b0, b1) = (b0 as usize, b1 as usize);
                    let stream = 4 * (starts.stream[b1] - starts.stream[b0]);
                    let raw = (b1 as u64 * block_raw).min(raw_len) - b0 as u64 * block_raw;
                    let out = 4
                        * ((b1 as u64 * block_groups).min(layout.groups())
                            - b0 as u64 * block_groups);
                    let index = 4 * (starts.index[b1] - starts.index[b0]);
                    [stream, raw, out, index]
                };
                let fits = |b: &Builder, b1: u64| b.fits(limit, size(b1), 0);
                if !fits(&b, b0 + 1) {
                    if b.is_empty() {
                        let [s, ..] = size(b0 + 1);
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
                // keyed by where the table lies, so a shared codebook is uploaded once
                let table_base = match b.tables.get(&t.table_key()) {
                    Some(&base) => base,
                    None => {
                        b.escapes |= book.lens[book.escape()] > 0;
                        let base = (b.table.len() / 4) as u32;
                        let lut = book.gpu_table(layout.sym_bits);
                        b.table.extend_from_slice(bytemuck::cast_slice(&lut));
                        b.tables.insert(t.table_key(), base);
                        base
                    }
                };
                let first_block = b.block_info.len() as u32;
                let stream_base = (b.stream.len() / 4) as u64;
                let index_base = (b.index.len() / 4) as u64;
                let (i0, i1) = (starts.index[b0 as usize], starts.index[b1 as usize]);
                for blk in b0 as usize..b1 as usize {
                    let stream = stream_base + starts.stream[blk] - starts.stream[b0 as usize];
                    let index = index_base + starts.index[blk] - i0;
                    b.block_info
                        .push([b.pieces.len() as u32, stream as u32, index as u32, 0]);
                }
                let [s, r, o, _] = size(b1);
                b.index
                    .extend_from_slice(&index[4 * i0 as usize..4 * i1 as usize]);
                t.append(
                    Part::Stream,
                    4 * starts.stream[b0 as usize],
                    s,
                    &mut b.stream,
                )?;
                let raw_base = (b.raw.len() / 4) as u32;
                t.append(Part::Raw, b0 * block_raw, r, &mut b.raw)?;
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
            pieces: self.storage_buffer("pieces", bytemuck::cast_slice(&b.pieces).to_vec()),
            block_info: self
                .storage_buffer("block info", bytemuck::cast_slice(&b.block_info).to_vec()),
            index: self.storage_buffer("index", b.index),
            stream: self.storage_buffer("stream", b.stream),
            raw: self.storage_buffer("raw plane", b.raw),
            table: self.storage_buffer("decode tables", b.table),
            blocks: b.block_info.len() as u64,
            escapes: b.escapes,
        });
        let stored =
            (!b.copies.is_empty()).then(|| (self.storage_buffer("stored", b.stored), b.copies));
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

    /// Reads `bytes` bytes from the start of `buffer` back to the CPU (submits and waits).
    pub fn read_back(&self, buffer: &wgpu::Buffer, bytes: u64) -> Result<Vec<u8>> {
        let size = padded(bytes.max(4));
        // one staging buffer, reused while it is large enough (held for the whole read, so two
        // threads reading back take turns)
        let mut slot = self.staging.lock().unwrap_or_else(|e| e.into_inner());
        let staging = match slot.as_ref() {
            Some(s) if s.size() >= size => s.clone(),
            _ => {
                let s = self.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("read back"),
                    size,
                    usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                    mapped_at_creation: false,
                });
                *slot = Some(s.clone());
                s
            }
        };
        let mut encoder = self.device.create_command_encoder(&Default::default());
        encoder.copy_buffer_to_buffer(buffer, 0, &staging, 0, size);
        self.queue.submit([encoder.finish()]);
        let (tx, rx) = std::sync::mpsc::channel();
        let range = staging.slice(..size);
        range.map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        let waited = self.wait();
        let mapped = rx
            .recv()
            .map_err(|_| Error::Gpu("read back: no answer from the device".into()))
            .and_then(|r| r.map_err(|e| Error::Gpu(format!("read back: {e}"))));
        if let Err(e) = waited.and(mapped) {
            // a half-done read leaves nothing behind: the next read makes a fresh buffer
            *slot = None;
            return Err(e);
        }
        let read = match range.get_mapped_range() {
            Ok(view) => view[..bytes as usize].to_vec(),
            Err(e) => {
                *slot = None;
                return Err(Error::Gpu(format!("read back: {e:?}")));
            }
        };
        staging.unmap();
        Ok(read)
    }

    /// Bind groups (with their uniform buffers) the context holds for reuse: they are made once
    /// per kernel, parameters and buffers, so a repeated dispatch makes none.
    pub fn cached_bind_groups(&self) -> usize {
        self.binds.len()
    }
}
