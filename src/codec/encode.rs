//! The encoder of layout v2 (described in [`super`]), block by block in parallel, one pass over
//! each block's data: every element's code comes from one table look-up by its top bits (the
//! escape and the verbatim top bits already joined there), so there is no rotation or branch a
//! symbol. A region is written in one go: the forward stream's codes, then the backward stream as
//! its bits lie in the region, which is its symbols last to first, each code bit-reversed (a
//! second table), so no stream is reversed afterwards.

use super::{Codebook, Encoded, LANES, Layout, MAX_DELTA_BITS, PAIRS, huffman, rotate_in};
use crate::error::{Error, Result};
use rayon::prelude::*;

/// Bits written least significant bit first into a buffer made large enough beforehand, through
/// a 64-bit accumulator that [`BitWriter::flush`] stores whole, 8 bytes every time, then moves
/// past the complete bytes: no branch on how many bits a code has (the flushes of a
/// variable-length code come at no pattern a branch predictor could learn). The bytes are those
/// of the little-endian u32 words the layout stores.
struct BitWriter<'a> {
    buf: &'a mut [u8],
    /// Bytes complete.
    pos: usize,
    /// Bits not yet complete bytes, `nbits` of them (at most 7 after a flush); none above.
    acc: u64,
    nbits: u32,
}

impl<'a> BitWriter<'a> {
    fn new(buf: &'a mut [u8]) -> Self {
        BitWriter {
            buf,
            pos: 0,
            acc: 0,
            nbits: 0,
        }
    }
    /// Appends a table entry's code (see [`table`]). At most 56 bits may be added between two
    /// flushes.
    #[inline(always)]
    fn add(&mut self, entry: u32) {
        self.acc |= ((entry >> 8) as u64) << self.nbits;
        self.nbits += entry & LEN;
    }
    /// Stores the accumulator and moves past its complete bytes.
    #[inline(always)]
    fn flush(&mut self) -> Result<()> {
        let Some(dst) = self.buf.get_mut(self.pos..self.pos + 8) else {
            return Err(Error::InvalidArgument(
                "encode: a block outgrew its buffer".into(),
            ));
        };
        dst.copy_from_slice(&self.acc.to_le_bytes());
        let bytes = self.nbits / 8;
        self.pos += bytes as usize;
        self.acc >>= 8 * bytes;
        self.nbits %= 8;
        Ok(())
    }
    /// Appends the low `len` (at most 32) bits of `bits`, which has no bits above them.
    fn put(&mut self, bits: u32, len: u32) -> Result<()> {
        self.acc |= (bits as u64) << self.nbits;
        self.nbits += len;
        self.flush()
    }
    /// Bits written.
    fn bits(&self) -> u64 {
        8 * self.pos as u64 + self.nbits as u64
    }
    /// Its bytes, the last word padded with zeros.
    fn finish(mut self) -> Result<Vec<u8>> {
        self.put(0, (32 - self.bits() % 32) as u32 % 32)?;
        Ok(self.buf[..self.pos].to_vec())
    }
}

/// A table entry's length bits; an entry is `code << 8 | length`, with [`LONG`], or [`MISSING`].
const LEN: u32 = 0x3f;
/// Codes added between two flushes where none is [`LONG`].
const CODES_PER_FLUSH: usize = 4;
/// Marks an entry of more than 14 bits (an escape and its top bits: up to 23): the coder flushes
/// around it, so that four codes still fit between two flushes elsewhere.
const LONG: u32 = 0x40;
/// The entry of a top the book cannot code: no bits.
const MISSING: u32 = 0x80;

/// What the encoder writes for each element's top bits (`top` unrotated, `0 .. 2^sym_bits`), as
/// `bits << 8 | length`: its code, or the escape's code followed by the top verbatim; [`MISSING`]
/// when the book codes neither. `reversed`: the same bits in reverse order, for backward streams.
/// Entries past `2^sym_bits` are never looked up (a top has `sym_bits` bits): the table's fixed
/// size lets a look-up mask its index instead of checking it.
fn table(book: &Codebook, reversed: bool) -> Box<[u32; huffman::TABLE_SIZE]> {
    let codes = huffman::canonical_codes(&book.lens);
    let escape = codes[book.escape()];
    let s = book.sym_bits;
    let mut t = Box::new([MISSING; huffman::TABLE_SIZE]);
    for (top, entry) in (0..1u32 << s).zip(t.iter_mut()) {
        let (code, len) = codes[rotate_in(top, s) as usize];
        let (bits, len) = match (len, escape.1) {
            (0, 0) => continue,
            (0, esc) => (escape.0 as u32 | top << esc, (esc as u32) + s),
            (len, _) => (code as u32, len as u32),
        };
        let bits = if reversed {
            bits.reverse_bits() >> (32 - len)
        } else {
            bits
        };
        *entry = bits << 8 | len | if len > 14 { LONG } else { 0 };
    }
    t
}

