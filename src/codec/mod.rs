//! The codec: pure CPU code that splits values into a Huffman-coded symbol and raw low bits, lays
//! the symbols out in independently decodable chunks, and decodes them again.
//!
//! # Layout (format version 1)
//!
//! This is the one description of the layout; the encoder and decoder here and the WGSL decoder in
//! `shaders/decode.wgsl` follow it.
//!
//! * A tensor has `n` elements of `w` bits (8, 16 or 32). Each element's top `S` bits (sign,
//!   exponent, first mantissa bits; `S` chosen per tensor, at most 12) form its *symbol*, rotated
//!   left by one within `S` bits so that the sign lands in bit 0 and the symbols of one tensor span
//!   a narrow range. The low `R = w - S` bits are *raw*.
//! * **Raw plane**: element `i`'s raw bits at bit `i * R`, least significant bit first, in
//!   little-endian 32-bit words. Length `ceil(n * R / 32)` words.
//! * **Groups**: `E = 32 / w` consecutive elements form a group, one 32-bit word of output.
//!   Group `g` holds elements `g*E .. g*E+E` (the last group may be partial).
//! * **Blocks and chunks**: a block is `LANES * C` consecutive groups (`LANES` = 64, `C` =
//!   `chunk_groups`, 1024 by default). Within a block, local group `j` belongs to chunk (lane)
//!   `j % LANES` as its step `j / LANES`. So a chunk holds a fixed number of symbols (`C * E`,
//!   fewer only at the end of the tensor), and at each step the 64 lanes produce 64 consecutive
//!   output words: a GPU workgroup of 64 threads writes them coalesced.
//! * **Stream**: each chunk's symbols in order, each written as its canonical Huffman code, least
//!   significant bit first with the code bit-reversed (see [`huffman`]); a symbol without a code
//!   of its own (shared codebooks only) as the escape's code followed by its `S` top bits. Within a block the chunks
//!   follow each other bit by bit in lane order; each block starts on a 32-bit word boundary.
//! * **Chunk index**: the bit length of every chunk as a little-endian u16, `LANES` per block
//!   (0 for empty chunks). A chunk's start is its block's start plus the lengths of the chunks
//!   before it in the block; a block's start in words is the sum of `ceil(bits / 32)` of the
//!   blocks before it. Offsets are computed as u64 on the CPU, so tensors over 4 GiB are fine;
//!   with per-tensor codes a chunk never exceeds `C * 4 * 12` = 49152 bits; escapes (shared
//!   codebooks) can make 8-bit chunks longer, and the encoder refuses a chunk over 65535 bits.
//! * **Code table**: code lengths per symbol (see [`Codebook`]), shared or per tensor.

pub mod huffman;
pub mod shared;

use crate::error::{Error, Result};
use rayon::prelude::*;

/// Chunks (lanes) per block: the GPU decoder's workgroup size.
pub const LANES: usize = 64;
/// Default groups per chunk. 1024 keeps the chunk index near 0.1% of the compressed size.
pub const DEFAULT_CHUNK_GROUPS: usize = 1024;
/// Largest `chunk_groups` accepted, so chunk lengths always fit a u16.
pub const MAX_CHUNK_GROUPS: usize = 1024;

/// Bits per element of the dtypes that are coded; `None` for those stored verbatim.
pub fn element_bits(dtype: &str) -> Option<u32> {
    crate::Dtype::parse(dtype).and_then(crate::Dtype::coded_bits)
}

/// Candidate symbol widths for an element width: measured per tensor, the cheapest wins.
pub fn sym_bits_candidates(width: u32) -> std::ops::RangeInclusive<u32> {
    match width {
        8 => 8..=8,
        _ => 8..=huffman::MAX_SYM_BITS,
    }
}

/// The shape of one coded tensor's layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// Elements.
    pub n: u64,
    /// Bits per element: 8, 16 or 32.
    pub width: u32,
    /// Bits of each element that are Huffman coded.
    pub sym_bits: u32,
    /// Groups per chunk.
    pub chunk_groups: usize,
}

