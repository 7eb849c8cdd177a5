//! vramzip: model weights kept losslessly compressed on disk, in RAM and in VRAM, decoded on the
//! GPU in WGSL compute shaders just before they are used.
//!
//! * [`codec`]: the split of each value into a Huffman-coded symbol and raw low bits, and the
//!   chunk layout that thousands of GPU threads decode in parallel (its one description lives
//!   there);
//! * [`format`](mod@format): the compressed file, itself a valid `.safetensors` file;
//! * [`gpu`]: upload once, decode in WGSL into your own buffers, recorded into your encoder;
//!   matrix products on compressed weights (decode then multiply, or fused), bit-identical to
//!   the same products on the uncompressed weights;
//! * [`model`]: models on that public API: a BERT forward pass ([`model::bert`]).
//!
//! Compress a file, then get a tensor back on the CPU, bit for bit:
//!
//! ```
//! use vramzip::format::{self, Archive, CompressOptions};
//! # fn main() -> vramzip::Result<()> {
//! let input = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/minilm-layer0.safetensors");
//! let output = std::env::temp_dir().join(format!("doctest-{}.vz.safetensors", std::process::id()));
//! let stats = format::compress_file(&input, &output, &CompressOptions::default(), &|_| {})?;
//! assert!(stats.output_bytes < stats.input_bytes * 2 / 3 + 10_000);
//!
//! let archive = Archive::open(&output)?;
//! let t = &archive.tensors[1];
//! let bytes = archive.decode(t)?; // checks the stored checksum of the original bytes
//! assert_eq!(bytes.len() as u64, t.meta.bytes);
//! # std::fs::remove_file(&output).ok();
//! # Ok(())
//! # }
//! ```
//!
//! On the GPU (see `examples/decode_before_matmul.rs`): build one [`gpu::GpuContext`], upload
//! with [`gpu::GpuContext::upload`], then call [`gpu::GpuContext::record_decode`] into your
//! command encoder right before the pass that uses the weights.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod codec;
mod dtype;
pub mod error;

pub use dtype::Dtype;
pub use error::{Error, Result};
pub mod format;
#[cfg(feature = "fuzzing")]
pub mod fuzz;
pub mod gpu;
pub mod model;
