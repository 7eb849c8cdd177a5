//! Canonical, length-limited Huffman codes and their decode table.
//!
//! The length limit is [`MAX_CODE_LEN`] = 12 bits so that the decode table has 4096 entries of
//! 16 bits (symbol << 4 | length): 8 KiB, which fits WebGPU's guaranteed 16 KiB of workgroup
//! memory (the WGSL decoders keep the current tensor's table there, two entries a word). With the
//! optimal length-limited code the cap costs 0.26% (all-MiniLM-L6-v2) and 0.39%
//! (all-mpnet-base-v2) of the Huffman stream against unlimited codes on real bf16 weights
//! (`vramzip inspect --json` prints it as `length_cap_cost_pct`).
//! Codes are written least-significant bit first and stored bit-reversed, so a decoder peeks the
//! next 12 bits of its stream and indexes the table with them directly.

/// The longest code, in bits.
pub const MAX_CODE_LEN: u32 = 12;
/// The widest symbol, in bits (symbols are < 4096, so symbol and length fit a u16 table entry).
pub const MAX_SYM_BITS: u32 = 12;
/// Entries in a decode table.
pub const TABLE_SIZE: usize = 1 << MAX_CODE_LEN;

/// Code lengths (0 = symbol absent) for `freq`: the optimal prefix code whose codes are at most
/// `max_len` bits (package-merge, Larmore and Hirschberg 1990).
///
/// One present symbol gets length 1, so every present symbol costs at least one bit. Against the
/// clamp-and-repair heuristic used before, the optimal limited code made whole compressed models
/// 0.17% to 0.19% smaller in bf16, 0.03% in f16 and 0.07% in f32 (all-MiniLM-L6-v2 and
/// all-mpnet-base-v2; BENCHMARKS.md).
pub fn code_lengths(freq: &[u64], max_len: u32) -> Vec<u8> {
    let mut lens = vec![0u8; freq.len()];
    let mut present: Vec<usize> = (0..freq.len()).filter(|&s| freq[s] > 0).collect();
    match present.len() {
        0 => return lens,
        1 => {
            lens[present[0]] = 1;
            return lens;
        }
        _ => {}
    }
    assert!(
        present.len() <= 1usize << max_len,
        "alphabet larger than the code space"
    );
    present.sort_by_key(|&s| (freq[s], s));
    let leaves: Vec<u64> = present.iter().map(|&s| freq[s]).collect();
    // The list of the deepest level is the leaves; each level up merges the leaves with the
    // packages of adjacent pairs of the level below, by weight (a leaf first on a tie). Only which
    // items of each merged list are packages is kept: the leaves appear in it in their order.
    let mut list = leaves.clone();
    let mut is_package: Vec<Vec<bool>> = Vec::with_capacity(max_len as usize);
    for _ in 1..max_len {
        let packages: Vec<u64> = list.chunks_exact(2).map(|p| p[0] + p[1]).collect();
        let mut merged = Vec::with_capacity(leaves.len() + packages.len());
        let mut flags = Vec::with_capacity(leaves.len() + packages.len());
        let (mut i, mut j) = (0, 0);
        while i < leaves.len() || j < packages.len() {
            if j == packages.len() || (i < leaves.len() && leaves[i] <= packages[j]) {
                merged.push(leaves[i]);
                flags.push(false);
                i += 1;
            } else {
                merged.push(packages[j]);
                flags.push(true);
                j += 1;
            }
        }
        list = merged;
        is_package.push(flags);
    }
    // The first 2n - 2 items of the top list are taken; a symbol's length is how many levels take
    // its leaf. The leaves taken at a level are its first ones, the packages taken are made of
    // the first items of the level below.
    let mut take = 2 * present.len() - 2;
    let mut add = vec![0i32; present.len() + 1];
    for flags in is_package.iter().rev() {
        let packages = flags[..take].iter().filter(|&&p| p).count();
        // leaves 0 .. take - packages gain a bit
        add[0] += 1;
        add[take - packages] -= 1;
        take = 2 * packages;
    }
    add[0] += 1;
    add[take] -= 1;
    let mut depth = 0i32;
    for (k, &s) in present.iter().enumerate() {
        depth += add[k];
        lens[s] = depth as u8;
    }
    lens
}

/// Depth of each leaf in an (unlimited) Huffman tree over `weights` (all > 0, at least two).
pub fn huffman_depths(weights: &[u64]) -> Vec<u32> {
    use std::cmp::Reverse;
    use std::collections::BinaryHeap;
    let n = weights.len();
    // Nodes 0..n are leaves, later ones internal; parent[] lets us read depths off at the end.
    let mut parent = vec![usize::MAX; 2 * n - 1];
    let mut heap: BinaryHeap<Reverse<(u64, usize)>> = weights
        .iter()
        .enumerate()
        .map(|(i, &w)| Reverse((w, i)))
        .collect();
    let mut next = n;
    while heap.len() > 1 {
        let Reverse((wa, a)) = heap.pop().unwrap_or_default();
        let Reverse((wb, b)) = heap.pop().unwrap_or_default();
        parent[a] = next;
        parent[b] = next;
        heap.push(Reverse((wa + wb, next)));
        next += 1;
    }
    let mut depth = vec![0u32; 2 * n - 1];
    for i in (0..2 * n - 2).rev() {
        depth[i] = depth[parent[i]] + 1;
    }
    depth.truncate(n);
    depth
}

