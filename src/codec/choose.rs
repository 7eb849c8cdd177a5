//! Choosing a tensor's symbol width: one histogram of the elements' top bits, from which the size
//! of every candidate width is estimated.

use super::{
    Codebook, CodedTensor, Layout, PAIRS, encode, huffman, rotate_in, sym_bits_candidates,
};
use crate::error::Result;
use rayon::prelude::*;

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
    let last = layout.blocks().saturating_sub(1);
    let pairs = last * PAIRS as u64 + layout.block_pairs(last) as u64;
    32 * layout.blocks() + 9 * pairs
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
