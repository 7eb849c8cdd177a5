//! Per-token cost of the linear layers: (a) the product on uncompressed bf16 weights, (b) decode
//! into a scratch buffer then the product, (c) the fused decode+product kernel, (e) the product on
//! the weight kept in the fixed-rate resident form, beside (d) a buffer copy of the weight's size,
//! in the same run; then a side-by-side table of (b), (c) and (e) as ratios to (a), measured
//! alternately. Shapes: all-MiniLM-L6-v2's (its real layer-0 weights) and
//! Llama-3-8B's 4096x4096, 1024x4096, 14336x4096 and 4096x14336 (values resampled from those real
//! weights).
//! The side-by-side table also times a compute-shader copy of the weight's bytes, so that the
//! uncompressed product's weight-read rate can be set against what a shader can move (the fair
//! baseline: `a read/copy`, the product's bytes read a second over the copy's bytes read and
//! written a second). VRAMZIP_BENCH_CHUNK_GROUPS sets the groups a stream the weights are
//! compressed with (default: the per-tensor choice), VRAMZIP_BENCH_BATCH the batch (default 1:
//! GEMV).

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::path::Path;
use std::time::Duration;
use vramzip::format::{self, Archive, CompressOptions};
use vramzip::gpu::{GpuContext, GpuOptions, Resident, Timing};
use wgpu::util::DeviceExt;

fn write_bf16(path: &Path, rows: u64, cols: u64, pool: &[u16], seed: u64) {
    let mut s = seed;
    let data: Vec<u8> = (0..rows * cols)
        .flat_map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            pool[(s >> 33) as usize % pool.len()].to_le_bytes()
        })
        .collect();
    let mut head = serde_json::to_vec(&serde_json::json!({"w": {"dtype": "BF16", "shape": [rows, cols], "data_offsets": [0, data.len()]}})).unwrap();
    head.resize(head.len().next_multiple_of(8), b' ');
    std::fs::write(
        path,
        [&(head.len() as u64).to_le_bytes()[..], &head, &data].concat(),
    )
    .unwrap();
}

fn secs(t: vramzip::Result<Timing>, iters: u64) -> Duration {
    Duration::from_secs_f64(t.unwrap().seconds * iters as f64)
}

