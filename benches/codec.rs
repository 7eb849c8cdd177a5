//! CPU encode (three stages, and single stage with a fixed book) and decode (the fast decoder and
//! the reference one) of the real-weights sample, one thread and all threads.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use vramzip::codec;

fn sample_bf16() -> Vec<u8> {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/minilm-layer0.safetensors");
    let file = vramzip::format::SafetensorsFile::open(&path).unwrap();
    file.header
        .tensors
        .iter()
        .filter(|t| t.dtype == "BF16")
        .flat_map(|t| file.read(t).unwrap())
        .collect()
}

fn bench(c: &mut Criterion) {
    let data = sample_bf16();
    let coded = codec::compress(
        &data,
        16,
        codec::auto_chunk_groups(data.len() as u64 / 2, 16),
    )
    .unwrap()
    .unwrap();
    let book = {
        let mut h = codec::shared::Histograms::default();
        h.add("BF16", &data);
        h.build().books.remove("BF16").unwrap()
    };
    let book = std::sync::Arc::new(book);
    let mut group = c.benchmark_group("cpu");
    group
        .throughput(Throughput::Bytes(data.len() as u64))
        .sample_size(20);
    for threads in [1, rayon::current_num_threads()] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        group.bench_function(format!("encode/{threads}-threads"), |b| {
            b.iter(|| {
                pool.install(|| {
                    codec::compress(
                        &data,
                        16,
                        codec::auto_chunk_groups(data.len() as u64 / 2, 16),
                    )
                    .unwrap()
                })
            })
        });
        group.bench_function(format!("encode-single-stage/{threads}-threads"), |b| {
            b.iter(|| {
                pool.install(|| {
                    codec::shared::encode_with(
                        &data,
                        16,
                        book.clone(),
                        codec::auto_chunk_groups(data.len() as u64 / 2, 16),
                    )
                    .unwrap()
                })
            })
        });
        let mut out = vec![0u8; data.len()];
        group.bench_function(format!("decode/{threads}-threads"), |b| {
            b.iter(|| pool.install(|| coded.decode_into(&mut out, "bench").unwrap()))
        });
        // the reference decoder (the tests' oracle), for the fast one's gain
        group.bench_function(format!("decode-reference/{threads}-threads"), |b| {
            b.iter(|| {
                pool.install(|| {
                    codec::decode_reference(
                        &coded.layout,
                        &coded.encoded,
                        &coded.codebook,
                        &mut out,
                        "bench",
                    )
                    .unwrap()
                })
            })
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