impl Layout {
    /// Checks the parameters (they may come from a file).
    pub fn new(n: u64, width: u32, sym_bits: u32, chunk_groups: usize) -> Result<Self> {
        // only the symbol widths the encoder writes: the GPU decoders take no others (an f32 with
        // 7 coded bits would leave 25 raw bits, more than they read at once)
        let ok = matches!(width, 8 | 16 | 32)
            && sym_bits_candidates(width).contains(&sym_bits)
            && (1..=MAX_CHUNK_GROUPS).contains(&chunk_groups);
        if !ok {
            return Err(Error::InvalidArgument(format!(
                "layout: width {width}, sym_bits {sym_bits}, chunk_groups {chunk_groups}"
            )));
        }
        Ok(Layout {
            n,
            width,
            sym_bits,
            chunk_groups,
        })
    }
    /// Low bits of each element stored raw.
    pub fn raw_bits(&self) -> u32 {
        self.width - self.sym_bits
    }
    /// Elements per group (one output word).
    pub fn elems_per_group(&self) -> u64 {
        32 / self.width as u64
    }
    /// Groups (output words).
    pub fn groups(&self) -> u64 {
        self.n.div_ceil(self.elems_per_group())
    }
    /// Groups per block.
    pub fn block_groups(&self) -> u64 {
        (LANES * self.chunk_groups) as u64
    }
    /// Blocks.
    pub fn blocks(&self) -> u64 {
        self.groups().div_ceil(self.block_groups())
    }
    /// Entries in the chunk index.
    pub fn chunks(&self) -> u64 {
        self.blocks() * LANES as u64
    }
    /// Bytes of the raw plane.
    pub fn raw_bytes(&self) -> u64 {
        (self.n * self.raw_bits() as u64).div_ceil(32) * 4
    }
    /// Bytes of the decoded tensor.
    pub fn decoded_bytes(&self) -> u64 {
        self.n * self.width as u64 / 8
    }
}

/// Code lengths for the symbols of one kind (one `sym_bits`), shared by any number of tensors.
///
/// Symbol `2^sym_bits` is the *escape*: a shared codebook gives it a code, and an element whose
/// symbol has no code of its own is written as the escape code followed by its `sym_bits` top
/// bits verbatim (unrotated). So a shared codebook can code any data, however unlike the data it
/// was built from. Escapes need `sym_bits` <= 11, so that the 2049 symbols fit a 12-bit code.
///
/// Serialized as: version byte (1), `sym_bits` byte, first symbol (u16 LE), symbol count (u16 LE),
/// then one 4-bit length per symbol, two per byte, low nibble first. Symbols outside the range
/// have no code.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Codebook {
    /// Symbol width in bits.
    pub sym_bits: u32,
    /// Code length per symbol, `2^sym_bits + 1` entries (the last is the escape), 0 where the
    /// symbol has no code.
    pub lens: Vec<u8>,
}

impl Codebook {
    /// The length-limited Huffman code of a symbol histogram (`2^sym_bits` entries, or one more
    /// for the escape).
    pub fn from_histogram(sym_bits: u32, hist: &[u64]) -> Self {
        let mut lens = huffman::code_lengths(hist, huffman::MAX_CODE_LEN);
        lens.resize((1 << sym_bits) + 1, 0);
        Codebook { sym_bits, lens }
    }

    /// The escape symbol.
    pub fn escape(&self) -> usize {
        1 << self.sym_bits
    }

    /// Whether every symbol can be coded (directly or through the escape).
    pub fn codes_everything(&self) -> bool {
        self.lens[self.escape()] > 0 || self.lens[..self.escape()].iter().all(|&l| l > 0)
    }

    /// The decode table as the WGSL decoders read it: 4096 words, entry `i` for the code whose
    /// bits start `i` (LSB first), holding the symbol's element top bits, unrotated
    /// ([`rotate_out`] with the tensor's `sym_bits`), as `top << 16 | length`, so the shader
    /// needs neither the rotation nor a half-word select; the escape as `0x8000 | length`.
    pub fn gpu_table(&self, sym_bits: u32) -> Vec<u32> {
        let escape = self.escape() as u32;
        huffman::decode_table(&self.lens)
            .iter()
            .map(|&e| match (e >> 4) as u32 {
                sym if sym == escape => 0x8000 | (e & 15) as u32,
                sym => (rotate_out(sym, sym_bits) << 16) | (e & 15) as u32,
            })
            .collect()
    }

