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
//! * **Index**: per block, little-endian u32 words: first `min | width << 27` (the shortest
//!   region in bits, and the bits of each delta, at most [`MAX_DELTA_BITS`]), then the 128
//!   deltas `length - min` in `width` bits each, least significant bit first: `4 * width` words.
//!   So a block's index is `1 + 4 * width` words, about 9 bits a pair on real weights (0.07% to
//!   0.17% of the file, measured in BENCHMARKS.md). Where each block's index and stream begin is
//!   a prefix sum the reader computes (as u64 on the CPU, so tensors over 4 GiB are fine).
//! * **Code table**: code lengths per symbol (see [`Codebook`]), shared or per tensor.

mod encode;
mod fast;
pub mod fixed;
pub mod huffman;
pub mod shared;

use crate::error::{Error, Result};
pub use encode::encode;
use rayon::prelude::*;

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
        let (full, rest) = (
            self.groups() / self.quarter_groups(),
            self.groups() % self.quarter_groups(),
        );
        full * LANES as u64 + rest.min(LANES as u64)
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

/// Bits of each element that [`top_histogram`] counts: the widest symbol.
const TOP_BITS: u32 = huffman::MAX_SYM_BITS;

/// Histogram of each element's top 12 bits (all 8 bits for 8-bit types): every symbol histogram
/// of this tensor can be derived from it, so choosing `sym_bits` needs one pass over the data.
/// Counted in four tables in turn, so that runs of one value (most weights share a few exponents)
/// do not wait on each other's increments; 4096 bins keep them in L1.
pub fn top_histogram(data: &[u8], width: u32) -> Vec<u64> {
    match width {
        8 => top_histogram_of::<1>(data),
        16 => top_histogram_of::<2>(data),
        _ => top_histogram_of::<4>(data),
    }
}

/// [`top_histogram`] for elements of `B` bytes.
fn top_histogram_of<const B: usize>(data: &[u8]) -> Vec<u64> {
    let width = 8 * B as u32;
    let top_bits = width.min(TOP_BITS);
    let shift = width - top_bits;
    let bins = 1usize << top_bits;
    let top = |e: &[u8]| -> usize {
        let mut b = [0u8; 4];
        b[..B].copy_from_slice(&e[..B]);
        (u32::from_le_bytes(b) >> shift) as usize % bins
    };
    // elements a parallel piece: few enough that a u32 count cannot overflow
    const PIECE: usize = 1 << 20;
    data.par_chunks(PIECE * B)
        .map(|piece| {
            let mut h = vec![[0u32; 4]; bins];
            let mut quads = piece.chunks_exact(4 * B);
            for q in &mut quads {
                for k in 0..4 {
                    h[top(&q[k * B..])][k] += 1;
                }
            }
            for e in quads.remainder().chunks_exact(B) {
                h[top(e)][0] += 1;
            }
            h.iter()
                .map(|c| c.iter().map(|&x| x as u64).sum())
                .collect::<Vec<u64>>()
        })
        .reduce(
            || vec![0u64; bins],
            |mut a, b| {
                a.iter_mut().zip(&b).for_each(|(x, y)| *x += y);
                a
            },
        )
}

