//! The codec: pure CPU code that splits values into a Huffman-coded symbol and raw low bits, lays
//! the symbols out in independently decodable chunks, and decodes them again.
//!
//! # Layout (format version 2)
//!
//! This is the one description of the layout; the encoder and decoder here and the WGSL decoders
//! in `shaders/decode_core.wgsl` (decode, chosen blocks, fused products) follow it.
//!
//! * A tensor has `n` elements of `w` bits (8, 16 or 32). Each element's top `S` bits (sign,
//!   exponent, first mantissa bits; `S` chosen per tensor, at most 12) form its *symbol*, rotated
//!   left by one within `S` bits so that the sign lands in bit 0 and the symbols of one tensor span
//!   a narrow range. The low `R = w - S` bits are *raw*.
//! * **Raw plane**: element `i`'s raw bits at bit `i * R`, least significant bit first, in
//!   little-endian 32-bit words. Length `ceil(n * R / 32)` words.
//! * **Groups**: `E = 32 / w` consecutive elements form a group, one 32-bit word of output.
//!   Group `g` holds elements `g*E .. g*E+E` (the last group may be partial).
//! * **Streams, quarters and blocks**: a stream decodes `C` groups (`C` = `chunk_groups`, chosen
//!   per tensor by [`auto_chunk_groups`]: 256 symbols a stream, 512 for tensors large enough to
//!   keep 65,536 streams). A *quarter* is `LANES * C` consecutive groups (`LANES` = 64): its local
//!   group `j` belongs to its lane `j % LANES` as that lane's step `j / LANES`, so at each step the
//!   64 lanes produce 64 consecutive output words and a GPU's writes are coalesced. A *block* is
//!   four consecutive quarters, `STREAMS` = 256 streams: stream `s` of a block is lane `s % 64` of
//!   its quarter `s / 64`, and one GPU workgroup of 256 invocations decodes it. Streams past the
//!   tensor's end are empty.
//! * **Stream code**: a stream's symbols in order, each as its canonical Huffman code, least
//!   significant bit first with the code bit-reversed (see [`huffman`]); a symbol without a code
//!   of its own (shared codebooks only) as the escape's code followed by its `S` top bits.
//! * **Pairs and regions**: streams `2p` and `2p + 1` of a block share *region* `p` (p = 0..128),
//!   whose length is the sum of their lengths in bits. Stream `2p` is written forward from the
//!   region's first bit; stream `2p + 1` backward from its last: its `i`-th bit at bit
//!   `end - 1 - i`. So each stream's start is known from the region alone, and only the region's
//!   length is indexed. The regions of a block follow each other bit by bit from the block's
//!   first word; each block starts on a 32-bit word boundary, right after the one before.
//!   Reading a backward stream is reading forward the bit-reversed words of its region in
//!   descending order, which is how the WGSL decoder does it.
//! * **Index**: per block, little-endian u32 words, for the block's `P` regions that hold
//!   symbols (its first `P`: [`Layout::block_pairs`], 128 in all blocks but a tensor's last):
//!   first `min | width << 27` (the shortest of those regions in bits, and the bits of each
//!   delta, at most [`MAX_DELTA_BITS`]), then their `P` deltas `length - min` in `width` bits
//!   each, least significant bit first, the last word padded with zeros. So a block's index is
//!   `1 + ceil(P * width / 32)` words, `1 + 4 * width` for a full block, about 9 bits a pair on
//!   real weights (0.06% to 0.15% of the file, measured in BENCHMARKS.md); the other regions are
//!   empty. Where each block's index and stream begin is a prefix sum the reader computes (as
//!   u64 on the CPU, so tensors over 4 GiB are fine).
//! * **Code table**: code lengths per symbol (see [`Codebook`]), shared or per tensor.

mod choose;
mod encode;
mod fast;
pub mod fixed;
pub mod huffman;
mod index;
mod reference;
pub mod shared;

use crate::error::{Error, Result};
pub use choose::{Choice, choose, symbol_histogram, top_histogram};
pub use encode::encode;
pub use index::{BlockStarts, block_starts, check_parts, index_words, region_bits, validate};
pub use reference::decode_reference;

