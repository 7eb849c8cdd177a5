//! Writing a compressed file.

use super::{
    Coding, FORMAT_MARKER, FORMAT_VERSION, FileChecksum, MANIFEST_KEY, MANIFEST_TENSOR,
    MAX_HEADER_BYTES, Manifest, ManifestTensor, Marker, SafetensorsFile, checksum, deflate, hex,
};
use crate::codec::{self, Codebook, CodedTensor, Encoded, Layout, huffman};
use crate::error::{Error, Result};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// Options for [`compress_file`]: `CompressOptions::default()` and the `with_` methods.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct CompressOptions {
    /// Groups per stream for every tensor (see [`crate::codec`]); `None` (the default): chosen
    /// per tensor by [`codec::auto_chunk_groups`]. Smaller gives the GPU more parallel streams
    /// at the price of a larger index.
    pub chunk_groups: Option<usize>,
    /// Shared codebooks: tensors of a dtype that has one are coded with it in one pass (no
    /// histogram, no table of their own); the book is stored once in the file.
    pub codebooks: Option<std::sync::Arc<codec::shared::Codebooks>>,
}

impl CompressOptions {
    /// Groups per stream for every tensor, 1 to [`codec::MAX_CHUNK_GROUPS`] (checked when
    /// compressing), instead of the per-tensor choice.
    pub fn with_chunk_groups(mut self, chunk_groups: usize) -> Self {
        self.chunk_groups = Some(chunk_groups);
        self
    }
    /// Groups per stream for a tensor of `bytes` bytes of `width`-bit elements.
    pub fn chunk_groups_for(&self, bytes: u64, width: u32) -> usize {
        self.chunk_groups
            .unwrap_or_else(|| codec::auto_chunk_groups(bytes * 8 / width as u64, width))
    }
    /// Shared codebooks for single-stage coding.
    pub fn with_codebooks(mut self, books: std::sync::Arc<codec::shared::Codebooks>) -> Self {
        self.codebooks = Some(books);
        self
    }
}

/// What compression did to one tensor.
#[derive(Clone, Debug)]
pub struct TensorStats {
    /// Original name.
    pub name: String,
    /// Dtype.
    pub dtype: String,
    /// Elements (0 when the dtype has no whole-byte size).
    pub elements: u64,
    /// Original bytes.
    pub original_bytes: u64,
    /// Bytes in the compressed file (all parts, code table included).
    pub compressed_bytes: u64,
    /// Bytes of the index within `compressed_bytes`: what the streams need to find their
    /// starts.
    pub index_bytes: u64,
    /// Bytes of its own code table within `compressed_bytes` (0 with a shared codebook, stored
    /// once for the file).
    pub table_bytes: u64,
    /// Independent decode streams: how many GPU threads can decode it at once.
    pub streams: u64,
    /// Coded symbol width, `None` when stored verbatim.
    pub sym_bits: Option<u32>,
    /// Order-0 entropy bound of the chosen split, in bits: symbol entropy plus raw bits (NaN
    /// for single-stage coding, which takes no histogram; `Archive::stats` measures it).
    pub bound_bits: f64,
    /// Stream size with unlimited Huffman codes, in bits (to measure the cost of the length cap).
    pub unlimited_bits: u64,
    /// Stream size with the capped codes, in bits.
    pub capped_bits: u64,
}

/// What compression did to a file.
#[derive(Clone, Debug, Default)]
pub struct CompressStats {
    /// Per tensor, in file order.
    pub tensors: Vec<TensorStats>,
    /// Size of the input file.
    pub input_bytes: u64,
    /// Size of the output file.
    pub output_bytes: u64,
    /// Bytes of the output that describe it rather than hold tensors: its safetensors header and
    /// the manifest.
    pub header_bytes: u64,
}

impl TensorStats {
    /// Stats of a tensor stored verbatim.
    pub fn stored(name: &str, dtype: &str, bytes: u64) -> Self {
        TensorStats {
            name: name.to_string(),
            dtype: dtype.to_string(),
            elements: super::dtype_size(dtype).map_or(0, |s| bytes / s),
            original_bytes: bytes,
            compressed_bytes: bytes,
            index_bytes: 0,
            table_bytes: 0,
            streams: 0,
            sym_bits: None,
            bound_bits: 8.0 * bytes as f64,
            unlimited_bits: 0,
            capped_bits: 0,
        }
    }
}

