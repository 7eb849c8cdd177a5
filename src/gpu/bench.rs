//! Side-by-side GPU measurements for `vramzip bench`: decode beside a plain buffer copy of the
//! same decoded size and beside an uncompressed upload, in one run.

use super::{GpuContext, GpuTensor, Timing};
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
    /// Buffer-to-buffer copy of `decoded_bytes`.
    pub copy: Timing,
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
}

fn iterations_for(one: f64, budget_s: f64) -> u32 {
    (budget_s / one.max(1e-7)).clamp(1.0, 2000.0) as u32
}

/// Runs the measurements; `original` is the concatenation of the original tensors, in file order.
pub fn bench_file(ctx: &GpuContext, archive: &Archive, original: &[Vec<u8>], budget_s: f64) -> Result<GpuBench> {
    let t0 = std::time::Instant::now();
    let tensors: Vec<GpuTensor> = ctx.upload_all(archive, |_| true)?;
    ctx.wait()?;
    let upload_compressed_s = t0.elapsed().as_secs_f64();
    let mut offsets = Vec::new();
    let mut total = 0u64;
    for t in &tensors {
        offsets.push(total);
        total += super::decode::padded(t.decoded_bytes);
    }
    let out = ctx.output_buffer(total)?;
    let refs: Vec<&GpuTensor> = tensors.iter().collect();
    let mut record = |e: &mut wgpu::CommandEncoder| ctx.record_decode(e, &refs, &out, &offsets);
    let once = ctx.time(1, &mut record)?;
    let decode = ctx.time(iterations_for(once.seconds, budget_s), &mut record)?;

    let got = ctx.read_back(&out, total)?;
    let bit_exact = tensors.iter().zip(&offsets).zip(original).all(|((t, &off), orig)| {
        &got[off as usize..(off + t.decoded_bytes) as usize] == orig.as_slice()
    });

    let src = ctx.output_buffer(total)?;
    let mut copy_rec = |e: &mut wgpu::CommandEncoder| {
        e.copy_buffer_to_buffer(&src, 0, &out, 0, total);
        Ok(())
    };
    let once = ctx.time(1, &mut copy_rec)?;
    let copy = ctx.time(iterations_for(once.seconds, budget_s), &mut copy_rec)?;

    let raw: Vec<u8> = original.iter().flat_map(|t| {
        let mut v = t.clone();
        v.resize(super::decode::padded(t.len() as u64) as usize, 0);
        v
    }).collect();
    if raw.len() as u64 != total {
        return Err(Error::Gpu("bench: original sizes differ from the uploaded tensors".into()));
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
        resident_bytes: tensors.iter().map(|t| t.resident_bytes).sum(),
        decode,
        copy,
        upload_raw_s: best,
        upload_compressed_s,
        bit_exact,
    })
}
