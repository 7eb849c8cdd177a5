//! Measures single-stage coding (shared codebooks) against per-tensor codebooks on a model.
//!
//! cargo run --release --example single_stage_report -- MODEL.safetensors OTHER.safetensors
//!
//! Prints one markdown row: the coded size of MODEL's tensors with (a) a codebook per tensor,
//! (b) one codebook per dtype for the whole model, (c) the codebooks of OTHER (another model),
//! (d) codebooks built from the first two transformer layers only, each as % over (a) and over
//! the order-0 entropy bound of (a)'s splits; then encode throughput of three stages (histogram,
//! code, encode: what (a) does) against single stage (encode with (b)'s fixed books), same run.
//! A second line gives (b), (c) and (d) with books per dtype and tensor role (what `codebook
//! build` makes), a third the escape's cost and the streaming encoder's throughput.

use std::time::Instant;
use vramzip::codec::shared::{Codebooks, Histograms, StreamEncoder, encode_with};
use vramzip::codec::{self, element_bits};
use vramzip::format::{SafetensorsFile, tensor_stats};

struct Tensor {
    name: String,
    dtype: String,
    bytes: Vec<u8>,
}

fn load(path: &str) -> Vec<Tensor> {
    let file = SafetensorsFile::open(path).expect("a safetensors file");
    file.header
        .tensors
        .iter()
        .map(|t| Tensor {
            name: t.name.clone(),
            dtype: t.dtype.clone(),
            bytes: file.read(t).expect("tensor data"),
        })
        .collect()
}

/// Books per dtype, or also per role (`by_role`), from the tensors `keep` takes.
fn books(tensors: &[Tensor], by_role: bool, keep: impl Fn(&str) -> bool) -> Codebooks {
    let mut h = Histograms::default();
    for t in tensors.iter().filter(|t| keep(&t.name)) {
        if by_role {
            h.add_named(&t.name, &t.dtype, &t.bytes);
        } else {
            h.add(&t.dtype, &t.bytes);
        }
    }
    h.build()
}

/// The default groups a stream for a tensor of `bytes`.
fn groups(bytes: &[u8], width: u32) -> usize {
    codec::auto_chunk_groups(bytes.len() as u64 * 8 / width as u64, width)
}

/// (coded size in bytes, order-0 bound in bits) with a codebook per tensor.
fn per_tensor(tensors: &[Tensor]) -> (u64, f64) {
    let (mut size, mut bound) = (0u64, 0f64);
    for t in tensors {
        let coded = element_bits(&t.dtype)
            .and_then(|w| codec::choose(&t.bytes, w, groups(&t.bytes, w)).unwrap());
        match coded {
            Some(c) => {
                let enc = codec::encode(&t.bytes, &c.layout, &c.codebook).unwrap();
                let s = tensor_stats(&t.name, &t.dtype, &c.layout, &c.hist, &c.codebook, &enc);
                size += s.compressed_bytes;
                bound += s.bound_bits;
            }
            None => {
                size += t.bytes.len() as u64;
                bound += 8.0 * t.bytes.len() as f64;
            }
        }
    }
    (size, bound)
}

/// Coded size with shared books (each one used stored once), tensors of other dtypes with their
/// own code.
fn shared(tensors: &[Tensor], books: &Codebooks) -> u64 {
    let mut size = 0;
    let mut used = std::collections::BTreeSet::new();
    for t in tensors {
        let width = element_bits(&t.dtype);
        size += match (width, books.book_for(&t.dtype, &t.name)) {
            (Some(w), Some((key, book))) if !t.bytes.is_empty() => {
                if used.insert(key.to_string()) {
                    size += book.to_bytes().len() as u64;
                }
                match encode_with(&t.bytes, w, book.clone(), groups(&t.bytes, w)) {
                    Ok(c) => parts_bytes(&c.encoded),
                    Err(_) => own(t, w),
                }
            }
            (Some(w), _) => own(t, w),
            (None, _) => t.bytes.len() as u64,
        };
    }
    size
}

fn parts_bytes(e: &codec::Encoded) -> u64 {
    (e.stream.len() + e.raw.len() + e.index.len()) as u64
}

