//! Transcoding at upload: a bf16 layer's Huffman code, already in VRAM, into the fixed-rate form
//! (`codec::fixed`), on the GPU (`shaders/fixed_build.wgsl`), so that only the compressed bytes
//! cross the bus and the CPU decodes nothing. The GPU decodes the layer into a scratch buffer and
//! counts its exponents; the CPU reads the 256 counts back, picks the palette as its own builder
//! does ([`Palette::of`]) and sizes the form; the GPU packs it. The result is the CPU builder's
//! form word for word (tested), so products on it give the same bits.

use super::GpuContext;
use super::kernels::{Binding, BufferRange};
use super::linear::{Linear, Stored};
use super::resident::FixedWeight;
use crate::codec::fixed::{EXCEPTION_BLOCK, Palette, offsets};
use crate::error::{Error, Result};

/// fixed_build.wgsl's parameters.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
struct BuildParams {
    n: u32,
    blocks: u32,
    src_at: u32,
    palette_len: u32,
    at: [u32; 4],
    palette: [u32; 4],
}

impl GpuContext {
    /// The fixed form of `layer`'s weight (a bf16 layer kept Huffman-coded), built on the GPU from
    /// its Huffman code. Waits once, for the exponent counts.
    pub(super) fn transcode_fixed(&self, layer: &Linear) -> Result<FixedWeight> {
        // (fixed_from checked that the layer is bf16)
        let Stored::Huffman { group, offset } = &layer.stored else {
            return Err(Error::InvalidArgument(format!(
                "'{}' is kept in the fixed form already",
                layer.name
            )));
        };
        let offset = *offset;
        let n = layer.rows as usize * layer.cols as usize;
        let blocks = n.div_ceil(EXCEPTION_BLOCK);
        let [codes_at, palette_at, starts_at, exceptions_at] = offsets(n);
        let limit = self.binding_limit();
        // the shader's word indices are u32: the largest form (every element listed) must fit
        if (exceptions_at + n) as u64 > u32::MAX as u64 {
            return Err(Error::TooLarge {
                what: format!("'{}' for the fixed form's builder (words)", layer.name),
                size: (exceptions_at + n) as u64,
                limit: u32::MAX as u64,
            });
        }
        if !offset.is_multiple_of(4) {
            return Err(Error::Gpu(format!(
                "'{}' decodes at byte {offset} of its group, not a whole word",
                layer.name
            )));
        }
        let scratch = self.output_buffer(group.output_bytes)?;
        let counts = self.output_buffer(4 * (256 + blocks as u64))?;
        let mut params = BuildParams {
            n: n as u32,
            blocks: blocks as u32,
            src_at: (offset / 4) as u32,
            palette_len: 0,
            at: [codes_at, palette_at, starts_at, exceptions_at].map(|a| a as u32),
            palette: [0; 4],
        };
        let [histogram, pack, starts, exceptions] = &self.kernels.fixed_build;
        let workgroups = [blocks.max(1) as u32, 1];

        // bound for this build alone, so that nothing keeps the scratch once it ends
        let pass = |encoder: &mut wgpu::CommandEncoder,
                    kernel,
                    params: &BuildParams,
                    bound: &[BufferRange],
                    workgroups| {
            self.dispatch_ranges(
                encoder,
                kernel,
                &[],
                params,
                bound,
                workgroups,
                Binding::Once,
            )
        };
        let mut encoder = self.device.create_command_encoder(&Default::default());
        self.record_decode_once(&mut encoder, group, &scratch)?;
        let bound = [(&scratch, 0, None), (&counts, 0, None), (&counts, 0, None)];
        pass(&mut encoder, histogram, &params, &bound, workgroups);
        self.queue.submit([encoder.finish()]);
        let read = self.read_back(&counts, 4 * 256)?;
        let hist: [u64; 256] = std::array::from_fn(|e| {
            u32::from_le_bytes(read[4 * e..4 * e + 4].try_into().unwrap()) as u64
        });
        let counted: u64 = hist.iter().sum();
        if counted != n as u64 {
            return Err(Error::Gpu(format!(
                "'{}': the fixed form's builder counted {counted} elements of {n}",
                layer.name
            )));
        }
        let palette = Palette::of(&hist);
        let listed = palette.exceptions(&hist) as usize;
        params.palette_len = palette.exponents.len() as u32;
        params.palette = palette.words();

        let size = 4 * (exceptions_at + listed) as u64;
        if size > limit {
            return Err(Error::TooLarge {
                what: format!("'{}' in the fixed form (one binding)", layer.name),
                size,
                limit,
            });
        }
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let form = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("fixed form"),
            size,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(Error::Gpu(format!("making room for '{}': {e}", layer.name)));
        }
        let mut encoder = self.device.create_command_encoder(&Default::default());
        let bound = [(&scratch, 0, None), (&form, 0, None), (&counts, 0, None)];
        pass(&mut encoder, pack, &params, &bound, workgroups);
        pass(&mut encoder, starts, &params, &bound, [1, 1]);
        pass(&mut encoder, exceptions, &params, &bound, workgroups);
        self.queue.submit([encoder.finish()]);
        Ok(FixedWeight {
            buffer: form,
            exceptions: listed,
        })
    }
}
