//! Reading a tensor's index (where each block's streams start) and the one validation of a coded
//! tensor's parts before any decoder touches them.

use super::{Codebook, Encoded, Layout, MAX_DELTA_BITS, PAIRS, bytes_to_words, mask, peek};
use crate::error::{Error, Result};

/// Where each block's index and stream start, in words (one more entry than blocks: the ends),
/// from a tensor's index: what a reader needs before decoding any block.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BlockStarts {
    /// First index word of each block.
    pub index: Vec<u64>,
    /// First stream word of each block.
    pub stream: Vec<u64>,
}

impl BlockStarts {
    /// The lengths in bits of the regions of block `b`, from its tensor's index words.
    pub fn regions(&self, layout: &Layout, index: &[u32], b: usize) -> [u64; PAIRS] {
        region_bits(
            &index[self.index[b] as usize..],
            layout.block_pairs(b as u64),
        )
    }
}

/// The lengths in bits of the regions of the block whose index starts at `words[0]` (`words`
/// may run on past it) and has `pairs` regions ([`Layout::block_pairs`]); the others are empty.
pub fn region_bits(words: &[u32], pairs: usize) -> [u64; PAIRS] {
    let head = words.first().copied().unwrap_or(0);
    let (min, delta_bits) = ((head & mask(27)) as u64, (head >> 27).min(MAX_DELTA_BITS));
    let deltas = words.get(1..).unwrap_or(&[]);
    std::array::from_fn(|p| {
        if p < pairs {
            min + peek(deltas, p as u64 * delta_bits as u64, delta_bits) as u64
        } else {
            0
        }
    })
}

/// Words of a block's index with `pairs` regions of deltas `delta_bits` wide.
pub fn index_words(pairs: usize, delta_bits: u32) -> u64 {
    1 + (pairs as u64 * delta_bits as u64).div_ceil(32)
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
        let pairs = layout.block_pairs(b as u64);
        let next = at + index_words(pairs, delta_bits);
        if next > words.len() as u64 {
            return Err(format!("index ends within block {b}"));
        }
        let regions = region_bits(&words[at as usize..next as usize], pairs);
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
