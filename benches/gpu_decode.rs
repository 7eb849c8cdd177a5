//! GPU decode of a compressed file beside a plain buffer copy of the same decoded size, in the same
//! run. GPU time comes from timestamp queries where the adapter has them, else from wall time
//! around a device wait (`GpuContext::time`). Set VRAMZIP_BENCH_FILE to bench another file.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::time::Duration;
use vramzip::format::{self, Archive, CompressOptions};
use vramzip::gpu::{GpuContext, GpuOptions};

fn bench(c: &mut Criterion) {
    let input = std::env::var("VRAMZIP_BENCH_FILE")
        .map(Into::into)
        .unwrap_or_else(|_| {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("assets/minilm-layer0.safetensors")
        });
    let gpu = GpuContext::new(&GpuOptions::default())
        .expect("a GPU adapter (lavapipe on machines without a GPU)");
    eprintln!("adapter: {}", gpu.describe());
    let mut group = c.benchmark_group("gpu");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(3));
    // the default layout (a stream length per tensor), and short streams of 64 groups
    for chunk_groups in [None, Some(64)] {
        let label = chunk_groups.map_or("default".to_string(), |c: usize| c.to_string());
        let out_path =
            std::env::temp_dir().join(format!("vramzip-bench-{}-{label}.vz", std::process::id()));
        let opts = match chunk_groups {
            Some(c) => CompressOptions::default().with_chunk_groups(c),
            None => CompressOptions::default(),
        };
        format::compress_file(&input, &out_path, &opts, &|_| {}).unwrap();
        let archive = Archive::open(&out_path).unwrap();
        let entries: Vec<_> = archive.tensors.iter().collect();
        let groups = gpu.upload(&archive, &entries).unwrap();
        let total: u64 = groups.iter().map(|g| g.output_bytes).sum();
        let out = gpu.output_buffer(total).unwrap();
        group.throughput(Throughput::Bytes(total));
        group.bench_function(format!("decode/chunk-groups-{label}"), |b| {
            b.iter_custom(|iters| {
                let t = gpu
                    .time(iters as u32, &mut |e| {
                        let mut off = 0;
                        for g in &groups {
                            gpu.record_decode(e, g, &out, off)?;
                            off += g.output_bytes;
                        }
                        Ok(())
                    })
                    .unwrap();
                Duration::from_secs_f64(t.seconds * iters as f64)
            })
        });
        if chunk_groups.is_none() {
            let src = gpu.output_buffer(total).unwrap();
            group.bench_function("buffer-copy", |b| {
                b.iter_custom(|iters| {
                    let t = gpu
                        .time(iters as u32, &mut |e| {
                            e.copy_buffer_to_buffer(&src, 0, &out, 0, total);
                            Ok(())
                        })
                        .unwrap();
                    Duration::from_secs_f64(t.seconds * iters as f64)
                })
            });
        }
        std::fs::remove_file(&out_path).ok();
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
