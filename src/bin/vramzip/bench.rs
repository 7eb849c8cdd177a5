//! `bench`: compress, decode and check a file (default: the real-weights sample in assets/), and
//! report ratio, bound and throughputs on the CPU and the GPU beside their baselines.

use crate::inspect::totals;
use crate::{mbps, plot, shards_in};
use rayon::prelude::*;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;
use vramzip::format::{self, Archive, CompressOptions};
use vramzip::gpu::{self, GpuContext, GpuOptions};
use vramzip::{Error, Result};

fn gpu_json(g: &gpu::bench::GpuBench) -> serde_json::Value {
    serde_json::json!({"adapter": g.adapter, "decoded_bytes": g.decoded_bytes, "resident_bytes": g.resident_bytes,
        "decode_s": g.decode.seconds, "decode_timestamps": g.decode.timestamps, "decode_gb_s": g.decode_gbps(),
        "copy_s": g.copy.seconds, "copy_gb_s": g.copy_gbps(), "decode_over_copy": g.decode_gbps() / g.copy_gbps(),
        "shader_copy_gb_s": g.shader_copy_gbps(), "decode_over_shader_copy": g.decode_gbps() / g.shader_copy_gbps(),
        "load_raw_s": g.load_raw_s, "load_compressed_s": g.load_compressed_s, "load_cpu_decoded_s": g.load_cpu_decoded_s, "bit_exact": g.bit_exact})
}

fn products_json(adapter: &str, p: &gpu::bench::ProductBench) -> serde_json::Value {
    let over = |s: Option<f64>| s.map(|s| s / p.uncompressed_s);
    serde_json::json!({"adapter": adapter, "resident": p.form, "batch": p.batch, "layers": p.layers,
        "original_bytes": p.original_bytes, "huffman_bytes": p.huffman_bytes, "fixed_bytes": p.fixed_bytes,
        "huffman_over_original": p.huffman_bytes as f64 / p.original_bytes.max(1) as f64,
        "fixed_over_original": p.fixed_bytes.map(|b| b as f64 / p.original_bytes.max(1) as f64),
        "uncompressed_s": p.uncompressed_s, "huffman_s": p.huffman_s, "fixed_s": p.fixed_s,
        "huffman_over_uncompressed": p.huffman_s / p.uncompressed_s, "fixed_over_uncompressed": over(p.fixed_s),
        "load": p.load_s.map(|[raw, huffman, build]| serde_json::json!({"bf16_s": raw, "huffman_s": huffman, "build_s": build,
            "fixed_s": huffman + build, "fixed_over_bf16": (huffman + build) / raw})),
        "auto": p.auto.map(|a| serde_json::json!({"bytes": a.bytes, "s": a.seconds,
            "over_uncompressed": a.seconds / p.uncompressed_s, "fixed_layers": a.fixed_layers}))})
}

fn say_products(adapter: &str, p: &gpu::bench::ProductBench) {
    say!(
        "products          {} matrices ({} bytes), batch {}, on {adapter}",
        p.layers,
        p.original_bytes,
        p.batch
    );
    if p.layers == 0 {
        say!(
            "  (no matrix here that products on this form take: 2-D, and bf16 for the fixed form)"
        );
        return;
    }
    say!("  uncompressed    {:.3} ms", p.uncompressed_s * 1e3);
    let forms = [
        ("huffman", Some(p.huffman_bytes), Some(p.huffman_s)),
        ("fixed", p.fixed_bytes, p.fixed_s),
    ];
    for (name, bytes, s) in forms {
        if let (Some(bytes), Some(s)) = (bytes, s) {
            say!(
                "  {name:<8}        {:.3} ms = {:.3}x uncompressed; resident {bytes} bytes = {:.4} of uncompressed",
                s * 1e3,
                s / p.uncompressed_s,
                bytes as f64 / p.original_bytes.max(1) as f64
            );
        }
    }
    if let Some([raw, huffman, build]) = p.load_s {
        say!(
            "  load            bf16 upload {:.3} ms; fixed form: the file's Huffman code up {:.3} ms + built on the GPU {:.3} ms = {:.3}x",
            raw * 1e3,
            huffman * 1e3,
            build * 1e3,
            (huffman + build) / raw
        );
    }
    if let Some(a) = p.auto {
        say!(
            "  auto            {:.3} ms = {:.3}x uncompressed; {} of {} layers fixed (chosen by products of this batch); resident {} bytes = {:.4} of uncompressed",
            a.seconds * 1e3,
            a.seconds / p.uncompressed_s,
            a.fixed_layers,
            p.layers,
            a.bytes,
            a.bytes as f64 / p.original_bytes.max(1) as f64
        );
    }
}

