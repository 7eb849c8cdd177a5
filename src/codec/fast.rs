//! The CPU decoder of layout v2 that `decompress`, `verify --cpu` and [`super::CodedTensor::decode`]
//! run. It gives the bytes of the reference decoder ([`super::decode_reference`], the oracle the
//! tests compare it with) faster: the two streams of a region are decoded side by side, two
//! independent chains for the CPU to overlap; each reads from a 64-bit bit buffer refilled a word
//! at a time (the backward one over its region's words bit-reversed, in descending order, as the
//! WGSL decoder does) instead of two bounds-checked loads a symbol; the table holds each code's
//! element top bits, rotated once per table; the raw bits of a whole output word come in one read;
//! output words are written whole.

use super::{BlockStarts, Codebook, Encoded, Layout, PAIRS, bytes_to_words, huffman, region_bits};
use crate::error::{Error, Result};
use rayon::prelude::*;

/// A stream's bits: a buffer of at least 32 unread bits after each refill.
struct Bits<'a, const BACKWARD: bool> {
    words: &'a [u32],
    /// The next word to load (may step past either end: those read as zero).
    next: isize,
    buf: u64,
    avail: u32,
    consumed: u64,
}

impl<'a, const BACKWARD: bool> Bits<'a, BACKWARD> {
    /// A forward reader from bit `at`, or a backward one from bit `at` (exclusive).
    fn new(words: &'a [u32], at: u64) -> Self {
        let mut bits = Bits {
            words,
            next: 0,
            buf: 0,
            avail: 0,
            consumed: 0,
        };
        if BACKWARD {
            if at > 0 {
                let last = at - 1;
                bits.next = (last / 32) as isize;
                bits.load();
                // the bits above `last` in its word are not this stream's
                let skip = 31 - (last % 32) as u32;
                bits.buf >>= skip;
                bits.avail -= skip;
            } else {
                bits.next = -1;
            }
        } else {
            bits.next = (at / 32) as isize;
            bits.load();
            let skip = (at % 32) as u32;
            bits.buf >>= skip;
            bits.avail -= skip;
        }
        bits.refill();
        bits
    }
    #[inline]
    fn load(&mut self) {
        let w = usize::try_from(self.next)
            .ok()
            .and_then(|i| self.words.get(i))
            .copied()
            .unwrap_or(0);
        let w = if BACKWARD { w.reverse_bits() } else { w };
        self.buf |= (w as u64) << self.avail;
        self.avail += 32;
        self.next += if BACKWARD { -1 } else { 1 };
    }
    #[inline]
    fn refill(&mut self) {
        if self.avail < 32 {
            self.load();
        }
    }
    #[inline]
    fn take(&mut self, len: u32) {
        self.buf >>= len;
        self.avail -= len;
        self.consumed += len as u64;
    }
    /// The next element's top bits, by `table`; `None` for a bit pattern with no code.
    #[inline]
    fn top(&mut self, table: &[u32; huffman::TABLE_SIZE], sym_bits: u32) -> Option<u32> {
        let entry = table[(self.buf & 0xfff) as usize];
        let len = entry & 0xff;
        if len == 0 {
            return None;
        }
        self.take(len);
        let top = if entry & ESCAPE != 0 {
            // the top bits follow verbatim, in stream order either way
            let top = (self.buf as u32) & ((1 << sym_bits) - 1);
            self.take(sym_bits);
            top
        } else {
            entry >> 16
        };
        self.refill();
        Some(top)
    }
}

/// Table entries: `top << 16 | length`, or `ESCAPE | length`; length 0: no code.
const ESCAPE: u32 = 0x100;

fn table(book: &Codebook, sym_bits: u32) -> Box<[u32; huffman::TABLE_SIZE]> {
    let mut out = Box::new([0u32; huffman::TABLE_SIZE]);
    for (slot, entry) in out.iter_mut().zip(book.decode_entries(sym_bits)) {
        *slot = match entry {
            (_, 0) => 0,
            (None, len) => ESCAPE | len,
            (Some(top), len) => top << 16 | len,
        };
    }
    out
}