/// Stats of one tensor coded with `hist` and `book` (used by compress and inspect alike).
pub fn tensor_stats(
    name: &str,
    dtype: &str,
    layout: &Layout,
    hist: &[u64],
    book: &Codebook,
    enc: &Encoded,
) -> TensorStats {
    let raw_total = layout.n * layout.raw_bits() as u64;
    let unlimited = if hist.iter().filter(|&&c| c > 0).count() < 2 {
        layout.n
    } else {
        let present: Vec<u64> = hist.iter().copied().filter(|&c| c > 0).collect();
        let depths = huffman::huffman_depths(&present);
        present
            .iter()
            .zip(&depths)
            .map(|(&c, &d)| c * d as u64)
            .sum()
    };
    let table = book.to_bytes().len() as u64;
    TensorStats {
        name: name.to_string(),
        dtype: dtype.to_string(),
        elements: layout.n,
        original_bytes: layout.decoded_bytes(),
        compressed_bytes: (enc.stream.len() + enc.raw.len() + enc.index.len()) as u64 + table,
        index_bytes: enc.index.len() as u64,
        table_bytes: table,
        streams: layout.streams(),
        sym_bits: Some(layout.sym_bits),
        bound_bits: huffman::entropy_bits(hist) + raw_total as f64,
        unlimited_bits: unlimited,
        capped_bits: book.coded_bits(hist),
    }
}

/// The output's safetensors header, serialized straight from the entries (a tree of JSON values
/// would take several times the header's size in memory on files of many tensors).
struct HeaderOut<'a> {
    metadata: &'a std::collections::BTreeMap<String, String>,
    entries: &'a [(String, String, Vec<u64>, u64, u64)],
}

impl serde::Serialize for HeaderOut<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        #[derive(serde::Serialize)]
        struct Entry<'a> {
            dtype: &'a str,
            shape: &'a [u64],
            data_offsets: [u64; 2],
        }
        let mut map = s.serialize_map(Some(self.entries.len() + 1))?;
        map.serialize_entry("__metadata__", self.metadata)?;
        for (name, dtype, shape, start, end) in self.entries {
            let entry = Entry {
                dtype,
                shape,
                data_offsets: [*start, *end],
            };
            map.serialize_entry(name, &entry)?;
        }
        map.end()
    }
}

struct Out {
    entries: Vec<(String, String, Vec<u64>, u64, u64)>,
    data: BufWriter<File>,
    pos: u64,
    path: PathBuf,
}

impl Out {
    fn put(&mut self, name: String, dtype: &str, shape: Vec<u64>, bytes: &[u8]) -> Result<()> {
        self.data
            .write_all(bytes)
            .map_err(|e| Error::io(&self.path, e))?;
        let start = self.pos;
        self.pos += bytes.len() as u64;
        self.entries
            .push((name, dtype.to_string(), shape, start, self.pos));
        Ok(())
    }
    fn put_u8(&mut self, name: String, bytes: &[u8]) -> Result<()> {
        self.put(name, "U8", vec![bytes.len() as u64], bytes)
    }
}

/// Starts writing a safetensors file under a temporary name beside `output`: its header length
/// and header. The caller writes the data, then [`TempPath::persist`]s it.
pub(crate) fn start_file(output: &Path, head: &[u8]) -> Result<(TempPath, BufWriter<File>)> {
    let (tmp, file) = TempPath::beside(output, "vramzip")?;
    let mut w = BufWriter::new(file);
    w.write_all(&(head.len() as u64).to_le_bytes())
        .map_err(|e| Error::io(output, e))?;
    w.write_all(head).map_err(|e| Error::io(output, e))?;
    Ok((tmp, w))
}

/// Temporary files and folders alive in this process, for [`remove_temporaries`].
static TEMPORARIES: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());

fn temporaries() -> std::sync::MutexGuard<'static, Vec<PathBuf>> {
    TEMPORARIES.lock().unwrap_or_else(|e| e.into_inner())
}

/// Removes every temporary file or folder vramzip is writing in this process: for a program's
/// Ctrl-C or termination handler, which ends the process without running destructors.
pub fn remove_temporaries() {
    for p in temporaries().drain(..) {
        let _ = std::fs::remove_dir_all(&p).or_else(|_| std::fs::remove_file(&p));
    }
}