    /// Serialized form (see the type's doc).
    pub fn to_bytes(&self) -> Vec<u8> {
        let first = self.lens.iter().position(|&l| l > 0).unwrap_or(0);
        let last = self
            .lens
            .iter()
            .rposition(|&l| l > 0)
            .map_or(first, |p| p + 1);
        let used = &self.lens[first..last];
        let mut out = vec![1u8, self.sym_bits as u8];
        out.extend_from_slice(&(first as u16).to_le_bytes());
        out.extend_from_slice(&(used.len() as u16).to_le_bytes());
        for pair in used.chunks(2) {
            out.push(pair[0] | pair.get(1).copied().unwrap_or(0) << 4);
        }
        out
    }

    /// Parses and validates a serialized codebook.
    pub fn from_bytes(bytes: &[u8]) -> std::result::Result<Self, String> {
        if bytes.len() < 6 {
            return Err("codebook shorter than its 6-byte header".into());
        }
        if bytes[0] != 1 {
            return Err(format!(
                "codebook version {} (this build reads 1)",
                bytes[0]
            ));
        }
        let sym_bits = bytes[1] as u32;
        if !(1..=huffman::MAX_SYM_BITS).contains(&sym_bits) {
            return Err(format!("codebook symbol width {sym_bits} bits"));
        }
        let first = u16::from_le_bytes([bytes[2], bytes[3]]) as usize;
        let count = u16::from_le_bytes([bytes[4], bytes[5]]) as usize;
        let size = (1usize << sym_bits) + 1;
        if first + count > size || bytes.len() != 6 + count.div_ceil(2) {
            return Err("codebook symbol range does not match its size".into());
        }
        let mut lens = vec![0u8; size];
        for k in 0..count {
            let b = bytes[6 + k / 2];
            lens[first + k] = if k % 2 == 0 { b & 15 } else { b >> 4 };
        }
        if !huffman::lengths_valid(&lens) {
            return Err("codebook lengths are not a valid prefix code".into());
        }
        if sym_bits > 11 && lens[size - 1] > 0 {
            return Err("codebook escapes 12-bit symbols (at most 11 bits can escape)".into());
        }
        Ok(Codebook { sym_bits, lens })
    }
}

/// The three parts of a coded tensor.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Encoded {
    /// Huffman stream, little-endian u32 words.
    pub stream: Vec<u8>,
    /// Raw low bits.
    pub raw: Vec<u8>,
    /// Bit length of each chunk, u16 LE.
    pub chunk_bits: Vec<u8>,
}

/// One tensor in coded form: what the encoders make, the file holds and the GPU upload takes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CodedTensor {
    /// Its layout.
    pub layout: Layout,
    /// The code it was written with (its own, or a shared book).
    pub codebook: std::sync::Arc<Codebook>,
    /// Stream, raw plane and chunk index.
    pub encoded: Encoded,
}

impl CodedTensor {
    /// Decodes into `out` (exactly the decoded size); `name` labels errors.
    pub fn decode_into(&self, out: &mut [u8], name: &str) -> Result<()> {
        decode(&self.layout, &self.encoded, &self.codebook, out, name)
    }
    /// Decodes into a new buffer; `name` labels errors.
    pub fn decode(&self, name: &str) -> Result<Vec<u8>> {
        let mut out = vec![0u8; self.layout.decoded_bytes() as usize];
        self.decode_into(&mut out, name)?;
        Ok(out)
    }
}

#[inline]
fn element(data: &[u8], i: usize, width: u32) -> u32 {
    match width {
        8 => data[i] as u32,
        16 => u16::from_le_bytes([data[2 * i], data[2 * i + 1]]) as u32,
        _ => u32::from_le_bytes([
            data[4 * i],
            data[4 * i + 1],
            data[4 * i + 2],
            data[4 * i + 3],
        ]),
    }
}

