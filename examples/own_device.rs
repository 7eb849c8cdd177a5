//! Bring your own device: an engine that already has a `wgpu::Device` and `Queue` (burn, bevy,
//! its own) hands them to vramzip, which builds its kernels there and decodes compressed weights
//! straight into the engine's own buffer, recorded into the engine's own encoder. Nothing goes
//! through the CPU on the way; the read-back at the end is only the example checking the bits.
//!
//! cargo run --release --example own_device [FILE.safetensors]

use vramzip::format::{self, Archive, CompressOptions};
use vramzip::gpu::GpuContext;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let input = std::env::args().nth(1).map(Into::into).unwrap_or_else(|| {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/minilm-layer0.safetensors")
    });
    let compressed = std::env::temp_dir().join(format!("own-device-{}.vz", std::process::id()));
    let result = run(&input, &compressed);
    std::fs::remove_file(&compressed).ok();
    result
}

fn run(
    input: &std::path::Path,
    compressed: &std::path::Path,
) -> Result<(), Box<dyn std::error::Error>> {
    format::compress_file(input, compressed, &CompressOptions::default(), &|_| {})?;
    let archive = Archive::open(compressed)?;

    // The engine's side: its own instance, adapter, device and queue, opened as it likes.
    let instance =
        wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
    let adapter = pollster::block_on(instance.request_adapter(&Default::default()))?;
    let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
        label: Some("the engine's device"),
        required_limits: adapter.limits(),
        ..Default::default()
    }))?;

    // vramzip on that device (wgpu handles are shared references: the engine keeps its own).
    let gpu = GpuContext::from_device(device.clone(), queue.clone())?;
    println!(
        "vramzip kernels built on the caller's device: {}",
        gpu.describe()
    );

    let t = archive
        .tensors
        .iter()
        .max_by_key(|t| t.meta.bytes)
        .ok_or("the file has no tensors")?;
    let group = gpu.upload_one(&archive, t, "the example's tensor")?;

    // The engine's own buffer, with the usages it needs; vramzip decodes into it.
    let weights = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("the engine's weight buffer"),
        size: vramzip::gpu::padded(group.output_bytes),
        usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
        mapped_at_creation: false,
    });
    let readback = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("the example's check"),
        size: weights.size(),
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let mut encoder = device.create_command_encoder(&Default::default());
    gpu.record_decode(&mut encoder, &group, &weights, 0)?;
    // ... the engine's own passes reading `weights` would follow here, in the same encoder ...
    encoder.copy_buffer_to_buffer(&weights, 0, &readback, 0, weights.size());
    queue.submit([encoder.finish()]);

    let slice = readback.slice(..);
    slice.map_async(wgpu::MapMode::Read, |_| {});
    device.poll(wgpu::PollType::wait_indefinitely())?;
    let got = slice.get_mapped_range()?[..t.meta.bytes as usize].to_vec();
    if got != archive.decode(t)? {
        return Err(format!(
            "'{}' decoded on the GPU differs from the original",
            t.meta.name
        )
        .into());
    }
    println!(
        "'{}' ({} bytes) decoded into the caller's buffer, equal to the original bytes",
        t.meta.name, t.meta.bytes
    );
    Ok(())
}
