//! The BERT forward pass on compressed weights (src/gpu/bert.rs): one encoder layer of the
//! committed sample against a CPU f64 reference, always; the whole all-MiniLM-L6-v2 against the
//! sentence-transformers reference embeddings, where scripts/fetch-models.sh has fetched it.
//! Compressed (fused, and decode then multiply) and uncompressed weights must give the same bits.

mod common;

use common::*;
use std::path::PathBuf;
use vramzip::format::{Archive, CompressOptions};
use vramzip::gpu::{GpuContext, Resident};
use vramzip::model::bert::{Bert, BertConfig, Forms, Weights};

fn compress(src: &std::path::Path, name: &str) -> Archive {
    let opts = CompressOptions::default().with_chunk_groups(64);
    compress_into(name, src, &opts)
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// Loads the model three ways: uncompressed, compressed with decode then multiply, compressed
/// with the fused kernel (which must take every layer).
/// The model five ways: uncompressed, decode+multiply, fused, the fixed form (for the BF16
/// matrices; Huffman-coded and fused for the others), and each BF16 matrix in the form measured
/// fastest.
fn five_ways<'a>(
    gpu: &GpuContext,
    st: &'a safetensors::SafeTensors<'a>,
    archive: &'a Archive,
    config: &BertConfig,
) -> [Bert; 5] {
    let compressed = |fused, forms| Weights::Compressed {
        archive,
        fused,
        forms,
    };
    let models = [
        Weights::Uncompressed(st),
        compressed(false, Forms::All(Resident::Huffman)),
        compressed(true, Forms::All(Resident::Huffman)),
        compressed(true, Forms::All(Resident::Fixed)),
        compressed(true, Forms::Fastest),
    ]
    .map(|w| Bert::load(gpu, &w, config.clone()).unwrap());
    // a choice measured for each bf16 matrix and none for the others
    let bf16 = archive
        .tensors
        .iter()
        .filter(|t| t.meta.dtype == "BF16" && t.meta.shape.len() == 2)
        .filter(|t| t.meta.name.starts_with("encoder."))
        .count();
    assert_eq!(models[4].chosen.len(), bf16);
    assert!(models[..4].iter().all(|m| m.chosen.is_empty()));
    assert!(models[2].unfused.is_empty(), "{:?}", models[2].unfused);
    assert!(models[2].vram().matrices < models[0].vram().matrices);
    assert!(models[3].vram().matrices < models[0].vram().matrices);
    models
}

// ---- one layer of the committed sample, always ----

fn tensor(st: &safetensors::SafeTensors, name: &str) -> Vec<f64> {
    let t = st.tensor(name).unwrap();
    let d = t.data();
    match t.dtype() {
        safetensors::Dtype::F32 => d
            .chunks(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()) as f64)
            .collect(),
        safetensors::Dtype::BF16 => d
            .chunks(2)
            .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f64())
            .collect(),
        other => panic!("{name}: {other:?}"),
    }
}

fn linear(st: &safetensors::SafeTensors, name: &str, x: &[f64], cols: usize) -> Vec<f64> {
    let (w, b) = (
        tensor(st, &format!("{name}.weight")),
        tensor(st, &format!("{name}.bias")),
    );
    let rows = b.len();
    x.chunks(cols)
        .flat_map(|xt| {
            (0..rows)
                .map(|r| b[r] + (0..cols).map(|c| w[r * cols + c] * xt[c]).sum::<f64>())
                .collect::<Vec<_>>()
        })
        .collect()
}

fn layer_norm(st: &safetensors::SafeTensors, name: &str, x: &[f64], h: usize) -> Vec<f64> {
    let (g, b) = (
        tensor(st, &format!("{name}.weight")),
        tensor(st, &format!("{name}.bias")),
    );
    x.chunks(h)
        .flat_map(|r| {
            let mean = r.iter().sum::<f64>() / h as f64;
            let var = r.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / h as f64;
            let inv = 1.0 / (var + 1e-12).sqrt();
            (0..h)
                .map(|c| (r[c] - mean) * inv * g[c] + b[c])
                .collect::<Vec<_>>()
        })
        .collect()
}

fn erf(x: f64) -> f64 {
    // Abramowitz and Stegun 7.1.26 is not good enough for a reference; a series is.
    let (mut sum, mut term, mut n) = (x, x, 0.0);
    if x.abs() > 5.0 {
        return x.signum();
    }
    while term.abs() > 1e-17 {
        n += 1.0;
        term *= -x * x / n;
        sum += term / (2.0 * n + 1.0);
    }
    sum * 2.0 / std::f64::consts::PI.sqrt()
}

