//! vramzip: model weights kept losslessly compressed on disk, in RAM and in VRAM, decoded on the
//! GPU in WGSL compute shaders just before they are used.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod codec;
pub mod error;

pub use error::{Error, Result};
pub mod format;
pub mod gpu;
