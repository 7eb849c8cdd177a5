//! Side-by-side GPU measurements for `vramzip bench`: decode beside a plain buffer copy of the
//! same decoded size and beside an uncompressed upload, in one run.

use super::{GpuContext, GpuGroup, Timing};
use crate::error::{Error, Result};
use crate::format::Archive;

/// GPU figures for one file.
#[derive(Clone, Debug)]
pub struct GpuBench {
    /// Adapter, backend and driver.
    pub adapter: String,
    /// Decoded bytes per decode of the whole file.
    pub decoded_bytes: u64,
    /// Compressed bytes resident in VRAM.
    pub resident_bytes: u64,
    /// Decode of every tensor, recorded in one encoder.
    pub decode: Timing,
    /// Buffer-to-buffer copy (copy engine) of `decoded_bytes`.
    pub copy: Timing,
    /// Compute-shader copy of `shader_copy_bytes`.
    pub shader_copy: Timing,
    /// Bytes the shader copy moves (the decoded size rounded down to 16).
    pub shader_copy_bytes: u64,
    /// `write_buffer` of the original bytes and a wait, wall time.
    pub upload_raw_s: f64,
    /// Upload of the compressed parts from memory, wall time (the GPU side of a compressed load).
    pub upload_compressed_s: f64,
    /// Whether the GPU output equals the original bytes.
    pub bit_exact: bool,
}

impl GpuBench {
    /// Decoded GB/s.
    pub fn decode_gbps(&self) -> f64 {
        self.decoded_bytes as f64 / self.decode.seconds / 1e9
    }
    /// Copied GB/s (bytes copied, not read + written).
    pub fn copy_gbps(&self) -> f64 {
        self.decoded_bytes as f64 / self.copy.seconds / 1e9
    }
    /// Copied GB/s of the compute-shader copy.
    pub fn shader_copy_gbps(&self) -> f64 {
        self.shader_copy_bytes as f64 / self.shader_copy.seconds / 1e9
    }
}

fn iterations_for(one: f64, budget_s: f64) -> u32 {
    (budget_s / one.max(1e-7)).clamp(1.0, 2000.0) as u32
}

/// Runs the measurements; `original` is the concatenation of the original tensors, in file order.
pub fn bench_file(
    ctx: &GpuContext,
    archive: &Archive,
    original: &[Vec<u8>],
    budget_s: f64,
) -> Result<GpuBench> {
    let t0 = std::time::Instant::now();
    let entries: Vec<_> = archive.tensors.iter().collect();
    let groups: Vec<GpuGroup> = ctx.upload(archive, &entries)?;
    ctx.wait()?;
    let upload_compressed_s = t0.elapsed().as_secs_f64();
    let mut offsets = Vec::new();
    let mut total = 0u64;
    for g in &groups {
        offsets.push(total);
        total += g.output_bytes;
    }
    let out = ctx.output_buffer(total)?;
    let mut record = |e: &mut wgpu::CommandEncoder| {
        groups
            .iter()
            .zip(&offsets)
            .try_for_each(|(g, &off)| ctx.record_decode(e, g, &out, off))
    };
    let once = ctx.time(1, &mut record)?;
    let decode = ctx.time(iterations_for(once.seconds, budget_s), &mut record)?;

    let got = ctx.read_back(&out, total)?;
    let index: std::collections::HashMap<&str, usize> = archive
        .tensors
        .iter()
        .enumerate()
        .map(|(i, t)| (t.meta.name.as_str(), i))
        .collect();
    let bit_exact = groups.iter().zip(&offsets).all(|(g, &base)| {
        g.slices.iter().all(|s| {
            let at = (base + s.offset) as usize;
            let orig = &original[index[s.name.as_str()]]
                [s.tensor_offset as usize..(s.tensor_offset + s.bytes) as usize];
            &got[at..at + s.bytes as usize] == orig
        })
    });

    let src = ctx.output_buffer(total)?;
    let mut copy_rec = |e: &mut wgpu::CommandEncoder| {
        e.copy_buffer_to_buffer(&src, 0, &out, 0, total);
        Ok(())
    };
    let once = ctx.time(1, &mut copy_rec)?;
    let copy = ctx.time(iterations_for(once.seconds, budget_s), &mut copy_rec)?;
    let mut shader_copy_bytes = 0;
    let mut shader_rec = |e: &mut wgpu::CommandEncoder| {
        shader_copy_bytes = ctx.record_shader_copy(e, &src, &out, total);
        Ok(())
    };
    let once = ctx.time(1, &mut shader_rec)?;
    let shader_copy = ctx.time(iterations_for(once.seconds, budget_s), &mut shader_rec)?;

    let mut raw: Vec<u8> = original.concat();
    raw.resize(super::decode::padded(raw.len() as u64) as usize, 0);
    if raw.len() as u64 > total {
        return Err(Error::Gpu(
            "bench: original sizes exceed the decoded output".into(),
        ));
    }
    let mut best = f64::MAX;
    for _ in 0..3 {
        let t0 = std::time::Instant::now();
        ctx.queue.write_buffer(&src, 0, &raw);
        ctx.queue.submit([]);
        ctx.wait()?;
        best = best.min(t0.elapsed().as_secs_f64());
    }
    Ok(GpuBench {
        adapter: ctx.describe(),
        decoded_bytes: total,
        resident_bytes: groups.iter().map(|g| g.resident_bytes).sum(),
        decode,
        copy,
        shader_copy,
        shader_copy_bytes,
        upload_raw_s: best,
        upload_compressed_s,
        bit_exact,
    })
}