/// A folder of its own in the system's temporary directory, for scratch files (`vramzip bench`'s
/// compressed copy of its input): removed on drop and by [`remove_temporaries`], so neither an
/// error nor an interrupt leaves it behind.
pub struct ScratchDir {
    dir: tempfile::TempDir,
}

impl ScratchDir {
    /// Makes one named `PREFIX` + random characters.
    pub fn new(prefix: &str) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix(prefix)
            .tempdir()
            .map_err(|e| Error::io(std::env::temp_dir(), e))?;
        register_temporary(dir.path());
        Ok(ScratchDir { dir })
    }
    /// Where it is.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        forget_temporary(self.dir.path());
    }
}

pub(crate) fn register_temporary(path: &Path) {
    temporaries().push(path.to_path_buf());
}

pub(crate) fn forget_temporary(path: &Path) {
    temporaries().retain(|p| p != path);
}

/// Makes a temporary (`make`: a file or a directory, `dir`) in `output`'s folder, named
/// `.NAME.XXXXXX` + `suffix` with random X, with the permissions the output itself should get.
pub(crate) fn make_beside<T>(
    output: &Path,
    suffix: &str,
    dir: bool,
    make: impl FnOnce(&tempfile::Builder, &Path) -> std::io::Result<T>,
) -> Result<T> {
    let folder = match output.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = output.file_name().unwrap_or_default().to_string_lossy();
    let prefix = format!(".{name}.");
    let mut builder = tempfile::Builder::new();
    builder.prefix(&prefix).suffix(suffix);
    if let Some(mode) = super::plain::output_permissions(dir) {
        builder.permissions(mode);
    }
    make(&builder, folder).map_err(|e| Error::io(output, e))
}

/// A temporary file beside an output: a name no one can predict, created exclusively, so a file
/// or link planted there is never followed or overwritten; removed on drop (every error path) and
/// by [`remove_temporaries`], unless renamed into place. Errors name the output, not it.
pub(crate) struct TempPath {
    tmp: Option<tempfile::TempPath>,
    output: PathBuf,
}

impl TempPath {
    pub(crate) fn beside(output: &Path, tag: &str) -> Result<(Self, File)> {
        let suffix = format!(".{tag}.tmp");
        let (file, tmp) =
            make_beside(output, &suffix, false, |b, folder| b.tempfile_in(folder))?.into_parts();
        register_temporary(&tmp);
        Ok((
            TempPath {
                tmp: Some(tmp),
                output: output.to_path_buf(),
            },
            file,
        ))
    }
    /// Where it is.
    pub(crate) fn path(&self) -> &Path {
        self.tmp.as_deref().unwrap_or(Path::new(""))
    }
    /// The output it stands for, for errors.
    pub(crate) fn output(&self) -> &Path {
        &self.output
    }
    /// fsyncs and renames into place: the final name holds either the old file or the whole new one.
    pub(crate) fn persist(mut self, file: File, to: &Path) -> Result<()> {
        file.sync_all().map_err(|e| Error::io(to, e))?;
        drop(file);
        if let Some(tmp) = self.tmp.take() {
            let at = tmp.to_path_buf();
            forget_temporary(&at);
            if let Err(e) = tmp.persist(to) {
                // the rename failed: the temporary goes (its drop), the error names the output
                drop(e.path);
                return Err(Error::io(to, e.error));
            }
        }
        Ok(())
    }
}

impl Drop for TempPath {
    fn drop(&mut self) {
        if let Some(tmp) = self.tmp.take() {
            forget_temporary(&tmp);
        }
    }
}

/// Name of the tensor holding a shared codebook, by its key (a dtype, or a dtype and a role).
pub fn shared_name(key: &str) -> String {
    format!("__vramzip__.codebook.{key}")
}

/// A tensor as the writer codes it.
struct Written {
    coded: CodedTensor,
    /// The shared book's tensor name; `None`: the tensor's own table follows its parts.
    shared: Option<String>,
    /// The symbol histogram, when one was taken (not in single-stage coding).
    hist: Option<Vec<u64>>,
}

/// The tensor's own best code (three stages: histogram, code, table), or `None` to store it.
fn own_code(bytes: &[u8], width: u32, chunk_groups: usize) -> Result<Option<Written>> {
    Ok(match codec::choose(bytes, width, chunk_groups)? {
        Some(choice) => {
            let hist = Some(choice.hist.clone());
            Some(Written {
                coded: choice.encode(bytes)?,
                shared: None,
                hist,
            })
        }
        None => None,
    })
}