#[inline]
fn rotate_in(top: u32, s: u32) -> u32 {
    ((top << 1) | (top >> (s - 1))) & ((1 << s) - 1)
}

/// The element's top bits of a symbol (the inverse of the rotation the layout applies).
#[inline]
pub fn rotate_out(sym: u32, s: u32) -> u32 {
    (sym >> 1) | ((sym & 1) << (s - 1))
}

/// Histogram of each element's top 16 bits (all 8 bits for 8-bit types): every symbol histogram
/// of this tensor can be derived from it, so choosing `sym_bits` needs one pass over the data.
pub fn top16_histogram(data: &[u8], width: u32) -> Vec<u64> {
    let n = data.len() / (width as usize / 8);
    let bins = if width == 8 { 256 } else { 1 << 16 };
    let shift = width.saturating_sub(16);
    let piece = 1 << 20;
    (0..n.div_ceil(piece))
        .into_par_iter()
        .map(|p| {
            let mut h = vec![0u64; bins];
            for i in p * piece..n.min((p + 1) * piece) {
                h[(element(data, i, width) >> shift) as usize] += 1;
            }
            h
        })
        .reduce(
            || vec![0u64; bins],
            |mut a, b| {
                a.iter_mut().zip(&b).for_each(|(x, y)| *x += y);
                a
            },
        )
}

/// The histogram of `sym_bits`-bit symbols, from [`top16_histogram`].
pub fn symbol_histogram(top16: &[u64], width: u32, sym_bits: u32) -> Vec<u64> {
    let top_bits = width.min(16);
    let mut h = vec![0u64; 1 << sym_bits];
    for (v, &c) in top16.iter().enumerate() {
        if c > 0 {
            h[rotate_in(v as u32 >> (top_bits - sym_bits), sym_bits) as usize] += c;
        }
    }
    h
}

/// Size estimate of one choice of `sym_bits`, in bits, and its parts.
#[derive(Clone, Debug)]
pub struct Choice {
    /// Layout chosen.
    pub layout: Layout,
    /// Its code.
    pub codebook: Codebook,
    /// Symbol histogram.
    pub hist: Vec<u64>,
    /// Total coded size in bits: stream, raw plane, chunk index and code table.
    pub total_bits: u64,
}

impl Choice {
    /// Encodes `data` (the data it was chosen for) with it.
    pub fn encode(self, data: &[u8]) -> Result<CodedTensor> {
        let encoded = encode(data, &self.layout, &self.codebook)?;
        Ok(CodedTensor {
            layout: self.layout,
            codebook: std::sync::Arc::new(self.codebook),
            encoded,
        })
    }
}

/// Picks the `sym_bits` that makes the tensor smallest, or `None` when storing it verbatim is
/// at least as small (tiny or incompressible tensors).
pub fn choose(data: &[u8], width: u32, chunk_groups: usize) -> Result<Option<Choice>> {
    let n = (data.len() / (width as usize / 8)) as u64;
    if n == 0 {
        return Ok(None);
    }
    let top16 = top16_histogram(data, width);
    let mut best: Option<Choice> = None;
    for s in sym_bits_candidates(width) {
        let layout = Layout::new(n, width, s, chunk_groups)?;
        let hist = symbol_histogram(&top16, width, s);
        let codebook = Codebook::from_histogram(s, &hist);
        let total_bits = huffman::coded_bits(&hist, &codebook.lens)
            + n * layout.raw_bits() as u64
            + 8 * codebook.to_bytes().len() as u64
            + 16 * layout.chunks();
        if best.as_ref().is_none_or(|b| total_bits < b.total_bits) {
            best = Some(Choice {
                layout,
                codebook,
                hist,
                total_bits,
            });
        }
    }
    Ok(best.filter(|b| b.total_bits < n * width as u64))
}

/// Little-endian u32 words, written least significant bit first.
struct BitWriter {
    words: Vec<u32>,
    acc: u64,
    nbits: u32,
    total: u64,
}

