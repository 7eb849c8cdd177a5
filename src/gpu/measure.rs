//! Measurement: GPU time of recorded work, and the copy that decode speed is compared with.

use super::GpuContext;
use crate::error::Result;

/// GPU time of recorded work, and how it was measured.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    /// Seconds per iteration.
    pub seconds: f64,
    /// True when measured with GPU timestamps, false for wall time around a device wait.
    pub timestamps: bool,
}

impl GpuContext {
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
        pass.set_pipeline(&self.kernels.copy.pipeline(&self.device, &[]));
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
