//! The container: reading safetensors headers, and the compressed file, which is itself a valid
//! safetensors file.
//!
//! A compressed file holds, as U8 tensors:
//! * `__vramzip__.header`: the original file's header bytes, so decompression restores the file
//!   byte for byte;
//! * per coded tensor, one U8 tensor under the original name holding its parts back to back:
//!   chunk index, stream, raw plane (see [`crate::codec`] for the layout), then its code table
//!   unless the manifest names a shared codebook tensor instead;
//! * tensors stored verbatim keep their own name, dtype and shape, and stay usable as they are.
//!
//! Keeping the original names keeps a sharded model's `weight_map` valid.
//!
//! Its `__metadata__` keeps the original file's entries and adds `vramzip`: a JSON document
//! ([`Manifest`]) listing every original tensor in file order with its dtype, shape, coding and
//! the xxh3-64 checksum of its original bytes.

mod dir;
mod read;
mod write;

pub use dir::{ORIGINAL_INDEX_KEY, compress_dir, decompress_dir};

pub use read::{Archive, PartRanges, TensorEntry};
pub use write::{CompressOptions, CompressStats, TensorStats, compress_file, tensor_stats};

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// Version of the container layout written by this build.
pub const FORMAT_VERSION: u32 = 1;
/// Name of the tensor holding the original header.
pub const HEADER_TENSOR: &str = "__vramzip__.header";
/// Key of the vramzip manifest in `__metadata__`.
pub const MANIFEST_KEY: &str = "vramzip";
/// Largest header accepted, as in the safetensors crate.
pub const MAX_HEADER_BYTES: u64 = 100_000_000;

/// One tensor as a safetensors header declares it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeaderTensor {
    /// Name.
    pub name: String,
    /// Dtype string, as in the file.
    pub dtype: String,
    /// Shape.
    pub shape: Vec<u64>,
    /// Byte range in the data section.
    pub start: u64,
    /// End of the byte range.
    pub end: u64,
}

/// A parsed safetensors header.
#[derive(Clone, Debug)]
pub struct Header {
    /// The raw header bytes (JSON plus any padding), as in the file.
    pub raw: Vec<u8>,
    /// `__metadata__`, if any.
    pub metadata: Option<BTreeMap<String, String>>,
    /// Tensors in data order.
    pub tensors: Vec<HeaderTensor>,
    /// Offset of the data section in the file.
    pub data_start: u64,
}

/// Size in bytes of a dtype's element, for the dtypes whose size is whole bytes.
pub fn dtype_size(dtype: &str) -> Option<u64> {
    Some(match dtype {
        "BOOL" | "U8" | "I8" | "F8_E5M2" | "F8_E4M3" | "F8_E8M0" => 1,
        "I16" | "U16" | "F16" | "BF16" => 2,
        "I32" | "U32" | "F32" => 4,
        "I64" | "U64" | "F64" => 8,
        _ => return None,
    })
}

#[derive(Deserialize)]
struct RawEntry {
    dtype: String,
    shape: Vec<u64>,
    data_offsets: (u64, u64),
}

/// Reads and checks a safetensors header: sizes are checked against the file before anything is
/// allocated, tensors must tile the data section exactly, element counts must match byte sizes.
pub fn read_header(file: &File, path: &Path) -> Result<Header> {
    let file_len = file.metadata().map_err(|e| Error::io(path, e))?.len();
    let mut len8 = [0u8; 8];
    if file_len < 8 {
        return Err(Error::invalid(
            path,
            "shorter than the 8-byte header length",
        ));
    }
    file.read_exact_at(&mut len8, 0)
        .map_err(|e| Error::io(path, e))?;
    let n = u64::from_le_bytes(len8);
    if n > MAX_HEADER_BYTES || n > file_len - 8 {
        return Err(Error::invalid(
            path,
            format!("header length {n} exceeds the file or the limit"),
        ));
    }
    let mut raw = vec![0u8; n as usize];
    file.read_exact_at(&mut raw, 8)
        .map_err(|e| Error::io(path, e))?;
    let map: BTreeMap<String, serde_json::Value> = serde_json::from_slice(&raw)
        .map_err(|e| Error::invalid(path, format!("header is not a JSON object: {e}")))?;
    let mut metadata = None;
    let mut tensors = Vec::new();
    for (name, value) in map {
        if name == "__metadata__" {
            metadata = Some(
                serde_json::from_value(value)
                    .map_err(|e| Error::invalid(path, format!("__metadata__: {e}")))?,
            );
            continue;
        }
        let e: RawEntry = serde_json::from_value(value)
            .map_err(|e| Error::invalid(path, format!("tensor '{name}': {e}")))?;
        let (start, end) = e.data_offsets;
        if start > end {
            return Err(Error::invalid(
                path,
                format!("tensor '{name}': offsets {start}..{end}"),
            ));
        }
        if let Some(size) = dtype_size(&e.dtype) {
            let elems = e.shape.iter().try_fold(1u64, |a, &d| a.checked_mul(d));
            if elems.and_then(|n| n.checked_mul(size)) != Some(end - start) {
                return Err(Error::invalid(
                    path,
                    format!(
                        "tensor '{name}': shape {:?} of {} does not fill {} bytes",
                        e.shape,
                        e.dtype,
                        end - start
                    ),
                ));
            }
        }
        tensors.push(HeaderTensor {
            name,
            dtype: e.dtype,
            shape: e.shape,
            start,
            end,
        });
    }
    tensors.sort_by_key(|t| (t.start, t.end));
    let data_start = 8 + n;
    let mut pos = 0;
    for t in &tensors {
        if t.start != pos {
            return Err(Error::invalid(
                path,
                format!("tensor '{}' starts at {} instead of {pos}", t.name, t.start),
            ));
        }
        pos = t.end;
    }
    if data_start + pos != file_len {
        return Err(Error::invalid(
            path,
            format!(
                "data section is {} bytes, tensors cover {pos}",
                file_len - data_start
            ),
        ));
    }
    Ok(Header {
        raw,
        metadata,
        tensors,
        data_start,
    })
}

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
        /// Groups per chunk.
        chunk_groups: usize,
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

/// The vramzip document in a compressed file's `__metadata__`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Manifest {
    /// Container version.
    pub format: u32,
    /// Chunks per block (the codec's `LANES`).
    pub lanes: usize,
    /// Original tensors in file order.
    pub tensors: Vec<ManifestTensor>,
}

/// The checksum used throughout.
pub fn checksum(bytes: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(bytes)
}