/// One BERT encoder layer in f64, as Hugging Face's BertLayer computes it.
fn reference_layer(st: &safetensors::SafeTensors, x: &[f64], h: usize, heads: usize) -> Vec<f64> {
    let p = "encoder.layer.0";
    let tokens = x.len() / h;
    let d = h / heads;
    let q = linear(st, &format!("{p}.attention.self.query"), x, h);
    let k = linear(st, &format!("{p}.attention.self.key"), x, h);
    let v = linear(st, &format!("{p}.attention.self.value"), x, h);
    let mut context = vec![0.0; tokens * h];
    for head in 0..heads {
        for i in 0..tokens {
            let scores: Vec<f64> = (0..tokens)
                .map(|j| {
                    (0..d)
                        .map(|e| q[i * h + head * d + e] * k[j * h + head * d + e])
                        .sum::<f64>()
                        / (d as f64).sqrt()
                })
                .collect();
            let m = scores.iter().cloned().fold(f64::MIN, f64::max);
            let exps: Vec<f64> = scores.iter().map(|s| (s - m).exp()).collect();
            let total: f64 = exps.iter().sum();
            for e in 0..d {
                context[i * h + head * d + e] = (0..tokens)
                    .map(|j| exps[j] / total * v[j * h + head * d + e])
                    .sum();
            }
        }
    }
    let attn = linear(st, &format!("{p}.attention.output.dense"), &context, h);
    let sum: Vec<f64> = attn.iter().zip(x).map(|(a, b)| a + b).collect();
    let h1 = layer_norm(st, &format!("{p}.attention.output.LayerNorm"), &sum, h);
    let inner: Vec<f64> = linear(st, &format!("{p}.intermediate.dense"), &h1, h)
        .into_iter()
        .map(|v| 0.5 * v * (1.0 + erf(v / std::f64::consts::SQRT_2)))
        .collect();
    let out = linear(
        st,
        &format!("{p}.output.dense"),
        &inner,
        inner.len() / tokens,
    );
    let sum: Vec<f64> = out.iter().zip(&h1).map(|(a, b)| a + b).collect();
    layer_norm(st, &format!("{p}.output.LayerNorm"), &sum, h)
}

#[test]
fn one_real_layer_compressed_equals_uncompressed_and_matches_f64() {
    let gpu = gpu();
    let bytes = std::fs::read(sample()).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let archive = compress(&sample(), "bert-layer");
    let config = BertConfig {
        hidden_size: 384,
        num_hidden_layers: 1,
        num_attention_heads: 12,
        intermediate_size: 1536,
        layer_norm_eps: 1e-12,
        max_position_embeddings: 512,
        hidden_act: "gelu".into(),
    };
    let models = five_ways(&gpu, &st, &archive, &config);
    // hidden states of 7 tokens with the spread of real ones (LayerNorm output: about unit)
    let tokens = 7;
    let x: Vec<f32> = noise(4 * tokens * 384, 11)
        .chunks(4)
        .map(|c| {
            (u32::from_le_bytes(c.try_into().unwrap()) as f64 / u32::MAX as f64 * 4.0 - 2.0) as f32
        })
        .collect();
    let outs: Vec<Vec<f32>> = models.iter().map(|m| m.encode(&gpu, &x).unwrap()).collect();
    assert_eq!(
        bits(&outs[1]),
        bits(&outs[0]),
        "decode+multiply != uncompressed"
    );
    assert_eq!(bits(&outs[2]), bits(&outs[0]), "fused != uncompressed");
    assert_eq!(bits(&outs[3]), bits(&outs[0]), "fixed form != uncompressed");
    assert_eq!(
        bits(&outs[4]),
        bits(&outs[0]),
        "fastest forms != uncompressed"
    );
    let again = models[2].encode(&gpu, &x).unwrap();
    assert_eq!(bits(&again), bits(&outs[2]), "not the same bits run to run");
    let xd: Vec<f64> = x.iter().map(|&v| v as f64).collect();
    let want = reference_layer(&st, &xd, 384, 12);
    let worst = outs[0]
        .iter()
        .zip(&want)
        .map(|(g, w)| (*g as f64 - w).abs())
        .fold(0.0, f64::max);
    eprintln!("one layer: largest difference to the f64 reference {worst:.2e}");
    assert!(worst < 1e-4, "largest difference to the f64 layer: {worst}");
    // the sample has no embedding tables: a forward pass from token ids says so
    assert!(models[2].embed(&gpu, &[101, 102]).is_err());
    assert!(
        models[2].encode(&gpu, &x[..100]).is_err(),
        "not whole tokens"
    );
}

