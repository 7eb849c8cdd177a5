//! The `vramzip` command line: parses, calls the library, prints. One file per subcommand; this
//! one holds the arguments and what the subcommands share.

/// Whether standard output was closed under us (`vramzip inspect FILE | head`).
static STDOUT_CLOSED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// `println!` that stops printing, instead of panicking as `println!` does, once the reader of
/// standard output has gone; the command still finishes (its temporaries are removed as usual).
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        use std::sync::atomic::Ordering;
        if !crate::STDOUT_CLOSED.load(Ordering::Relaxed)
            && writeln!(std::io::stdout(), $($arg)*).is_err()
        {
            crate::STDOUT_CLOSED.store(true, Ordering::Relaxed);
        }
    }};
}

mod bench;
mod compress;
mod inspect;
mod plot;
mod verify;

use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use vramzip::format::CompressOptions;
use vramzip::gpu::{self, GpuOptions};
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
    /// GPU backend: vulkan, metal, dx12, gl or all (default: Vulkan, Metal or DX12, or
    /// $VRAMZIP_BACKEND).
    #[arg(long, global = true, value_parser = ["vulkan", "metal", "dx12", "gl", "all"], ignore_case = true)]
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
        /// Groups (32-bit output words) per decode stream for every tensor, 1 to 1024, instead
        /// of the per-tensor choice (256 symbols a stream, 512 for the largest tensors): smaller
        /// gives the GPU more parallel streams, at the price of a larger index.
        #[arg(long, value_parser = chunk_groups())]
        chunk_groups: Option<u64>,
        /// Code every tensor with the shared codebook of its role (or its dtype) in this file, in
        /// one pass.
        #[arg(long, conflicts_with = "shared_codebook")]
        codebook: Option<PathBuf>,
        /// Build codebooks per dtype and per role (embeddings, norms, biases, q, k, v, attention
        /// output, feed-forward up and down) from the whole input (all shards) and code every
        /// tensor with its role's: a few tables for the model instead of one per tensor.
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
        /// Compressed file, or a directory of compressed shards.
        file: PathBuf,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Decode every tensor and check it against the stored checksums.
    Verify {
        /// Compressed file, or a directory of compressed shards.
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
        /// Groups per stream for the compression (see `compress --help`).
        #[arg(long, value_parser = chunk_groups())]
        chunk_groups: Option<u64>,
        /// CPU figures only: no GPU is looked for.
        #[arg(long)]
        cpu: bool,
        /// Also time the products on the file's matrices kept in this resident form, beside the
        /// product on the uncompressed weights: huffman (the file's code), fixed (the fixed-rate
        /// form, bf16 matrices), auto (both, and the measured choice per layer).
        #[arg(long, value_parser = ["huffman", "fixed", "auto"], conflicts_with = "cpu")]
        resident: Option<String>,
        /// Batch columns of those products.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=256))]
        batch: u32,
    },
}

