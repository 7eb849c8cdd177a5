//! `verify`: decode every tensor (on the GPU, or the CPU) and check it against its checksum.

use crate::{Progress, shards_in};
use std::path::Path;
use std::process::ExitCode;
use vramzip::format::{self, Archive};
use vramzip::gpu::{GpuContext, GpuOptions};
use vramzip::{Error, Result};

/// A compressed file, or every compressed shard of a directory.
pub fn verify(input: &Path, cpu: bool, gpu_opts: &GpuOptions) -> Result<ExitCode> {
    let shards = shards_in(input)?;
    let archives = shards
        .iter()
        .map(Archive::open)
        .collect::<Result<Vec<_>>>()?;
    let gpu = if cpu {
        None
    } else {
        Some(GpuContext::new(gpu_opts).map_err(|e| match e {
            Error::NoAdapter(why) => Error::NoAdapter(format!(
                "{why}; `vramzip verify --cpu` verifies without a GPU"
            )),
            other => other,
        })?)
    };
    let total: usize = archives.iter().map(|a| a.tensors.len()).sum();
    let pb = Progress::count(total as u64, "verify", "tensors");
    let mut bad = Vec::new();
    for archive in &archives {
        bad.extend(match &gpu {
            None => verify_cpu(archive, &pb),
            Some(ctx) => verify_gpu(archive, ctx, &pb),
        });
    }
    pb.finish();
    for (name, why) in &bad {
        eprintln!("mismatch: {name}: {why}");
    }
    if bad.is_empty() {
        say!(
            "{}: all {total} tensors match their checksums",
            input.display()
        );
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!(
            "error: {}: {} of {total} tensors differ",
            input.display(),
            bad.len()
        );
        Ok(ExitCode::from(1))
    }
}

fn verify_cpu(archive: &Archive, pb: &Progress) -> Vec<(String, String)> {
    use rayon::prelude::*;
    archive
        .tensors
        .par_iter()
        .filter_map(|t| {
            let result = archive.decode(t);
            pb.inc();
            result.err().map(|e| (t.meta.name.clone(), e.to_string()))
        })
        .collect()
}

/// Decodes every tensor on the GPU, one at a time so VRAM holds one tensor's worth at most.
fn verify_gpu(archive: &Archive, ctx: &GpuContext, pb: &Progress) -> Vec<(String, String)> {
    archive
        .tensors
        .iter()
        .filter_map(|t| {
            let got = ctx.decode_tensor(archive, t);
            pb.inc();
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
        .collect()
}