/// The histogram of `sym_bits`-bit symbols, from [`top_histogram`].
pub fn symbol_histogram(top: &[u64], width: u32, sym_bits: u32) -> Vec<u64> {
    let top_bits = width.min(TOP_BITS);
    let mut h = vec![0u64; 1 << sym_bits];
    for (v, &c) in top.iter().enumerate() {
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

/// The index's size in bits, estimated before encoding: about 9 bits a region on real weights.
fn index_estimate(layout: &Layout) -> u64 {
    layout.blocks() * (32 + 9 * PAIRS as u64)
}

/// Picks the `sym_bits` that makes the tensor smallest, or `None` when storing it verbatim is
/// at least as small (tiny or incompressible tensors). The widths are tried from the narrowest
/// up and the search stops at the first that costs more than the best so far: on real weights the
/// size falls with the width up to the best and rises after it (the same choices as trying all
/// five on MiniLM and mpnet in bf16, f16 and f32), and building a code for a wide symbol
/// (package-merge over up to 4096 symbols) is most of the choice's cost: f16, best at 8 bits,
/// builds two codes instead of five.
pub fn choose(data: &[u8], width: u32, chunk_groups: usize) -> Result<Option<Choice>> {
    let n = (data.len() / (width as usize / 8)) as u64;
    if n == 0 {
        return Ok(None);
    }
    let top = top_histogram(data, width);
    let mut best: Option<Choice> = None;
    for s in sym_bits_candidates(width) {
        let layout = Layout::new(n, width, s, chunk_groups)?;
        let hist = symbol_histogram(&top, width, s);
        let codebook = Codebook::from_histogram(s, &hist);
        let total_bits = huffman::coded_bits(&hist, &codebook.lens)
            + n * layout.raw_bits() as u64
            + 8 * codebook.to_bytes().len() as u64
            + index_estimate(&layout);
        // on a tie the narrower width
        if best.as_ref().is_some_and(|b| total_bits >= b.total_bits) {
            break;
        }
        best = Some(Choice {
            layout,
            codebook,
            hist,
            total_bits,
        });
    }
    Ok(best.filter(|b| b.total_bits < n * width as u64))
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

/// Where each block's index and stream start, in words (one more entry than blocks: the ends),
/// from a tensor's index: what a reader needs before decoding any block.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BlockStarts {
    /// First index word of each block.
    pub index: Vec<u64>,
    /// First stream word of each block.
    pub stream: Vec<u64>,
}

/// The lengths in bits of the regions of the block whose index starts at `words[0]` (`words`
/// may run on past it).
pub fn region_bits(words: &[u32]) -> [u64; PAIRS] {
    let head = words.first().copied().unwrap_or(0);
    let (min, delta_bits) = ((head & mask(27)) as u64, (head >> 27).min(MAX_DELTA_BITS));
    let deltas = words.get(1..).unwrap_or(&[]);
    std::array::from_fn(|p| min + peek(deltas, p as u64 * delta_bits as u64, delta_bits) as u64)
}

/// Walks the index of a tensor of `layout`: each block's start in the index and in the stream.
/// Checks what can be checked without the stream: the index's size, and every region within what
/// its symbols could take.
pub fn block_starts(layout: &Layout, index: &[u8]) -> std::result::Result<BlockStarts, String> {
    if !index.len().is_multiple_of(4) {
        return Err(format!("index of {} bytes, not whole words", index.len()));
    }
    let words = bytes_to_words(index);
    let blocks = layout.blocks() as usize;
    let mut starts = BlockStarts {
        index: Vec::with_capacity(blocks + 1),
        stream: Vec::with_capacity(blocks + 1),
    };
    let (mut at, mut stream) = (0u64, 0u64);
    starts.index.push(0);
    starts.stream.push(0);
    for b in 0..blocks {
        let head = *words
            .get(at as usize)
            .ok_or_else(|| format!("index ends before block {b}"))?;
        let delta_bits = head >> 27;
        if delta_bits > MAX_DELTA_BITS {
            return Err(format!("block {b}: deltas of {delta_bits} bits"));
        }
        let next = at + 1 + 4 * delta_bits as u64;
        if next > words.len() as u64 {
            return Err(format!("index ends within block {b}"));
        }
        let regions = region_bits(&words[at as usize..next as usize]);
        if regions.iter().any(|&r| r > layout.max_region_bits()) {
            return Err(format!(
                "block {b} has a region longer than its symbols can be"
            ));
        }
        stream += regions.iter().sum::<u64>().div_ceil(32);
        at = next;
        starts.index.push(at);
        starts.stream.push(stream);
    }
    if at != words.len() as u64 {
        return Err(format!(
            "index has {} words, its {blocks} blocks take {at}",
            words.len()
        ));
    }
    Ok(starts)
}

/// Checks that the parts have the sizes the layout implies, before anything is decoded, and
/// returns where the blocks start.
pub fn check_parts(
    layout: &Layout,
    enc: &Encoded,
    book: &Codebook,
    tensor: &str,
) -> Result<BlockStarts> {
    let (stream, raw) = (enc.stream.len() as u64, enc.raw.len() as u64);
    validate(layout, book, &enc.index, stream, raw, tensor)
}

/// The one validation of a coded tensor before it is decoded, by the CPU decoder and the GPU
/// upload alike, so that neither takes what the other refuses: its layout, its code table (for
/// its symbol width, coding something), its index against its stream (`stream_bytes`) and the
/// raw plane's size. Returns where the blocks start.
pub fn validate(
    layout: &Layout,
    book: &Codebook,
    index: &[u8],
    stream_bytes: u64,
    raw_bytes: u64,
    tensor: &str,
) -> Result<BlockStarts> {
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
    let starts = block_starts(layout, index).map_err(|why| Error::corrupt(tensor, why))?;
    let words = starts.stream.last().copied().unwrap_or(0);
    if stream_bytes != 4 * words {
        return Err(Error::corrupt(
            tensor,
            format!(
                "stream has {stream_bytes} bytes, its index says {}",
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
    Ok(starts)
}

/// Reads `len` (at most 32) bits ending at bit `end` of `words`, backwards: bit `end - 1` comes
/// first, in bit 0. Bits before the start read as zero.
#[inline]
fn peek_back(words: &[u32], end: u64, len: u32) -> u32 {
    let window = if end >= 32 {
        peek(words, end - 32, 32)
    } else if end == 0 {
        0
    } else {
        peek(words, 0, 32) << (32 - end)
    };
    window.reverse_bits() & mask(len)
}

/// A stream being read: forward from bit `at`, or backward from bit `at` (exclusive).
struct Reader<'a> {
    words: &'a [u32],
    at: u64,
    backward: bool,
}

impl Reader<'_> {
    #[inline]
    fn peek(&self, len: u32) -> u32 {
        if self.backward {
            peek_back(self.words, self.at, len)
        } else {
            peek(self.words, self.at, len)
        }
    }
    #[inline]
    fn skip(&mut self, len: u32) {
        if self.backward {
            self.at = self.at.wrapping_sub(len as u64);
        } else {
            self.at += len as u64;
        }
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

/// The reference decoder: the layout followed a symbol at a time, as plainly as it is written.
/// The oracle the tests hold [`decode`] (faster) to; the same contract.
pub fn decode_reference(
    layout: &Layout,
    enc: &Encoded,
    book: &Codebook,
    out: &mut [u8],
    tensor: &str,
) -> Result<()> {
    let starts = check_decode(layout, enc, book, out, tensor)?;
    let table = huffman::decode_table(&book.lens);
    let stream = bytes_to_words(&enc.stream);
    let index = bytes_to_words(&enc.index);
    let raw = bytes_to_words(&enc.raw);
    let (s, r, width) = (layout.sym_bits, layout.raw_bits(), layout.width);
    let (n, e) = (layout.n, layout.elems_per_group());
    let block_groups = layout.block_groups();
    let block_bytes = (block_groups * 4) as usize;
    out.par_chunks_mut(block_bytes)
        .enumerate()
        .try_for_each(|(b, out)| {
            let first_group = b as u64 * block_groups;
            let block_stream = &stream[starts.stream[b] as usize..starts.stream[b + 1] as usize];
            let regions = region_bits(&index[starts.index[b] as usize..]);
            let mut region_start = 0u64;
            for (p, &region) in regions.iter().enumerate() {
                let region_end = region_start + region;
                let mut ends = [0u64; 2];
                for (half, end) in ends.iter_mut().enumerate() {
                    let mut rd = Reader {
                        words: block_stream,
                        at: if half == 0 { region_start } else { region_end },
                        backward: half == 1,
                    };
                    for g in layout.stream_groups(b as u64, 2 * p + half) {
                        for i in g * e..n.min(g * e + e) {
                            let entry = table[rd.peek(huffman::MAX_CODE_LEN) as usize] as u32;
                            if entry & 15 == 0 {
                                return Err(Error::corrupt(tensor, "bit pattern with no code"));
                            }
                            rd.skip(entry & 15);
                            let top = if (entry >> 4) as usize == book.escape() {
                                // read in stream order either way, as the codes are
                                let top = rd.peek(s);
                                rd.skip(s);
                                top
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
                    }
                    *end = rd.at;
                }
                // the two streams must meet exactly: a region of another length is corrupt
                if ends[0] != ends[1] {
                    return Err(Error::corrupt(
                        tensor,
                        format!("region {p} of block {b}: its two streams do not meet"),
                    ));
                }
                region_start = region_end;
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
