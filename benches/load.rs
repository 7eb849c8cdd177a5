//! Loading weights to VRAM end to end, from a file (in the page cache) to ready-to-use weights on
//! the GPU: (a) the uncompressed file read and uploaded; (b) the compressed file read, uploaded
//! and decoded on the GPU; (c) the compressed file decoded on the CPU, then uploaded. Sizes from
//! one small tensor to a whole model, so the point where GPU decode pays off shows.
//! Set VRAMZIP_BENCH_FILE to add a larger real file (say data/minilm/model-bf16.safetensors).

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::path::{Path, PathBuf};
use std::time::Duration;
use vramzip::format::{self, CompressOptions};
use vramzip::gpu::bench::{load_cpu_decoded, load_gpu_decoded, load_raw};
use vramzip::gpu::{GpuContext, GpuOptions};

/// One tensor of the sample as its own safetensors file.
fn one_tensor(dir: &Path, sample: &Path, name: &str) -> PathBuf {
    let file = format::SafetensorsFile::open(sample).unwrap();
    let t = file.tensor(name).unwrap();
    let data = &file.read(t).unwrap();
    let mut head = serde_json::to_vec(&serde_json::json!({ name: {"dtype": t.dtype, "shape": t.shape, "data_offsets": [0, data.len()]} })).unwrap();
    head.resize(head.len().next_multiple_of(8), b' ');
    let out = dir.join("one-tensor.safetensors");
    std::fs::write(
        &out,
        [&(head.len() as u64).to_le_bytes()[..], &head, data].concat(),
    )
    .unwrap();
    out
}

fn bench(c: &mut Criterion) {
    let gpu = GpuContext::new(&GpuOptions::default())
        .expect("a GPU adapter (lavapipe on machines without a GPU)");
    eprintln!("adapter: {}", gpu.describe());
    // removed when dropped, also when the bench panics
    let tmp = tempfile::Builder::new()
        .prefix("vramzip-load-bench-")
        .tempdir()
        .unwrap();
    let dir = tmp.path();
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/minilm-layer0.safetensors");
    let mut inputs = vec![
        (
            "one-tensor-295KB",
            one_tensor(dir, &sample, "encoder.layer.0.attention.self.query.weight"),
        ),
        ("sample-3.6MB", sample.clone()),
    ];
    if let Ok(extra) = std::env::var("VRAMZIP_BENCH_FILE") {
        inputs.push(("extra", PathBuf::from(extra)));
    }
    let mut group = c.benchmark_group("load");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(3));
    for (label, input) in inputs {
        let packed = dir.join(format!("{label}.vz"));
        format::compress_file(&input, &packed, &CompressOptions::default(), &|_| {}).unwrap();
        let bytes = format::SafetensorsFile::open(&input).unwrap().data_bytes();
        group.throughput(Throughput::Bytes(bytes));
        group.bench_function(format!("{label}/a-raw"), |b| {
            b.iter(|| load_raw(&gpu, &input).unwrap())
        });
        group.bench_function(format!("{label}/b-gpu-decode"), |b| {
            b.iter(|| load_gpu_decoded(&gpu, &packed).unwrap())
        });
        group.bench_function(format!("{label}/c-cpu-decode"), |b| {
            b.iter(|| load_cpu_decoded(&gpu, &packed).unwrap())
        });
    }
    group.finish();
}

// No HTML plots: see the plotters line in Cargo.toml.
criterion_group! {
    name = benches;
    config = Criterion::default().without_plots();
    targets = bench
}
criterion_main!(benches);
