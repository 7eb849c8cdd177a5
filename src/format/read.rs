//! Reading a compressed file: its header and manifest at open, tensors on demand with positioned
//! reads.

use super::{
    Coding, FORMAT_VERSION, FileChecksum, Header, MANIFEST_KEY, MANIFEST_TENSOR, MAX_HEADER_BYTES,
    Manifest, ManifestTensor, checksum, inflate, parse_header, read_header,
};
use crate::codec::{self, Codebook, CodedTensor, Encoded, Layout};
use crate::error::{Error, Result};
use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Where the parts of a coded tensor lie in the file: absolute byte ranges.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PartRanges {
    /// Index.
    pub index: (u64, u64),
    /// Huffman stream.
    pub stream: (u64, u64),
    /// Raw plane.
    pub raw: (u64, u64),
    /// Code table (in this tensor, or in a shared codebook tensor).
    pub table: (u64, u64),
}

/// How one original tensor lies in an archive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Form {
    /// Verbatim, under its own name.
    Stored,
    /// Huffman coded.
    Huffman {
        /// Its layout.
        layout: Layout,
        /// Where its parts are.
        parts: PartRanges,
    },
}

/// One original tensor of an archive.
#[derive(Clone, Debug)]
pub struct TensorEntry {
    /// What the manifest says.
    pub meta: ManifestTensor,
    /// Stored checksum.
    pub xxh3: u64,
    /// Stored or coded, and where.
    pub form: Form,
}

impl TensorEntry {
    /// Its layout, when coded.
    pub fn layout(&self) -> Option<&Layout> {
        match &self.form {
            Form::Huffman { layout, .. } => Some(layout),
            Form::Stored => None,
        }
    }
    /// Where its parts are, when coded.
    pub fn parts(&self) -> Option<&PartRanges> {
        match &self.form {
            Form::Huffman { parts, .. } => Some(parts),
            Form::Stored => None,
        }
    }
}

/// An open compressed file.
#[derive(Debug)]
pub struct Archive {
    path: PathBuf,
    file: File,
    header: Header,
    ranges: HashMap<String, (u64, u64)>,
    /// Original tensors in file order.
    pub tensors: Vec<TensorEntry>,
    /// Position in `tensors` by name.
    index: HashMap<String, usize>,
    /// The original file's header bytes.
    original_header: Vec<u8>,
    /// Checksum of the whole original file.
    file_xxh3: u64,
}

/// The manifest of a file from its tensor's byte range (`None`: there is none), checked
/// against the marker's checksum `xxh3`, inflated and parsed.
fn read_manifest(
    file: &File,
    range: Option<(u64, u64)>,
    xxh3: Option<&str>,
    path: &Path,
) -> Result<Manifest> {
    let bad = |why: String| Error::invalid(path, why);
    let xxh3 = xxh3
        .and_then(|x| u64::from_str_radix(x, 16).ok())
        .ok_or_else(|| {
            bad(
                "the vramzip marker has no manifest checksum (files of earlier builds of format 2 \
                 kept the manifest in __metadata__: decompress with the build that wrote it, \
                 then compress again)"
                    .into(),
            )
        })?;
    let (start, end) = range.ok_or_else(|| {
        bad(format!(
            "the manifest tensor '{MANIFEST_TENSOR}' is missing"
        ))
    })?;
    if end - start > MAX_HEADER_BYTES {
        return Err(bad(format!(
            "the manifest takes {} bytes, more than the {MAX_HEADER_BYTES} accepted",
            end - start
        )));
    }
    let mut packed = vec![0u8; (end - start) as usize];
    super::read_exact_at(file, &mut packed, start).map_err(|e| Error::io(path, e))?;
    if checksum(&packed) != xxh3 {
        return Err(bad("the manifest does not match its checksum".into()));
    }
    let text = inflate(&packed).map_err(|e| bad(format!("the manifest: {e}")))?;
    serde_json::from_slice(&text).map_err(|e| bad(format!("vramzip manifest: {e}")))
}

/// `bytes` if they match `t`'s stored checksum.
fn checked(t: &TensorEntry, bytes: Vec<u8>) -> Result<Vec<u8>> {
    let actual = checksum(&bytes);
    if actual != t.xxh3 {
        return Err(Error::ChecksumMismatch {
            tensor: t.meta.name.clone(),
            expected: t.xxh3,
            actual,
        });
    }
    Ok(bytes)
}