/// How the writer codes tensor `name`'s `bytes` of `dtype` under `opts`: with the shared book of
/// its role or dtype if there is one (single stage; the rare tensor whose escapes overflow the
/// index gets its own code), or its own best code; `None` to store it verbatim.
fn code(name: &str, bytes: &[u8], dtype: &str, opts: &CompressOptions) -> Result<Option<Written>> {
    let Some(width) = codec::element_bits(dtype) else {
        return Ok(None);
    };
    let chunk_groups = opts.chunk_groups_for(bytes.len() as u64, width);
    let shared = opts
        .codebooks
        .as_ref()
        .and_then(|c| c.book_for(dtype, name));
    match shared {
        Some((key, book)) if !bytes.is_empty() => {
            match codec::shared::encode_with(bytes, width, book.clone(), chunk_groups) {
                Ok(coded) => Ok(Some(Written {
                    coded,
                    shared: Some(shared_name(key)),
                    hist: None,
                })),
                Err(_) => own_code(bytes, width, chunk_groups),
            }
        }
        _ => own_code(bytes, width, chunk_groups),
    }
}

/// Tensor `name` coded as [`compress_file`] codes it (in memory, nothing written): `None` for a
/// tensor stored verbatim. What `vramzip bench` times as CPU encoding.
pub fn code_tensor(
    name: &str,
    bytes: &[u8],
    dtype: &str,
    opts: &CompressOptions,
) -> Result<Option<CodedTensor>> {
    Ok(code(name, bytes, dtype, opts)?.map(|w| w.coded))
}