/// The top bits of element `k` of word `v` (`E` elements a word), whose `r` low bits are raw.
#[inline(always)]
fn top_of<const E: usize>(v: u32, k: usize, r: u32) -> u32 {
    let width = 32 / E as u32;
    ((v >> (k as u32 * width % 32)) & super::mask(width)) >> r
}

/// Bits of the delta width that hold `spread`.
fn width_for(spread: u64) -> u32 {
    64 - spread.leading_zeros()
}

/// One block's stream and index.
struct EncodedBlock {
    stream: Vec<u8>,
    index: Vec<u8>,
}

/// Encodes `data` (the tensor's bytes) with `book`. Symbols without a code of their own go through
/// the escape; fails if the book has no escape for such a symbol.
pub fn encode(data: &[u8], layout: &Layout, book: &Codebook) -> Result<Encoded> {
    if data.len() as u64 != layout.decoded_bytes() || book.sym_bits != layout.sym_bits {
        return Err(Error::InvalidArgument(
            "encode: data or codebook does not match the layout".into(),
        ));
    }
    let fwd = table(book, false);
    let coder = Coder {
        layout,
        data,
        long: fwd.iter().any(|&e| e & LONG != 0),
        fwd,
        bwd: table(book, true),
    };
    // the most a block's stream can take: every symbol an escape
    let most = (layout.max_region_bits() * PAIRS as u64).div_ceil(8) as usize + 8;
    let blocks: Vec<Result<EncodedBlock>> = (0..layout.blocks())
        .into_par_iter()
        .map_init(|| vec![0u8; most], |buf, b| coder.block(b, buf))
        .collect();
    let blocks = blocks.into_iter().collect::<Result<Vec<_>>>()?;
    let mut out = Encoded {
        stream: Vec::with_capacity(blocks.iter().map(|b| b.stream.len()).sum()),
        index: Vec::with_capacity(blocks.iter().map(|b| b.index.len()).sum()),
        raw: raw_plane(data, layout),
    };
    for block in blocks {
        out.stream.extend_from_slice(&block.stream);
        out.index.extend_from_slice(&block.index);
    }
    Ok(out)
}

/// What the blocks of one tensor share.
struct Coder<'a> {
    layout: &'a Layout,
    data: &'a [u8],
    fwd: Box<[u32; huffman::TABLE_SIZE]>,
    bwd: Box<[u32; huffman::TABLE_SIZE]>,
    /// Whether any entry is [`LONG`] (books with an escape): the coder tests for them only then.
    long: bool,
}

