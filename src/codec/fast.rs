//! The CPU decoder of layout v2 that `decompress`, `verify --cpu` and [`super::CodedTensor::decode`]
//! run. It gives the bytes of the reference decoder ([`super::decode_reference`], the oracle the
//! tests compare it with), faster, in two passes over each quarter of a block:
//!
//! 1. **Symbols**: the four streams of [`REGIONS`] regions at once (forward and backward ones
//!    side by side, independent chains for the CPU to overlap, few enough that their readers stay
//!    in registers) into a scratch of element tops in output order, each table entry added to
//!    its reader's count as it stands (see [`SLOW`]). A stream is read from a 64-bit window
//!    loaded, with one unaligned load, at the byte holding its next bit, so at least 57 bits are
//!    unread: four codes of at most 12 bits each come out of it before the next load, with no
//!    per-symbol refill test; the load moves by whole bytes, with no shift of the window. A
//!    forward stream reads its window least significant bit first; a backward one is read as it
//!    lies, most significant bit first (its first bit at the top), through a second table indexed
//!    by the bit-reversed 12 bits, so no bits are reversed while decoding. Escapes and bit
//!    patterns without a code take a slow path from the table's flag.
//! 2. **Merge**: each element from its top and its raw bits, eight elements (whose raw bits start
//!    on a byte) at a time, specialized per elements a word and raw bits an element.

use super::{BlockStarts, Codebook, Encoded, LANES, Layout, PAIRS, bytes_to_words, huffman};
use crate::error::{Error, Result};
use rayon::prelude::*;

/// Regions decoded side by side (see [`Readers`]): twice as many streams.
const REGIONS: usize = 2;
/// Codes taken from one window: 4 of at most 12 bits fit the 57 bits a load guarantees.
const PER_LOAD: usize = 4;

/// Table entries: `top << 16 | length` for a symbol, `SLOW | length` for the escape, `SLOW` for
/// no code. A symbol's entry is added to its reader's `used` as it stands: the length lands in
/// `used`'s low bits, and the tops summed above them are never read, as shifts take their count
/// modulo 64.
const SLOW: u32 = 1 << 15;
/// Scratch elements one step of [`PER_LOAD`] symbols of each of [`REGIONS`] regions' streams
/// spans, at most (for one element a group: 4 rows of 64 elements).
const STEP: usize = (PER_LOAD - 1) * LANES + 2 * REGIONS;

/// The decode tables of one code: by the next 12 bits in stream order (`fwd`) and by the same bits
/// bit-reversed (`bwd`, for windows read most significant bit first).
struct Tables {
    fwd: Box<[u32; huffman::TABLE_SIZE]>,
    bwd: Box<[u32; huffman::TABLE_SIZE]>,
    sym_bits: u32,
}

impl Tables {
    fn new(book: &Codebook, sym_bits: u32) -> Self {
        // a code's entry fills every 12-bit index whose low bits (in stream order) are its bits:
        // a stride through the forward table, and, bit-reversed, a run of the backward one
        let mut fwd = Box::new([SLOW; huffman::TABLE_SIZE]);
        let mut bwd = Box::new([SLOW; huffman::TABLE_SIZE]);
        for (sym, &(rev, len)) in huffman::canonical_codes(&book.lens).iter().enumerate() {
            let len = len as u32;
            if len == 0 {
                continue;
            }
            let entry = if sym == book.escape() {
                SLOW | len
            } else {
                super::rotate_out(sym as u32, sym_bits) << 16 | len
            };
            fwd.iter_mut()
                .skip(rev as usize)
                .step_by(1 << len)
                .for_each(|slot| *slot = entry);
            let code = (rev as u32).reverse_bits() >> (32 - len);
            let free = huffman::MAX_CODE_LEN - len;
            if let Some(run) = bwd.get_mut((code << free) as usize..((code + 1) << free) as usize) {
                run.fill(entry);
            }
        }
        Tables { fwd, bwd, sym_bits }
    }
}

/// Eight bytes of `bytes` from byte `at`, little-endian; bytes outside `bytes` read as zero, so a
/// corrupt region gives wrong symbols (caught by the meeting check or the checksum), never a panic.
#[inline(always)]
fn load(bytes: &[u8], at: i64) -> u64 {
    // a negative `at` is a huge index: no chunk there
    match bytes.get(at as usize..).and_then(|s| s.first_chunk::<8>()) {
        Some(b) => u64::from_le_bytes(*b),
        None => load_edge(bytes, at),
    }
}