#[derive(Subcommand)]
enum CodebookCmd {
    /// Build codebooks per dtype and per tensor role within a dtype (told from tensor names) from
    /// the summed histograms of INPUTS (files or directories).
    Build {
        /// Uncompressed .safetensors files or directories of them.
        #[arg(required = true)]
        inputs: Vec<PathBuf>,
        /// The codebook file to write.
        #[arg(short, long)]
        output: PathBuf,
        /// Overwrite OUT if it exists.
        #[arg(long)]
        force: bool,
    },
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let cli = Cli::parse();
    // Ctrl-C or a termination signal ends the process without running destructors: remove the
    // temporaries first, so an interrupted run leaves nothing behind
    let _ = ctrlc::set_handler(|| {
        vramzip::format::remove_temporaries();
        eprintln!("interrupted; temporary files removed");
        std::process::exit(130);
    });
    if let Some(n) = cli.threads {
        // more threads than cores only adds contention
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let n = n.clamp(1, cores);
        if let Err(e) = rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global()
        {
            eprintln!("error: --threads {n}: {e}");
            return ExitCode::from(2);
        }
    }
    match run(cli.cmd, cli.backend) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

/// `--chunk-groups`: checked here, once, for every subcommand that takes it (out of range is bad
/// usage, exit 2).
fn chunk_groups() -> clap::builder::RangedU64ValueParser<u64> {
    clap::value_parser!(u64).range(1..=vramzip::codec::MAX_CHUNK_GROUPS as u64)
}

fn run(cmd: Cmd, backend: Option<String>) -> Result<ExitCode> {
    let mut gpu_opts = GpuOptions::default();
    gpu_opts.backend = backend;
    let compress_opts = |chunk_groups: Option<u64>| match chunk_groups {
        Some(c) => CompressOptions::default().with_chunk_groups(c as usize),
        None => CompressOptions::default(),
    };
    match cmd {
        Cmd::Compress {
            input,
            output,
            force,
            chunk_groups,
            codebook,
            shared_codebook,
        } => compress::compress(
            &input,
            &output,
            force,
            compress_opts(chunk_groups),
            codebook,
            shared_codebook,
        ),
        Cmd::Decompress {
            input,
            output,
            force,
        } => compress::decompress(&input, &output, force),
        Cmd::Inspect { file, json } => inspect::inspect(&file, json),
        Cmd::Verify { file, cpu } => verify::verify(&file, cpu, &gpu_opts),
        Cmd::Codebook(CodebookCmd::Build {
            inputs,
            output,
            force,
        }) => compress::codebook_build(&inputs, &output, force),
        Cmd::Adapters => {
            let list = gpu::list_adapters(gpu_opts.backend.as_deref())?;
            if list.is_empty() {
                return Err(Error::NoAdapter("wgpu sees no adapter".into()));
            }
            list.iter().for_each(|a| say!("{a}"));
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Bench {
            file,
            json,
            plot,
            chunk_groups,
            cpu,
            resident,
            batch,
        } => bench::bench(
            file,
            json,
            plot.as_deref(),
            &compress_opts(chunk_groups),
            (!cpu).then_some(&gpu_opts),
            resident.map(|form| (form, batch)),
        ),
    }
}

/// A progress bar on stderr (hidden when stderr is not a terminal).
pub struct Progress {
    bar: ProgressBar,
    /// For byte counts reported per file: (the file, bytes done before it, its last count).
    files: std::sync::Mutex<(PathBuf, u64, u64)>,
}

impl Progress {
    /// Counts bytes out of `total`.
    fn bytes(total: u64, what: &str) -> Self {
        Self::new(
            total,
            what,
            "{bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
    }
    /// Counts `unit` (tensors, files) out of `total`.
    fn count(total: u64, what: &str, unit: &str) -> Self {
        Self::new(total, what, &format!("{{pos}}/{{len}} {unit} eta {{eta}}"))
    }
    fn new(total: u64, what: &str, counts: &str) -> Self {
        let bar = if std::io::stderr().is_terminal() {
            ProgressBar::new(total)
        } else {
            ProgressBar::hidden()
        };
        bar.set_style(
            ProgressStyle::with_template(&format!("{{msg}} [{{bar:30}}] {counts}"))
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar.set_message(what.to_string());
        Progress {
            bar,
            files: Default::default(),
        }
    }
    fn inc(&self) {
        self.bar.inc(1);
    }
    /// `done` bytes of `file`; the files of a directory one after another make one total.
    fn file_at(&self, file: &Path, done: u64) {
        let mut f = self.files.lock().unwrap_or_else(|e| e.into_inner());
        if f.0 != file {
            f.1 += f.2;
            (f.0, f.2) = (file.to_path_buf(), 0);
        }
        f.2 = done;
        self.bar
            .set_position((f.1 + done).min(self.bar.length().unwrap_or(u64::MAX)));
    }
    fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

pub fn size_of(path: &Path) -> u64 {
    if path.is_dir() {
        std::fs::read_dir(path)
            .map(|d| d.filter_map(|e| e.ok()).map(|e| size_of(&e.path())).sum())
            .unwrap_or(0)
    } else {
        std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
    }
}

pub fn mbps(bytes: u64, secs: f64) -> f64 {
    bytes as f64 / secs.max(1e-9) / 1e6
}

/// Outputs are never overwritten by accident.
pub fn refuse_existing(output: &Path, force: bool) -> Result<()> {
    if output.exists() && !force {
        return Err(Error::InvalidArgument(format!(
            "{} exists; use --force to overwrite it",
            output.display()
        )));
    }
    Ok(())
}

/// The .safetensors files a subcommand works on: `path` itself, or those in the directory
/// `path` (searched recursively), of which there must be at least one.
pub fn shards_in(path: &Path) -> Result<Vec<PathBuf>> {
    let files = safetensors_files(&[path.to_path_buf()])?;
    if files.is_empty() {
        return Err(Error::InvalidArgument(format!(
            "{}: no .safetensors file in this directory",
            path.display()
        )));
    }
    Ok(files)
}

/// Every .safetensors file in `paths` (files, or directories searched recursively).
pub fn safetensors_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in paths {
        out.extend(vramzip::format::safetensors_files(p)?);
    }
    Ok(out)
}