/// Compresses the safetensors file `input` into `output`, reading one tensor at a time.
/// `progress` is called with the original bytes done so far.
pub fn compress_file(
    input: impl AsRef<Path>,
    output: impl AsRef<Path>,
    opts: &CompressOptions,
    progress: &dyn Fn(u64),
) -> Result<CompressStats> {
    let (input, output) = (input.as_ref(), output.as_ref());
    let source = SafetensorsFile::open(input)?;
    let header = &source.header;
    if header
        .tensors
        .iter()
        .any(|t| t.name.starts_with("__vramzip__."))
    {
        return Err(Error::invalid(
            input,
            "a tensor name starts with '__vramzip__.', vramzip's own prefix",
        ));
    }
    if header
        .metadata
        .as_ref()
        .is_some_and(|m| m.contains_key(MANIFEST_KEY))
    {
        return Err(Error::invalid(
            input,
            "already a vramzip file (its __metadata__ has 'vramzip')",
        ));
    }
    let (data_tmp, data_file) = TempPath::beside(output, "data")?;
    let mut out = Out {
        entries: Vec::new(),
        data: BufWriter::new(data_file),
        pos: 0,
        path: output.to_path_buf(),
    };
    let original_header = String::from_utf8(header.raw.clone())
        .map_err(|_| Error::invalid(input, "its header is not UTF-8"))?;
    let mut manifest = Manifest {
        tensors: Vec::new(),
        original_header,
        file_xxh3: String::new(),
    };
    // header.tensors is in data order, which tiles the data section: fed in that order, the
    // tensors' bytes after the header are the whole file
    let mut whole = FileChecksum::new(&header.raw);
    let mut stats = CompressStats::default();
    let mut written_books = std::collections::HashSet::new();
    let mut done = 0u64;
    // read, checked and coded in parallel, written in order
    let read_and_coded = super::in_batches(
        &header.tensors,
        |t| t.end - t.start,
        |t| -> Result<_> {
            let bytes = source.read(t)?;
            let sum = checksum(&bytes);
            let coded = code(&t.name, &bytes, &t.dtype, opts)?;
            Ok((bytes, sum, coded))
        },
    );
    for (t, done_in_parallel) in read_and_coded {
        let (bytes, sum, coded) = done_in_parallel?;
        whole.update(&bytes);
        let coding = match coded {
            Some(Written {
                coded,
                shared,
                hist,
            }) => {
                let CodedTensor {
                    layout,
                    codebook: book,
                    encoded: enc,
                } = coded;
                let table = match &shared {
                    None => book.to_bytes(),
                    Some(name) => {
                        if written_books.insert(name.clone()) {
                            out.put_u8(name.clone(), &book.to_bytes())?;
                        }
                        Vec::new()
                    }
                };
                let blob = [&enc.index[..], &enc.stream, &enc.raw, &table].concat();
                out.put_u8(t.name.clone(), &blob)?;
                let mut st = tensor_stats(
                    &t.name,
                    &t.dtype,
                    &layout,
                    hist.as_deref().unwrap_or(&[]),
                    &book,
                    &enc,
                );
                if hist.is_none() {
                    // single stage takes no histogram, so there is no bound to report
                    (st.bound_bits, st.unlimited_bits, st.capped_bits) = (f64::NAN, 0, 0);
                }
                if shared.is_some() {
                    // the shared book is stored once for all tensors, not counted in each
                    let book_bytes = book.to_bytes().len() as u64;
                    st.compressed_bytes -= book_bytes;
                    st.table_bytes = 0;
                }
                stats.tensors.push(st);
                Coding::Huffman {
                    sym_bits: layout.sym_bits,
                    chunk_groups: layout.chunk_groups,
                    index_bytes: enc.index.len() as u64,
                    stream_bytes: enc.stream.len() as u64,
                    codebook: shared,
                }
            }
            None => {
                out.put(t.name.clone(), &t.dtype, t.shape.clone(), &bytes)?;
                stats
                    .tensors
                    .push(TensorStats::stored(&t.name, &t.dtype, bytes.len() as u64));
                Coding::Stored
            }
        };
        manifest.tensors.push(ManifestTensor {
            name: t.name.clone(),
            dtype: t.dtype.clone(),
            shape: t.shape.clone(),
            bytes: bytes.len() as u64,
            xxh3: hex(sum),
            coding,
        });
        done += bytes.len() as u64;
        progress(done);
    }
    manifest.file_xxh3 = hex(whole.digest());
    let packed_manifest =
        deflate(&serde_json::to_vec(&manifest).map_err(|e| Error::InvalidArgument(e.to_string()))?);
    out.put_u8(MANIFEST_TENSOR.to_string(), &packed_manifest)?;
    let data_file = out
        .data
        .into_inner()
        .map_err(|e| Error::io(output, e.into_error()))?;
    drop(data_file);

    let mut meta = header.metadata.clone().unwrap_or_default();
    // Loaders of checkpoints (Hugging Face's check `format` is pt, tf, flax or mlx) then refuse
    // the file instead of handing out its coded parts as U8 blobs; the original `format` stays in
    // the stored original header, which decompression restores byte for byte.
    meta.insert("format".to_string(), FORMAT_MARKER.to_string());
    let marker = Marker {
        format: FORMAT_VERSION,
        lanes: codec::LANES,
        manifest_xxh3: hex(checksum(&packed_manifest)),
    };
    meta.insert(
        MANIFEST_KEY.to_string(),
        serde_json::to_string(&marker).map_err(|e| Error::InvalidArgument(e.to_string()))?,
    );
    let mut head = serde_json::to_vec(&HeaderOut {
        metadata: &meta,
        entries: &out.entries,
    })
    .map_err(|e| Error::InvalidArgument(e.to_string()))?;
    // safetensors pads the header with spaces so the data section starts 8-byte aligned
    head.resize(head.len().next_multiple_of(8), b' ');
    // what compress writes, open reads: a header over the reader's limit is refused here, not
    // discovered at decompression
    if head.len() as u64 > MAX_HEADER_BYTES {
        return Err(Error::TooLarge {
            what: format!("the header of {} (its tensor entries)", output.display()),
            size: head.len() as u64,
            limit: MAX_HEADER_BYTES,
        });
    }

    let (tmp, mut w) = start_file(output, &head)?;
    let mut data = File::open(data_tmp.path()).map_err(|e| Error::io(output, e))?;
    std::io::copy(&mut data, &mut w).map_err(|e| Error::io(output, e))?;
    let final_file = w
        .into_inner()
        .map_err(|e| Error::io(output, e.into_error()))?;
    tmp.persist(final_file, output)?;
    stats.input_bytes = header.data_start + header.tensors.last().map_or(0, |t| t.end);
    stats.header_bytes = 8 + head.len() as u64 + packed_manifest.len() as u64;
    stats.output_bytes = 8 + head.len() as u64 + out.pos;
    Ok(stats)
}