#[cold]
fn load_edge(bytes: &[u8], at: i64) -> u64 {
    (0..8).fold(0u64, |v, k| {
        let byte = usize::try_from(at + k)
            .ok()
            .and_then(|a| bytes.get(a))
            .copied()
            .unwrap_or(0);
        v | (byte as u64) << (8 * k)
    })
}

/// A stream being read through `win`, the 8 bytes of its block's bytes from byte `at`: a forward
/// stream from the window's least significant bit up, a backward one from its most significant bit
/// down. `used % 64` of the window's bits are behind the reader (`used` is a sum of table entries:
/// see [`SLOW`]); at most 7 after a load, so that [`PER_LOAD`] codes fit what follows.
#[derive(Clone, Copy)]
struct Reader<const BACK: bool> {
    at: i64,
    win: u64,
    used: u32,
}

impl<const BACK: bool> Reader<BACK> {
    /// A stream forward from bit `pos`, or backward from bit `pos` (exclusive).
    fn at(bytes: &[u8], pos: i64) -> Self {
        let (at, used) = if BACK {
            // the byte holding the stream's first bit is the window's top byte
            let first = pos - 1;
            ((first >> 3) - 7, 7 - (first & 7))
        } else {
            (pos >> 3, pos & 7)
        };
        Reader {
            at,
            win: load(bytes, at),
            used: used as u32,
        }
    }

    /// Moves the window past the whole bytes taken.
    #[inline(always)]
    fn reload(&mut self, bytes: &[u8]) {
        let taken = self.used % 64;
        let bytes_taken = (taken / 8) as i64;
        self.at += if BACK { -bytes_taken } else { bytes_taken };
        self.used = taken % 8;
        self.win = load(bytes, self.at);
    }

    /// The table entry of the next code.
    #[inline(always)]
    fn entry(&self, t: &Tables) -> u32 {
        if BACK {
            t.bwd[(self.win.wrapping_shl(self.used) >> 52) as usize]
        } else {
            t.fwd[(self.win.wrapping_shr(self.used) & 0xfff) as usize]
        }
    }

    /// The next element's top bits. Needs at most `7 + 12 * (PER_LOAD - 1)` bits
    /// taken since the load (the slow path loads again).
    #[inline(always)]
    fn top(&mut self, bytes: &[u8], t: &Tables) -> Option<u16> {
        let e = self.entry(t);
        if e & SLOW != 0 {
            let (reader, top) = self.slow(bytes, t);
            *self = reader;
            return top;
        }
        self.used = self.used.wrapping_add(e);
        Some((e >> 16) as u16)
    }

    /// The next element's top bits, after a load.
    fn reload_top(&mut self, bytes: &[u8], t: &Tables) -> Option<u16> {
        self.reload(bytes);
        self.top(bytes, t)
    }

    /// An escape (the code, then the element's top bits verbatim, in stream order) or a bit
    /// pattern with no code (`None`).
    #[cold]
    fn slow(mut self, bytes: &[u8], t: &Tables) -> (Self, Option<u16>) {
        self.reload(bytes);
        let len = self.entry(t) & 0xff;
        if len == 0 {
            return (self, None);
        }
        let (s, code_end) = (t.sym_bits, self.used + len);
        let top = if BACK {
            (((self.win << code_end) >> (64 - s)) as u32).reverse_bits() >> (32 - s)
        } else {
            ((self.win >> code_end) as u32) & ((1 << s) - 1)
        };
        self.used = code_end + s;
        self.reload(bytes);
        (self, Some(top as u16))
    }

    /// Bits read from `start`.
    fn read_from(&self, start: i64) -> u64 {
        let taken = (self.used % 64) as i64;
        let pos = if BACK {
            8 * self.at + 64 - taken
        } else {
            8 * self.at + taken
        };
        (pos - start).unsigned_abs()
    }
}

/// The readers of the [`REGIONS`] regions decoded side by side: forward, backward, forward,
/// backward. A tuple of plain values rather than an array indexed in a loop, so that the compiler
/// keeps them in registers.
type Readers = (Reader<false>, Reader<true>, Reader<false>, Reader<true>);

/// Where symbol `j` of the `s`-th stream of a step lies, from the step's first element, for
/// `2^ES` elements a group: the streams are side by side lanes of the quarter.
#[inline(always)]
fn place<const ES: u32>(s: usize, j: usize) -> usize {
    (((j >> ES) * LANES) << ES) + (s << ES) + (j & ((1 << ES) - 1))
}

