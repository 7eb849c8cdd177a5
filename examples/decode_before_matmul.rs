//! Keeps a model compressed in VRAM and decodes it, on the GPU, into a reused scratch buffer
//! recorded into the caller's own command encoder, where a matmul pass would follow.
//!
//! cargo run --release --example decode_before_matmul [FILE.safetensors]

use vramzip::format::{self, Archive, CompressOptions};
use vramzip::gpu::{GpuContext, GpuOptions};

fn main() -> vramzip::Result<()> {
    let input = std::env::args().nth(1).map(Into::into).unwrap_or_else(|| {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/minilm-layer0.safetensors")
    });
    let compressed =
        std::env::temp_dir().join(format!("example-{}.vz.safetensors", std::process::id()));
    format::compress_file(&input, &compressed, &CompressOptions::default(), &|_| {})?;
    let archive = Archive::open(&compressed)?;

    let gpu = GpuContext::new(&GpuOptions::default())?;
    println!("adapter: {}", gpu.describe());
    // Upload every tensor once, one group per tensor here (as an inference loop would per layer).
    let mut layers = Vec::new();
    for t in &archive.tensors {
        layers.extend(gpu.upload(&archive, &[t])?);
    }
    let resident: u64 = layers.iter().map(|g| g.resident_bytes).sum();
    let scratch_bytes = layers.iter().map(|g| g.output_bytes).max().unwrap_or(4);
    let scratch = gpu.output_buffer(scratch_bytes)?;
    println!("VRAM: {resident} bytes compressed + {scratch_bytes} bytes of scratch");

    for (layer, t) in layers.iter().zip(&archive.tensors) {
        let mut encoder = gpu.device.create_command_encoder(&Default::default());
        gpu.record_decode(&mut encoder, layer, &scratch, 0)?;
        // ... the caller's matmul pass reading `scratch` goes here, in the same encoder ...
        gpu.queue.submit([encoder.finish()]);
        let got = gpu.read_back(&scratch, t.meta.bytes)?;
        assert_eq!(got, archive.decode(t)?, "{}", t.meta.name);
    }
    println!(
        "{} tensors decoded on the GPU, each equal to the original bytes",
        layers.len()
    );
    std::fs::remove_file(&compressed).ok();
    Ok(())
}
