//! `compress`, `decompress` and `codebook build`.

use crate::{Progress, mbps, refuse_existing, safetensors_files, shards_in, size_of};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;
use vramzip::codec::shared::{Codebooks, Histograms};
use vramzip::format::{self, Archive, CompressOptions, SafetensorsFile};
use vramzip::{Error, Result};

pub fn compress(
    input: &Path,
    output: &Path,
    force: bool,
    opts: CompressOptions,
    codebook: Option<PathBuf>,
    shared_codebook: bool,
) -> Result<ExitCode> {
    refuse_existing(output, force)?;
    // the inputs' tensor data: what the progress callbacks count
    let shards = shards_in(input)?;
    let total = shards
        .iter()
        .map(|s| SafetensorsFile::open(s).map(|f| f.data_bytes()))
        .sum::<Result<u64>>()?;
    let codebooks = match (codebook, shared_codebook) {
        (Some(path), _) => Some(format::load_codebooks(&path)?),
        (None, true) => Some(build_codebooks(&shards)?),
        (None, false) => None,
    };
    let opts = match codebooks {
        Some(books) => opts.with_codebooks(std::sync::Arc::new(books)),
        None => opts,
    };
    let t0 = Instant::now();
    let before = size_of(input);
    let pb = Progress::bytes(total, "compress");
    if input.is_dir() {
        format::compress_dir(input, output, &opts, &|f, b| pb.file_at(f, b))?;
    } else {
        format::compress_file(input, output, &opts, &|b| pb.file_at(input, b))?;
    }
    pb.finish();
    let after = size_of(output);
    let secs = t0.elapsed().as_secs_f64();
    say!(
        "compressed {} -> {}: {before} -> {after} bytes, ratio {:.4}, {secs:.2} s ({:.0} MB/s)",
        input.display(),
        output.display(),
        after as f64 / before.max(1) as f64,
        mbps(before, secs)
    );
    Ok(ExitCode::SUCCESS)
}

pub fn decompress(input: &Path, output: &Path, force: bool) -> Result<ExitCode> {
    refuse_existing(output, force)?;
    // the original tensors' bytes: what decompression writes and its progress counts
    let original_bytes = |a: &Archive| a.tensors.iter().map(|t| t.meta.bytes).sum::<u64>();
    let t0 = Instant::now();
    if input.is_dir() {
        // each shard is opened once for the total and again by decompress_dir: headers only
        let total = shards_in(input)?
            .iter()
            .map(|s| Archive::open(s).map(|a| original_bytes(&a)))
            .sum::<Result<u64>>()?;
        let pb = Progress::bytes(total, "decompress");
        format::decompress_dir(input, output, &|f, b| pb.file_at(f, b))?;
        pb.finish();
    } else {
        let archive = Archive::open(input)?;
        let pb = Progress::bytes(original_bytes(&archive), "decompress");
        archive.decompress_to(output, &|b| pb.file_at(input, b))?;
        pb.finish();
    }
    let after = size_of(output);
    let secs = t0.elapsed().as_secs_f64();
    say!(
        "decompressed {} -> {}: {after} bytes, checksums ok, {secs:.2} s ({:.0} MB/s)",
        input.display(),
        output.display(),
        mbps(after, secs)
    );
    Ok(ExitCode::SUCCESS)
}

pub fn codebook_build(inputs: &[PathBuf], output: &Path, force: bool) -> Result<ExitCode> {
    refuse_existing(output, force)?;
    let books = build_codebooks(&safetensors_files(inputs)?)?;
    format::save_codebooks(&books, output)?;
    for (key, book) in &books.books {
        say!(
            "{key}: {}-bit symbols, {} codes",
            book.sym_bits,
            book.lens.iter().filter(|&&l| l > 0).count()
        );
    }
    say!(
        "wrote {} ({} bytes)",
        output.display(),
        books.to_bytes().len()
    );
    Ok(ExitCode::SUCCESS)
}

/// Codebooks per dtype and per role within a dtype from the summed histograms of `files`.
fn build_codebooks(files: &[PathBuf]) -> Result<Codebooks> {
    if files.is_empty() {
        return Err(Error::InvalidArgument(
            "no .safetensors input to build codebooks from".into(),
        ));
    }
    let mut hist = Histograms::default();
    let pb = Progress::count(files.len() as u64, "histograms", "files");
    for f in files {
        format::add_to_histograms(&mut hist, f)?;
        pb.inc();
    }
    pb.finish();
    let books = hist.build();
    if books.books.is_empty() {
        return Err(Error::InvalidArgument(
            "the inputs hold no tensor of a coded dtype".into(),
        ));
    }
    Ok(books)
}