fn bench(c: &mut Criterion) {
    let gpu = GpuContext::new(&GpuOptions::default())
        .expect("a GPU adapter (lavapipe on machines without a GPU)");
    eprintln!("adapter: {}", gpu.describe());
    // removed when dropped, also when the bench panics
    let tmp = tempfile::Builder::new()
        .prefix("vramzip-gemv-bench-")
        .tempdir()
        .unwrap();
    let dir = tmp.path();
    // from the working directory first: a binary built here may run in a copy of the tree elsewhere
    let sample = Some(Path::new("assets/minilm-layer0.safetensors").to_path_buf())
        .filter(|p| p.exists())
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/minilm-layer0.safetensors")
        });
    // the default layout, or streams of VRAMZIP_BENCH_CHUNK_GROUPS groups
    let opts = match std::env::var("VRAMZIP_BENCH_CHUNK_GROUPS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        Some(groups) => CompressOptions::default().with_chunk_groups(groups),
        None => CompressOptions::default(),
    };
    let packed = dir.join("sample.vz");
    format::compress_file(&sample, &packed, &opts, &|_| {}).unwrap();
    let archive = Archive::open(&packed).unwrap();
    let pool: Vec<u16> = {
        let t = archive
            .tensors
            .iter()
            .find(|t| t.meta.name.ends_with("intermediate.dense.weight"))
            .unwrap();
        archive
            .decode(t)
            .unwrap()
            .chunks(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect()
    };
    let mut cases: Vec<(String, Archive, String)> = [
        (
            "minilm-384x384",
            "encoder.layer.0.attention.self.query.weight",
        ),
        (
            "minilm-1536x384",
            "encoder.layer.0.intermediate.dense.weight",
        ),
        ("minilm-384x1536", "encoder.layer.0.output.dense.weight"),
    ]
    .iter()
    .map(|(label, name)| {
        (
            label.to_string(),
            Archive::open(&packed).unwrap(),
            name.to_string(),
        )
    })
    .collect();
    // the linear layers of a Llama-3-8B block: q and o, k and v, gate and up, down
    for (rows, cols) in [
        (4096u64, 4096u64),
        (1024, 4096),
        (14336, 4096),
        (4096, 14336),
    ] {
        let (src, vz) = (
            dir.join(format!("{rows}x{cols}.safetensors")),
            dir.join(format!("{rows}x{cols}.vz")),
        );
        write_bf16(&src, rows, cols, &pool, rows);
        format::compress_file(&src, &vz, &opts, &|_| {}).unwrap();
        cases.push((
            format!("llm-{rows}x{cols}"),
            Archive::open(&vz).unwrap(),
            "w".into(),
        ));
    }
    let batch: u32 = std::env::var("VRAMZIP_BENCH_BATCH")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    eprintln!("chunk groups {:?}, batch {batch}", opts.chunk_groups);
    let mut table = Vec::new();
    let mut group = c.benchmark_group("gemv");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(2));
    for (label, archive, name) in &cases {
        let mut layer = gpu.linear(archive, name).unwrap();
        // what the load-time autotune picks for this shape and batch on this device
        let tuned = gpu.tune(&mut layer, &[batch]).unwrap()[0];
        let tuned = if tuned.fused { "fused" } else { "decoded" };
        let t = archive.tensor(name).unwrap();
        let w = archive.decode(t).unwrap();
        let raw = gpu
            .device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: None,
                contents: &w,
                usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
            });
        let copy_dst = gpu.output_buffer(w.len() as u64).unwrap();
        let x = gpu.output_buffer(4 * (layer.cols * batch) as u64).unwrap();
        let y = gpu.output_buffer(4 * (layer.rows * batch) as u64).unwrap();
        let scratch = gpu.scratch_for(&[&layer]).unwrap();
        let partials = gpu.partials_for(&[&layer], batch).unwrap();
        let fixed = gpu.linear_as(archive, name, Resident::Fixed).unwrap();
        let no_workspace = gpu.workspace_for(&[&fixed], batch).unwrap();
        assert_eq!(layer.unfusable(), None, "{label}");
        let dtype = layer.dtype;
        let (rows, cols) = (layer.rows, layer.cols);
        let mut a = |e: &mut wgpu::CommandEncoder| {
            gpu.record_matmul(e, &raw, 0, dtype, rows, cols, &x, &y, batch)
        };
        let mut b =
            |e: &mut wgpu::CommandEncoder| gpu.record_linear(e, &layer, &scratch, &x, &y, batch);
        let mut c = |e: &mut wgpu::CommandEncoder| {
            gpu.record_linear_fused(e, &layer, &partials, &x, &y, batch)
        };
        let mut f = |e: &mut wgpu::CommandEncoder| {
            gpu.record_product(e, &fixed, &no_workspace, &x, &y, batch)
        };
        eprintln!(
            "{label}: {}x{}, {} bytes decoded, {} resident Huffman-coded, {} in the fixed form",
            layer.rows,
            layer.cols,
            w.len(),
            layer.resident_bytes(),
            fixed.resident_bytes()
        );
        group.throughput(Throughput::Bytes(w.len() as u64));
        group.bench_function(format!("{label}/a-uncompressed"), |bn| {
            bn.iter_custom(|n| secs(gpu.time(n as u32, &mut a), n))
        });
        group.bench_function(format!("{label}/b-decode-then-product"), |bn| {
            bn.iter_custom(|n| secs(gpu.time(n as u32, &mut b), n))
        });
        group.bench_function(format!("{label}/c-fused"), |bn| {
            bn.iter_custom(|n| secs(gpu.time(n as u32, &mut c), n))
        });
        group.bench_function(format!("{label}/e-fixed-form"), |bn| {
            bn.iter_custom(|n| secs(gpu.time(n as u32, &mut f), n))
        });
        group.bench_function(format!("{label}/d-buffer-copy"), |b| {
            b.iter_custom(|n| {
                secs(
                    gpu.time(n as u32, &mut |e| {
                        e.copy_buffer_to_buffer(&raw, 0, &copy_dst, 0, w.len() as u64 / 4 * 4);
                        Ok(())
                    }),
                    n,
                )
            })
        });
        let mut d = |e: &mut wgpu::CommandEncoder| {
            gpu.record_shader_copy(e, &raw, &copy_dst, w.len() as u64);
            Ok(())
        };
        let mut best = [f64::INFINITY; 5];
        for _ in 0..3 {
            type Record<'a> = &'a mut dyn FnMut(&mut wgpu::CommandEncoder) -> vramzip::Result<()>;
            let variants: [Record; 5] = [&mut a, &mut b, &mut c, &mut d, &mut f];
            for (k, f) in variants.into_iter().enumerate() {
                best[k] = best[k].min(gpu.time(10, f).unwrap().seconds);
            }
        }
        table.push(format!(
            "{label:<18} {:>10.1}us {:>10.1}us {:>10.1}us {:>10.1}us {:>10.1}us {:>7.2}x {:>7.2}x {:>7.2}x {:>9.2} {tuned:>8}",
            best[0] * 1e6,
            best[1] * 1e6,
            best[2] * 1e6,
            best[4] * 1e6,
            best[3] * 1e6,
            best[1] / best[0],
            best[2] / best[0],
            best[4] / best[0],
            // bytes read a second by the product over bytes read and written a second by the copy
            (1.0 / best[0]) / (2.0 / best[3])
        ));
    }
    group.finish();
    eprintln!(
        "\nside by side (best of 3 alternating rounds), batch {batch}, chunk groups {:?}, code table in {}:",
        opts.chunk_groups,
        if gpu.table_in_workgroup {
            "workgroup memory"
        } else {
            "the cache"
        }
    );
    eprintln!(
        "{:<18} {:>12} {:>12} {:>12} {:>12} {:>12} {:>8} {:>8} {:>8} {:>9} {:>8}",
        "shape",
        "a uncompr.",
        "b dec+prod",
        "c fused",
        "e fixed",
        "shader copy",
        "b/a",
        "c/a",
        "e/a",
        "a read/copy",
        "tuned"
    );
    for line in table {
        eprintln!("{line}");
    }
}

// No HTML plots: see the plotters line in Cargo.toml.
criterion_group! {
    name = benches;
    config = Criterion::default().without_plots();
    targets = bench
}
criterion_main!(benches);