fn default_sample() -> PathBuf {
    let here = PathBuf::from("assets/minilm-layer0.safetensors");
    if here.exists() {
        here
    } else {
        Path::new(env!("CARGO_MANIFEST_DIR")).join(here)
    }
}

/// `products`: the resident form and batch of the products to time, if any.
pub fn bench(
    file: Option<PathBuf>,
    json: bool,
    plot: Option<&Path>,
    opts: &CompressOptions,
    gpu_opts: Option<&GpuOptions>,
    products: Option<(String, u32)>,
) -> Result<ExitCode> {
    let products = products.as_ref().map(|(f, b)| (f.as_str(), *b));
    let input = file.unwrap_or_else(default_sample);
    // removed on every way out: errors, Ctrl-C and termination included
    let tmp = vramzip::format::ScratchDir::new("vramzip-bench-")?;
    let out = tmp.path().join("bench.vz.safetensors");
    // a directory (a sharded model): every shard in turn, one table (or JSON line) each, and one
    // plot each, named after the shard
    if input.is_dir() {
        let mut code = ExitCode::SUCCESS;
        for shard in shards_in(&input)? {
            let plot = plot.map(|p| {
                let stem = shard.file_stem().unwrap_or_default().to_string_lossy();
                p.with_file_name(format!(
                    "{}-{stem}.svg",
                    p.file_stem().unwrap_or_default().to_string_lossy()
                ))
            });
            let plot = plot.as_deref();
            if bench_in(&shard, &out, json, plot, opts, gpu_opts, products)? != ExitCode::SUCCESS {
                code = ExitCode::from(1);
            }
        }
        Ok(code)
    } else {
        bench_in(&input, &out, json, plot, opts, gpu_opts, products)
    }
}