/// Lanes of a quarter: the output words of one step, written side by side.
pub const LANES: usize = 64;
/// Streams of a block: the GPU decoder's workgroup size.
pub const STREAMS: usize = 256;
/// Regions (stream pairs) of a block.
pub const PAIRS: usize = STREAMS / 2;
/// Largest `chunk_groups` accepted.
pub const MAX_CHUNK_GROUPS: usize = 1024;
/// Widest region-length delta of the index.
pub const MAX_DELTA_BITS: u32 = 24;
/// Streams a layer should have at least, for a large GPU to be busy decoding it.
const TARGET_STREAMS: u64 = 65_536;

/// Groups a stream (`chunk_groups`) for a tensor of `n` elements of `width` bits: 256 symbols,
/// or 512 when that still gives `TARGET_STREAMS` streams (halving the index of large tensors).
pub fn auto_chunk_groups(n: u64, width: u32) -> usize {
    let symbols = if n >= 512 * TARGET_STREAMS { 512 } else { 256 };
    symbols / (32 / width as usize)
}

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
    /// Groups per stream.
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
    /// Groups per quarter.
    pub fn quarter_groups(&self) -> u64 {
        (LANES * self.chunk_groups) as u64
    }
    /// Groups per block.
    pub fn block_groups(&self) -> u64 {
        (STREAMS * self.chunk_groups) as u64
    }
    /// Blocks.
    pub fn blocks(&self) -> u64 {
        self.groups().div_ceil(self.block_groups())
    }
    /// Independent decode streams that have symbols: how many GPU threads can decode at once.
    pub fn streams(&self) -> u64 {
        self.streams_of(self.groups())
    }
    /// Streams with symbols among the first `groups` groups of a block (or of the tensor, whose
    /// blocks are all full but the last): whole quarters, then the lanes of a partial one. They
    /// are the first streams of a block.
    fn streams_of(&self, groups: u64) -> u64 {
        let (full, rest) = (
            groups / self.quarter_groups(),
            groups % self.quarter_groups(),
        );
        full * LANES as u64 + rest.min(LANES as u64)
    }
    /// Regions of block `b` that hold symbols: its first, the ones the index has lengths for.
    /// [`PAIRS`] but in a tensor's last block.
    pub fn block_pairs(&self, b: u64) -> usize {
        let first = b * self.block_groups();
        let groups = self.groups().saturating_sub(first).min(self.block_groups());
        self.streams_of(groups).div_ceil(2) as usize
    }
    /// The longest a region can be, in bits: two streams of escapes (a 12-bit code and the
    /// symbol's own bits each).
    pub fn max_region_bits(&self) -> u64 {
        2 * self.chunk_groups as u64
            * self.elems_per_group()
            * (huffman::MAX_CODE_LEN + self.sym_bits) as u64
    }
    /// Bytes of the raw plane.
    pub fn raw_bytes(&self) -> u64 {
        (self.n * self.raw_bits() as u64).div_ceil(32) * 4
    }
    /// Bytes of the decoded tensor.
    pub fn decoded_bytes(&self) -> u64 {
        self.n * self.width as u64 / 8
    }
    /// The first group of stream `s` (0..[`STREAMS`]) of block `b`, and how many it has; its
    /// groups are [`LANES`] apart.
    fn stream_span(&self, b: u64, s: usize) -> (u64, u64) {
        let first = b * self.block_groups();
        let end = (first + self.block_groups()).min(self.groups());
        let quarter = first + (s / LANES) as u64 * self.quarter_groups();
        let start = quarter + (s % LANES) as u64;
        let quarter_end = (quarter + self.quarter_groups()).min(end);
        (
            start,
            quarter_end.saturating_sub(start).div_ceil(LANES as u64),
        )
    }
    /// The groups of stream `s` (0..[`STREAMS`]) of block `b`, in its order.
    fn stream_groups(&self, b: u64, s: usize) -> impl Iterator<Item = u64> {
        let (start, count) = self.stream_span(b, s);
        (0..count).map(move |j| start + j * LANES as u64)
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

    /// Bits this code takes for a histogram of its symbols (`2^sym_bits` entries), escaped
    /// symbols as the escape's code and their top bits; symbols it cannot code are not counted.
    pub fn coded_bits(&self, hist: &[u64]) -> u64 {
        let escaped = match self.lens[self.escape()] {
            0 => 0,
            l => l as u64 + self.sym_bits as u64,
        };
        hist.iter()
            .zip(&self.lens)
            .map(|(&c, &l)| c * if l > 0 { l as u64 } else { escaped })
            .sum()
    }

    /// Whether every symbol can be coded (directly or through the escape).
    pub fn codes_everything(&self) -> bool {
        self.lens[self.escape()] > 0 || self.lens[..self.escape()].iter().all(|&l| l > 0)
    }

    /// The decode table as the WGSL decoders read it: 4096 16-bit entries, two a word (entry `i`
    /// in the low half of word `i / 2` when `i` is even), entry `i` for the code whose bits start
    /// `i` (LSB first), holding the symbol's element top bits, unrotated ([`rotate_out`] with the
    /// tensor's `sym_bits`), as `top << 4 | length`, so the shader needs no rotation; the escape
    /// as `0xfff0 | length` (escapes exist for `sym_bits` <= 11 only, whose tops are below
    /// 0xfff). 8 KiB: it fits WebGPU's guaranteed 16 KiB of workgroup memory with room to spare.
    pub fn gpu_table(&self, sym_bits: u32) -> Vec<u32> {
        let entries: Vec<u32> = self
            .decode_entries(sym_bits)
            .map(|(top, len)| match top {
                None => 0xfff0 | len,
                Some(top) => top << 4 | len,
            })
            .collect();
        entries.chunks(2).map(|p| p[0] | p[1] << 16).collect()
    }

    /// What the decoders look up, for the code whose bits start `i` (LSB first), `i` in order
    /// over [`huffman::TABLE_SIZE`]: the element's top bits for a tensor of `sym_bits`-bit
    /// symbols (`None`: the escape) and the code's length (0: no code starts so).
    pub fn decode_entries(&self, sym_bits: u32) -> impl Iterator<Item = (Option<u32>, u32)> {
        let escape = self.escape() as u32;
        huffman::decode_table(&self.lens).into_iter().map(move |e| {
            let (sym, len) = ((e >> 4) as u32, (e & 15) as u32);
            ((sym != escape).then(|| rotate_out(sym, sym_bits)), len)
        })
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
    /// The index: per block, where its streams start (see the layout).
    pub index: Vec<u8>,
}

/// One tensor in coded form: what the encoders make, the file holds and the GPU upload takes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CodedTensor {
    /// Its layout.
    pub layout: Layout,
    /// The code it was written with (its own, or a shared book).
    pub codebook: std::sync::Arc<Codebook>,
    /// Stream, raw plane and index.
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
fn rotate_in(top: u32, s: u32) -> u32 {
    ((top << 1) | (top >> (s - 1))) & ((1 << s) - 1)
}

/// The element's top bits of a symbol (the inverse of the rotation the layout applies).
#[inline]
pub fn rotate_out(sym: u32, s: u32) -> u32 {
    (sym >> 1) | ((sym & 1) << (s - 1))
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

/// The low `bits` bits set (`bits` <= 32).
#[inline]
fn mask(bits: u32) -> u32 {
    if bits >= 32 {
        u32::MAX
    } else {
        (1 << bits) - 1
    }
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
    let starts = check_decode(layout, enc, book, out, tensor)?;
    fast::decode(layout, enc, book, &starts, out, tensor)
}

/// What both decoders check first: the parts ([`check_parts`]) and the output's size.
fn check_decode(
    layout: &Layout,
    enc: &Encoded,
    book: &Codebook,
    out: &[u8],
    tensor: &str,
) -> Result<BlockStarts> {
    let starts = check_parts(layout, enc, book, tensor)?;
    if out.len() as u64 != layout.decoded_bytes() {
        return Err(Error::OutputTooSmall {
            expected: layout.decoded_bytes() as usize,
            actual: out.len(),
        });
    }
    Ok(starts)
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