impl Archive {
    /// Opens a compressed file, reading and checking only its header.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let file = super::plain::open_regular(path)?;
        let header = read_header(&file, path)?;
        let text = header
            .metadata
            .as_ref()
            .and_then(|m| m.get(MANIFEST_KEY))
            .ok_or_else(|| {
                Error::invalid(
                    path,
                    "not a vramzip file (no 'vramzip' entry in __metadata__)",
                )
            })?;
        // the version first: another version's marker and manifest may have other fields
        #[derive(serde::Deserialize)]
        struct Version {
            format: Option<serde_json::Value>,
            lanes: Option<serde_json::Value>,
            manifest_xxh3: Option<String>,
        }
        let v: Version = serde_json::from_str(text)
            .map_err(|e| Error::invalid(path, format!("vramzip marker: {e}")))?;
        let number = |x: &Option<serde_json::Value>| x.as_ref().and_then(|x| x.as_u64());
        if number(&v.format) != Some(FORMAT_VERSION as u64)
            || number(&v.lanes) != Some(codec::LANES as u64)
        {
            if number(&v.format) == Some(1) {
                return Err(Error::invalid(
                    path,
                    format!(
                        "vramzip format 1 (layout v1); this build reads format {FORMAT_VERSION} \
                         (layout v2): decompress it with the vramzip that wrote it, then compress \
                         the original again"
                    ),
                ));
            }
            let show =
                |x: &Option<serde_json::Value>| x.as_ref().map_or("none".into(), |x| x.to_string());
            return Err(Error::invalid(
                path,
                format!(
                    "vramzip format {} with {} lanes; this build reads format {FORMAT_VERSION} with {} lanes",
                    show(&v.format),
                    show(&v.lanes),
                    codec::LANES
                ),
            ));
        }
        let ranges: HashMap<String, (u64, u64)> = header
            .tensors
            .iter()
            .map(|t| {
                (
                    t.name.clone(),
                    (header.data_start + t.start, header.data_start + t.end),
                )
            })
            .collect();
        let dtypes: HashMap<&str, &str> = header
            .tensors
            .iter()
            .map(|t| (t.name.as_str(), t.dtype.as_str()))
            .collect();
        let u8_tensor = |name: &str| dtypes.get(name) == Some(&"U8");
        let manifest_range = ranges
            .get(MANIFEST_TENSOR)
            .filter(|_| u8_tensor(MANIFEST_TENSOR))
            .copied();
        let manifest = read_manifest(&file, manifest_range, v.manifest_xxh3.as_deref(), path)?;
        let file_xxh3 = u64::from_str_radix(&manifest.file_xxh3, 16)
            .map_err(|_| Error::invalid(path, "original file: bad checksum text"))?;
        let mut tensors = Vec::new();
        let original_header = manifest.original_header.into_bytes();
        for meta in manifest.tensors {
            let xxh3 = u64::from_str_radix(&meta.xxh3, 16).map_err(|_| {
                Error::invalid(path, format!("tensor '{}': bad checksum text", meta.name))
            })?;
            let form = match &meta.coding {
                Coding::Stored => {
                    match ranges.get(&meta.name) {
                        Some((s, e)) if e - s == meta.bytes => {}
                        _ => {
                            return Err(Error::invalid(
                                path,
                                format!(
                                    "stored tensor '{}' is missing or of the wrong size",
                                    meta.name
                                ),
                            ));
                        }
                    }
                    Form::Stored
                }
                Coding::Huffman {
                    sym_bits,
                    chunk_groups,
                    index_bytes,
                    stream_bytes,
                    codebook,
                } => {
                    let bad =
                        |why: &str| Error::invalid(path, format!("tensor '{}': {why}", meta.name));
                    let width = codec::element_bits(&meta.dtype)
                        .ok_or_else(|| bad("its dtype is not one that is coded"))?;
                    let n = meta.bytes / (width as u64 / 8);
                    if n * (width as u64 / 8) != meta.bytes {
                        return Err(bad("size not a multiple of its dtype"));
                    }
                    let layout = Layout::new(n, width, *sym_bits, *chunk_groups)
                        .map_err(|e| bad(&e.to_string()))?;
                    let (start, end) = match ranges.get(&meta.name) {
                        Some(&r) if u8_tensor(&meta.name) => r,
                        _ => return Err(bad("its data is missing")),
                    };
                    // No coding shrinks a tensor below 1/16 of its size: a larger claim is a lie,
                    // refused before anything of that size is allocated.
                    if meta.bytes > 16 * (end - start) + 64 {
                        return Err(bad(&format!(
                            "claims {} bytes from {} compressed",
                            meta.bytes,
                            end - start
                        )));
                    }
                    let index = (start, start.saturating_add(*index_bytes));
                    let stream = (index.1, index.1.saturating_add(*stream_bytes));
                    let raw = (stream.1, stream.1.saturating_add(layout.raw_bytes()));
                    let table = match codebook {
                        None => (raw.1, end),
                        Some(name) => match ranges.get(name) {
                            Some(&r) if u8_tensor(name) => r,
                            _ => return Err(bad(&format!("codebook '{name}' missing"))),
                        },
                    };
                    let own_end = if codebook.is_none() { table.1 } else { raw.1 };
                    if raw.1 > end || own_end != end {
                        return Err(bad("its parts do not fill its data"));
                    }
                    Form::Huffman {
                        layout,
                        parts: PartRanges {
                            index,
                            stream,
                            raw,
                            table,
                        },
                    }
                }
            };
            tensors.push(TensorEntry { meta, xxh3, form });
        }
        let mut archive = Archive {
            path: path.to_path_buf(),
            file,
            header,
            ranges,
            index: HashMap::new(),
            tensors,
            original_header,
            file_xxh3,
        };
        archive.check_against_original()?;
        Ok(archive)
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The original tensor called `name`.
    pub fn tensor(&self, name: &str) -> Option<&TensorEntry> {
        self.index.get(name).map(|&i| &self.tensors[i])
    }

