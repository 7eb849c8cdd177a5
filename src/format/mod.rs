//! The container: reading safetensors headers, and the compressed file, which is itself a valid
//! safetensors file.
//!
//! A compressed file holds, as U8 tensors:
//! * per coded tensor, one U8 tensor under the original name holding its parts back to back:
//!   index, stream, raw plane (see [`crate::codec`] for the layout), then its code table
//!   unless the manifest names a shared codebook tensor instead;
//! * tensors stored verbatim keep their own name, dtype and shape, and stay usable as they are;
//! * `__vramzip__.manifest`, last: a JSON document ([`Manifest`]) deflated (raw DEFLATE, RFC
//!   1951), listing every original tensor in file order with its dtype, shape, coding and the
//!   xxh3-64 checksum of its original bytes, and holding the original file's header, so that
//!   decompression restores the file byte for byte.
//!
//! Keeping the original names keeps a sharded model's `weight_map` valid.
//!
//! Its `__metadata__` keeps the original file's entries and adds `vramzip`: a short JSON document
//! ([`Marker`]) with the format version and the manifest tensor's checksum. Deflated, the
//! manifest takes a tenth of its text (all-MiniLM-L6-v2 in f16: 34,310 bytes, 3,717 stored;
//! BENCHMARKS.md), and its checksum covers every byte stored of it.

mod dir;
mod plain;
mod read;
mod rewrite;
mod write;

pub use dir::{ORIGINAL_INDEX_KEY, compress_dir, decompress_dir, safetensors_files};
pub(crate) use plain::read_exact_at;
pub use plain::{Header, HeaderTensor, SafetensorsFile, dtype_size, parse_header, read_header};

pub use read::{Archive, Form, PartRanges, TensorEntry};
pub use rewrite::rewrite_manifest;
pub use write::{
    CompressOptions, CompressStats, TensorStats, code_tensor, compress_file, tensor_stats,
};
pub use write::{ScratchDir, remove_temporaries};

use crate::error::Result;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// Decoded bytes of the tensors that compression and decompression code at once, in parallel,
/// before writing them in order: one tensor at a time, the many small ones (norms, biases: one
/// block, one thread) leave the other threads idle.
const BATCH_BYTES: u64 = 64 << 20;

/// `work` done on every item in parallel, [`BATCH_BYTES`] of items (by `bytes`; a larger item
/// alone) at a time, the results handed out in the items' order: a batch is done when the
/// results before it have been taken, so that only one batch's are held at once.
fn in_batches<T: Sync, R: Send>(
    items: &[T],
    bytes: impl Fn(&T) -> u64,
    work: impl Fn(&T) -> R + Sync,
) -> impl Iterator<Item = (&T, R)> {
    batches(items, bytes).flat_map(move |batch| {
        let done: Vec<R> = batch.par_iter().map(&work).collect();
        batch.iter().zip(done)
    })
}

/// Consecutive runs of `items` of at most [`BATCH_BYTES`] together by `bytes` (a larger item is a
/// run of its own).
fn batches<T>(items: &[T], bytes: impl Fn(&T) -> u64) -> impl Iterator<Item = &[T]> {
    let mut rest = items;
    std::iter::from_fn(move || {
        let mut sum = 0;
        let n = rest
            .iter()
            .take_while(|t| {
                sum += bytes(t);
                sum <= BATCH_BYTES
            })
            .count()
            .max(1)
            .min(rest.len());
        let (batch, after) = rest.split_at(n);
        rest = after;
        (!batch.is_empty()).then_some(batch)
    })
}

/// Version of the container layout written by this build.
pub const FORMAT_VERSION: u32 = 2;
/// The `format` entry of a compressed file's `__metadata__`, so that checkpoint loaders do not
/// take it for a plain checkpoint.
pub const FORMAT_MARKER: &str = "vramzip";
/// Name of the tensor holding the manifest.
pub const MANIFEST_TENSOR: &str = "__vramzip__.manifest";
/// Key of the [`Marker`] in `__metadata__`.
pub const MANIFEST_KEY: &str = "vramzip";
/// Largest header accepted, as in the safetensors crate.
pub const MAX_HEADER_BYTES: u64 = 100_000_000;

/// How one original tensor is coded, as recorded in the manifest.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "coding", rename_all = "lowercase")]
pub enum Coding {
    /// Kept verbatim under its own name.
    Stored,
    /// Split and Huffman coded.
    Huffman {
        /// Coded top bits per element.
        sym_bits: u32,
        /// Groups per stream.
        chunk_groups: usize,
        /// Bytes of the index.
        index_bytes: u64,
        /// Bytes of the Huffman stream.
        stream_bytes: u64,
        /// Name of a shared codebook tensor; `None`: the table ends this tensor's own data.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        codebook: Option<String>,
    },
}

