//! The encoder of layout v2 (described in [`super`]), block by block in parallel, one pass over
//! each block's data: every element's code comes from one table look-up by its top bits (the
//! escape and the verbatim top bits already joined there), so there is no rotation or branch a
//! symbol. A region is written in one go: the forward stream's codes, then the backward stream as
//! its bits lie in the region, which is its symbols last to first, each code bit-reversed (a
//! second table), so no stream is reversed afterwards.

use super::{Codebook, Encoded, Layout, MAX_DELTA_BITS, PAIRS, huffman, rotate_in};
use crate::error::{Error, Result};
use rayon::prelude::*;

/// Bits written least significant bit first into a buffer made large enough beforehand, 32 at a
/// time and without a branch (the next word is stored every time, and kept only once full): the
/// flushes of a variable-length code come at no pattern a branch predictor could learn.
struct BitWriter<'a> {
    buf: &'a mut [u8],
    /// Bytes complete.
    pos: usize,
    acc: u64,
    nbits: u32,
    /// Whether a word fell past the buffer (a bug in its size: an error, never lost bits).
    overflow: bool,
}

impl<'a> BitWriter<'a> {
    fn new(buf: &'a mut [u8]) -> Self {
        BitWriter {
            buf,
            pos: 0,
            acc: 0,
            nbits: 0,
            overflow: false,
        }
    }
    /// Appends the low `len` (at most 32) bits of `bits`, which has no bits above them.
    #[inline(always)]
    fn put(&mut self, bits: u32, len: u32) {
        self.acc |= (bits as u64) << self.nbits;
        self.nbits += len;
        match self.buf.get_mut(self.pos..self.pos + 4) {
            Some(dst) => dst.copy_from_slice(&(self.acc as u32).to_le_bytes()),
            None => self.overflow = true,
        }
        let full = (self.nbits >= 32) as u32;
        self.pos += 4 * full as usize;
        self.acc >>= 32 * full;
        self.nbits -= 32 * full;
    }
    /// Bits written.
    fn bits(&self) -> u64 {
        8 * self.pos as u64 + self.nbits as u64
    }
    /// Its bytes, the last word padded with zeros.
    fn finish(mut self) -> Result<Vec<u8>> {
        if self.nbits > 0 {
            self.put(0, 32 - self.nbits);
        }
        if self.overflow {
            return Err(Error::InvalidArgument(
                "encode: a block outgrew its buffer".into(),
            ));
        }
        Ok(self.buf[..self.pos].to_vec())
    }
}

/// What the encoder writes for each element's top bits (`top` unrotated, `0 .. 2^sym_bits`), as
/// `bits | length << 24`: its code, or the escape's code followed by the top verbatim; length 0
/// when the book codes neither. `reversed`: the same bits in reverse order, for backward streams.
fn table(book: &Codebook, reversed: bool) -> Vec<u32> {
    let codes = huffman::canonical_codes(&book.lens);
    let escape = codes[book.escape()];
    let s = book.sym_bits;
    (0..1u32 << s)
        .map(|top| {
            let (code, len) = codes[rotate_in(top, s) as usize];
            let (bits, len) = match (len, escape.1) {
                (0, 0) => return 0,
                (0, esc) => (escape.0 as u32 | top << esc, (esc as u32) + s),
                (len, _) => (code as u32, len as u32),
            };
            let bits = if reversed {
                bits.reverse_bits() >> (32 - len)
            } else {
                bits
            };
            bits | len << 24
        })
        .collect()
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
    let coder = Coder {
        layout,
        data,
        fwd: table(book, false),
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
    fwd: Vec<u32>,
    bwd: Vec<u32>,
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

    /// Writes the codes of the first `elems` elements of word `v` (word `g` of the tensor), from
    /// `table`: first to last, or last to first (`BACK`). A whole word's two codes, or pairs of its
    /// four, are joined before one put (unless with escapes they exceed 32 bits), halving the
    /// writer's chain of dependent steps.
    #[inline(always)]
    fn put_word<const E: usize, const BACK: bool>(
        &self,
        table: &[u32],
        v: u32,
        elems: usize,
        g: u64,
        w: &mut BitWriter,
    ) -> Result<()> {
        let (width, r) = (32 / E as u32, self.layout.raw_bits());
        let code = |k: usize| -> Result<(u32, u32)> {
            let elem = (v >> (k as u32 * width % 32)) & super::mask(width);
            let entry = table.get((elem >> r) as usize).copied().unwrap_or(0);
            if entry == 0 {
                return Err(self.no_code(g * E as u64 + k as u64, elem >> r));
            }
            Ok((entry & 0xff_ffff, entry >> 24))
        };
        if E > 1 && elems == E {
            for pair in 0..E / 2 {
                let (a, b) = if BACK {
                    (E - 1 - 2 * pair, E - 2 - 2 * pair)
                } else {
                    (2 * pair, 2 * pair + 1)
                };
                let ((ba, la), (bb, lb)) = (code(a)?, code(b)?);
                if la + lb <= 32 {
                    w.put(ba | bb << la, la + lb);
                } else {
                    w.put(ba, la);
                    w.put(bb, lb);
                }
            }
            return Ok(());
        }
        for j in 0..elems {
            let (bits, len) = code(if BACK { elems - 1 - j } else { j })?;
            w.put(bits, len);
        }
        Ok(())
    }

    #[cold]
    fn no_code(&self, i: u64, top: u32) -> Error {
        Error::InvalidArgument(format!(
            "symbol {} of element {i} has no code in the codebook",
            rotate_in(top, self.layout.sym_bits)
        ))
    }

    fn block(&self, b: u64, buf: &mut [u8]) -> Result<EncodedBlock> {
        match self.layout.elems_per_group() {
            1 => self.block_as::<1>(b, buf),
            2 => self.block_as::<2>(b, buf),
            _ => self.block_as::<4>(b, buf),
        }
    }

    /// [`Coder::block`] for `E` elements a word.
    fn block_as<const E: usize>(&self, b: u64, buf: &mut [u8]) -> Result<EncodedBlock> {
        let l = self.layout;
        let mut stream = BitWriter::new(buf);
        let mut regions = [0u64; PAIRS];
        for (p, region) in regions.iter_mut().enumerate() {
            let start = stream.bits();
            // the forward stream, first symbol first
            let (first, count) = l.stream_span(b, 2 * p);
            for j in 0..count {
                let g = first + j * super::LANES as u64;
                let (v, elems) = self.word::<E>(g);
                self.put_word::<E, false>(&self.fwd, v, elems, g, &mut stream)?;
            }
            // the backward stream as it lies: last symbol first, codes reversed
            let (first, count) = l.stream_span(b, 2 * p + 1);
            for j in (0..count).rev() {
                let g = first + j * super::LANES as u64;
                let (v, elems) = self.word::<E>(g);
                self.put_word::<E, true>(&self.bwd, v, elems, g, &mut stream)?;
            }
            *region = stream.bits() - start;
        }
        let min = *regions.iter().min().unwrap_or(&0);
        let delta_bits = width_for(regions.iter().max().unwrap_or(&0) - min);
        if min >= 1 << 27 || delta_bits > MAX_DELTA_BITS {
            return Err(Error::InvalidArgument(
                "a block's regions are too long for the index".into(),
            ));
        }
        let mut index = vec![0u8; 8 + 16 * delta_bits as usize];
        let mut w = BitWriter::new(&mut index);
        w.put(min as u32 | delta_bits << 27, 32);
        for &len in &regions {
            w.put((len - min) as u32, delta_bits);
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