/// Code `c` of a step of each of the four streams of `r`, into its place in `step`; `None` for a
/// bit pattern without a code.
#[inline(always)]
fn codes<const ES: u32>(
    c: usize,
    step: &mut [u16; STEP],
    r: &mut Readers,
    bytes: &[u8],
    t: &Tables,
) -> Option<()> {
    step[place::<ES>(0, c)] = r.0.top(bytes, t)?;
    step[place::<ES>(1, c)] = r.1.top(bytes, t)?;
    step[place::<ES>(2, c)] = r.2.top(bytes, t)?;
    step[place::<ES>(3, c)] = r.3.top(bytes, t)?;
    Some(())
}

/// A quarter's tops, in output order, and room for a [`STEP`] past them.
fn scratch(l: &Layout) -> Vec<u16> {
    vec![0u16; (l.quarter_groups() * l.elems_per_group()) as usize + STEP]
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
    let tables = Tables::new(book, layout.sym_bits);
    let index = bytes_to_words(&enc.index);
    let block_bytes = (layout.block_groups() * 4) as usize;
    out.par_chunks_mut(block_bytes)
        .enumerate()
        .try_for_each_init(
            || scratch(layout),
            |tops, (b, out)| {
                let bytes =
                    &enc.stream[4 * starts.stream[b] as usize..4 * starts.stream[b + 1] as usize];
                let block = Block {
                    layout,
                    tables: &tables,
                    bytes,
                    raw: &enc.raw,
                    b: b as u64,
                    regions: starts.regions(layout, &index, b),
                };
                block
                    .decode(tops, out)
                    .map_err(|why| Error::corrupt(tensor, why))
            },
        )
}

/// One block being decoded.
struct Block<'a> {
    layout: &'a Layout,
    tables: &'a Tables,
    /// The block's stream bytes.
    bytes: &'a [u8],
    /// The tensor's raw plane.
    raw: &'a [u8],
    b: u64,
    regions: [u64; PAIRS],
}