// ---- the whole model, where it was fetched ----

fn model_dir() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data/minilm");
    if dir.join("model.safetensors").exists() && dir.join("model-bf16.safetensors").exists() {
        return Some(dir);
    }
    if std::env::var_os("VRAMZIP_REQUIRE_MODELS").is_some() {
        panic!(
            "VRAMZIP_REQUIRE_MODELS is set but data/minilm is incomplete: run scripts/fetch-models.sh"
        );
    }
    eprintln!(
        "SKIPPED: data/minilm is missing (scripts/fetch-models.sh fetches it; scripts/test.sh does, and then requires it)"
    );
    None
}

struct Reference {
    text: String,
    ids: Vec<u32>,
    embedding: Vec<f64>,
}

fn reference() -> Vec<Reference> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/minilm-reference.json");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    v["sentences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| Reference {
            text: s["text"].as_str().unwrap().into(),
            ids: s["ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i.as_u64().unwrap() as u32)
                .collect(),
            embedding: s["embedding"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e.as_f64().unwrap())
                .collect(),
        })
        .collect()
}

fn cosine(a: &[f32], b: &[f64]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * y).sum();
    let na = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let nb = b.iter().map(|y| y * y).sum::<f64>().sqrt();
    dot / (na * nb)
}

/// The example's tokenizer set-up: no padding, truncation at 256 as sentence-transformers.
fn tokenizer(dir: &std::path::Path) -> tokenizers::Tokenizer {
    let mut t = tokenizers::Tokenizer::from_file(dir.join("tokenizer.json")).unwrap();
    t.with_padding(None);
    t.with_truncation(Some(tokenizers::TruncationParams {
        max_length: 256,
        ..Default::default()
    }))
    .unwrap();
    t
}

/// Every reference sentence: our tokenizer gives the reference ids, the three ways give the same
/// bits, and the embedding is within `min_cosine` of sentence-transformers' (float32).
fn check_model(file: &str, sentences: usize, min_cosine: f64) {
    let Some(dir) = model_dir() else { return };
    let gpu = gpu();
    let config = BertConfig::from_file(dir.join("config.json")).unwrap();
    let tok = tokenizer(&dir);
    let bytes = std::fs::read(dir.join(file)).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let archive = compress(&dir.join(file), &format!("bert-{file}"));
    let models = five_ways(&gpu, &st, &archive, &config);
    for m in &models {
        assert!(m.embed(&gpu, &[]).is_err(), "no tokens");
        assert!(
            m.embed(&gpu, &[101, 30522, 102]).is_err(),
            "outside the vocabulary"
        );
        assert!(
            m.embed(&gpu, &vec![100; 513]).is_err(),
            "more tokens than positions"
        );
    }
    let mut worst = 1.0f64;
    for r in reference().iter().take(sentences) {
        let ids = tok
            .encode(r.text.as_str(), true)
            .unwrap()
            .get_ids()
            .to_vec();
        assert_eq!(ids, r.ids, "{}: token ids", r.text);
        let outs: Vec<Vec<f32>> = models
            .iter()
            .map(|m| m.embed(&gpu, &ids).unwrap())
            .collect();
        assert_eq!(
            bits(&outs[1]),
            bits(&outs[0]),
            "{}: decode+multiply",
            r.text
        );
        assert_eq!(bits(&outs[2]), bits(&outs[0]), "{}: fused", r.text);
        assert_eq!(bits(&outs[3]), bits(&outs[0]), "{}: fixed form", r.text);
        assert_eq!(bits(&outs[4]), bits(&outs[0]), "{}: fastest forms", r.text);
        let c = cosine(&outs[0], &r.embedding);
        assert!(c >= min_cosine, "{}: cosine {c}", r.text);
        worst = worst.min(c);
    }
    eprintln!(
        "{file}: lowest cosine to sentence-transformers over {sentences} sentences: {worst:.7}"
    );
}

#[test]
fn minilm_f32_matches_sentence_transformers_and_is_identical_compressed() {
    check_model("model.safetensors", 8, 0.9999);
}

#[test]
fn minilm_bf16_is_identical_compressed_and_close_to_f32_reference() {
    // bf16 weights against the float32 reference: the cast itself costs a little
    check_model("model-bf16.safetensors", 3, 0.9999);
}
