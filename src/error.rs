//! The one error type of the crate.

use std::path::PathBuf;

/// Everything that can go wrong in vramzip. Each variant says what and where, so the CLI can print
/// it as one line.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A file is not a valid safetensors file, or its vramzip metadata is inconsistent.
    #[error("{path}: invalid file: {reason}")]
    InvalidFile {
        /// The file (may be empty for in-memory data).
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A compressed tensor's data is corrupt: decoding it cannot give the original bytes.
    #[error("tensor '{tensor}': corrupt data: {reason}")]
    Corrupt {
        /// The tensor's original name.
        tensor: String,
        /// What is wrong.
        reason: String,
    },
    /// The decoded bytes do not match the checksum stored at compression time.
    #[error("tensor '{tensor}': checksum mismatch (stored {expected:016x}, decoded {actual:016x})")]
    ChecksumMismatch {
        /// The tensor's original name.
        tensor: String,
        /// The checksum stored in the file.
        expected: u64,
        /// The checksum of what was decoded.
        actual: u64,
    },
    /// A caller-provided buffer has the wrong size.
    #[error("buffer too small: need {expected} bytes, got {actual}")]
    OutputTooSmall {
        /// Bytes needed.
        expected: usize,
        /// Bytes given.
        actual: usize,
    },
    /// A size declared by a file exceeds what is allowed or what the file holds.
    #[error("{what}: {size} exceeds the limit of {limit}")]
    TooLarge {
        /// What was too large.
        what: String,
        /// The declared size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// No GPU adapter could be found or opened.
    #[error("no GPU adapter: {0}")]
    NoAdapter(String),
    /// The GPU reported an error (validation, out of memory, lost device).
    #[error("GPU error: {0}")]
    Gpu(String),
    /// The caller asked for something invalid.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

/// Shorthand for results of this crate.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
    pub(crate) fn invalid(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Error::InvalidFile {
            path: path.into(),
            reason: reason.into(),
        }
    }
    pub(crate) fn corrupt(tensor: &str, reason: impl Into<String>) -> Self {
        Error::Corrupt {
            tensor: tensor.to_string(),
            reason: reason.into(),
        }
    }
}
