//! Measures, on real weights, what it costs to let each decode stream find its start, for the
//! layout v2 decision (many short streams a layer): each option's index in % of the compressed
//! size, per dtype, for streams of 256 and 512 symbols in blocks of 256 streams (one workgroup).
//!
//! cargo run --release --example index_options [-- FILE.safetensors ...]   (default: the sample)
//!
//! A stream's coded length is the sum of its symbols' code lengths under the tensor's own code
//! (the one vramzip chooses); streams are runs of consecutive symbols. Options:
//! * `u16 per stream`: v1's chunk index, a 16-bit length per stream;
//! * `deltas`: per block a u32 start and the block's mean, then per stream its length minus the
//!   mean in the fewest bits that hold the block's spread (a per-block width);
//! * `pairs`: streams paired, read from both ends of a shared region, so only the region's length
//!   is needed: as `deltas`, one per pair;
//! * `padding`: no per-stream index, every stream padded to its block's longest.

use vramzip::format::SafetensorsFile;

const BLOCK: usize = 256;

/// Bits of each stream of `stream_syms` symbols.
fn stream_bits(data: &[u8], width: u32, stream_syms: usize) -> Option<(Vec<u64>, u64)> {
    let choice = vramzip::codec::choose(data, width, 1024).ok()??;
    let (s, lens) = (choice.layout.sym_bits, &choice.codebook.lens);
    let raw = width - s;
    let elems: Vec<u32> = match width {
        16 => data
            .chunks_exact(2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]) as u32)
            .collect(),
        32 => data
            .chunks_exact(4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        _ => data.iter().map(|&b| b as u32).collect(),
    };
    // the symbol: the top bits rotated left by one within S bits (src/codec/mod.rs)
    let mask = (1u32 << s) - 1;
    let code = |e: u32| {
        let top = e >> raw;
        lens[(((top << 1) | (top >> (s - 1))) & mask) as usize] as u64
    };
    let streams: Vec<u64> = elems
        .chunks(stream_syms)
        .map(|c| c.iter().map(|&e| code(e)).sum())
        .collect();
    let coded: u64 = streams.iter().sum::<u64>() + elems.len() as u64 * raw as u64;
    Some((streams, coded))
}

fn width_for(spread: u64) -> u64 {
    64 - spread.leading_zeros() as u64
}

/// Index bits of each option for one tensor's streams: [u16, deltas, pairs, padding].
fn options(streams: &[u64]) -> [u64; 4] {
    let mut out = [0u64; 4];
    out[0] = 16 * streams.len() as u64;
    for block in streams.chunks(BLOCK) {
        // deltas from the block's smallest (the mean shifts the range, the spread is the same)
        let (lo, hi) = (block.iter().min().unwrap(), block.iter().max().unwrap());
        out[1] += 32 + 16 + 5 + block.len() as u64 * width_for(hi - lo);
        let pairs: Vec<u64> = block.chunks(2).map(|p| p.iter().sum()).collect();
        let (plo, phi) = (pairs.iter().min().unwrap(), pairs.iter().max().unwrap());
        out[2] += 32 + 16 + 5 + pairs.len() as u64 * width_for(phi - plo);
        out[3] += block.iter().map(|l| hi - l).sum::<u64>();
    }
    out
}

fn main() {
    let mut files: Vec<String> = std::env::args().skip(1).collect();
    if files.is_empty() {
        // the committed real-weights sample
        let sample = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("assets/minilm-layer0.safetensors");
        files.push(sample.to_string_lossy().into_owned());
    }
    println!(
        "{:<34} {:>5} {:>7} {:>9} {:>9} {:>9} {:>9} {:>10}",
        "file", "dtype", "symbols", "u16/str", "deltas", "pairs", "padding", "streams"
    );
    for f in &files {
        let file = SafetensorsFile::open(f).unwrap_or_else(|e| panic!("{f}: {e}"));
        for stream_syms in [256usize, 512] {
            // per dtype: [index bits of each option], compressed bits, streams
            let mut sums: std::collections::BTreeMap<String, ([u64; 4], u64, u64)> =
                Default::default();
            for t in &file.header.tensors {
                let Some(width) = vramzip::codec::element_bits(&t.dtype) else {
                    continue;
                };
                let data = file.read(t).expect("tensor data");
                let Some((streams, coded)) = stream_bits(&data, width, stream_syms) else {
                    continue;
                };
                let o = options(&streams);
                let e = sums.entry(t.dtype.clone()).or_default();
                (0..4).for_each(|k| e.0[k] += o[k]);
                e.1 += coded;
                e.2 += streams.len() as u64;
            }
            let name = std::path::Path::new(f)
                .file_name()
                .unwrap_or_default()
                .to_string_lossy();
            for (dtype, (o, coded, n)) in sums {
                let pct = |bits: u64| 100.0 * bits as f64 / coded as f64;
                println!(
                    "{name:<34} {dtype:>5} {stream_syms:>7} {:>8.3}% {:>8.3}% {:>8.3}% {:>8.3}% {n:>10}",
                    pct(o[0]),
                    pct(o[1]),
                    pct(o[2]),
                    pct(o[3])
                );
            }
        }
    }
}
