//! `inspect`: per-tensor sizes, bits per weight, entropy bound and overhead over it.

use crate::{shards_in, size_of};
use std::path::Path;
use std::process::ExitCode;
use vramzip::Result;
use vramzip::format::{Archive, TensorStats};

/// A compressed file, or every compressed shard of a directory (then one table each, and a total
/// over all; as JSON, one document with a `files` list and the `totals`).
pub fn inspect(input: &Path, json: bool) -> Result<ExitCode> {
    let shards = shards_in(input)?;
    let mut docs = Vec::new();
    let mut all = Vec::new();
    for file in &shards {
        let archive = Archive::open(file)?;
        let stats = archive.stats()?;
        let file_bytes = size_of(file);
        if json {
            let tensors: Vec<_> = stats.iter().map(stats_json).collect();
            docs.push(serde_json::json!({"file": file, "file_bytes": file_bytes,
                "header_bytes": archive.header_bytes(), "tensors": tensors,
                "totals": totals(&stats).json()}));
        } else {
            print_table(&archive, &stats, file_bytes);
        }
        all.extend(stats);
    }
    if json {
        let doc = if input.is_dir() {
            serde_json::json!({"dir": input, "files": docs, "totals": totals(&all).json()})
        } else {
            docs.remove(0)
        };
        say!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
    } else if input.is_dir() {
        let t = totals(&all);
        say!(
            "all {} files: {} tensors, {} -> {} bytes of data (ratio {:.4}, bound {:.4})",
            shards.len(),
            all.len(),
            t.original,
            t.compressed,
            t.ratio(),
            t.bound_ratio()
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn print_table(archive: &Archive, stats: &[TensorStats], file_bytes: u64) {
    say!("{}", archive.path().display());
    say!(
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
        say!(
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
    let t = totals(stats);
    say!(
        "total: {} tensors, {} -> {} bytes of data (ratio {:.4}, bound {:.4}, {:.3}% over the bound); \
        file {file_bytes} bytes, header and index {:.3}% of it",
        stats.len(),
        t.original,
        t.compressed,
        t.ratio(),
        t.bound_ratio(),
        t.over_bound_pct(),
        100.0 * (archive.header_bytes() + t.index + t.table) as f64 / file_bytes.max(1) as f64
    );
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
        "index_bytes": s.index_bytes, "table_bytes": s.table_bytes, "streams": s.streams,
        "sym_bits": s.sym_bits,
        "bits_per_weight": bits_per(s.compressed_bytes as f64 * 8.0, s.elements),
        "bound_bits_per_weight": bits_per(s.bound_bits, s.elements),
        "stream_bits_capped": s.capped_bits, "stream_bits_unlimited": s.unlimited_bits})
}

pub struct Totals {
    pub original: u64,
    pub compressed: u64,
    pub index: u64,
    pub table: u64,
    pub streams: u64,
    pub bound_bits: f64,
    pub capped: u64,
    pub unlimited: u64,
}

impl Totals {
    pub fn ratio(&self) -> f64 {
        self.compressed as f64 / self.original.max(1) as f64
    }
    pub fn bound_ratio(&self) -> f64 {
        self.bound_bits / 8.0 / self.original.max(1) as f64
    }
    pub fn over_bound_pct(&self) -> f64 {
        100.0 * (self.compressed as f64 * 8.0 / self.bound_bits.max(1e-9) - 1.0)
    }
    pub fn cap_cost_pct(&self) -> f64 {
        100.0 * (self.capped as f64 / self.unlimited.max(1) as f64 - 1.0)
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({"original_bytes": self.original, "compressed_bytes": self.compressed,
            "index_bytes": self.index, "table_bytes": self.table, "streams": self.streams,
            "index_pct_of_compressed": 100.0 * self.index as f64 / self.compressed.max(1) as f64,
            "ratio": self.ratio(), "bound_ratio": self.bound_ratio(),
            "over_bound_pct": self.over_bound_pct(), "length_cap_cost_pct": self.cap_cost_pct()})
    }
}

pub fn totals(stats: &[TensorStats]) -> Totals {
    Totals {
        original: stats.iter().map(|s| s.original_bytes).sum(),
        compressed: stats.iter().map(|s| s.compressed_bytes).sum(),
        index: stats.iter().map(|s| s.index_bytes).sum(),
        table: stats.iter().map(|s| s.table_bytes).sum(),
        streams: stats.iter().map(|s| s.streams).sum(),
        bound_bits: stats.iter().map(|s| s.bound_bits).sum(),
        capped: stats.iter().map(|s| s.capped_bits).sum(),
        unlimited: stats.iter().map(|s| s.unlimited_bits).sum(),
    }
}