impl BitWriter {
    fn new() -> Self {
        BitWriter {
            words: Vec::new(),
            acc: 0,
            nbits: 0,
            total: 0,
        }
    }
    #[inline]
    fn put(&mut self, bits: u32, len: u32) {
        self.acc |= (bits as u64) << self.nbits;
        self.nbits += len;
        self.total += len as u64;
        if self.nbits >= 32 {
            self.words.push(self.acc as u32);
            self.acc >>= 32;
            self.nbits -= 32;
        }
    }
    fn finish(mut self) -> Vec<u32> {
        if self.nbits > 0 {
            self.words.push(self.acc as u32);
        }
        self.words
    }
}

/// Reads `len` (at most 32) bits at bit `pos` of `words`; bits past the end read as zero, so a
/// corrupt offset gives garbage that the checksum catches, never a panic.
#[inline]
fn peek(words: &[u32], pos: u64, len: u32) -> u32 {
    let w = (pos >> 5) as usize;
    let lo = words.get(w).copied().unwrap_or(0) as u64;
    let hi = words.get(w + 1).copied().unwrap_or(0) as u64;
    let v = ((lo | hi << 32) >> (pos & 31)) as u32;
    if len == 32 {
        v
    } else {
        v & ((1u32 << len) - 1)
    }
}

fn words_to_bytes(words: &[u32]) -> Vec<u8> {
    words.iter().flat_map(|w| w.to_le_bytes()).collect()
}

fn bytes_to_words(bytes: &[u8]) -> Vec<u32> {
    bytes
        .chunks(4)
        .map(|c| {
            let mut b = [0u8; 4];
            b[..c.len()].copy_from_slice(c);
            u32::from_le_bytes(b)
        })
        .collect()
}

/// One block's stream words, raw words and chunk bit lengths.
type EncodedBlock = (Vec<u32>, Vec<u32>, Vec<u16>);

/// Encodes `data` (the tensor's bytes) with `book`. Symbols without a code of their own go through
/// the escape; fails if the book has no escape for such a symbol, or if a chunk would outgrow its
/// u16 length (possible only for 8-bit data escaping most of its symbols).
pub fn encode(data: &[u8], layout: &Layout, book: &Codebook) -> Result<Encoded> {
    let width = layout.width;
    if data.len() as u64 != layout.decoded_bytes() || book.sym_bits != layout.sym_bits {
        return Err(Error::InvalidArgument(
            "encode: data or codebook does not match the layout".into(),
        ));
    }
    let codes = huffman::canonical_codes(&book.lens);
    let escape = codes[book.escape()];
    let (s, r) = (layout.sym_bits, layout.raw_bits());
    let (n, e) = (layout.n, layout.elems_per_group());
    let block_groups = layout.block_groups();
    let blocks: Vec<Result<EncodedBlock>> = (0..layout.blocks())
        .into_par_iter()
        .map(|b| {
            let first_group = b * block_groups;
            let groups = block_groups.min(layout.groups() - first_group);
            let mut stream = BitWriter::new();
            let mut lens = vec![0u16; LANES];
            for lane in 0..LANES as u64 {
                let start = stream.total;
                let mut j = lane;
                while j < groups {
                    let g = first_group + j;
                    for i in g * e..n.min(g * e + e) {
                        let v = element(data, i as usize, width);
                        let sym = rotate_in(v >> r, s) as usize;
                        let (code, len) = codes[sym];
                        if len > 0 {
                            stream.put(code as u32, len as u32);
                        } else if escape.1 > 0 {
                            stream.put(escape.0 as u32, escape.1 as u32);
                            stream.put(v >> r, s);
                        } else {
                            return Err(Error::InvalidArgument(format!(
                                "symbol {sym} of element {i} has no code in the codebook"
                            )));
                        }
                    }
                    j += LANES as u64;
                }
                lens[lane as usize] = u16::try_from(stream.total - start).map_err(|_| {
                    Error::InvalidArgument(
                        "a chunk outgrows its u16 length: too many escapes".into(),
                    )
                })?;
            }
            let mut raw = BitWriter::new();
            if r > 0 {
                let mask = (1u32 << r) - 1;
                for i in first_group * e..n.min((first_group + groups) * e) {
                    raw.put(element(data, i as usize, width) & mask, r);
                }
            }
            Ok((stream.finish(), raw.finish(), lens))
        })
        .collect();
    let mut out = Encoded::default();
    for block in blocks {
        let (stream, raw, lens) = block?;
        out.stream.extend(words_to_bytes(&stream));
        out.raw.extend(words_to_bytes(&raw));
        out.chunk_bits
            .extend(lens.iter().flat_map(|l| l.to_le_bytes()));
    }
    Ok(out)
}

