//! The `vramzip` command line: parses, calls the library, prints.

mod plot;

use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;
use vramzip::codec::shared::{Codebooks, Histograms};
use vramzip::format::{self, Archive, CompressOptions, TensorStats};
use vramzip::gpu::{self, GpuContext, GpuOptions};
use vramzip::{Error, Result};

#[derive(Parser)]
#[command(
    name = "vramzip",
    version,
    about = "Lossless compression of model weights, decoded on the GPU"
)]
struct Cli {
    /// Worker threads for CPU work (default: all cores).
    #[arg(long, global = true)]
    threads: Option<usize>,
    /// GPU backend: vulkan, metal, dx12, gl or all (default: all, or $VRAMZIP_BACKEND).
    #[arg(long, global = true)]
    backend: Option<String>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Compress a .safetensors file, or a directory holding a sharded model.
    Compress {
        /// Input file or directory.
        input: PathBuf,
        /// Output file or directory.
        #[arg(short, long)]
        output: PathBuf,
        /// Overwrite OUT if it exists.
        #[arg(long)]
        force: bool,
        /// Groups (32-bit output words) per chunk, 1 to 1024: smaller gives the GPU more
        /// parallel chunks, at the price of a larger chunk index.
        #[arg(long, default_value_t = vramzip::codec::DEFAULT_CHUNK_GROUPS)]
        chunk_groups: usize,
        /// Code every tensor of a dtype in this file with its shared codebook, in one pass.
        #[arg(long, conflicts_with = "shared_codebook")]
        codebook: Option<PathBuf>,
        /// Build one codebook per dtype from the whole input (all shards) and code every tensor
        /// with it: one table for the model instead of one per tensor.
        #[arg(long)]
        shared_codebook: bool,
    },
    /// Shared codebooks for single-stage coding.
    #[command(subcommand)]
    Codebook(CodebookCmd),
    /// Restore the original file or directory, byte for byte; checksums are checked.
    Decompress {
        /// Compressed file or directory.
        input: PathBuf,
        /// Output file or directory.
        #[arg(short, long)]
        output: PathBuf,
        /// Overwrite OUT if it exists.
        #[arg(long)]
        force: bool,
    },
    /// Per-tensor sizes, bits per weight, entropy bound and overhead over it.
    Inspect {
        /// Compressed file.
        file: PathBuf,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Decode every tensor and check it against the stored checksums.
    Verify {
        /// Compressed file.
        file: PathBuf,
        /// Decode on the CPU instead of the GPU.
        #[arg(long)]
        cpu: bool,
    },
    /// List the GPU adapters wgpu sees, with backend, driver and key limits.
    Adapters,
    /// Compress, decode and check a file (default: the real-weights sample in assets/), and report
    /// ratio, bound and throughputs.
    Bench {
        /// An uncompressed .safetensors file, or a directory of them (each shard in turn).
        file: Option<PathBuf>,
        /// Print JSON instead of a table (one line a file).
        #[arg(long)]
        json: bool,
        /// Also draw the throughput and load-time comparison into this SVG file.
        #[arg(long)]
        plot: Option<PathBuf>,
        /// Groups per chunk used for the compression (see `compress --help`).
        #[arg(long, default_value_t = vramzip::codec::DEFAULT_CHUNK_GROUPS)]
        chunk_groups: usize,
    },
}

#[derive(Subcommand)]
enum CodebookCmd {
    /// Build one codebook per dtype from the summed histograms of INPUTS (files or directories).
    Build {
        /// Uncompressed .safetensors files or directories of them.
        #[arg(required = true)]
        inputs: Vec<PathBuf>,
        /// The codebook file to write.
        #[arg(short, long)]
        output: PathBuf,
    },
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let cli = Cli::parse();
    if let Some(n) = cli.threads
        && let Err(e) = rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global()
    {
        eprintln!("error: --threads {n}: {e}");
        return ExitCode::from(2);
    }
    match run(cli.cmd, cli.backend) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

fn bar(total: u64, what: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(total);
    pb.set_style(
        ProgressStyle::with_template(
            "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    pb.set_message(what.to_string());
    pb
}

fn size_of(path: &Path) -> u64 {
    if path.is_dir() {
        std::fs::read_dir(path)
            .map(|d| d.filter_map(|e| e.ok()).map(|e| size_of(&e.path())).sum())
            .unwrap_or(0)
    } else {
        std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
    }
}

fn mbps(bytes: u64, secs: f64) -> f64 {
    bytes as f64 / secs.max(1e-9) / 1e6
}

fn run(cmd: Cmd, backend: Option<String>) -> Result<ExitCode> {
    let gpu_opts = GpuOptions {
        backend,
        ..Default::default()
    };
    match cmd {
        Cmd::Compress {
            input,
            output,
            chunk_groups,
            codebook,
            shared_codebook,
            force,
        } => {
            refuse_existing(&output, force)?;
            if !(1..=vramzip::codec::MAX_CHUNK_GROUPS).contains(&chunk_groups) {
                return Err(Error::InvalidArgument(format!(
                    "--chunk-groups {chunk_groups}: must be 1 to 1024"
                )));
            }
            let codebooks = match (codebook, shared_codebook) {
                (Some(path), _) => Some(Codebooks::load(&path)?),
                (None, true) => Some(build_codebooks(std::slice::from_ref(&input))?),
                (None, false) => None,
            };
            let opts = CompressOptions {
                chunk_groups,
                codebooks: codebooks.map(std::sync::Arc::new),
            };
            let t0 = Instant::now();
            let before = size_of(&input);
            let pb = bar(before, "compress");
            if input.is_dir() {
                format::compress_dir(&input, &output, &opts, &|_, b| pb.set_position(b))?;
            } else {
                format::compress_file(&input, &output, &opts, &|b| pb.set_position(b))?;
            }
            pb.finish_and_clear();
            let after = size_of(&output);
            let secs = t0.elapsed().as_secs_f64();
            println!(
                "compressed {} -> {}: {before} -> {after} bytes, ratio {:.4}, {secs:.2} s ({:.0} MB/s)",
                input.display(),
                output.display(),
                after as f64 / before.max(1) as f64,
                mbps(before, secs)
            );
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Decompress {
            input,
            output,
            force,
        } => {
            refuse_existing(&output, force)?;
            let t0 = Instant::now();
            let pb = bar(size_of(&input), "decompress");
            if input.is_dir() {
                format::decompress_dir(&input, &output, &|_, b| pb.set_position(b))?;
            } else {
                Archive::open(&input)?.decompress_to(&output, &|b| pb.set_position(b))?;
            }
            pb.finish_and_clear();
            let after = size_of(&output);
            let secs = t0.elapsed().as_secs_f64();
            println!(
                "decompressed {} -> {}: {after} bytes, checksums ok, {secs:.2} s ({:.0} MB/s)",
                input.display(),
                output.display(),
                mbps(after, secs)
            );
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Inspect { file, json } => {
            let archive = Archive::open(&file)?;
            let stats = archive.stats()?;
            let file_bytes = size_of(&file);
            if json {
                let tensors: Vec<_> = stats.iter().map(stats_json).collect();
                let t = totals(&stats);
                let doc = serde_json::json!({"file": file, "file_bytes": file_bytes,
                    "header_bytes": archive.header_bytes(), "tensors": tensors, "totals": t.json()});
                println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
            } else {
                println!(
                    "{:<56} {:>5} {:>14} {:>11} {:>11} {:>6} {:>6} {:>7}",
                    "tensor",
                    "dtype",
                    "shape",
                    "original",
                    "compressed",
                    "bits/w",
                    "bound",
                    "over%"
                );
                for (s, t) in stats.iter().zip(&archive.tensors) {
                    let shape = format!("{:?}", t.meta.shape).replace(' ', "");
                    println!(
                        "{:<56} {:>5} {:>14} {:>11} {:>11} {:>6.3} {:>6.3} {:>7.3}",
                        s.name,
                        s.dtype,
                        shape,
                        s.original_bytes,
                        s.compressed_bytes,
                        bits_per(s.compressed_bytes as f64 * 8.0, s.elements),
                        bits_per(s.bound_bits, s.elements),
                        100.0 * (s.compressed_bytes as f64 * 8.0 / s.bound_bits.max(1e-9) - 1.0)
                    );
                }
                let t = totals(&stats);
                println!(
                    "total: {} tensors, {} -> {} bytes of data (ratio {:.4}, bound {:.4}, {:.3}% over the bound); \
                    file {file_bytes} bytes, header and index {:.3}% of it",
                    stats.len(),
                    t.original,
                    t.compressed,
                    t.ratio(),
                    t.bound_ratio(),
                    t.over_bound_pct(),
                    100.0 * (archive.header_bytes() + t.index) as f64 / file_bytes.max(1) as f64
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Verify { file, cpu } => {
            let archive = Archive::open(&file)?;
            let bad = if cpu {
                verify_cpu(&archive)
            } else {
                verify_gpu(&archive, &GpuContext::new(&gpu_opts)?)
            };
            report_verify(&file, archive.tensors.len(), &bad)
        }
        Cmd::Codebook(CodebookCmd::Build { inputs, output }) => {
            let books = build_codebooks(&inputs)?;
            books.save(&output)?;
            for (dtype, book) in &books.books {
                println!(
                    "{dtype}: {}-bit symbols, {} codes",
                    book.sym_bits,
                    book.lens.iter().filter(|&&l| l > 0).count()
                );
            }
            println!(
                "wrote {} ({} bytes)",
                output.display(),
                books.to_bytes().len()
            );
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Adapters => {
            let list = gpu::list_adapters(gpu_opts.backend.as_deref())?;
            if list.is_empty() {
                return Err(Error::NoAdapter("wgpu sees no adapter".into()));
            }
            list.iter().for_each(|a| println!("{a}"));
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Bench {
            file,
            json,
            plot,
            chunk_groups,
        } => bench(
            file,
            json,
            plot.as_deref(),
            &CompressOptions {
                chunk_groups,
                ..Default::default()
            },
            &gpu_opts,
        ),
    }
}

/// Outputs are never overwritten by accident.
fn refuse_existing(output: &Path, force: bool) -> Result<()> {
    if output.exists() && !force {
        return Err(Error::InvalidArgument(format!(
            "{} exists; use --force to overwrite it",
            output.display()
        )));
    }
    Ok(())
}

/// Every .safetensors file in `paths` (files, or directories searched recursively).
fn safetensors_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut entries: Vec<PathBuf> = std::fs::read_dir(p)
                .map_err(|e| Error::Io {
                    path: p.clone(),
                    source: e,
                })?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .collect();
            entries.sort();
            let nested: Vec<PathBuf> = entries
                .into_iter()
                .filter(|e| e.is_dir() || e.extension().is_some_and(|x| x == "safetensors"))
                .collect();
            out.extend(safetensors_files(&nested)?);
        } else {
            out.push(p.clone());
        }
    }
    Ok(out)
}

fn build_codebooks(inputs: &[PathBuf]) -> Result<Codebooks> {
    let files = safetensors_files(inputs)?;
    if files.is_empty() {
        return Err(Error::InvalidArgument(
            "no .safetensors input to build codebooks from".into(),
        ));
    }
    let mut hist = Histograms::default();
    let pb = bar(files.len() as u64, "histograms");
    for f in &files {
        format::add_to_histograms(&mut hist, f)?;
        pb.inc(1);
    }
    pb.finish_and_clear();
    let books = hist.build();
    if books.books.is_empty() {
        return Err(Error::InvalidArgument(
            "the inputs hold no tensor of a coded dtype".into(),
        ));
    }
    Ok(books)
}

fn verify_cpu(archive: &Archive) -> Vec<(String, String)> {
    use rayon::prelude::*;
    archive
        .tensors
        .par_iter()
        .filter_map(|t| {
            archive
                .decode(t)
                .err()
                .map(|e| (t.meta.name.clone(), e.to_string()))
        })
        .collect()
}

/// Decodes every tensor on the GPU, one at a time so VRAM holds one tensor's worth at most.
fn verify_gpu(archive: &Archive, ctx: &GpuContext) -> Vec<(String, String)> {
    let pb = bar(archive.tensors.len() as u64, "verify");
    let bad = archive
        .tensors
        .iter()
        .filter_map(|t| {
            pb.inc(1);
            let got = ctx.decode_tensor(archive, t);
            match got {
                Ok(bytes) if format::checksum(&bytes) == t.xxh3 => None,
                Ok(bytes) => Some((
                    t.meta.name.clone(),
                    format!(
                        "GPU decode differs (xxh3 {:016x}, stored {:016x})",
                        format::checksum(&bytes),
                        t.xxh3
                    ),
                )),
                Err(e) => Some((t.meta.name.clone(), e.to_string())),
            }
        })
        .collect();
    pb.finish_and_clear();
    bad
}

fn report_verify(file: &Path, total: usize, bad: &[(String, String)]) -> Result<ExitCode> {
    for (name, why) in bad {
        eprintln!("mismatch: {name}: {why}");
    }
    if bad.is_empty() {
        println!(
            "{}: all {total} tensors match their checksums",
            file.display()
        );
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!(
            "error: {}: {} of {total} tensors differ",
            file.display(),
            bad.len()
        );
        Ok(ExitCode::from(1))
    }
}

fn bits_per(bits: f64, elements: u64) -> f64 {
    if elements == 0 {
        0.0
    } else {
        bits / elements as f64
    }
}

fn stats_json(s: &TensorStats) -> serde_json::Value {
    serde_json::json!({"name": s.name, "dtype": s.dtype, "elements": s.elements,
        "original_bytes": s.original_bytes, "compressed_bytes": s.compressed_bytes,
        "index_bytes": s.index_bytes, "sym_bits": s.sym_bits,
        "bits_per_weight": bits_per(s.compressed_bytes as f64 * 8.0, s.elements),
        "bound_bits_per_weight": bits_per(s.bound_bits, s.elements),
        "stream_bits_capped": s.capped_bits, "stream_bits_unlimited": s.unlimited_bits})
}

struct Totals {
    original: u64,
    compressed: u64,
    index: u64,
    bound_bits: f64,
    capped: u64,
    unlimited: u64,
}

impl Totals {
    fn ratio(&self) -> f64 {
        self.compressed as f64 / self.original.max(1) as f64
    }
    fn bound_ratio(&self) -> f64 {
        self.bound_bits / 8.0 / self.original.max(1) as f64
    }
    fn over_bound_pct(&self) -> f64 {
        100.0 * (self.compressed as f64 * 8.0 / self.bound_bits.max(1e-9) - 1.0)
    }
    fn cap_cost_pct(&self) -> f64 {
        100.0 * (self.capped as f64 / self.unlimited.max(1) as f64 - 1.0)
    }
    fn json(&self) -> serde_json::Value {
        serde_json::json!({"original_bytes": self.original, "compressed_bytes": self.compressed,
            "index_bytes": self.index, "ratio": self.ratio(), "bound_ratio": self.bound_ratio(),
            "over_bound_pct": self.over_bound_pct(), "length_cap_cost_pct": self.cap_cost_pct()})
    }
}

fn totals(stats: &[TensorStats]) -> Totals {
    Totals {
        original: stats.iter().map(|s| s.original_bytes).sum(),
        compressed: stats.iter().map(|s| s.compressed_bytes).sum(),
        index: stats.iter().map(|s| s.index_bytes).sum(),
        bound_bits: stats.iter().map(|s| s.bound_bits).sum(),
        capped: stats.iter().map(|s| s.capped_bits).sum(),
        unlimited: stats.iter().map(|s| s.unlimited_bits).sum(),
    }
}

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

fn bench(
    file: Option<PathBuf>,
    json: bool,
    plot: Option<&Path>,
    opts: &CompressOptions,
    gpu_opts: &GpuOptions,
) -> Result<ExitCode> {
    let input = file.unwrap_or_else(default_sample);
    let dir = std::env::temp_dir().join(format!("vramzip-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| Error::Io {
        path: dir.clone(),
        source: e,
    })?;
    let out = dir.join("bench.vz.safetensors");
    // a directory (a sharded model): every shard in turn, one table (or JSON line) each, and one
    // plot each, named after the shard
    let result = if input.is_dir() {
        let mut code = ExitCode::SUCCESS;
        for shard in safetensors_files(std::slice::from_ref(&input))? {
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
    };
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn bench_in(
    input: &Path,
    out: &Path,
    json: bool,
    plot: Option<&Path>,
    opts: &CompressOptions,
    gpu_opts: &GpuOptions,
) -> Result<ExitCode> {
    if !(1..=vramzip::codec::MAX_CHUNK_GROUPS).contains(&opts.chunk_groups) {
        return Err(Error::InvalidArgument(format!(
            "--chunk-groups {}: must be 1 to 1024",
            opts.chunk_groups
        )));
    }
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
        let opts = GpuOptions {
            backend: backend.clone(),
            ..gpu_opts.clone()
        };
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
    let meta_pct =
        100.0 * (stats.header_bytes + tot.index) as f64 / stats.output_bytes.max(1) as f64;
    if json {
        let doc = serde_json::json!({"file": input, "tensors": stats.tensors.len(),
            "input_bytes": stats.input_bytes, "output_bytes": stats.output_bytes, "file_ratio": file_ratio,
            "data": tot.json(), "metadata_pct_of_output": meta_pct,
            "cpu_encode_mb_s": mbps(tot.original, encode_s), "cpu_decode_mb_s": mbps(tot.original, decode_s),
            "coded_bytes": coded, "bit_exact": exact, "gpu": gpu.iter().map(gpu_json).collect::<Vec<_>>()});
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