    /// Every byte decompression writes is covered: the original header (in the manifest) by the
    /// manifest's checksum, each tensor by its own, and the manifest's entries must agree with
    /// that header entry by entry (name, dtype, shape, size, order), so that what decompression
    /// writes is a file with those tensors in those places, checked again as a whole before it
    /// is renamed into place.
    fn check_against_original(&mut self) -> Result<()> {
        let bad = |why: String| Error::invalid(&self.path, why);
        // parsed, then kept: parse_header hands the bytes back in `raw`
        let raw = std::mem::take(&mut self.original_header);
        let data_len = self
            .tensors
            .iter()
            .try_fold(0u64, |a, t| a.checked_add(t.meta.bytes))
            .ok_or_else(|| bad("the manifest's tensor sizes overflow".into()))?;
        let original = parse_header(raw, data_len, &self.path)
            .map_err(|e| bad(format!("the stored original header: {e}")))?;
        if original.tensors.len() != self.tensors.len() {
            return Err(bad(format!(
                "the manifest lists {} tensors, the original header {}",
                self.tensors.len(),
                original.tensors.len()
            )));
        }
        for (i, (h, t)) in original.tensors.iter().zip(&self.tensors).enumerate() {
            let m = &t.meta;
            if h.name != m.name
                || h.dtype != m.dtype
                || h.shape != m.shape
                || h.end - h.start != m.bytes
            {
                return Err(bad(format!(
                    "manifest entry {i} ('{}', {} {:?}, {} bytes) disagrees with the original header ('{}', {} {:?}, {} bytes)",
                    m.name,
                    m.dtype,
                    m.shape,
                    m.bytes,
                    h.name,
                    h.dtype,
                    h.shape,
                    h.end - h.start
                )));
            }
        }
        // names are unique in a header, so they are in the manifest now
        self.index = self
            .tensors
            .iter()
            .enumerate()
            .map(|(i, t)| (t.meta.name.clone(), i))
            .collect();
        self.original_header = original.raw;
        Ok(())
    }

    /// The original tensors whose names start with `prefix` (say `model.layers.3.`, one
    /// transformer block), in file order: what to upload as one GPU group.
    pub fn tensors_with_prefix(&self, prefix: &str) -> Vec<&TensorEntry> {
        self.tensors
            .iter()
            .filter(|t| t.meta.name.starts_with(prefix))
            .collect()
    }

    /// Names of all tensors stored in this file (parts included).
    pub fn tensor_names(&self) -> Vec<String> {
        self.header.tensors.iter().map(|t| t.name.clone()).collect()
    }

    /// Per-tensor statistics, as at compression time (decodes every coded tensor on the CPU to
    /// measure its entropy bound).
    pub fn stats(&self) -> Result<Vec<super::TensorStats>> {
        self.tensors
            .iter()
            .map(|t| {
                Ok(match t.layout() {
                    Some(layout) => {
                        // the parts read once: decoded (and checked) and measured
                        let coded = self.coded(t)?;
                        let bytes = checked(t, coded.decode(&t.meta.name)?)?;
                        let top = codec::top_histogram(&bytes, layout.width);
                        let hist = codec::symbol_histogram(&top, layout.width, layout.sym_bits);
                        let mut st = super::tensor_stats(
                            &t.meta.name,
                            &t.meta.dtype,
                            layout,
                            &hist,
                            &coded.codebook,
                            &coded.encoded,
                        );
                        if let Coding::Huffman {
                            codebook: Some(_), ..
                        } = t.meta.coding
                        {
                            // a shared book is stored once for the file, not in each tensor
                            st.compressed_bytes -= st.table_bytes;
                            st.table_bytes = 0;
                        }
                        st
                    }
                    None => {
                        // checked like every tensor inspect reports on
                        self.decode(t)?;
                        super::TensorStats::stored(&t.meta.name, &t.meta.dtype, t.meta.bytes)
                    }
                })
            })
            .collect()
    }