impl Coder<'_> {
    /// Output word `g` of the tensor (zeros past its end) and how many elements it has.
    #[inline(always)]
    fn word<const E: usize>(&self, g: u64) -> (u32, usize) {
        let at = 4 * g as usize;
        match self.data.get(at..at + 4) {
            Some(w) => (u32::from_le_bytes([w[0], w[1], w[2], w[3]]), E),
            None => {
                let mut w = [0u8; 4];
                let rest = self.data.get(at..).unwrap_or(&[]);
                w[..rest.len()].copy_from_slice(rest);
                (
                    u32::from_le_bytes(w),
                    (self.layout.n - g * E as u64) as usize,
                )
            }
        }
    }

    /// Appends the codes of stream `(first, count)`'s groups to `w`: first to last, or
    /// last to first with each word's elements last to first (`BACK`, with `table` the reversed
    /// codes); a flush every [`CODES_PER_FLUSH`] codes, and around each [`LONG`] one. Each entry
    /// is or-ed into `seen`, to find a [`MISSING`] one afterwards.
    #[inline(always)]
    fn put_stream<const E: usize, const LONG_CODES: bool, const BACK: bool>(
        &self,
        table: &[u32; huffman::TABLE_SIZE],
        (first, count): (u64, u64),
        w: &mut BitWriter,
        seen: &mut u32,
    ) -> Result<()> {
        let r = self.layout.raw_bits();
        let entry = |v: u32, k: usize| table[top_of::<E>(v, k, r) as usize % huffman::TABLE_SIZE];
        let word = |i: u64| {
            let j = if BACK { count - 1 - i } else { i };
            self.word::<E>(first + j * LANES as u64)
        };
        // one word's codes, a flush every two
        let put_one = |(v, elems): (u32, usize), w: &mut BitWriter, seen: &mut u32| -> Result<()> {
            for k in 0..elems {
                let e = entry(v, if BACK { elems - 1 - k } else { k });
                *seen |= e;
                w.add(e);
                if k % 2 == 1 || k + 1 == elems {
                    w.flush()?;
                }
            }
            Ok(())
        };
        // the tensor's last word may be partial: a stream's last (coded first when backward)
        let partial = count > 0 && word(if BACK { 0 } else { count - 1 }).1 < E;
        let (mut i, end) = match (partial, BACK) {
            (false, _) => (0, count),
            (true, false) => (0, count - 1),
            (true, true) => {
                put_one(word(0), w, seen)?;
                (1, count)
            }
        };
        // whole words, `CODES_PER_FLUSH` codes between flushes (7 + 4 * 14 bits)
        let words = (CODES_PER_FLUSH / E).max(1) as u64;
        while i + words <= end {
            for u in 0..words as usize {
                let (v, _) = word(i + u as u64);
                for k in 0..E {
                    let e = entry(v, if BACK { E - 1 - k } else { k });
                    *seen |= e;
                    // a long code (an escape) is flushed around, so the four others still fit
                    let long = LONG_CODES && e & LONG != 0;
                    if long {
                        w.flush()?;
                    }
                    w.add(e);
                    if long {
                        w.flush()?;
                    }
                    if (u * E + k + 1).is_multiple_of(CODES_PER_FLUSH) {
                        w.flush()?;
                    }
                }
            }
            i += words;
        }
        for i in i..end {
            put_one(word(i), w, seen)?;
        }
        if partial && !BACK {
            put_one(word(count - 1), w, seen)?;
        }
        Ok(())
    }

    /// The error for the first element of block `b` whose top has no code.
    #[cold]
    fn no_code<const E: usize>(&self, b: u64) -> Error {
        let l = self.layout;
        let first = b * l.block_groups();
        for g in first..(first + l.block_groups()).min(l.groups()) {
            let (v, elems) = self.word::<E>(g);
            for k in 0..elems {
                let top = top_of::<E>(v, k, l.raw_bits());
                if self.fwd[top as usize] == MISSING {
                    return Error::InvalidArgument(format!(
                        "symbol {} of element {} has no code in the codebook",
                        rotate_in(top, l.sym_bits),
                        g * E as u64 + k as u64
                    ));
                }
            }
        }
        Error::InvalidArgument("encode: a symbol has no code in the codebook".into())
    }

    fn block(&self, b: u64, buf: &mut [u8]) -> Result<EncodedBlock> {
        match (self.layout.elems_per_group(), self.long) {
            (1, false) => self.block_as::<1, false>(b, buf),
            (1, true) => self.block_as::<1, true>(b, buf),
            (2, false) => self.block_as::<2, false>(b, buf),
            (2, true) => self.block_as::<2, true>(b, buf),
            (_, false) => self.block_as::<4, false>(b, buf),
            (_, true) => self.block_as::<4, true>(b, buf),
        }
    }

    /// [`Coder::block`] for `E` elements a word, `LONG_CODES` if any entry is [`LONG`].
    fn block_as<const E: usize, const LONG_CODES: bool>(
        &self,
        b: u64,
        buf: &mut [u8],
    ) -> Result<EncodedBlock> {
        let l = self.layout;
        let mut stream = BitWriter::new(buf);
        let mut regions = [0u64; PAIRS];
        let mut seen = 0;
        for (p, region) in regions.iter_mut().enumerate() {
            let start = stream.bits();
            // the forward stream, first symbol first, then the backward one as it lies: last
            // symbol first, codes reversed
            let span = l.stream_span(b, 2 * p);
            self.put_stream::<E, LONG_CODES, false>(&self.fwd, span, &mut stream, &mut seen)?;
            let span = l.stream_span(b, 2 * p + 1);
            self.put_stream::<E, LONG_CODES, true>(&self.bwd, span, &mut stream, &mut seen)?;
            *region = stream.bits() - start;
        }
        if seen & MISSING != 0 {
            return Err(self.no_code::<E>(b));
        }
        // the regions past the block's last stream with symbols are empty and not indexed
        let regions = &regions[..l.block_pairs(b)];
        let min = *regions.iter().min().unwrap_or(&0);
        let delta_bits = width_for(regions.iter().max().unwrap_or(&0) - min);
        if min >= 1 << 27 || delta_bits > MAX_DELTA_BITS {
            return Err(Error::InvalidArgument(
                "a block's regions are too long for the index".into(),
            ));
        }
        let mut index = vec![0u8; 16 + 16 * delta_bits as usize];
        let mut w = BitWriter::new(&mut index);
        w.put(min as u32 | delta_bits << 27, 32)?;
        for &len in regions {
            w.put((len - min) as u32, delta_bits)?;
        }
        Ok(EncodedBlock {
            index: w.finish()?,
            stream: stream.finish()?,
        })
    }
}