/// Canonical codes for `lens`, bit-reversed for LSB-first writing: `(reversed_code, len)` per symbol.
pub fn canonical_codes(lens: &[u8]) -> Vec<(u16, u8)> {
    let mut order: Vec<usize> = (0..lens.len()).filter(|&s| lens[s] > 0).collect();
    order.sort_by_key(|&s| (lens[s], s));
    let mut codes = vec![(0u16, 0u8); lens.len()];
    let mut code: u32 = 0;
    let mut prev_len = 0u32;
    for &s in &order {
        let len = lens[s] as u32;
        code <<= len - prev_len;
        prev_len = len;
        codes[s] = (reverse_bits(code, len) as u16, len as u8);
        code += 1;
    }
    codes
}

fn reverse_bits(code: u32, len: u32) -> u32 {
    code.reverse_bits() >> (32 - len)
}

/// The decode table: entry `i` is `symbol << 4 | length` of the code whose bits start `i`
/// (LSB first); 0 where no code matches (only possible when the Kraft sum is below one, or the
/// lengths are corrupt).
pub fn decode_table(lens: &[u8]) -> Vec<u16> {
    let mut table = vec![0u16; TABLE_SIZE];
    for (sym, &(rev, len)) in canonical_codes(lens).iter().enumerate() {
        if len == 0 {
            continue;
        }
        let entry = ((sym as u16) << 4) | len as u16;
        let step = 1usize << len;
        let mut i = rev as usize;
        while i < TABLE_SIZE {
            table[i] = entry;
            i += step;
        }
    }
    table
}

/// Whether `lens` describe a prefix code (Kraft sum at most one) within the length cap.
pub fn lengths_valid(lens: &[u8]) -> bool {
    let mut kraft = 0u64;
    for &l in lens {
        if l as u32 > MAX_CODE_LEN {
            return false;
        }
        if l > 0 {
            kraft += 1u64 << (MAX_CODE_LEN - l as u32);
        }
    }
    kraft <= 1u64 << MAX_CODE_LEN
}

/// Bits needed to code the histogram with these lengths.
pub fn coded_bits(freq: &[u64], lens: &[u8]) -> u64 {
    freq.iter().zip(lens).map(|(&f, &l)| f * l as u64).sum()
}

/// Shannon entropy of the histogram, in bits (the order-0 bound).
pub fn entropy_bits(freq: &[u64]) -> f64 {
    let total: u64 = freq.iter().sum();
    if total == 0 {
        return 0.0;
    }
    let t = total as f64;
    freq.iter()
        .filter(|&&f| f > 0)
        .map(|&f| -(f as f64) * (f as f64 / t).log2())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skewed_frequencies_respect_the_cap() {
        // Fibonacci weights make an unlimited Huffman tree as deep as the alphabet is long.
        let mut freq = vec![1u64, 1];
        while freq.len() < 40 {
            let n = freq.len();
            freq.push(freq[n - 1] + freq[n - 2]);
        }
        let depths = huffman_depths(&freq);
        assert!(*depths.iter().max().unwrap() > MAX_CODE_LEN);
        let lens = code_lengths(&freq, MAX_CODE_LEN);
        assert!(lens.iter().all(|&l| (1..=MAX_CODE_LEN as u8).contains(&l)));
        assert!(lengths_valid(&lens));
    }

    #[test]
    fn full_alphabet_gets_all_codes() {
        let freq: Vec<u64> = (0..4096u64).map(|i| i * i + 1).collect();
        let lens = code_lengths(&freq, MAX_CODE_LEN);
        assert!(lens.iter().all(|&l| l as u32 == MAX_CODE_LEN));
        let table = decode_table(&lens);
        assert!(table.iter().all(|&e| e & 15 == 12));
    }

    #[test]
    fn table_decodes_every_code() {
        let freq = [50u64, 0, 3, 9, 1, 1, 200, 0, 7];
        let lens = code_lengths(&freq, MAX_CODE_LEN);
        let table = decode_table(&lens);
        for (sym, (rev, len)) in canonical_codes(&lens).into_iter().enumerate() {
            if len > 0 {
                let e = table[rev as usize];
                assert_eq!((e >> 4) as usize, sym);
                assert_eq!(e & 15, len as u16);
            }
        }
    }
}
