//! Measures what a fixed-rate resident form would cost on real weights, for the design of the
//! fast resident form: each 16-bit weight as a short code into a per-tensor palette of its most
//! common exponents, plus its sign and mantissa bits raw.
//!
//! cargo run --release --example fixed_rate_report -- FILE.safetensors...
//!
//! For bf16 and f16 tensors (others are left out), per file: the share of weights whose exponent
//! is among a tensor's k - 1 most common (k = 4, 8, 16; the last code is the escape), and the
//! resident bytes over the original bytes of two ways to keep every weight exact:
//! - *exceptions*: escaped weights listed apart (32 bits each: a 24-bit position in its 16 Mi
//!   segment and the 8-bit exponent, plus a 32-bit list offset a segment), and
//! - *wide blocks*: a block of B weights (B = 64, 256: a GEMV tile) holding any escaped weight
//!   kept whole at 16 bits, with a bit a block to say which.
//!
//! Palettes cost k bytes a tensor. The worst tensor (lowest coverage at k = 16) is named. Then,
//! per file, the form vramzip builds (`codec::fixed::FixedForm`, k = 16 with exceptions in
//! 4096-weight blocks) over the bf16 tensors: resident bytes over original bytes, exceptions.

use vramzip::codec::fixed::FixedForm;
use vramzip::format::SafetensorsFile;

/// Exponent and mantissa bits of a 16-bit float dtype.
fn split(dtype: &str) -> Option<(u32, u32)> {
    match dtype {
        "BF16" => Some((8, 7)),
        "F16" => Some((5, 10)),
        _ => None,
    }
}

/// Running sums over a file's tensors for one palette size.
#[derive(Default, Clone)]
struct Sums {
    weights: u64,
    covered: u64,
    exceptions_bits: u64,
    wide64_bits: u64,
    wide256_bits: u64,
}

fn main() {
    let files: Vec<String> = std::env::args().skip(1).collect();
    if files.is_empty() {
        eprintln!("usage: fixed_rate_report FILE.safetensors...");
        std::process::exit(2);
    }
    println!(
        "| file | dtype | weights | k | code + sign + mantissa bits | coverage | exceptions: resident / original | wide blocks of 64 | wide blocks of 256 | worst tensor at k = 16 |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    for path in &files {
        let file = SafetensorsFile::open(path).expect("a safetensors file");
        let mut dtype_seen = None;
        let mut sums = vec![Sums::default(); 3];
        let mut worst = (1.0f64, String::new());
        // the built form over the bf16 tensors: (resident, original, exceptions)
        let mut built = (0u64, 0u64, 0usize);
        for t in &file.header.tensors {
            let Some((exp_bits, mant_bits)) = split(&t.dtype) else {
                continue;
            };
            dtype_seen = Some((t.dtype.clone(), mant_bits));
            let bytes = file.read(t).expect("tensor data");
            if t.dtype == "BF16" {
                let (form, stats) = FixedForm::new(&bytes).expect("a bf16 tensor");
                built.0 += form.bytes();
                built.1 += bytes.len() as u64;
                built.2 += stats.exceptions;
            }
            let values: Vec<u16> = bytes
                .chunks_exact(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]]))
                .collect();
            let exponent = |v: u16| ((v >> mant_bits) & ((1 << exp_bits) - 1)) as usize;
            let mut hist = vec![0u64; 1 << exp_bits];
            values.iter().for_each(|&v| hist[exponent(v)] += 1);
            let mut order: Vec<usize> = (0..hist.len()).collect();
            order.sort_by_key(|&e| std::cmp::Reverse(hist[e]));
            for (slot, k) in [4usize, 8, 16].into_iter().enumerate() {
                let code_bits = k.trailing_zeros() as u64;
                let mut in_palette = vec![false; hist.len()];
                order[..k - 1].iter().for_each(|&e| in_palette[e] = true);
                let escaped: Vec<bool> = values.iter().map(|&v| !in_palette[exponent(v)]).collect();
                let n = values.len() as u64;
                let esc = escaped.iter().filter(|&&e| e).count() as u64;
                let per = code_bits + 1 + mant_bits as u64;
                let palette = 8 * k as u64;
                let s = &mut sums[slot];
                s.weights += n;
                s.covered += n - esc;
                s.exceptions_bits += n * per + 32 * esc + 32 * n.div_ceil(1 << 24) + palette;
                for (b, bits) in [(64usize, &mut s.wide64_bits), (256, &mut s.wide256_bits)] {
                    let wide = escaped.chunks(b).filter(|c| c.contains(&true)).count() as u64;
                    let blocks = n.div_ceil(b as u64);
                    // a block's bits: fixed or 16 a weight (the last block counted whole)
                    *bits +=
                        (blocks - wide) * b as u64 * per + wide * b as u64 * 16 + blocks + palette;
                }
                if k == 16 && n >= 1024 {
                    let cov = (n - esc) as f64 / n as f64;
                    if cov < worst.0 {
                        worst = (cov, format!("{} ({:.3}%)", t.name, 100.0 * cov));
                    }
                }
            }
        }
        let Some((dtype, mant_bits)) = dtype_seen else {
            continue;
        };
        for (slot, k) in [4usize, 8, 16].into_iter().enumerate() {
            let s = &sums[slot];
            let original = 16.0 * s.weights as f64;
            println!(
                "| {path} | {dtype} | {} | {k} | {} | {:.3}% | {:.4} | {:.4} | {:.4} | {} |",
                s.weights,
                k.trailing_zeros() + 1 + mant_bits,
                100.0 * s.covered as f64 / s.weights as f64,
                s.exceptions_bits as f64 / original,
                s.wide64_bits as f64 / original,
                s.wide256_bits as f64 / original,
                if k == 16 { worst.1.as_str() } else { "" }
            );
        }
        if built.1 > 0 {
            println!(
                "\n{path}: the built fixed form (codec::fixed): {} of {} bytes = {:.4}, {} exceptions ({:.4}% of the weights)\n",
                built.0,
                built.1,
                built.0 as f64 / built.1 as f64,
                built.2,
                100.0 * built.2 as f64 / (built.1 / 2) as f64
            );
        }
    }
}