/// Start of each block in stream words (one more entry than blocks: the end), from the chunk index.
pub fn block_starts(chunk_bits: &[u8]) -> Vec<u64> {
    let mut starts = vec![0u64];
    for block in chunk_bits.chunks(2 * LANES) {
        let bits: u64 = block
            .chunks(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]) as u64)
            .sum();
        starts.push(starts[starts.len() - 1] + bits.div_ceil(32));
    }
    starts
}

/// Checks that the parts have the sizes the layout implies, before anything is decoded.
pub fn check_parts(layout: &Layout, enc: &Encoded, book: &Codebook, tensor: &str) -> Result<()> {
    let (stream, raw) = (enc.stream.len() as u64, enc.raw.len() as u64);
    validate(layout, book, &enc.chunk_bits, stream, raw, tensor)
}

/// The one validation of a coded tensor before it is decoded, by the CPU decoder and the GPU
/// upload alike, so that neither takes what the other refuses: its layout, its code table (for
/// its symbol width, coding something), its chunk index against its stream (`stream_bytes`) and
/// the raw plane's size.
pub fn validate(
    layout: &Layout,
    book: &Codebook,
    chunk_bits: &[u8],
    stream_bytes: u64,
    raw_bytes: u64,
    tensor: &str,
) -> Result<()> {
    // a layout made other than by Layout::new
    let checked = Layout::new(layout.n, layout.width, layout.sym_bits, layout.chunk_groups);
    if checked.ok() != Some(*layout) {
        return Err(Error::corrupt(tensor, format!("layout {layout:?}")));
    }
    if book.sym_bits != layout.sym_bits {
        return Err(Error::corrupt(
            tensor,
            format!(
                "its code table is for {}-bit symbols, the tensor has {}-bit symbols",
                book.sym_bits, layout.sym_bits
            ),
        ));
    }
    if layout.n > 0 && book.lens.iter().all(|&l| l == 0) {
        return Err(Error::corrupt(tensor, "its code table codes no symbol"));
    }
    if chunk_bits.len() as u64 != 2 * layout.chunks() {
        return Err(Error::corrupt(
            tensor,
            format!(
                "chunk index has {} bytes, layout needs {}",
                chunk_bits.len(),
                2 * layout.chunks()
            ),
        ));
    }
    // the longest a symbol can take is an escape: a 12-bit code and the symbol's own bits
    let max_bits = (layout.chunk_groups as u64)
        * layout.elems_per_group()
        * (huffman::MAX_CODE_LEN + layout.sym_bits) as u64;
    if chunk_bits
        .chunks(2)
        .any(|c| u16::from_le_bytes([c[0], c[1]]) as u64 > max_bits)
    {
        return Err(Error::corrupt(
            tensor,
            "a chunk is longer than its symbols can be",
        ));
    }
    let words = block_starts(chunk_bits).last().copied().unwrap_or(0);
    if stream_bytes != 4 * words {
        return Err(Error::corrupt(
            tensor,
            format!(
                "stream has {stream_bytes} bytes, chunk index says {}",
                4 * words
            ),
        ));
    }
    if raw_bytes != layout.raw_bytes() {
        return Err(Error::corrupt(
            tensor,
            format!(
                "raw plane has {raw_bytes} bytes, layout needs {}",
                layout.raw_bytes()
            ),
        ));
    }
    Ok(())
}