    /// Bytes that describe the file rather than hold tensors: its safetensors header (8-byte
    /// length included) and the manifest.
    pub fn header_bytes(&self) -> u64 {
        let size = |name: &str| self.ranges.get(name).map_or(0, |(s, e)| e - s);
        self.header.data_start + size(MANIFEST_TENSOR)
    }

    /// Byte range of a stored tensor (by its name in this file) within the file.
    pub fn range(&self, name: &str) -> Result<(u64, u64)> {
        self.ranges
            .get(name)
            .copied()
            .ok_or_else(|| Error::invalid(&self.path, format!("no tensor '{name}'")))
    }

    /// Reads a tensor of this file (a coded tensor's parts, or a stored tensor) by its name here.
    pub fn read(&self, name: &str) -> Result<Vec<u8>> {
        let (s, e) = self.range(name)?;
        self.read_range((s, e))
    }

    /// Appends an absolute byte range of the file to `buf`, reading straight into it.
    pub fn append_range(&self, (s, e): (u64, u64), buf: &mut Vec<u8>) -> Result<()> {
        let at = buf.len();
        buf.resize(at + (e - s) as usize, 0);
        super::read_exact_at(&self.file, &mut buf[at..], s)
            .map_err(|err| Error::io(&self.path, err))
    }

    /// Reads an absolute byte range of the file.
    pub fn read_range(&self, (s, e): (u64, u64)) -> Result<Vec<u8>> {
        let mut buf = vec![0u8; (e - s) as usize];
        super::read_exact_at(&self.file, &mut buf, s).map_err(|err| Error::io(&self.path, err))?;
        Ok(buf)
    }

    /// The original file's header bytes.
    pub fn original_header(&self) -> &[u8] {
        &self.original_header
    }

    fn parts(&self, t: &TensorEntry) -> Result<PartRanges> {
        t.parts().copied().ok_or_else(|| {
            Error::InvalidArgument(format!(
                "tensor '{}' is stored verbatim, not coded",
                t.meta.name
            ))
        })
    }

    /// The coded parts of a tensor.
    pub fn encoded(&self, t: &TensorEntry) -> Result<Encoded> {
        let p = self.parts(t)?;
        Ok(Encoded {
            stream: self.read_range(p.stream)?,
            raw: self.read_range(p.raw)?,
            index: self.read_range(p.index)?,
        })
    }

    /// The code table of a coded tensor.
    pub fn codebook(&self, t: &TensorEntry) -> Result<Codebook> {
        let table = self.read_range(self.parts(t)?.table)?;
        Codebook::from_bytes(&table).map_err(|r| Error::corrupt(&t.meta.name, r))
    }

    /// A coded tensor's parts and code, read into memory: the form the encoders make, which
    /// the CPU decoder and the GPU upload take.
    pub fn coded(&self, t: &TensorEntry) -> Result<CodedTensor> {
        let layout = *t.layout().ok_or_else(|| {
            Error::InvalidArgument(format!(
                "tensor '{}' is stored verbatim, not coded",
                t.meta.name
            ))
        })?;
        Ok(CodedTensor {
            layout,
            codebook: std::sync::Arc::new(self.codebook(t)?),
            encoded: self.encoded(t)?,
        })
    }

    /// Decodes one tensor on the CPU and checks its checksum.
    pub fn decode(&self, t: &TensorEntry) -> Result<Vec<u8>> {
        let bytes = match t.form {
            Form::Stored => self.read(&t.meta.name)?,
            Form::Huffman { .. } => self.coded(t)?.decode(&t.meta.name)?,
        };
        checked(t, bytes)
    }

    /// Writes the original file, byte for byte, to `output` (atomically: a temporary file renamed
    /// into place). Every tensor's checksum is checked. `progress` gets the bytes done so far.
    pub fn decompress_to(&self, output: impl AsRef<Path>, progress: &dyn Fn(u64)) -> Result<()> {
        let output = output.as_ref();
        let head = self.original_header();
        let (tmp, mut w) = super::write::start_file(output, head)?;
        let mut whole = FileChecksum::new(head);
        let mut done = 0;
        // decoded in parallel, written in order
        for (_, bytes) in super::in_batches(&self.tensors, |t| t.meta.bytes, |t| self.decode(t)) {
            let bytes = bytes?;
            whole.update(&bytes);
            w.write_all(&bytes)
                .map_err(|e| Error::io(tmp.output(), e))?;
            done += bytes.len() as u64;
            progress(done);
        }
        if whole.digest() != self.file_xxh3 {
            return Err(Error::ChecksumMismatch {
                tensor: "(the whole original file)".into(),
                expected: self.file_xxh3,
                actual: whole.digest(),
            });
        }
        let file = w
            .into_inner()
            .map_err(|e| Error::io(tmp.output(), e.into_error()))?;
        tmp.persist(file, output)
    }
}
