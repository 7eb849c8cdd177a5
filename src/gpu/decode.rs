//! The recording of decodes: a whole group into a caller's buffer, or chosen blocks of it.

use super::kernels::{Binding, Kernel, escapes_constant, table_constant};
use super::upload::{Coded, padded};
use super::{GpuContext, GpuGroup};
use crate::error::{Error, Result};
use crate::format::{Archive, TensorEntry};

/// The decoders' parameters (`struct Params` in decode.wgsl and decode_select.wgsl).
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
struct DecodeParams {
    /// Blocks in this dispatch (decode), or blocks selected (decode_select).
    blocks: u32,
    /// Word of the bound output where the output starts.
    out_offset: u32,
    /// decode_select: output words of one slot.
    slot_words: u32,
    pad: u32,
}

/// Most workgroups a decoder dispatch starts: about what a large GPU holds at once (an H100 or
/// H200 has 132 multiprocessors of up to 8 such workgroups). Each takes a contiguous range of
/// the blocks, so it loads a tensor's code table once for all its blocks of that tensor.
const RESIDENT_WORKGROUPS: u64 = 2048;

/// The decoders' override constants: escapes in the dispatch's tables, and where the table is
/// read.
pub(super) fn decoder_constants(
    escapes: bool,
    table_in_workgroup: bool,
) -> [(&'static str, f64); 2] {
    [
        escapes_constant(escapes),
        table_constant(table_in_workgroup),
    ]
}

impl GpuContext {
    /// The decoders' override constants for a dispatch whose tables have escapes or not, as
    /// this context takes them (see [`GpuContext::escape_test_always`]).
    pub(super) fn decoder_constants(&self, escapes: bool) -> [(&'static str, f64); 2] {
        decoder_constants(escapes || self.escape_test_always, self.table_in_workgroup)
    }
}

/// Workgroups for a decoder dispatch of `blocks` blocks.
pub(super) fn resident_workgroups(blocks: u64) -> u32 {
    blocks.clamp(1, RESIDENT_WORKGROUPS) as u32
}

impl GpuContext {
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
        self.record_decode_as(encoder, group, out, offset, Binding::Cached)
    }

    /// As [`GpuContext::record_decode`] at offset 0, for a decode done once: nothing keeps `out`
    /// or the group alive once the caller drops them (see `Binding`).
    pub(super) fn record_decode_once(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        group: &GpuGroup,
        out: &wgpu::Buffer,
    ) -> Result<()> {
        self.record_decode_as(encoder, group, out, 0, Binding::Once)
    }

    fn record_decode_as(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        group: &GpuGroup,
        out: &wgpu::Buffer,
        offset: u64,
        binding: Binding,
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
            let params = DecodeParams {
                blocks: c.blocks as u32,
                out_offset: ((offset - bind_at) / 4) as u32,
                slot_words: 0,
                pad: 0,
            };
            let kernel = &self.kernels.decode;
            let out = (out, bind_at, bind_size);
            self.dispatch_decoder(encoder, kernel, c, &params, out, &[], c.blocks, binding);
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
        let params = DecodeParams {
            blocks: blocks.len() as u32,
            out_offset: ((offset - bind_at) / 4) as u32,
            slot_words,
            pad: 0,
        };
        let selection =
            self.storage_buffer("block selection", bytemuck::cast_slice(blocks).to_vec());
        let kernel = &self.kernels.decode_select;
        let out = (out, bind_at, offset - bind_at + bytes);
        let n = blocks.len() as u64;
        let binding = Binding::Cached;
        self.dispatch_decoder(encoder, kernel, c, &params, out, &[&selection], n, binding);
        Ok(slot_bytes)
    }

    /// Records one dispatch of a decoder kernel over `c`: `params` at binding 0, the compressed
    /// buffers at 1 to 6, `out` = (buffer, offset, size) bound at 7, `extra` from 8 on;
    /// `workgroups` one a block.
    #[allow(clippy::too_many_arguments)]
    fn dispatch_decoder(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        kernel: &Kernel,
        c: &Coded,
        params: &DecodeParams,
        out: (&wgpu::Buffer, u64, u64),
        extra: &[&wgpu::Buffer],
        workgroups: u64,
        binding: Binding,
    ) {
        let ranges: Vec<_> = c
            .buffers()
            .into_iter()
            .map(|b| (b, 0, None))
            .chain([(out.0, out.1, Some(out.2))])
            .chain(extra.iter().map(|&b| (b, 0, None)))
            .collect();
        let constants = self.decoder_constants(c.escapes);
        let workgroups = [resident_workgroups(workgroups), 1];
        self.dispatch_ranges(
            encoder, kernel, &constants, params, &ranges, workgroups, binding,
        );
    }

    /// Convenience: decodes one group on the GPU, waits, and returns its output bytes.
    pub fn decode_to_vec(&self, group: &GpuGroup) -> Result<Vec<u8>> {
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let out = self.output_buffer(group.output_bytes)?;
        let mut encoder = self.device.create_command_encoder(&Default::default());
        self.record_decode_once(&mut encoder, group, &out)?;
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
}