/// Decodes into `out` (exactly the tensor's bytes). Corrupt input gives an error or wrong bytes
/// (caught by the caller's checksum), never a panic or an endless loop.
pub fn decode(
    layout: &Layout,
    enc: &Encoded,
    book: &Codebook,
    out: &mut [u8],
    tensor: &str,
) -> Result<()> {
    check_parts(layout, enc, book, tensor)?;
    if out.len() as u64 != layout.decoded_bytes() {
        return Err(Error::OutputTooSmall {
            expected: layout.decoded_bytes() as usize,
            actual: out.len(),
        });
    }
    if book.sym_bits != layout.sym_bits {
        return Err(Error::corrupt(
            tensor,
            "codebook symbol width differs from the tensor's",
        ));
    }
    let table = huffman::decode_table(&book.lens);
    let stream = bytes_to_words(&enc.stream);
    let raw = bytes_to_words(&enc.raw);
    let starts = block_starts(&enc.chunk_bits);
    let (s, r, width) = (layout.sym_bits, layout.raw_bits(), layout.width);
    let (n, e) = (layout.n, layout.elems_per_group());
    let block_groups = layout.block_groups();
    let block_bytes = (block_groups * 4) as usize;
    out.par_chunks_mut(block_bytes)
        .enumerate()
        .try_for_each(|(b, out)| {
            let first_group = b as u64 * block_groups;
            let groups = block_groups.min(layout.groups() - first_group);
            let block_stream = &stream[starts[b] as usize..starts[b + 1] as usize];
            let mut pos = 0u64;
            for lane in 0..LANES as u64 {
                let k = 2 * (b * LANES + lane as usize);
                let len = u16::from_le_bytes([enc.chunk_bits[k], enc.chunk_bits[k + 1]]) as u64;
                let end = pos + len;
                let mut j = lane;
                while j < groups {
                    let g = first_group + j;
                    for i in g * e..n.min(g * e + e) {
                        let entry =
                            table[peek(block_stream, pos, huffman::MAX_CODE_LEN) as usize] as u32;
                        if entry & 15 == 0 {
                            return Err(Error::corrupt(tensor, "bit pattern with no code"));
                        }
                        pos += (entry & 15) as u64;
                        let top = if (entry >> 4) as usize == book.escape() {
                            pos += s as u64;
                            peek(block_stream, pos - s as u64, s)
                        } else {
                            rotate_out(entry >> 4, s)
                        };
                        let low = if r > 0 {
                            peek(&raw, i * r as u64, r)
                        } else {
                            0
                        };
                        let v = top << r | low;
                        let at = (i - first_group * e) as usize * (width as usize / 8);
                        match width {
                            8 => out[at] = v as u8,
                            16 => out[at..at + 2].copy_from_slice(&(v as u16).to_le_bytes()),
                            _ => out[at..at + 4].copy_from_slice(&v.to_le_bytes()),
                        }
                    }
                    j += LANES as u64;
                }
                if pos != end {
                    return Err(Error::corrupt(
                        tensor,
                        format!(
                            "chunk {lane} of block {b} decoded {} bits, index says {len}",
                            len + pos - end
                        ),
                    ));
                }
            }
            Ok(())
        })
}

/// Encodes with the best layout, or `None` when the tensor is better stored verbatim.
pub fn compress(data: &[u8], width: u32, chunk_groups: usize) -> Result<Option<CodedTensor>> {
    let Some(choice) = choose(data, width, chunk_groups)? else {
        return Ok(None);
    };
    Ok(Some(choice.encode(data)?))
}

/// Compresses and decodes `data` again: the one entry that unit tests, property tests and fuzz
/// targets share. Returns the decoded bytes (equal to `data` unless there is a bug).
pub fn round_trip(data: &[u8], width: u32, chunk_groups: usize) -> Result<Vec<u8>> {
    match compress(data, width, chunk_groups)? {
        None => Ok(data.to_vec()),
        Some(mut coded) => {
            // through the serialized table, as a file would carry it
            let book = Codebook::from_bytes(&coded.codebook.to_bytes())
                .map_err(|r| Error::corrupt("round trip", r))?;
            coded.codebook = std::sync::Arc::new(book);
            coded.decode("round trip")
        }
    }
}