fn own(t: &Tensor, w: u32) -> u64 {
    match codec::compress(&t.bytes, w, groups(&t.bytes, w)).unwrap() {
        Some(c) => parts_bytes(&c.encoded) + c.codebook.to_bytes().len() as u64,
        None => t.bytes.len() as u64,
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() != 2 {
        eprintln!("usage: single_stage_report MODEL.safetensors OTHER.safetensors");
        std::process::exit(2);
    }
    let model = load(&args[0]);
    let other = load(&args[1]);
    let original: u64 = model.iter().map(|t| t.bytes.len() as u64).sum();
    let (a, bound_bits) = per_tensor(&model);
    let bound = bound_bits / 8.0;
    let whole = books(&model, false, |_| true);
    let b = shared(&model, &whole);
    let mut h = Histograms::default();
    model.iter().for_each(|t| h.add(&t.dtype, &t.bytes));
    let b_no_escape = shared(&model, &h.build_with_escape(false));
    let c = shared(&model, &books(&other, false, |_| true));
    let first = |n: &str| n.contains("layer.0.") || n.contains("layer.1.");
    let d = shared(&model, &books(&model, false, first));
    // per role: from the model itself, from the other model, from the first two layers
    let e = shared(&model, &books(&model, true, |_| true));
    let f = shared(&model, &books(&other, true, |_| true));
    let g = shared(&model, &books(&model, true, first));
    let pct = |x: u64, y: f64| 100.0 * (x as f64 / y - 1.0);

    // encode throughput, same run: three stages against one
    let coded: Vec<&Tensor> = model
        .iter()
        .filter(|t| element_bits(&t.dtype).is_some() && !t.bytes.is_empty())
        .collect();
    let coded_bytes: u64 = coded.iter().map(|t| t.bytes.len() as u64).sum();
    let (mut three, mut one) = (f64::MAX, f64::MAX);
    for _ in 0..3 {
        let t0 = Instant::now();
        for t in &coded {
            std::hint::black_box(
                codec::compress(
                    &t.bytes,
                    element_bits(&t.dtype).unwrap(),
                    groups(&t.bytes, element_bits(&t.dtype).unwrap()),
                )
                .unwrap(),
            );
        }
        three = three.min(t0.elapsed().as_secs_f64());
        let t0 = Instant::now();
        for t in &coded {
            let w = element_bits(&t.dtype).unwrap();
            std::hint::black_box(
                encode_with(
                    &t.bytes,
                    w,
                    whole.books[&t.dtype].clone(),
                    groups(&t.bytes, w),
                )
                .ok(),
            );
        }
        one = one.min(t0.elapsed().as_secs_f64());
    }
    let mbps = |s: f64| coded_bytes as f64 / s / 1e6;
    // the streaming encoder, each tensor a buffer in flight, with and without rebuilding the book
    let mut stream_rates = Vec::new();
    for rebuild in [None, Some(8)] {
        let mut encoders: std::collections::HashMap<String, StreamEncoder> = whole
            .books
            .iter()
            .map(|(d, b)| {
                (
                    d.clone(),
                    StreamEncoder::new(
                        d,
                        b.clone(),
                        groups(&[], element_bits(d).unwrap()),
                        rebuild,
                    )
                    .unwrap(),
                )
            })
            .collect();
        let t0 = Instant::now();
        for t in &coded {
            std::hint::black_box(encoders.get_mut(&t.dtype).unwrap().encode(&t.bytes).ok());
        }
        stream_rates.push(mbps(t0.elapsed().as_secs_f64()));
    }
    let name = |p: &str| {
        std::path::Path::new(p)
            .parent()
            .and_then(|d| d.file_name())
            .map(|d| d.to_string_lossy().to_string())
            .unwrap_or_default()
            + "/"
            + &std::path::Path::new(p)
                .file_name()
                .unwrap()
                .to_string_lossy()
    };
    println!(
        "| model | original | (a) per tensor | (b) whole model | (c) other model's | (d) first 2 layers' | three-stage MB/s | single-stage MB/s | speedup |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    // a size against (a) and against the bound
    let over = |x: u64| format!("{x} ({:+.2}% / {:+.2}%)", pct(x, a as f64), pct(x, bound));
    println!(
        "| {} (c: {}) | {original} | {a} ({:.4}; bound {:+.2}%) | {} | {} | {} | {:.0} | {:.0} | {:.2}x |",
        name(&args[0]),
        name(&args[1]),
        a as f64 / original as f64,
        pct(a, bound),
        over(b),
        over(c),
        over(d),
        mbps(three),
        mbps(one),
        three / one
    );
    println!(
        "per role: (b) {}, (c) {}, (d) {}",
        over(e),
        over(f),
        over(g)
    );
    println!(
        "escape cost: (b) without an escape would be {b_no_escape} bytes ({:+.4}%); stream encoder {:.0} MB/s, rebuilding every 8 buffers {:.0} MB/s",
        pct(b, b_no_escape as f64),
        stream_rates[0],
        stream_rates[1]
    );
}