/// The raw plane of `data` (see the layout): each element's low bits, packed.
fn raw_plane(data: &[u8], layout: &Layout) -> Vec<u8> {
    match (layout.width, layout.raw_bits()) {
        (_, 0) => Vec::new(),
        (16, 4) => raw_as::<16, 4>(data, layout),
        (16, 5) => raw_as::<16, 5>(data, layout),
        (16, 6) => raw_as::<16, 6>(data, layout),
        (16, 7) => raw_as::<16, 7>(data, layout),
        (16, 8) => raw_as::<16, 8>(data, layout),
        (32, 20) => raw_as::<32, 20>(data, layout),
        (32, 21) => raw_as::<32, 21>(data, layout),
        (32, 22) => raw_as::<32, 22>(data, layout),
        (32, 23) => raw_as::<32, 23>(data, layout),
        (32, 24) => raw_as::<32, 24>(data, layout),
        // Layout::new admits no other
        (w, r) => unreachable!("{w}-bit elements with {r} raw bits"),
    }
}

/// [`raw_plane`] for `W`-bit elements of `R` raw bits: eight elements give `R` whole bytes, so
/// pieces of the plane are written in parallel, each straight to its place.
fn raw_as<const W: usize, const R: usize>(data: &[u8], layout: &Layout) -> Vec<u8> {
    let mut out = vec![0u8; layout.raw_bytes() as usize];
    // elements a parallel piece: a multiple of 32, so each piece ends on a whole word
    const PIECE: usize = 1 << 16;
    let (bytes, elem) = (W / 8, |e: &[u8]| -> u32 {
        let mut b = [0u8; 4];
        b[..W / 8].copy_from_slice(e);
        u32::from_le_bytes(b) & ((1 << R) - 1)
    });
    out.par_chunks_mut(PIECE * R / 8)
        .zip(data.par_chunks(PIECE * bytes))
        .for_each(|(out, data)| {
            let mut eights = data.chunks_exact(8 * bytes);
            for (dst, src) in out.chunks_exact_mut(R).zip(&mut eights) {
                let mut packed = [0u8; 28];
                for k in 0..8 {
                    let bit = k * R;
                    let v = elem(&src[k * bytes..(k + 1) * bytes]) << (bit % 8);
                    for (p, b) in packed[bit / 8..bit / 8 + 4].iter_mut().zip(v.to_le_bytes()) {
                        *p |= b;
                    }
                }
                dst.copy_from_slice(&packed[..R]);
            }
            // the tensor's last elements, fewer than eight
            let rest = eights.remainder();
            let first = (data.len() - rest.len()) / bytes * R;
            for (k, e) in rest.chunks_exact(bytes).enumerate() {
                let bit = first + k * R;
                let v = (elem(e) as u64) << (bit % 8);
                for (j, b) in v.to_le_bytes().iter().enumerate() {
                    if let Some(o) = out.get_mut(bit / 8 + j) {
                        *o |= b;
                    }
                }
            }
        });
    out
}
