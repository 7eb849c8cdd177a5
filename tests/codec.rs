//! Round trips through the CPU codec: every coded width, the edge cases, real weights, and corrupt
//! input that must fail cleanly.

use proptest::prelude::*;
use vramzip::codec::{self, Codebook, Layout, huffman};

fn words16(v: &[u16]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn words32(v: &[u32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// A small deterministic generator, so the tests need no data files.
fn lcg(seed: &mut u64) -> u64 {
    *seed = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    *seed >> 33
}

/// Weight-like bf16 values: a heavy-tailed distribution around zero.
fn weightlike_bf16(n: usize, seed: u64) -> Vec<u8> {
    let mut s = seed;
    let v: Vec<u16> = (0..n)
        .map(|_| {
            let a = (lcg(&mut s) as f32 / (1u64 << 31) as f32) - 0.5;
            let b = (lcg(&mut s) as f32 / (1u64 << 31) as f32) - 0.5;
            half::bf16::from_f32(0.05 * a * b.abs().sqrt() * 4.0).to_bits()
        })
        .collect();
    words16(&v)
}

fn check(data: &[u8], width: u32, chunk_groups: usize) {
    let got = codec::round_trip(data, width, chunk_groups).expect("round trip");
    assert_eq!(
        got,
        data,
        "round trip changed the bytes (width {width}, {} bytes)",
        data.len()
    );
}

/// Codes with a given symbol width even where storing verbatim would be smaller, so the coded
/// path itself meets the edge case.
fn check_forced(data: &[u8], width: u32, sym_bits: u32, chunk_groups: usize) {
    let n = (data.len() / (width as usize / 8)) as u64;
    let layout = Layout::new(n, width, sym_bits, chunk_groups).unwrap();
    let top = codec::top_histogram(data, width);
    let book = Codebook::from_histogram(sym_bits, &codec::symbol_histogram(&top, width, sym_bits));
    let enc = codec::encode(data, &layout, &book).unwrap();
    let mut out = vec![0u8; data.len()];
    codec::decode(&layout, &enc, &book, &mut out, "forced").unwrap();
    assert_eq!(
        out, data,
        "forced round trip (width {width}, sym_bits {sym_bits})"
    );
    // the reference decoder, the oracle, agrees
    let mut oracle = vec![0u8; data.len()];
    codec::decode_reference(&layout, &enc, &book, &mut oracle, "forced").unwrap();
    assert_eq!(oracle, data, "reference decoder");
}

/// Both decoders on the same parts: the same bytes, or both an error. Never a panic.
fn both_decoders(layout: &Layout, enc: &codec::Encoded, book: &Codebook) {
    let mut fast = vec![0u8; layout.decoded_bytes() as usize];
    let mut oracle = fast.clone();
    let a = codec::decode(layout, enc, book, &mut fast, "t");
    let b = codec::decode_reference(layout, enc, book, &mut oracle, "t");
    assert_eq!(a.is_ok(), b.is_ok(), "{a:?} against the reference's {b:?}");
    if a.is_ok() {
        assert!(fast == oracle, "the decoders differ");
    }
}

/// A tensor's last block, when short, indexes only the regions that hold symbols (its whole
/// quarters' and a partial quarter's lanes'): its index is `1 + ceil(pairs * width / 32)` words,
/// and one word more (room for a region without symbols to hide bits) is corrupt to both
/// decoders.
#[test]
fn a_short_block_indexes_only_its_regions_with_symbols() {
    // (elements, groups a stream, regions with symbols in the last block)
    let cases = [
        (733, 128, 32), // 367 words: every lane of the first quarter has some
        (560, 4, 44),   // 280 words: a whole quarter of 256, then 24 lanes of one word
        (601, 1, 23),   // 301 words: a whole block of 256, then 45 lanes of one word
        (5000, 2, 128), // 2500 words: four whole quarters of 128 in the last block
    ];
    for (n, chunk_groups, pairs) in cases {
        let data = weightlike_bf16(n, 5);
        let coded = codec::compress(&data, 16, chunk_groups).unwrap().unwrap();
        let (layout, book, mut enc) = (coded.layout, coded.codebook, coded.encoded);
        let last = layout.blocks() - 1;
        assert_eq!(layout.block_pairs(last), pairs, "n = {n}");
        let starts = codec::block_starts(&layout, &enc.index).unwrap();
        let words = bytes_to_words(&enc.index[4 * starts.index[last as usize] as usize..]);
        let width = words[0] >> 27;
        assert_eq!(
            words.len(),
            1 + (pairs * width as usize).div_ceil(32),
            "n = {n}"
        );
        let regions = codec::region_bits(&words, pairs);
        assert!(regions[pairs..].iter().all(|&r| r == 0));
        assert!(regions[..pairs].iter().all(|&r| r > 0));
        enc.index.extend_from_slice(&[0; 4]);
        let mut out = vec![0u8; data.len()];
        assert!(codec::decode(&layout, &enc, &book, &mut out, "t").is_err());
        both_decoders(&layout, &enc, &book);
    }
}

fn bytes_to_words(bytes: &[u8]) -> Vec<u32> {
    bytes
        .chunks(4)
        .map(|c| u32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

#[test]
fn empty_and_single_element() {
    for width in [8, 16, 32] {
        check(&[], width, 1024);
        check(&vec![0x5a; (width / 8) as usize], width, 1024);
        check_forced(&vec![0x5a; (width / 8) as usize], width, 8, 1024);
        check_forced(&vec![0x5a; 3 * (width / 8) as usize], width, 8, 1);
    }
}

#[test]
fn one_distinct_symbol() {
    check(&words16(&vec![0x3f80; 100_000]), 16, 1024);
    check(&vec![7u8; 70_001], 8, 16);
}

#[test]
fn every_symbol_of_the_alphabet() {
    // all 65536 bf16 patterns: every 12-bit symbol appears; every symbol width, so every
    // number of raw bits the decoder's merge is specialized for
    let all: Vec<u16> = (0..=u16::MAX).collect();
    for sym_bits in 8..=12 {
        check_forced(&words16(&all), 16, sym_bits, 1024);
        check_forced(&words16(&all), 16, sym_bits, 1);
    }
    let bytes: Vec<u8> = (0..=255u8).cycle().take(10_000).collect();
    check_forced(&bytes, 8, 8, 1024);
    let all32: Vec<u32> = (0..=u16::MAX as u32).map(|x| x << 16 | x).collect();
    check_forced(&words32(&all32), 32, 12, 5);
}

#[test]
fn special_floats_survive() {
    let specials = [
        0.0f32,
        -0.0,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
        f32::MIN_POSITIVE / 3.0,
        -1e-45,
        1.0,
        -2.5,
    ];
    let mut v32: Vec<u32> = specials.iter().map(|x| x.to_bits()).collect();
    v32.push(0x7fc0_1234); // NaN with a payload
    v32.push(0xffa0_0001); // negative signalling NaN
    let v32: Vec<u32> = v32.iter().cycle().take(5000).copied().collect();
    check(&words32(&v32), 32, 1024);
    check_forced(&words32(&v32), 32, 9, 2);
    let v16: Vec<u16> = v32.iter().map(|&u| (u >> 16) as u16).collect();
    check(&words16(&v16), 16, 3);
    check_forced(&words16(&v16), 16, 11, 3);
}

#[test]
fn skewed_frequencies_beyond_the_length_cap() {
    // Fibonacci-like counts force an unlimited Huffman code far deeper than 12 bits.
    let mut v = Vec::new();
    let (mut a, mut b) = (1usize, 1usize);
    for sym in 0..24u16 {
        v.extend(std::iter::repeat_n(sym << 8, a));
        (a, b) = (b, a + b);
    }
    let data = words16(&v);
    check(&data, 16, 1024);
    let choice = codec::choose(&data, 16, 1024).unwrap().unwrap();
    assert!(
        choice
            .codebook
            .lens
            .iter()
            .all(|&l| l as u32 <= huffman::MAX_CODE_LEN)
    );
}

#[test]
fn lengths_that_are_not_a_multiple_of_the_chunk() {
    for n in [1, 63, 64, 65, 127, 129, 4095, 64 * 2 * 7 + 3, 200_003] {
        check(&weightlike_bf16(n, n as u64), 16, 7);
    }
    check(&weightlike_bf16(3 * 64 * 1024 * 2 + 5, 9), 16, 1024);
}

#[test]
fn real_weights_round_trip_and_compress() {
    // The committed sample: all-MiniLM-L6-v2 layer 0 in bf16 (and a few f32 tensors).
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/assets/minilm-layer0.safetensors"
    );
    let file = vramzip::format::SafetensorsFile::open(path).unwrap();
    let mut coded = 0;
    for t in &file.header.tensors {
        let data = &file.read(t).unwrap();
        if let Some(width) = codec::element_bits(&t.dtype) {
            check(data, width, 1024);
            if t.dtype == "BF16" && data.len() > 1 << 20 {
                let codec::CodedTensor {
                    layout,
                    codebook: book,
                    encoded: enc,
                } = codec::compress(data, width, 1024).unwrap().unwrap();
                let size =
                    enc.stream.len() + enc.raw.len() + enc.index.len() + book.to_bytes().len();
                let ratio = size as f64 / data.len() as f64;
                assert!(
                    ratio < 0.675,
                    "{}: ratio {ratio} (sym_bits {})",
                    t.name,
                    layout.sym_bits
                );
                coded += 1;
            }
        }
    }
    assert!(coded >= 2, "the sample should hold large bf16 matrices");
}

#[test]
fn codebook_serialization_rejects_corruption() {
    let hist: Vec<u64> = (0..2048u64).map(|i| (i % 37) * (i % 5)).collect();
    let book = Codebook::from_histogram(11, &hist);
    let bytes = book.to_bytes();
    assert_eq!(Codebook::from_bytes(&bytes).unwrap(), book);
    assert!(Codebook::from_bytes(&bytes[..3]).is_err());
    let mut wrong_version = bytes.clone();
    wrong_version[0] = 9;
    assert!(
        Codebook::from_bytes(&wrong_version)
            .unwrap_err()
            .contains("version")
    );
    let mut too_short = bytes.clone();
    too_short[6] = 0x11; // lengths of 1 for two symbols plus the rest: Kraft sum above one
    assert!(Codebook::from_bytes(&too_short).is_err());
    let mut bad_range = bytes.clone();
    bad_range[4] = 0xff;
    bad_range[5] = 0xff;
    assert!(Codebook::from_bytes(&bad_range).is_err());
}

#[test]
fn codebook_without_a_symbol_cannot_encode_it() {
    let data = weightlike_bf16(1000, 1);
    let choice = codec::choose(&data, 16, 1024).unwrap().unwrap();
    let mut lens = choice.codebook.lens.clone();
    let used = lens.iter().position(|&l| l > 0).unwrap();
    lens[used] = 0;
    let book = Codebook {
        sym_bits: choice.codebook.sym_bits,
        lens,
    };
    let err = codec::encode(&data, &choice.layout, &book).unwrap_err();
    assert!(err.to_string().contains("no code"), "{err}");
}

#[test]
fn corrupt_parts_fail_cleanly() {
    let data = weightlike_bf16(300_000, 3);
    let codec::CodedTensor {
        layout,
        codebook: book,
        encoded: enc,
    } = codec::compress(&data, 16, 64).unwrap().unwrap();
    let mut out = vec![0u8; data.len()];
    // wrong sizes are refused before decoding
    let mut short = enc.clone();
    short.stream.truncate(short.stream.len() - 4);
    assert!(codec::decode(&layout, &short, &book, &mut out, "t").is_err());
    let mut short_raw = enc.clone();
    short_raw.raw.pop();
    assert!(codec::decode(&layout, &short_raw, &book, &mut out, "t").is_err());
    // flipped bits: an error, or bytes that differ (the container's checksum catches those)
    let mut s = 11u64;
    for _ in 0..200 {
        let mut bad = enc.clone();
        let part = lcg(&mut s) % 3;
        let target = match part {
            0 => &mut bad.stream,
            1 => &mut bad.raw,
            _ => &mut bad.index,
        };
        let i = (lcg(&mut s) as usize) % target.len();
        target[i] ^= 1 << (lcg(&mut s) % 8);
        both_decoders(&layout, &bad, &book);
    }
    // a region longer than its streams' symbols can be is refused
    let mut long = enc.clone();
    long.index[0..4].copy_from_slice(&(0x7ff_ffffu32 | 8 << 27).to_le_bytes());
    assert!(codec::decode(&layout, &long, &book, &mut out, "t").is_err());
    // a delta wider than the index allows, or an index of another size, is refused
    let mut wide = enc.clone();
    wide.index[3] = 0xff;
    assert!(codec::decode(&layout, &wide, &book, &mut out, "t").is_err());
    let mut short_index = enc.clone();
    short_index.index.truncate(enc.index.len() - 4);
    assert!(codec::decode(&layout, &short_index, &book, &mut out, "t").is_err());
    // two streams that do not meet in their region: a region one bit longer
    let mut apart = enc.clone();
    let head = u32::from_le_bytes(apart.index[0..4].try_into().unwrap());
    apart.index[0..4].copy_from_slice(&(head + 1).to_le_bytes());
    assert!(codec::decode(&layout, &apart, &book, &mut out, "t").is_err());
}

#[test]
fn layout_limits_are_checked() {
    assert!(Layout::new(10, 16, 13, 1024).is_err());
    assert!(Layout::new(10, 12, 8, 1024).is_err());
    assert!(Layout::new(10, 16, 8, 0).is_err());
    assert!(Layout::new(10, 16, 8, 1025).is_err());
    // offsets are u64: a 5 GiB tensor's layout does not overflow
    let big = Layout::new(5 << 30, 8, 8, 1024).unwrap();
    assert_eq!(big.decoded_bytes(), 5 << 30);
    assert_eq!(big.blocks(), (5u64 << 30).div_ceil(4 * 256 * 1024));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    /// Package-merge gives a complete prefix code within the cap, and where unlimited Huffman
    /// already fits the cap, a code exactly as short (both are optimal then).
    #[test]
    fn length_limited_codes_are_valid_and_optimal(freq in proptest::collection::vec(0u64..1_000_000, 2..600), skew in 0u32..30) {
        let freq: Vec<u64> = freq.iter().enumerate().map(|(i, &f)| if i % 7 == 0 { f << skew.min(20) } else { f }).collect();
        let lens = codec::huffman::code_lengths(&freq, 12);
        prop_assert!(codec::huffman::lengths_valid(&lens));
        prop_assert!(lens.iter().zip(&freq).all(|(&l, &f)| (l > 0) == (f > 0) && l <= 12));
        let present: Vec<u64> = freq.iter().copied().filter(|&f| f > 0).collect();
        if present.len() >= 2 {
            let depths = codec::huffman::huffman_depths(&present);
            if depths.iter().all(|&d| d <= 12) {
                let huffman: u64 = present.iter().zip(&depths).map(|(&f, &d)| f * d as u64).sum();
                prop_assert_eq!(codec::huffman::coded_bits(&freq, &lens), huffman);
            }
        }
    }

    #[test]
    fn any_bytes_round_trip(data in proptest::collection::vec(any::<u8>(), 0..5000), width in prop::sample::select(vec![8u32, 16, 32]), cg in 1usize..40) {
        let usable = data.len() / (width as usize / 8) * (width as usize / 8);
        let data = &data[..usable];
        prop_assert_eq!(codec::round_trip(data, width, cg).unwrap(), data);
        check_forced(data, width, if width == 8 { 8 } else { 8 + (cg as u32 % 5) }, cg);
    }

    #[test]
    fn weightlike_round_trip(n in 0usize..20_000, seed in any::<u64>(), cg in 1usize..1025) {
        let data = weightlike_bf16(n, seed);
        prop_assert_eq!(codec::round_trip(&data, 16, cg).unwrap(), data);
    }
}

/// Layout v2's promise for an LLM layer: a 4096x4096 bf16 weight of real values (sampled with
/// replacement from the committed MiniLM layer's bf16 matrices, as scripts/make_llm_shaped.py
/// does for a whole block) decodes as 65,536 independent streams, and everything the streams
/// need to find their starts costs under 0.2% of its compressed size.
#[test]
fn an_llm_shaped_layer_has_65536_streams_at_a_tiny_index() {
    let sample =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/minilm-layer0.safetensors");
    let file = vramzip::format::SafetensorsFile::open(&sample).expect("the committed sample");
    let mut pool = Vec::new();
    for t in &file.header.tensors {
        if t.dtype == "BF16" && t.shape.len() == 2 {
            pool.extend(file.read(t).unwrap().chunks_exact(2).map(|b| [b[0], b[1]]));
        }
    }
    assert!(pool.len() > 1_000_000, "the sample's bf16 matrices");
    let n = 4096 * 4096;
    let mut seed = 7;
    let data: Vec<u8> = (0..n)
        .flat_map(|_| pool[lcg(&mut seed) as usize % pool.len()])
        .collect();
    let groups = codec::auto_chunk_groups(n as u64, 16);
    assert_eq!(groups * 2, 256, "256 symbols a stream");
    let coded = codec::compress(&data, 16, groups).unwrap().unwrap();
    assert_eq!(coded.layout.streams(), 65_536);
    let enc = &coded.encoded;
    let compressed =
        enc.stream.len() + enc.raw.len() + enc.index.len() + coded.codebook.to_bytes().len();
    let index_share = enc.index.len() as f64 / compressed as f64;
    assert!(
        index_share < 0.002,
        "index {:.4}% of the compressed size",
        100.0 * index_share
    );
    assert!(
        compressed < data.len() * 7 / 10,
        "ratio {}",
        compressed as f64 / data.len() as f64
    );
    assert_eq!(coded.decode("llm-shaped").unwrap(), data);
    // the MLP's 14336x4096 takes 512-symbol streams and still has more than 65,536
    let mlp = Layout::new(
        14336 * 4096,
        16,
        10,
        codec::auto_chunk_groups(14336 * 4096, 16),
    )
    .unwrap();
    assert_eq!(mlp.chunk_groups * 2, 512);
    assert_eq!(mlp.streams(), 114_688);
}
