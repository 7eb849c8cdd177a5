//! Side-by-side GPU measurements for `vramzip bench`: decode beside a plain buffer copy of the
//! same decoded size and beside an uncompressed upload, in one run.

use super::{GpuContext, GpuGroup, Timing};
use crate::error::Result;
use crate::format::Archive;
use std::path::Path;

/// GPU figures for one file.
#[derive(Clone, Debug)]
pub struct GpuBench {
    /// Adapter, backend and driver.
    pub adapter: String,
    /// The backend alone (`Vulkan`, `Metal`, `Dx12`, `Gl`).
    pub backend: String,
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
    /// Loading the uncompressed file to VRAM: read its data section, `write_buffer`, wait (wall
    /// time, best of three, the file in the page cache).
    pub load_raw_s: f64,
    /// Loading the compressed file to VRAM as ready-to-use weights: read, upload, decode on the
    /// GPU, wait (wall time, best of three, the file in the page cache).
    pub load_compressed_s: f64,
    /// Loading the compressed file decoded on the CPU, then uploaded (wall time, best of three).
    pub load_cpu_decoded_s: f64,
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

fn best_of_three(mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    let mut best = f64::MAX;
    for _ in 0..3 {
        let t0 = std::time::Instant::now();
        f()?;
        best = best.min(t0.elapsed().as_secs_f64());
    }
    Ok(best)
}

/// Runs the measurements on `archive`, the compressed form of the file `input`; `original` holds
/// the original tensors' bytes in file order.
pub fn bench_file(
    ctx: &GpuContext,
    input: &Path,
    archive: &Archive,
    original: &[Vec<u8>],
    budget_s: f64,
) -> Result<GpuBench> {
    let entries: Vec<_> = archive.tensors.iter().collect();
    let groups: Vec<GpuGroup> = ctx.upload(archive, &entries)?;
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

    let load_raw_s = best_of_three(|| load_raw(ctx, input))?;
    let load_compressed_s = best_of_three(|| load_gpu_decoded(ctx, archive.path()))?;
    let load_cpu_decoded_s = best_of_three(|| load_cpu_decoded(ctx, archive.path()))?;
    Ok(GpuBench {
        adapter: ctx.describe(),
        backend: format!("{:?}", ctx.info.backend),
        decoded_bytes: total,
        resident_bytes: groups.iter().map(|g| g.resident_bytes).sum(),
        decode,
        copy,
        shader_copy,
        shader_copy_bytes,
        load_raw_s,
        load_compressed_s,
        load_cpu_decoded_s,
        bit_exact,
    })
}

/// Loads an uncompressed safetensors file into VRAM: reads its data section and uploads it,
/// waiting until the GPU has it.
pub fn load_raw(ctx: &GpuContext, path: &Path) -> Result<()> {
    let file = crate::format::SafetensorsFile::open(path)?;
    let len = file.data_bytes();
    let mut data = vec![0u8; super::padded(len) as usize];
    file.read_data_into(0, &mut data[..len as usize])?;
    let buffer = ctx.output_buffer(data.len() as u64)?;
    ctx.queue.write_buffer(&buffer, 0, &data);
    ctx.queue.submit([]);
    ctx.wait()
}

/// Loads a compressed file into VRAM as ready-to-use weights: compressed parts uploaded, decoded
/// on the GPU.
pub fn load_gpu_decoded(ctx: &GpuContext, path: &Path) -> Result<()> {
    let archive = Archive::open(path)?;
    let entries: Vec<_> = archive.tensors.iter().collect();
    let groups = ctx.upload(&archive, &entries)?;
    let out = ctx.output_buffer(groups.iter().map(|g| g.output_bytes).sum())?;
    let mut encoder = ctx.device.create_command_encoder(&Default::default());
    let mut off = 0;
    for g in &groups {
        ctx.record_decode(&mut encoder, g, &out, off)?;
        off += g.output_bytes;
    }
    ctx.queue.submit([encoder.finish()]);
    ctx.wait()
}

/// Loads a compressed file into VRAM the old way: decoded on the CPU, then uploaded.
pub fn load_cpu_decoded(ctx: &GpuContext, path: &Path) -> Result<()> {
    let archive = Archive::open(path)?;
    let mut data = Vec::new();
    for t in &archive.tensors {
        data.extend(archive.decode(t)?);
        data.resize(super::padded(data.len() as u64) as usize, 0);
    }
    let buffer = ctx.output_buffer(data.len() as u64)?;
    ctx.queue.write_buffer(&buffer, 0, &data);
    ctx.queue.submit([]);
    ctx.wait()
}

/// Products of one file's matrices on one device, by resident form, beside the product on the
/// uncompressed weights: what `vramzip bench --resident` reports. Times are sums over the layers
/// of each layer's best of three alternating rounds.
#[derive(Clone, Debug)]
pub struct ProductBench {
    /// The form asked for.
    pub form: String,
    /// Batch columns of the products.
    pub batch: u32,
    /// The matrices timed: with `fixed` and `auto`, the bf16 ones (the only ones the fixed form
    /// takes), else every matrix products take.
    pub layers: usize,
    /// Bytes of those matrices uncompressed.
    pub original_bytes: u64,
    /// Resident bytes in the Huffman form.
    pub huffman_bytes: u64,
    /// Resident bytes in the fixed form (`fixed`, `auto`).
    pub fixed_bytes: Option<u64>,
    /// Seconds of the products on the uncompressed weights.
    pub uncompressed_s: f64,
    /// On the Huffman form, each layer the way its autotune at this batch chose (fused or
    /// decoded).
    pub huffman_s: f64,
    /// On the fixed form.
    pub fixed_s: Option<f64>,
    /// Loading the layers (`fixed`, `auto`), wall time, best of three each, summed: their bf16
    /// bytes from memory to VRAM; their Huffman code from the file to VRAM
    /// ([`GpuContext::linear`]); the fixed form built from it there
    /// ([`GpuContext::fixed_from`]). The fixed form's load is the last two.
    pub load_s: Option<[f64; 3]>,
    /// With `auto`: the measured choice (no budget).
    pub auto: Option<AutoBench>,
}

/// The layers of a [`ProductBench`] each in the form [`GpuContext::linears_auto`] chose by
/// products at the bench's batch.
#[derive(Clone, Copy, Debug)]
pub struct AutoBench {
    /// Resident bytes.
    pub bytes: u64,
    /// Seconds of the products, each layer on its chosen form (the same measurements as
    /// `huffman_s` and `fixed_s`), summed.
    pub seconds: f64,
    /// Layers that took the fixed form.
    pub fixed_layers: usize,
}

/// Times the products of `batch` columns on the matrices of `archive` (whose original bytes, in
/// file order, are `original`) in the resident forms that `form` (`huffman`, `fixed`, `auto`)
/// involves.
pub fn bench_products(
    ctx: &GpuContext,
    archive: &Archive,
    original: &[Vec<u8>],
    form: &str,
    batch: u32,
) -> Result<ProductBench> {
    use super::{Forms, Resident, WeightType};
    let forms: Forms = form.parse()?;
    let fixed_too = forms != Forms::All(Resident::Huffman);
    let mut b = ProductBench {
        form: form.to_string(),
        batch,
        layers: 0,
        original_bytes: 0,
        huffman_bytes: 0,
        fixed_bytes: fixed_too.then_some(0),
        uncompressed_s: 0.0,
        huffman_s: 0.0,
        fixed_s: fixed_too.then_some(0.0),
        load_s: fixed_too.then_some([0.0; 3]),
        auto: None,
    };
    // per layer, in the order of `names`: its product's seconds at `batch` on each form
    let mut names = Vec::new();
    let mut seconds = Vec::new();
    for (t, bytes) in archive.tensors.iter().zip(original) {
        let name = t.meta.name.as_str();
        // the matrices products take (and the fixed form, where asked); errors past that count
        let takes = super::linear::matrix_of(archive, name)
            .is_ok_and(|(.., dtype)| !fixed_too || dtype == WeightType::BF16);
        if !takes {
            continue;
        }
        let mut huffman = ctx.linear(archive, name)?;
        ctx.tune(&mut huffman, &[batch])?;
        let fixed = fixed_too.then(|| ctx.fixed_from(&huffman)).transpose()?;
        if let Some(load) = &mut b.load_s {
            let raw = ctx.output_buffer(bytes.len() as u64)?;
            load[0] += best_of_three(|| {
                ctx.queue.write_buffer(&raw, 0, bytes);
                ctx.queue.submit([]);
                ctx.wait()
            })?;
            load[1] += best_of_three(|| {
                ctx.linear(archive, name)?;
                ctx.wait()
            })?;
            load[2] += best_of_three(|| {
                ctx.fixed_from(&huffman)?;
                ctx.wait()
            })?;
        }
        let raw = ctx.storage_buffer("uncompressed weight", bytes.clone());
        let x = ctx.output_buffer(4 * huffman.cols as u64 * batch as u64)?;
        let y = ctx.output_buffer(4 * huffman.rows as u64 * batch as u64)?;
        let layers: Vec<&super::Linear> = [Some(&huffman), fixed.as_ref()]
            .into_iter()
            .flatten()
            .collect();
        let workspace = ctx.workspace_for(&layers, batch)?;
        let (rows, cols, dtype) = (huffman.rows, huffman.cols, huffman.dtype);
        let mut best = [f64::INFINITY; 3];
        for _ in 0..3 {
            let t = ctx.time(5, &mut |e| {
                ctx.record_matmul(e, &raw, 0, dtype, rows, cols, &x, &y, batch)
            })?;
            best[0] = best[0].min(t.seconds);
            for (k, l) in layers.iter().enumerate() {
                let t = ctx.time(5, &mut |e| {
                    ctx.record_product(e, l, &workspace, &x, &y, batch)
                })?;
                best[k + 1] = best[k + 1].min(t.seconds);
            }
        }
        b.layers += 1;
        b.original_bytes += bytes.len() as u64;
        b.huffman_bytes += huffman.resident_bytes();
        b.uncompressed_s += best[0];
        b.huffman_s += best[1];
        if let Some(f) = &fixed {
            *b.fixed_bytes.get_or_insert(0) += f.resident_bytes();
            *b.fixed_s.get_or_insert(0.0) += best[2];
        }
        names.push(name);
        seconds.push((best[1], best[2]));
    }
    if forms == Forms::Fastest {
        let (_, choices) = ctx.linears_auto(archive, &names, None, batch)?;
        let mut auto = AutoBench {
            bytes: 0,
            seconds: 0.0,
            fixed_layers: 0,
        };
        // the choices come in the order of the names asked for
        for (c, &(huffman_s, fixed_s)) in choices.iter().zip(&seconds) {
            let (bytes, seconds) = match c.resident {
                Resident::Fixed => (c.bytes.1.unwrap_or(0), fixed_s),
                Resident::Huffman => (c.bytes.0, huffman_s),
            };
            auto.bytes += bytes;
            auto.seconds += seconds;
            auto.fixed_layers += (c.resident == Resident::Fixed) as usize;
        }
        b.auto = Some(auto);
    }
    Ok(b)
}
