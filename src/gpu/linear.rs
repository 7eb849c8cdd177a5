//! Linear layers on compressed weights: the weight stays compressed in VRAM and is decoded into a
//! reused scratch buffer right before the matrix-vector product, in the caller's encoder.

use super::{GpuContext, GpuGroup};
use crate::error::{Error, Result};
use crate::format::Archive;
use wgpu::util::DeviceExt;

/// A 2-D weight (bf16 or f32, rows x cols) resident in VRAM in compressed form.
#[derive(Debug)]
pub struct Linear {
    /// The weight's name.
    pub name: String,
    /// Output features.
    pub rows: u32,
    /// Input features.
    pub cols: u32,
    is_f32: bool,
    group: GpuGroup,
    offset: u64,
}

impl Linear {
    /// Bytes of the decoded weight (what the scratch must hold).
    pub fn decoded_bytes(&self) -> u64 {
        self.group.output_bytes
    }
    /// Bytes the compressed weight occupies in VRAM.
    pub fn resident_bytes(&self) -> u64 {
        self.group.resident_bytes
    }
}

impl GpuContext {
    /// Uploads the weight `name` of `archive` for use as a linear layer. It must be a 2-D BF16
    /// (with an even number of columns) or F32 tensor that fits one binding.
    pub fn linear(&self, archive: &Archive, name: &str) -> Result<Linear> {
        let t = archive
            .tensor(name)
            .ok_or_else(|| Error::InvalidArgument(format!("no tensor '{name}'")))?;
        let (rows, cols) = match t.meta.shape[..] {
            [r, c] if r <= u32::MAX as u64 && c <= u32::MAX as u64 => (r as u32, c as u32),
            _ => {
                return Err(Error::InvalidArgument(format!(
                    "'{name}' is not a 2-D matrix: {:?}",
                    t.meta.shape
                )));
            }
        };
        let is_f32 = match t.meta.dtype.as_str() {
            "F32" => true,
            "BF16" if cols % 2 == 0 => false,
            other => {
                return Err(Error::InvalidArgument(format!(
                    "'{name}': linear layers take F32 or BF16 with an even column count, not {other} x {cols}"
                )));
            }
        };
        let mut groups = self.upload(archive, &[t])?;
        if groups.len() != 1 || groups[0].slices.len() != 1 {
            return Err(Error::TooLarge {
                what: format!("'{name}' as one linear layer (it spans several bindings)"),
                size: t.meta.bytes,
                limit: self.limits.max_storage_buffer_binding_size,
            });
        }
        let group = groups.remove(0);
        let offset = group.slices[0].offset;
        Ok(Linear {
            name: name.to_string(),
            rows,
            cols,
            is_f32,
            group,
            offset,
        })
    }

    /// A scratch buffer large enough for the decoded weight of any of `layers`, reused by all.
    pub fn scratch_for(&self, layers: &[&Linear]) -> Result<wgpu::Buffer> {
        self.output_buffer(layers.iter().map(|l| l.decoded_bytes()).max().unwrap_or(4))
    }

    /// Records y = W x: the decode of W into `scratch`, then the product, in `encoder`.
    /// `x` holds `cols` f32, `y` receives `rows` f32.
    pub fn record_linear(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        layer: &Linear,
        scratch: &wgpu::Buffer,
        x: &wgpu::Buffer,
        y: &wgpu::Buffer,
    ) -> Result<()> {
        self.record_decode(encoder, &layer.group, scratch, 0)?;
        self.record_gemv(
            encoder,
            scratch,
            layer.offset,
            layer.is_f32,
            layer.rows,
            layer.cols,
            x,
            y,
        )
    }

    /// Records y = W x for an uncompressed W at byte `offset` of `w` (bf16 when `is_f32` is
    /// false). Fixed reduction order: the same W gives the same bits, decoded or not.
    #[allow(clippy::too_many_arguments)]
    pub fn record_gemv(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        w: &wgpu::Buffer,
        offset: u64,
        is_f32: bool,
        rows: u32,
        cols: u32,
        x: &wgpu::Buffer,
        y: &wgpu::Buffer,
    ) -> Result<()> {
        let w_bytes = rows as u64 * cols as u64 * if is_f32 { 4 } else { 2 };
        if !offset.is_multiple_of(4)
            || offset + w_bytes > w.size()
            || x.size() < 4 * cols as u64
            || y.size() < 4 * rows as u64
        {
            return Err(Error::InvalidArgument(format!(
                "gemv {rows}x{cols}: W needs {w_bytes} bytes at offset {offset} of {}, x {} bytes of {}, y {} of {}",
                w.size(),
                4 * cols as u64,
                x.size(),
                4 * rows as u64,
                y.size()
            )));
        }
        let params: [u32; 4] = [rows, cols, (offset / 4) as u32, is_f32 as u32];
        let params = self
            .device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some("gemv params"),
                contents: bytemuck::cast_slice(&params),
                usage: wgpu::BufferUsages::UNIFORM,
            });
        let bind = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("gemv"),
            layout: &self.kernels.gemv_layout,
            entries: &[
                wgpu::BindGroupEntry {
                    binding: 0,
                    resource: params.as_entire_binding(),
                },
                wgpu::BindGroupEntry {
                    binding: 1,
                    resource: w.as_entire_binding(),
                },
                wgpu::BindGroupEntry {
                    binding: 2,
                    resource: x.as_entire_binding(),
                },
                wgpu::BindGroupEntry {
                    binding: 3,
                    resource: y.as_entire_binding(),
                },
            ],
        });
        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some("vramzip gemv"),
            timestamp_writes: None,
        });
        pass.set_pipeline(&self.kernels.gemv);
        pass.set_bind_group(0, &bind, &[]);
        let max = self.limits.max_compute_workgroups_per_dimension;
        pass.dispatch_workgroups(rows.min(max), rows.div_ceil(max), 1);
        Ok(())
    }
}
