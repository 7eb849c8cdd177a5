//! The decode-before-matmul loop: every 2-D weight of a model stays compressed in VRAM; each layer
//! is decoded into one reused scratch buffer right before its GEMV, in one command encoder; then
//! the same token through the fused kernel, which needs only a small partial-sum buffer. Prints
//! the VRAM each path allocates against the same weights uncompressed.
//!
//! cargo run --release --example linear_layers [MODEL.safetensors]

use vramzip::format::{self, Archive, CompressOptions};
use vramzip::gpu::{GpuContext, GpuOptions};

fn main() -> vramzip::Result<()> {
    let input = std::env::args().nth(1).map(Into::into).unwrap_or_else(|| {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/minilm-layer0.safetensors")
    });
    let packed = std::env::temp_dir().join(format!(
        "linear-layers-{}.vz.safetensors",
        std::process::id()
    ));
    format::compress_file(&input, &packed, &CompressOptions::default(), &|_| {})?;
    let archive = Archive::open(&packed)?;
    let gpu = GpuContext::new(&GpuOptions::default())?;
    println!("adapter: {}", gpu.describe());

    let names: Vec<String> = archive
        .tensors
        .iter()
        .filter(|t| {
            t.meta.shape.len() == 2 && matches!(t.meta.dtype.as_str(), "BF16" | "F16" | "F32")
        })
        .filter(|t| !t.meta.name.contains("embeddings")) // lookups, not matmuls
        .map(|t| t.meta.name.clone())
        .collect();
    let layers = names
        .iter()
        .map(|n| gpu.linear(&archive, n))
        .collect::<vramzip::Result<Vec<_>>>()?;
    let refs: Vec<_> = layers.iter().collect();
    let scratch = gpu.scratch_for(&refs)?;
    let widest = layers
        .iter()
        .map(|l| l.rows.max(l.cols) as u64)
        .max()
        .unwrap_or(1);
    let (x, y) = (
        gpu.output_buffer(4 * widest)?,
        gpu.output_buffer(4 * widest)?,
    );

    // one token: every layer decoded just before its product, all in one encoder
    let mut encoder = gpu.device.create_command_encoder(&Default::default());
    for layer in &layers {
        gpu.record_linear(&mut encoder, layer, &scratch, &x, &y, 1)?;
    }
    gpu.queue.submit([encoder.finish()]);
    gpu.wait()?;

    // the same token through the fused kernel, where the layer allows it
    let partials = gpu.partials_for(&refs, 1)?;
    let mut encoder = gpu.device.create_command_encoder(&Default::default());
    let mut fused = 0;
    for layer in &layers {
        if layer.unfusable().is_none() {
            gpu.record_linear_fused(&mut encoder, layer, &partials, &x, &y, 1)?;
            fused += 1;
        }
    }
    gpu.queue.submit([encoder.finish()]);
    gpu.wait()?;

    let compressed: u64 = layers.iter().map(|l| l.resident_bytes()).sum();
    let uncompressed: u64 = layers.iter().map(|l| l.decoded_bytes()).sum();
    println!(
        "{} linear layers: VRAM {} bytes compressed + {} bytes of scratch = {} bytes, against {} bytes uncompressed ({:.3}x)",
        layers.len(),
        compressed,
        scratch.size(),
        compressed + scratch.size(),
        uncompressed,
        (compressed + scratch.size()) as f64 / uncompressed as f64
    );
    // a layer the fused kernel cannot take still needs a scratch of its size
    let rest: Vec<_> = layers.iter().filter(|l| l.unfusable().is_some()).collect();
    let rest_scratch = if rest.is_empty() {
        0
    } else {
        gpu.scratch_for(&rest)?.size()
    };
    let total = compressed + partials.size() + rest_scratch;
    println!(
        "fused ({fused} of {} layers): {} bytes compressed + {} bytes of partial sums + {} bytes of scratch for the rest = {:.3}x",
        layers.len(),
        compressed,
        partials.size(),
        rest_scratch,
        total as f64 / uncompressed as f64
    );
    for l in &rest {
        println!("  not fused: {}: {}", l.name, l.unfusable().unwrap_or(""));
    }
    std::fs::remove_file(&packed).ok();
    Ok(())
}