fn bench_in(
    input: &Path,
    out: &Path,
    json: bool,
    plot: Option<&Path>,
    opts: &CompressOptions,
    gpu_opts: Option<&GpuOptions>,
    products: Option<(&str, u32)>,
) -> Result<ExitCode> {
    let stats = format::compress_file(input, out, opts, &|_| {})?;
    let archive = Archive::open(out)?;
    let source = format::SafetensorsFile::open(input)?;
    let original = (source.header.tensors.iter())
        .map(|t| source.read(t))
        .collect::<Result<Vec<_>>>()?;
    let tensors: Vec<Tensor> = (source.header.tensors.iter())
        .zip(&original)
        .map(|(t, bytes)| Tensor {
            name: &t.name,
            dtype: &t.dtype,
            bytes,
        })
        .collect();
    let cpu: Vec<CpuTimes> = thread_counts()
        .into_iter()
        .map(|threads| cpu_times(&tensors, opts, threads))
        .collect::<Result<_>>()?;
    // what decompress gives (checksums checked), against the original
    let decoded = (archive.tensors.iter())
        .map(|t| archive.decode(t))
        .collect::<Result<Vec<_>>>()?;
    let exact = decoded == original;
    // `--backend all`: every backend that has an adapter here, one after another; none with --cpu
    let backends: Vec<Option<String>> = match gpu_opts.map(|o| o.backend.as_deref()) {
        None => Vec::new(),
        Some(Some("all")) => ["vulkan", "metal", "dx12", "gl"]
            .iter()
            .map(|b| Some(b.to_string()))
            .collect(),
        Some(other) => vec![other.map(String::from)],
    };
    let (mut gpu, mut product_figures) = (Vec::new(), Vec::new());
    for backend in backends {
        let mut opts = gpu_opts.cloned().unwrap_or_default();
        opts.backend.clone_from(&backend);
        match GpuContext::new(&opts) {
            Ok(ctx) => {
                gpu.push(gpu::bench::bench_file(
                    &ctx, input, &archive, &original, 1.0,
                )?);
                if let Some((form, batch)) = products {
                    let p = gpu::bench::bench_products(&ctx, &archive, &original, form, batch)?;
                    product_figures.push((ctx.describe(), p));
                }
            }
            Err(e) => eprintln!(
                "warning: no GPU figures{}: {e}",
                backend.map(|b| format!(" for {b}")).unwrap_or_default()
            ),
        }
    }
    let gpu_exact = gpu.iter().all(|g| g.bit_exact);
    let tot = totals(&stats.tensors);
    let coded: u64 = stats
        .tensors
        .iter()
        .filter(|s| s.sym_bits.is_some())
        .map(|s| s.original_bytes)
        .sum();
    let file_ratio = stats.output_bytes as f64 / stats.input_bytes.max(1) as f64;
    let meta_pct = 100.0 * (stats.header_bytes + tot.index + tot.table) as f64
        / stats.output_bytes.max(1) as f64;
    if json {
        let doc = serde_json::json!({"file": input, "tensors": stats.tensors.len(),
            "input_bytes": stats.input_bytes, "output_bytes": stats.output_bytes, "file_ratio": file_ratio,
            "data": tot.json(), "metadata_pct_of_output": meta_pct,
            "cpu": cpu.iter().map(|c| serde_json::json!({"threads": c.threads,
                "encode_mb_s": mbps(c.bytes, c.encode_s), "decode_mb_s": mbps(c.bytes, c.decode_s)})).collect::<Vec<_>>(),
            "coded_bytes": coded, "streams": tot.streams, "index_bytes": tot.index, "bit_exact": exact, "gpu": gpu.iter().map(gpu_json).collect::<Vec<_>>(),
            "products": product_figures.iter().map(|(a, p)| products_json(a, p)).collect::<Vec<_>>()});
        say!("{}", serde_json::to_string(&doc).unwrap_or_default());
    } else {
        say!("file              {}", input.display());
        say!(
            "tensors           {} ({} coded bytes of {})",
            stats.tensors.len(),
            coded,
            tot.original
        );
        say!(
            "size              {} -> {} bytes, ratio {:.4} (data {:.4})",
            stats.input_bytes,
            stats.output_bytes,
            file_ratio,
            tot.ratio()
        );
        say!(
            "entropy bound     {:.4} (data over bound {:.3}%, length-12 cap costs {:.3}% of stream)",
            tot.bound_ratio(),
            tot.over_bound_pct(),
            tot.cap_cost_pct()
        );
        say!(
            "metadata          {:.3}% of the output (header, index, code tables)",
            meta_pct
        );
        say!(
            "streams           {} independent decode streams, index {} bytes ({:.3}% of the data)",
            tot.streams,
            tot.index,
            100.0 * tot.index as f64 / tot.compressed.max(1) as f64
        );
        for c in &cpu {
            say!(
                "cpu, {:>2} thread{}   encode {:.0} MB/s, decode {:.0} MB/s (in memory, best of {ROUNDS})",
                c.threads,
                if c.threads == 1 { " " } else { "s" },
                mbps(c.bytes, c.encode_s),
                mbps(c.bytes, c.decode_s)
            );
        }
        say!("cpu bit-exact     {}", if exact { "yes" } else { "NO" });
        for g in &gpu {
            say!("gpu               {}", g.adapter);
            say!(
                "gpu decode        {:.2} GB/s decoded ({} of {:.3} ms)",
                g.decode_gbps(),
                if g.decode.timestamps {
                    "timestamps"
                } else {
                    "wall time"
                },
                g.decode.seconds * 1e3
            );
            say!(
                "gpu buffer copy   {:.2} GB/s copied; decode/copy = {:.3}",
                g.copy_gbps(),
                g.decode_gbps() / g.copy_gbps()
            );
            say!(
                "gpu shader copy   {:.2} GB/s copied; decode/shader copy = {:.3}",
                g.shader_copy_gbps(),
                g.decode_gbps() / g.shader_copy_gbps()
            );
            say!(
                "load to VRAM      raw file {:.3} ms; compressed file + GPU decode {:.3} ms = {:.3}x the raw time",
                g.load_raw_s * 1e3,
                g.load_compressed_s * 1e3,
                g.load_compressed_s / g.load_raw_s
            );
            say!(
                "                  compressed file + CPU decode + upload {:.3} ms = {:.3}x the raw time",
                g.load_cpu_decoded_s * 1e3,
                g.load_cpu_decoded_s / g.load_raw_s
            );
            say!(
                "gpu bit-exact     {}",
                if g.bit_exact { "yes" } else { "NO" }
            );
        }
        for (adapter, p) in &product_figures {
            say_products(adapter, p);
        }
    }
    if let Some(path) = plot {
        let title = format!(
            "vramzip bench {} (ratio {:.4})",
            input.display(),
            file_ratio
        );
        let fastest = cpu.iter().map(|c| c.decode_s).fold(f64::INFINITY, f64::min);
        plot::plot(path, &title, tot.original as f64 / fastest / 1e9, &gpu)?;
        if !json {
            say!("plot              {}", path.display());
        }
    }
    Ok(if exact && gpu_exact {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Rounds of each CPU timing; the fastest counts (these machines are noisy).
const ROUNDS: usize = 3;

/// CPU encode and decode of a file's tensors, in memory (no file I/O, no checksums), in a pool of
/// `threads` threads.
struct CpuTimes {
    threads: usize,
    /// Bytes of the tensors timed (all of the file's, those stored verbatim included).
    bytes: u64,
    encode_s: f64,
    decode_s: f64,
}

/// One thread, and all the threads `--threads` allows (all cores by default).
fn thread_counts() -> Vec<usize> {
    let all = rayon::current_num_threads();
    if all > 1 { vec![1, all] } else { vec![1] }
}

/// A tensor of the file benchmarked.
struct Tensor<'a> {
    name: &'a str,
    dtype: &'a str,
    bytes: &'a [u8],
}

/// Times coding each tensor as compression does, and decoding it again into a
/// buffer made beforehand (as `decompress` does), best of [`ROUNDS`]; tensors in parallel, as
/// both do (up to 64 MiB of tensors at a time there).
fn cpu_times(tensors: &[Tensor], opts: &CompressOptions, threads: usize) -> Result<CpuTimes> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| Error::InvalidArgument(format!("a pool of {threads} threads: {e}")))?;
    pool.install(|| {
        let (mut encode_s, mut decode_s) = (f64::INFINITY, f64::INFINITY);
        let mut coded = Vec::new();
        for _ in 0..ROUNDS {
            let t = Instant::now();
            coded = tensors
                .par_iter()
                .map(|t| format::code_tensor(t.name, t.bytes, t.dtype, opts))
                .collect::<Result<Vec<_>>>()?;
            encode_s = encode_s.min(t.elapsed().as_secs_f64());
        }
        let mut out: Vec<Vec<u8>> = tensors.iter().map(|t| vec![0; t.bytes.len()]).collect();
        for _ in 0..ROUNDS {
            let t = Instant::now();
            coded
                .par_iter()
                .zip(tensors)
                .zip(&mut out)
                .try_for_each(|((c, t), out)| match c {
                    Some(c) => c.decode_into(out, t.name),
                    None => {
                        out.copy_from_slice(t.bytes);
                        Ok(())
                    }
                })?;
            decode_s = decode_s.min(t.elapsed().as_secs_f64());
        }
        if out.iter().zip(tensors).any(|(o, t)| o != t.bytes) {
            return Err(Error::InvalidArgument(
                "bench: the CPU decoder gave other bytes than the original".into(),
            ));
        }
        Ok(CpuTimes {
            threads,
            bytes: tensors.iter().map(|t| t.bytes.len() as u64).sum(),
            encode_s,
            decode_s,
        })
    })
}
