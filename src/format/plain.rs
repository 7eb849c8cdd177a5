//! Plain safetensors files, the ground floor every other module reads through: the header,
//! checked against the file before anything is allocated, and positioned reads of tensor data.
//! The one place that touches the platform's file API, so the crate builds everywhere.

use super::MAX_HEADER_BYTES;
use crate::error::{Error, Result};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

/// The permissions an output (a file, or a directory when `dir`) is created with: what a plain
/// `File::create` or `create_dir` would give, the umask applied, not a temporary's owner-only mode.
pub(crate) fn output_permissions(dir: bool) -> Option<std::fs::Permissions> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        Some(std::fs::Permissions::from_mode(if dir {
            0o777
        } else {
            0o666
        }))
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        None
    }
}

/// Opens a regular file for reading; anything else (a FIFO would block, a device never ends) is
/// refused before it is opened.
pub(crate) fn open_regular(path: &Path) -> Result<File> {
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if !meta.is_file() {
        return Err(Error::invalid(path, "not a regular file"));
    }
    File::open(path).map_err(|e| Error::io(path, e))
}

/// Fills `buf` from `offset` of `file` without moving a shared cursor, so that threads can read
/// one file at once.
pub(crate) fn read_exact_at(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        std::os::unix::fs::FileExt::read_exact_at(file, buf, offset)
    }
    #[cfg(windows)]
    {
        use std::os::windows::fs::FileExt;
        let (mut buf, mut offset) = (buf, offset);
        while !buf.is_empty() {
            match file.seek_read(buf, offset) {
                Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => {
                    buf = &mut buf[n..];
                    offset += n as u64;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
    #[cfg(not(any(unix, windows)))]
    {
        // no positioned reads here: a cursor of our own on a second handle
        use std::io::{Read, Seek, SeekFrom};
        let mut f = file.try_clone()?;
        f.seek(SeekFrom::Start(offset))?;
        f.read_exact(buf)
    }
}

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
    crate::Dtype::parse(dtype).map(crate::Dtype::size)
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
    read_exact_at(file, &mut len8, 0).map_err(|e| Error::io(path, e))?;
    let n = u64::from_le_bytes(len8);
    if n > MAX_HEADER_BYTES || n > file_len - 8 {
        return Err(Error::invalid(
            path,
            format!("header length {n} exceeds the file or the limit"),
        ));
    }
    let mut raw = vec![0u8; n as usize];
    read_exact_at(file, &mut raw, 8).map_err(|e| Error::io(path, e))?;
    parse_header(raw, file_len - 8 - n, path)
}

/// Parses and checks header bytes `raw` (as they follow the 8-byte length in a file) for a data
/// section of `data_len` bytes: tensors must tile it exactly, element counts must match byte
/// sizes. `path` names the file in errors.
pub fn parse_header(raw: Vec<u8>, data_len: u64, path: &Path) -> Result<Header> {
    let n = raw.len() as u64;
    // each entry kept as its raw text and parsed into its own type, never into a tree of JSON
    // values (several times the header's size in memory for a header of many tensors)
    let map: BTreeMap<String, &serde_json::value::RawValue> = serde_json::from_slice(&raw)
        .map_err(|e| Error::invalid(path, format!("header is not a JSON object: {e}")))?;
    let mut metadata = None;
    let mut tensors = Vec::new();
    for (name, value) in map {
        if name == "__metadata__" {
            metadata = Some(
                serde_json::from_str(value.get())
                    .map_err(|e| Error::invalid(path, format!("__metadata__: {e}")))?,
            );
            continue;
        }
        let e: RawEntry = serde_json::from_str(value.get())
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
    if pos != data_len {
        return Err(Error::invalid(
            path,
            format!("data section is {data_len} bytes, tensors cover {pos}"),
        ));
    }
    Ok(Header {
        raw,
        metadata,
        tensors,
        data_start,
    })
}

/// An open plain safetensors file: its checked header, and tensor data read on demand.
#[derive(Debug)]
pub struct SafetensorsFile {
    path: PathBuf,
    file: File,
    /// The parsed header.
    pub header: Header,
}

impl SafetensorsFile {
    /// Opens `path` and reads its header.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let file = open_regular(path)?;
        let header = read_header(&file, path)?;
        Ok(SafetensorsFile {
            path: path.to_path_buf(),
            file,
            header,
        })
    }
    /// The path it was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }
    /// The header entry of tensor `name`.
    pub fn tensor(&self, name: &str) -> Option<&HeaderTensor> {
        self.header.tensors.iter().find(|t| t.name == name)
    }
    /// The bytes of tensor `t` (an entry of this file's header).
    pub fn read(&self, t: &HeaderTensor) -> Result<Vec<u8>> {
        self.read_data(t.start, t.end - t.start)
    }
    /// `len` bytes from `start` of the data section.
    pub fn read_data(&self, start: u64, len: u64) -> Result<Vec<u8>> {
        let mut bytes = vec![0u8; len as usize];
        self.read_data_into(start, &mut bytes)?;
        Ok(bytes)
    }
    /// Fills `buf` from `start` of the data section.
    pub fn read_data_into(&self, start: u64, buf: &mut [u8]) -> Result<()> {
        read_exact_at(&self.file, buf, self.header.data_start + start)
            .map_err(|e| Error::io(&self.path, e))
    }
    /// Bytes of the data section.
    pub fn data_bytes(&self) -> u64 {
        self.header.tensors.last().map_or(0, |t| t.end)
    }
}