/// Decodes into `out` (exactly the tensor's bytes), after [`super::check_parts`] gave `starts`.
pub(super) fn decode(
    layout: &Layout,
    enc: &Encoded,
    book: &Codebook,
    starts: &BlockStarts,
    out: &mut [u8],
    tensor: &str,
) -> Result<()> {
    let table = table(book, layout.sym_bits);
    let stream = bytes_to_words(&enc.stream);
    let index = bytes_to_words(&enc.index);
    let raw = bytes_to_words(&enc.raw);
    let block_bytes = (layout.block_groups() * 4) as usize;
    out.par_chunks_mut(block_bytes)
        .enumerate()
        .try_for_each(|(b, out)| {
            let words = &stream[starts.stream[b] as usize..starts.stream[b + 1] as usize];
            let regions = region_bits(&index[starts.index[b] as usize..]);
            let block = Block {
                layout,
                table: &table,
                raw: &raw,
                first_group: b as u64 * layout.block_groups(),
            };
            let mut start = 0u64;
            for (p, &len) in regions.iter().enumerate().take(PAIRS) {
                let mut fwd = Bits::<false>::new(words, start);
                let mut bwd = Bits::<true>::new(words, start + len);
                block
                    .region(b as u64, p, &mut fwd, &mut bwd, out)
                    .ok_or_else(|| Error::corrupt(tensor, "bit pattern with no code"))?;
                if fwd.consumed + bwd.consumed != len {
                    return Err(Error::corrupt(
                        tensor,
                        format!("region {p} of block {b}: its two streams do not meet"),
                    ));
                }
                start += len;
            }
            Ok(())
        })
}

/// What the streams of one block share.
struct Block<'a> {
    layout: &'a Layout,
    table: &'a [u32; huffman::TABLE_SIZE],
    raw: &'a [u32],
    first_group: u64,
}

impl Block<'_> {
    /// Decodes region `p` of block `b`: its two streams, word by word side by side, into the
    /// block's output bytes `out`. `None` on a bit pattern with no code.
    fn region(
        &self,
        b: u64,
        p: usize,
        fwd: &mut Bits<false>,
        bwd: &mut Bits<true>,
        out: &mut [u8],
    ) -> Option<()> {
        match self.layout.elems_per_group() {
            1 => self.region_of::<1>(b, p, fwd, bwd, out),
            2 => self.region_of::<2>(b, p, fwd, bwd, out),
            _ => self.region_of::<4>(b, p, fwd, bwd, out),
        }
    }

    /// [`Block::region`] for `E` elements a word.
    fn region_of<const E: u32>(
        &self,
        b: u64,
        p: usize,
        fwd: &mut Bits<false>,
        bwd: &mut Bits<true>,
        out: &mut [u8],
    ) -> Option<()> {
        // each stream's first word and words; its next ones are a quarter's 64 lanes apart
        let (first0, n0) = self.layout.stream_span(b, 2 * p);
        let (first1, n1) = self.layout.stream_span(b, 2 * p + 1);
        for j in 0..n0.max(n1) {
            if j < n0 {
                let g = first0 + j * super::LANES as u64;
                let w = self.word::<E, false>(g, fwd)?;
                self.put(g, w, out);
            }
            if j < n1 {
                let g = first1 + j * super::LANES as u64;
                let w = self.word::<E, true>(g, bwd)?;
                self.put(g, w, out);
            }
        }
        Some(())
    }

    /// Output word `g` of the tensor, of `E` elements, their tops read from `bits`.
    #[inline]
    fn word<const E: u32, const BACKWARD: bool>(
        &self,
        g: u64,
        bits: &mut Bits<BACKWARD>,
    ) -> Option<u32> {
        let l = self.layout;
        let (width, r) = (l.width, l.raw_bits());
        // the raw bits of the whole word, at most 32
        let low = if r == 0 {
            0
        } else {
            let at = g * (E * r) as u64;
            let w = (at / 32) as usize;
            let pair = self.raw.get(w).copied().unwrap_or(0) as u64
                | (self.raw.get(w + 1).copied().unwrap_or(0) as u64) << 32;
            (pair >> (at % 32)) as u32
        };
        let (raw_mask, elem_mask) = ((1u32 << r) - 1, ((1u64 << width) - 1) as u32);
        let mut value = 0u32;
        if (g + 1) * E as u64 <= l.n {
            for k in 0..E {
                let top = bits.top(self.table, l.sym_bits)?;
                value |= ((top << r | (low >> (k * r)) & raw_mask) & elem_mask) << (k * width);
            }
        } else {
            // the tensor's last word, partly past its end
            for k in 0..(l.n - g * E as u64) as u32 {
                let top = bits.top(self.table, l.sym_bits)?;
                value |= ((top << r | (low >> (k * r)) & raw_mask) & elem_mask) << (k * width);
            }
        }
        Some(value)
    }

    /// Writes output word `g` (the tensor's) into the block's bytes, only the elements that exist.
    #[inline]
    fn put(&self, g: u64, value: u32, out: &mut [u8]) {
        let at = ((g - self.first_group) * 4) as usize;
        let bytes = value.to_le_bytes();
        let n = (out.len() - at).min(4);
        out[at..at + n].copy_from_slice(&bytes[..n]);
    }
}
