//! `bench`: compress, decode and check a file (default: the real-weights sample in assets/), and
//! report ratio, bound and throughputs on the CPU and the GPU beside their baselines.

use crate::inspect::totals;
use crate::{mbps, plot, shards_in};
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

fn default_sample() -> PathBuf {
    let here = PathBuf::from("assets/minilm-layer0.safetensors");
    if here.exists() {
        here
    } else {
        Path::new(env!("CARGO_MANIFEST_DIR")).join(here)
    }
}

pub fn bench(
    file: Option<PathBuf>,
    json: bool,
    plot: Option<&Path>,
    opts: &CompressOptions,
    gpu_opts: &GpuOptions,
) -> Result<ExitCode> {
    let input = file.unwrap_or_else(default_sample);
    // removed when dropped: on every way out, errors included
    let tmp = tempfile::Builder::new()
        .prefix("vramzip-bench-")
        .tempdir()
        .map_err(|e| Error::Io {
            path: std::env::temp_dir(),
            source: e,
        })?;
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
            if bench_in(&shard, &out, json, plot.as_deref(), opts, gpu_opts)? != ExitCode::SUCCESS {
                code = ExitCode::from(1);
            }
        }
        Ok(code)
    } else {
        bench_in(&input, &out, json, plot, opts, gpu_opts)
    }
}

fn bench_in(
    input: &Path,
    out: &Path,
    json: bool,
    plot: Option<&Path>,
    opts: &CompressOptions,
    gpu_opts: &GpuOptions,
) -> Result<ExitCode> {
    let t0 = Instant::now();
    let stats = format::compress_file(input, out, opts, &|_| {})?;
    let encode_s = t0.elapsed().as_secs_f64();
    let archive = Archive::open(out)?;
    let original = {
        let f = format::SafetensorsFile::open(input)?;
        f.header
            .tensors
            .iter()
            .map(|t| f.read(t))
            .collect::<Result<Vec<_>>>()?
    };
    // Read the parts first so the CPU decode time counts decoding alone.
    let coded: Vec<_> = archive
        .tensors
        .iter()
        .map(|t| t.layout().map(|_| archive.coded(t)).transpose())
        .collect::<Result<_>>()?;
    let t1 = Instant::now();
    let mut decoded = Vec::new();
    for (t, c) in archive.tensors.iter().zip(&coded) {
        decoded.push(match c {
            Some(c) => c.decode(&t.meta.name)?,
            None => archive.read(&t.meta.name)?,
        });
    }
    let decode_s = t1.elapsed().as_secs_f64();
    let exact = decoded == original;
    // `--backend all`: every backend that has an adapter here, one after another
    let backends: Vec<Option<String>> = match gpu_opts.backend.as_deref() {
        Some("all") => ["vulkan", "metal", "dx12", "gl"]
            .iter()
            .map(|b| Some(b.to_string()))
            .collect(),
        other => vec![other.map(String::from)],
    };
    let mut gpu = Vec::new();
    for backend in backends {
        let mut opts = gpu_opts.clone();
        opts.backend.clone_from(&backend);
        match GpuContext::new(&opts) {
            Ok(ctx) => gpu.push(gpu::bench::bench_file(
                &ctx, input, &archive, &original, 1.0,
            )?),
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
            "cpu_encode_mb_s": mbps(tot.original, encode_s), "cpu_decode_mb_s": mbps(tot.original, decode_s),
            "coded_bytes": coded, "streams": tot.streams, "index_bytes": tot.index, "bit_exact": exact, "gpu": gpu.iter().map(gpu_json).collect::<Vec<_>>()});
        println!("{}", serde_json::to_string(&doc).unwrap_or_default());
    } else {
        println!("file              {}", input.display());
        println!(
            "tensors           {} ({} coded bytes of {})",
            stats.tensors.len(),
            coded,
            tot.original
        );
        println!(
            "size              {} -> {} bytes, ratio {:.4} (data {:.4})",
            stats.input_bytes,
            stats.output_bytes,
            file_ratio,
            tot.ratio()
        );
        println!(
            "entropy bound     {:.4} (data over bound {:.3}%, length-12 cap costs {:.3}% of stream)",
            tot.bound_ratio(),
            tot.over_bound_pct(),
            tot.cap_cost_pct()
        );
        println!(
            "metadata          {:.3}% of the output (header, chunk index, code tables)",
            meta_pct
        );
        println!(
            "streams           {} independent decode streams, chunk index {} bytes ({:.3}% of the data)",
            tot.streams,
            tot.index,
            100.0 * tot.index as f64 / tot.compressed.max(1) as f64
        );
        println!(
            "cpu encode        {:.0} MB/s ({} threads)",
            mbps(tot.original, encode_s),
            rayon::current_num_threads()
        );
        println!("cpu decode        {:.0} MB/s", mbps(tot.original, decode_s));
        println!("cpu bit-exact     {}", if exact { "yes" } else { "NO" });
        for g in &gpu {
            println!("gpu               {}", g.adapter);
            println!(
                "gpu decode        {:.2} GB/s decoded ({} of {:.3} ms)",
                g.decode_gbps(),
                if g.decode.timestamps {
                    "timestamps"
                } else {
                    "wall time"
                },
                g.decode.seconds * 1e3
            );
            println!(
                "gpu buffer copy   {:.2} GB/s copied; decode/copy = {:.3}",
                g.copy_gbps(),
                g.decode_gbps() / g.copy_gbps()
            );
            println!(
                "gpu shader copy   {:.2} GB/s copied; decode/shader copy = {:.3}",
                g.shader_copy_gbps(),
                g.decode_gbps() / g.shader_copy_gbps()
            );
            println!(
                "load to VRAM      raw file {:.3} ms; compressed file + GPU decode {:.3} ms = {:.3}x the raw time",
                g.load_raw_s * 1e3,
                g.load_compressed_s * 1e3,
                g.load_compressed_s / g.load_raw_s
            );
            println!(
                "                  compressed file + CPU decode + upload {:.3} ms = {:.3}x the raw time",
                g.load_cpu_decoded_s * 1e3,
                g.load_cpu_decoded_s / g.load_raw_s
            );
            println!(
                "gpu bit-exact     {}",
                if g.bit_exact { "yes" } else { "NO" }
            );
        }
    }
    if let Some(path) = plot {
        let title = format!(
            "vramzip bench {} (ratio {:.4})",
            input.display(),
            file_ratio
        );
        plot::plot(path, &title, tot.original as f64 / decode_s / 1e9, &gpu)?;
        if !json {
            println!("plot              {}", path.display());
        }
    }
    Ok(if exact && gpu_exact {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