impl Block<'_> {
    fn decode(&self, tops: &mut [u16], out: &mut [u8]) -> std::result::Result<(), String> {
        let l = self.layout;
        // where each region starts in the block's bits (and the last one ends)
        let mut starts = [0u64; PAIRS + 1];
        for (p, &r) in self.regions.iter().enumerate() {
            starts[p + 1] = starts[p] + r;
        }
        let quarter_bytes = (l.quarter_groups() * 4) as usize;
        let quarters = out.len().div_ceil(quarter_bytes);
        for (q, out) in out.chunks_mut(quarter_bytes).enumerate() {
            let first_pair = q * LANES / 2;
            for p in (first_pair..first_pair + LANES / 2).step_by(REGIONS) {
                match l.elems_per_group() {
                    1 => self.regions_from::<0>(p, &starts, tops)?,
                    2 => self.regions_from::<1>(p, &starts, tops)?,
                    _ => self.regions_from::<2>(p, &starts, tops)?,
                }
            }
            let first_group = self.b * l.block_groups() + q as u64 * l.quarter_groups();
            self.merge(first_group, tops, out);
        }
        // the quarters past the tensor's end have empty streams: their regions must be empty
        match (quarters * LANES / 2..PAIRS).find(|&p| self.regions[p] != 0) {
            Some(p) => Err(format!(
                "region {p} of block {}: its two streams do not meet",
                self.b
            )),
            None => Ok(()),
        }
    }

    /// Symbols of stream `s` of the block.
    fn symbols(&self, s: usize) -> usize {
        let l = self.layout;
        let (first, count) = l.stream_span(self.b, s);
        let e = l.elems_per_group();
        // the tensor's last group may be partial
        let last = l.groups() - 1;
        let holds_last = last >= first
            && (last - first).is_multiple_of(LANES as u64)
            && (last - first) / (LANES as u64) < count;
        let short = if holds_last { l.groups() * e - l.n } else { 0 };
        (count * e - short) as usize
    }

    /// Decodes regions `p .. p + REGIONS` into the quarter's scratch `tops` (in output order),
    /// and checks that the two streams of each meet; `2^ES` elements a group.
    fn regions_from<const ES: u32>(
        &self,
        p: usize,
        starts: &[u64],
        tops: &mut [u16],
    ) -> std::result::Result<(), String> {
        let (t, bytes) = (self.tables, self.bytes);
        let at = |i: usize| starts[p + i] as i64;
        let mut rs: Readers = (
            Reader::at(bytes, at(0)),
            Reader::at(bytes, at(1)),
            Reader::at(bytes, at(1)),
            Reader::at(bytes, at(2)),
        );
        let count: [usize; 2 * REGIONS] = std::array::from_fn(|s| self.symbols(2 * p + s));
        // the regions' streams are lanes `2p % LANES ..` of the quarter: the `s`-th one's symbol
        // `j` is element `first + place(s, j)`
        let first = ((2 * p) % LANES) << ES;
        let common = count.iter().copied().min().unwrap_or(0);
        let no_code = || format!("block {}: bit pattern with no code", self.b);
        // all streams, PER_LOAD symbols each from one window; a step's elements lie within STEP
        // of its first (`k` is a multiple of PER_LOAD, so of E): their places are constants
        let mut k = 0;
        while k + PER_LOAD <= common {
            rs.0.reload(bytes);
            rs.1.reload(bytes);
            rs.2.reload(bytes);
            rs.3.reload(bytes);
            let at = first + place::<ES>(0, k);
            let Ok(step) = <&mut [u16; STEP]>::try_from(&mut tops[at..at + STEP]) else {
                unreachable!("a slice of STEP elements")
            };
            // the step's codes written out, not looped over, so that their places are constants
            codes::<ES>(0, step, &mut rs, bytes, t)
                .and_then(|_| codes::<ES>(1, step, &mut rs, bytes, t))
                .and_then(|_| codes::<ES>(2, step, &mut rs, bytes, t))
                .and_then(|_| codes::<ES>(3, step, &mut rs, bytes, t))
                .ok_or_else(no_code)?;
            k += PER_LOAD;
        }
        // the rest of each stream, a load a symbol
        let mut rest = |s: usize, top: &mut dyn FnMut() -> Option<u16>| {
            for j in k..count[s] {
                tops[first + place::<ES>(s, j)] = top().ok_or_else(no_code)?;
            }
            Ok::<_, String>(())
        };
        let (f0, b0, f1, b1) = &mut rs;
        rest(0, &mut || f0.reload_top(bytes, t))?;
        rest(1, &mut || b0.reload_top(bytes, t))?;
        rest(2, &mut || f1.reload_top(bytes, t))?;
        rest(3, &mut || b1.reload_top(bytes, t))?;
        let read = [
            rs.0.read_from(at(0)) + rs.1.read_from(at(1)),
            rs.2.read_from(at(1)) + rs.3.read_from(at(2)),
        ];
        match (0..REGIONS).find(|&i| read[i] != self.regions[p + i]) {
            Some(i) => Err(format!(
                "region {} of block {}: its two streams do not meet",
                p + i,
                self.b
            )),
            None => Ok(()),
        }
    }

    /// Writes the quarter's output words, from `first_group` on, into `out` (the quarter's bytes;
    /// the tensor's last word may be partial).
    fn merge(&self, first_group: u64, tops: &[u16], out: &mut [u8]) {
        let l = self.layout;
        match (l.elems_per_group(), l.raw_bits()) {
            (4, 0) => self.merge_as::<4, 0>(first_group, tops, out),
            (2, 4) => self.merge_pairs::<4>(first_group, tops, out),
            (2, 5) => self.merge_pairs::<5>(first_group, tops, out),
            (2, 6) => self.merge_pairs::<6>(first_group, tops, out),
            (2, 7) => self.merge_pairs::<7>(first_group, tops, out),
            (2, 8) => self.merge_bytes(first_group, tops, out),
            (1, 20) => self.merge_as::<1, 20>(first_group, tops, out),
            (1, 21) => self.merge_as::<1, 21>(first_group, tops, out),
            (1, 22) => self.merge_as::<1, 22>(first_group, tops, out),
            (1, 23) => self.merge_as::<1, 23>(first_group, tops, out),
            (1, 24) => self.merge_as::<1, 24>(first_group, tops, out),
            // Layout::new admits no other
            _ => unreachable!("layout {l:?}"),
        }
    }

    /// [`Block::merge`] for `E` elements a word of `R` raw bits each: eight elements at a time,
    /// whose raw bits start on a byte.
    fn merge_as<const E: usize, const R: u32>(
        &self,
        first_group: u64,
        tops: &[u16],
        out: &mut [u8],
    ) {
        let bytes = 4 / E;
        let first_raw = (first_group * E as u64 * R as u64 / 8) as usize;
        let from = (out.len() / (8 * bytes)) * 8;
        let mut chunks = out.chunks_exact_mut(8 * bytes);
        for (c, chunk) in (&mut chunks).enumerate() {
            let at = first_raw + c * R as usize;
            let Some(raw) = self.raw.get(at..at + R as usize + 8) else {
                // the plane's last bytes: element by element below
                let from = c * 8;
                self.merge_slow::<E, R>(first_group, from, tops, chunk);
                continue;
            };
            for k in 0..8 {
                let bit = k * R as usize;
                let mut b = [0u8; 8];
                b.copy_from_slice(&raw[bit / 8..bit / 8 + 8]);
                let v = element::<R>(tops[c * 8 + k], u64::from_le_bytes(b) >> (bit % 8));
                chunk[k * bytes..(k + 1) * bytes].copy_from_slice(&v.to_le_bytes()[..bytes]);
            }
        }
        let rest = chunks.into_remainder();
        self.merge_slow::<E, R>(first_group, from, tops, rest);
    }

    /// [`Block::merge`] for two 16-bit elements a word of `R` raw bits each: eight elements at a
    /// time from one 8-byte load of their raw bits (8 R <= 64), a word (two elements) at a time.
    fn merge_pairs<const R: u32>(&self, first_group: u64, tops: &[u16], out: &mut [u8]) {
        let first_raw = (first_group * 2 * R as u64 / 8) as usize;
        let from = (out.len() / 16) * 8;
        let mask = (1u64 << R) - 1;
        let mut chunks = out.chunks_exact_mut(16);
        for (c, chunk) in (&mut chunks).enumerate() {
            let at = first_raw + c * R as usize;
            let (Some(raw), Some(tops)) = (self.raw.get(at..at + 8), tops.get(c * 8..c * 8 + 8))
            else {
                // the plane's last bytes: element by element below
                self.merge_slow::<2, R>(first_group, c * 8, tops, chunk);
                continue;
            };
            let mut b = [0u8; 8];
            b.copy_from_slice(raw);
            let raw = u64::from_le_bytes(b);
            for m in 0..4 {
                let x = raw >> (2 * m as u32 * R);
                let pair = tops[2 * m] as u32 | (tops[2 * m + 1] as u32) << 16;
                let word = pair << R | (x & mask) as u32 | (((x >> R) & mask) as u32) << 16;
                chunk[4 * m..4 * m + 4].copy_from_slice(&word.to_le_bytes());
            }
        }
        let rest = chunks.into_remainder();
        self.merge_slow::<2, R>(first_group, from, tops, rest);
    }

    /// [`Block::merge`] for 16-bit elements of 8 raw bits (f16's usual split): an element is its
    /// top byte and its byte of the raw plane, so the output interleaves the tops with the plane,
    /// in a loop simple enough for the compiler to vectorize.
    fn merge_bytes(&self, first_group: u64, tops: &[u16], out: &mut [u8]) {
        let first = (first_group * 2) as usize;
        let (elements, _) = out.as_chunks_mut::<2>();
        match self.raw.get(first..first + elements.len()) {
            Some(raw) => {
                for ((e, &top), &low) in elements.iter_mut().zip(tops).zip(raw) {
                    *e = (top << 8 | low as u16).to_le_bytes();
                }
            }
            None => self.merge_slow::<2, 8>(first_group, 0, tops, out),
        }
    }

    /// Elements `from ..` of the quarter into `out` (their bytes; the last may be partial).
    fn merge_slow<const E: usize, const R: u32>(
        &self,
        first_group: u64,
        from: usize,
        tops: &[u16],
        out: &mut [u8],
    ) {
        let bytes = 4 / E;
        for (k, dst) in out.chunks_mut(bytes).enumerate() {
            let i = from + k;
            let bit = (first_group * E as u64 + i as u64) * R as u64;
            let low = if R == 0 {
                0
            } else {
                load(self.raw, (bit >> 3) as i64) >> (bit & 7)
            };
            let v = element::<R>(tops[i], low);
            let n = dst.len();
            dst.copy_from_slice(&v.to_le_bytes()[..n]);
        }
    }
}

/// An element from its top bits and `low`, whose lowest `R` bits are its raw bits.
#[inline(always)]
fn element<const R: u32>(top: u16, low: u64) -> u32 {
    (top as u32) << R | (low as u32) & ((1 << R) - 1)
}
