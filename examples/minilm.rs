//! all-MiniLM-L6-v2 sentence embeddings on the GPU with the weights compressed in VRAM, beside
//! the same forward pass on the uncompressed weights.
//!
//! ```text
//! scripts/fetch-models.sh
//! cargo run --release --example minilm -- [--model data/minilm] [--bf16 | --f16] [--chunk-groups 64] [--resident huffman|fixed|auto] [SENTENCE ...]
//! ```
//!
//! Compresses the model, then runs every sentence three ways: uncompressed weights, compressed
//! weights decoded right before each product, and compressed weights through the fused
//! decode+product kernel; with `--resident fixed` (and `--bf16`), a fourth: the matrices kept in
//! the fixed-rate form; with `--resident auto`, each bf16 matrix in the form whose product was
//! measured faster here. Prints whether the embeddings are the same bits, their cosine
//! similarity to the sentence-transformers reference (tests/data/minilm-reference.json) where the
//! sentence is there, the time of each pass, and the VRAM each way holds.

use std::path::PathBuf;
use std::time::Instant;
use vramzip::format::{self, Archive, CompressOptions};
use vramzip::gpu::{GpuContext, GpuOptions, Resident};
use vramzip::model::bert::{Bert, BertConfig, Forms, Weights};

fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    // the repository: the working directory when it is one (the binary may run in a copy of the
    // tree elsewhere), else where it was built
    let root = if std::path::Path::new("tests/data/minilm-reference.json").exists() {
        PathBuf::from(".")
    } else {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
    };
    let mut model = root.join("data/minilm");
    let mut file = "model.safetensors";
    let mut opts = CompressOptions::default();
    let mut sentences = Vec::new();
    let mut forms = Forms::All(Resident::Huffman);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--model" => model = args.next().ok_or("--model needs a directory")?.into(),
            "--bf16" => file = "model-bf16.safetensors",
            "--f16" => file = "model-f16.safetensors",
            "--chunk-groups" => {
                opts = opts.with_chunk_groups(
                    args.next()
                        .ok_or("--chunk-groups needs a number")?
                        .parse()?,
                )
            }
            "--resident" => {
                forms = args
                    .next()
                    .ok_or("--resident needs huffman, fixed or auto")?
                    .parse()?
            }
            _ => sentences.push(a),
        }
    }
    let reference: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(
        root.join("tests/data/minilm-reference.json"),
    )?)?;
    let reference = reference["sentences"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if sentences.is_empty() {
        sentences = reference
            .iter()
            .filter_map(|s| s["text"].as_str().map(String::from))
            .collect();
    }
    let file = model.join(file);
    if !file.exists() {
        return Err(format!(
            "{} is missing: run scripts/fetch-models.sh first",
            file.display()
        )
        .into());
    }
    let config = BertConfig::from_file(model.join("config.json"))?;
    let mut tokenizer = tokenizers::Tokenizer::from_file(model.join("tokenizer.json"))?;
    // The file pads every input to 128 tokens; sentence-transformers does not pad a single
    // sentence, and truncates at 256 (sentence_bert_config.json).
    tokenizer.with_padding(None);
    tokenizer.with_truncation(Some(tokenizers::TruncationParams {
        max_length: 256,
        ..Default::default()
    }))?;

    let packed = std::env::temp_dir().join(format!("minilm-{}.vz", std::process::id()));
    let t0 = Instant::now();
    format::compress_file(&file, &packed, &opts, &|_| {})?;
    let (raw_size, packed_size) = (
        std::fs::metadata(&file)?.len(),
        std::fs::metadata(&packed)?.len(),
    );
    println!(
        "{}: {raw_size} bytes, compressed to {packed_size} ({:.4}) in {:.1} s, streams of {} groups",
        file.display(),
        packed_size as f64 / raw_size as f64,
        t0.elapsed().as_secs_f64(),
        opts.chunk_groups
            .map_or("the default".to_string(), |c| c.to_string())
    );
    let archive = Archive::open(&packed)?;
    let bytes = std::fs::read(&file)?;
    let st = safetensors::SafeTensors::deserialize(&bytes)?;

    let gpu = GpuContext::new(&GpuOptions::default())?;
    println!("adapter: {}", gpu.describe());
    let compressed = |fused, forms| Weights::Compressed {
        archive: &archive,
        fused,
        forms,
    };
    let mut models = vec![
        ("uncompressed", Weights::Uncompressed(&st)),
        (
            "decode+product",
            compressed(false, Forms::All(Resident::Huffman)),
        ),
        ("fused", compressed(true, Forms::All(Resident::Huffman))),
    ];
    match forms {
        Forms::All(Resident::Fixed) => models.push(("fixed form", compressed(true, forms))),
        Forms::Fastest => models.push(("fastest forms", compressed(true, forms))),
        Forms::All(Resident::Huffman) => {}
    }
    let models = models
        .into_iter()
        .map(|(name, w)| (name, Bert::load(&gpu, &w, config.clone())));
    let mut loaded = Vec::new();
    for (name, m) in models {
        let m = m?;
        let v = m.vram();
        println!(
            "{name:>15}: VRAM {:>10} bytes (matrices {}, vectors {}, scratch {})",
            v.total(),
            v.matrices,
            v.vectors,
            v.scratch
        );
        for why in &m.unfused {
            println!("{name:>15}: not fused: {why}");
        }
        if !m.chosen.is_empty() {
            let fixed = m.chosen.iter().filter(|c| c.resident == Resident::Fixed);
            println!(
                "{name:>15}: {} of {} bf16 matrices in the fixed form (measured faster)",
                fixed.count(),
                m.chosen.len()
            );
        }
        loaded.push((name, m));
    }
    let base = loaded[0].1.vram().total() as f64;
    for (name, m) in &loaded[1..] {
        println!(
            "{name:>15}: {:.3}x the VRAM of the uncompressed model",
            m.vram().total() as f64 / base
        );
    }

    let mut all_same = true;
    for text in &sentences {
        let enc = tokenizer.encode(text.as_str(), true)?;
        let ids: Vec<u32> = enc.get_ids().to_vec();
        let mut results = Vec::new();
        let mut times = Vec::new();
        let mut transient = Vec::new();
        for (_, m) in &loaded {
            m.embed(&gpu, &ids)?; // warm-up: pipelines, first touch
            let t = Instant::now();
            results.push(m.embed(&gpu, &ids)?);
            times.push(t.elapsed().as_secs_f64() * 1e3);
            transient.push(m.last_transient_bytes());
        }
        let same = results.iter().all(|r| {
            r.iter()
                .map(|v| v.to_bits())
                .eq(results[0].iter().map(|v| v.to_bits()))
        });
        all_same &= same;
        let cosine = reference
            .iter()
            .find(|s| s["text"] == text.as_str())
            .map(|s| {
                let want: Vec<f64> = s["embedding"]
                    .as_array()
                    .map(|a| a.iter().filter_map(|v| v.as_f64()).collect())
                    .unwrap_or_default();
                cosine(&results[0], &want)
            });
        println!("\n\"{text}\" ({} tokens)", ids.len());
        println!(
            "  embedding[..4] {:?}; {} ways the same bits: {same}; cosine to sentence-transformers: {}",
            &results[0][..4],
            results.len(),
            cosine.map_or("(not in the reference file)".into(), |c| format!("{c:.7}"))
        );
        let each = |v: &dyn Fn(usize) -> String| -> String {
            (loaded.iter().enumerate())
                .map(|(k, (name, _))| format!("{name} {}", v(k)))
                .collect::<Vec<_>>()
                .join(", ")
        };
        println!(
            "  ms per sentence: {}",
            each(&|k| format!("{:.2}", times[k]))
        );
        println!(
            "  bytes the pass allocated (activations, decoded embedding blocks): {}",
            each(&|k| transient[k].to_string())
        );
    }
    let _ = std::fs::remove_file(&packed);
    if !all_same {
        return Err("compressed and uncompressed weights gave different embeddings".into());
    }
    Ok(())
}

fn cosine(a: &[f32], b: &[f64]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * y).sum();
    let na: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|y| y * y).sum::<f64>().sqrt();
    dot / (na * nb)
}
