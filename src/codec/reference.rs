//! The reference decoder: the layout followed a symbol at a time, as plainly as it is written.

use super::{
    Codebook, Encoded, Layout, bytes_to_words, check_decode, huffman, mask, peek, rotate_out,
};
use crate::error::{Error, Result};
use rayon::prelude::*;

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

/// The reference decoder: the layout followed a symbol at a time, as plainly as it is written.
/// The oracle the tests hold [`decode`](super::decode) (faster) to; the same contract.
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
            let regions = starts.regions(layout, &index, b);
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