/// One original tensor in the manifest.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ManifestTensor {
    /// Original name.
    pub name: String,
    /// Original dtype.
    pub dtype: String,
    /// Original shape.
    pub shape: Vec<u64>,
    /// Original size in bytes.
    pub bytes: u64,
    /// xxh3-64 of the original bytes, 16 hex digits.
    pub xxh3: String,
    /// How it is coded.
    #[serde(flatten)]
    pub coding: Coding,
}

/// The `vramzip` entry of a compressed file's `__metadata__`: what a reader checks before it
/// reads anything else.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Marker {
    /// Container version.
    pub format: u32,
    /// Lanes of a quarter (the codec's `LANES`).
    pub lanes: usize,
    /// xxh3-64 of the manifest tensor's (deflated) bytes, 16 hex digits.
    pub manifest_xxh3: String,
}

/// The vramzip document of a compressed file, in its manifest tensor.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Manifest {
    /// Original tensors in file order.
    pub tensors: Vec<ManifestTensor>,
    /// The original file's header, byte for byte: its JSON and padding (UTF-8, as JSON is).
    pub original_header: String,
    /// xxh3-64 of the whole original file, 16 hex digits: decompression checks what it wrote.
    pub file_xxh3: String,
}

/// Adds every coded tensor of the plain safetensors file `path` to `hist`, one tensor in memory
/// at a time.
pub fn add_to_histograms(
    hist: &mut crate::codec::shared::Histograms,
    path: impl AsRef<std::path::Path>,
) -> Result<()> {
    let file = SafetensorsFile::open(path)?;
    for t in &file.header.tensors {
        if crate::codec::element_bits(&t.dtype).is_some() {
            hist.add_named(&t.name, &t.dtype, &file.read(t)?);
        }
    }
    Ok(())
}

/// Writes a codebook file (see [`crate::codec::shared::Codebooks::to_bytes`]) atomically,
/// through a temporary file beside it.
pub fn save_codebooks(
    books: &crate::codec::shared::Codebooks,
    path: impl AsRef<std::path::Path>,
) -> Result<()> {
    use std::io::Write;
    let path = path.as_ref();
    let (tmp, mut file) = write::TempPath::beside(path, "codebook")?;
    file.write_all(&books.to_bytes())
        .map_err(|e| crate::Error::io(path, e))?;
    tmp.persist(file, path)
}

/// Reads and checks a codebook file.
pub fn load_codebooks(
    path: impl AsRef<std::path::Path>,
) -> Result<crate::codec::shared::Codebooks> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| crate::Error::io(path, e))?;
    crate::codec::shared::Codebooks::from_bytes(&bytes).map_err(|r| crate::Error::invalid(path, r))
}

/// The checksum used throughout.
pub fn checksum(bytes: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(bytes)
}

/// The checksum of a whole file, fed as it is written or read, piece by piece, in order.
pub(crate) struct FileChecksum(xxhash_rust::xxh3::Xxh3);

impl FileChecksum {
    /// Starts with the file's first bytes: the header length and the header.
    pub(crate) fn new(header: &[u8]) -> Self {
        let mut h = xxhash_rust::xxh3::Xxh3::new();
        h.update(&(header.len() as u64).to_le_bytes());
        h.update(header);
        FileChecksum(h)
    }
    pub(crate) fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
    pub(crate) fn digest(&self) -> u64 {
        self.0.digest()
    }
}

/// `bytes` deflated (raw DEFLATE, RFC 1951): how the manifest and the original header are stored.
pub fn deflate(bytes: &[u8]) -> Vec<u8> {
    miniz_oxide::deflate::compress_to_vec(bytes, 10)
}

/// `bytes` inflated, at most [`MAX_HEADER_BYTES`] of them: a few bytes of hostile input cannot
/// make it allocate more.
pub fn inflate(bytes: &[u8]) -> std::result::Result<Vec<u8>, String> {
    miniz_oxide::inflate::decompress_to_vec_with_limit(bytes, MAX_HEADER_BYTES as usize)
        .map_err(|e| format!("not a valid DEFLATE stream: {e}"))
}

/// A checksum as the manifest writes it.
pub(crate) fn hex(sum: u64) -> String {
    format!("{sum:016x}")
}

#[cfg(test)]
mod tests {
    use super::{BATCH_BYTES, batches};

    #[test]
    fn batches_keep_order_and_size() {
        let sizes = [10, 20, BATCH_BYTES - 30, 1, BATCH_BYTES + 1, 5, 6];
        let got: Vec<&[u64]> = batches(&sizes, |&b| b).collect();
        let want: Vec<&[u64]> = vec![&sizes[..3], &sizes[3..4], &sizes[4..5], &sizes[5..]];
        assert_eq!(got, want);
        assert_eq!(batches(&[] as &[u64], |&b| b).count(), 0);
    }
}
