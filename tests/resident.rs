//! The fixed resident form on the GPU: products on it give the bits of the uncompressed product
//! on any bf16 values (rare exponents, NaN, infinities, subnormals), rows come back exact, what it
//! cannot take is refused, and the measured choice keeps to its VRAM budget.

mod common;

use common::*;
use vramzip::codec::fixed::FixedForm;
use vramzip::format::{Archive, CompressOptions};
use vramzip::gpu::{GpuContext, Linear, Resident, WeightType};

/// Real-statistics bf16 weights with every `every`-th one replaced by random bits: rare
/// exponents (listed apart), NaN, infinities and subnormals among ordinary weights.
fn with_wild_values(n: usize, every: usize, seed: u64) -> Vec<u8> {
    let mut w = weightlike(n, seed);
    let wild = noise(2 * n, seed + 1);
    for i in (0..n).step_by(every) {
        w[2 * i..2 * i + 2].copy_from_slice(&wild[2 * i..2 * i + 2]);
    }
    w
}

/// The bits of Y = W X for `layer` (by record_product) and for its uncompressed weight `w`.
fn products(gpu: &GpuContext, layer: &Linear, w: &[u8], batch: u32) -> (Vec<u8>, Vec<u8>) {
    let x: Vec<f32> = (0..layer.cols * batch)
        .map(|i| ((i * 7919 % 1000) as f32 - 500.0) / 250.0)
        .collect();
    let x = upload(gpu, bytemuck::cast_slice(&x));
    let out = 4 * (layer.rows * batch) as u64;
    let (y, y_raw) = (
        gpu.output_buffer(out).unwrap(),
        gpu.output_buffer(out).unwrap(),
    );
    let workspace = gpu.workspace_for(&[layer], batch).unwrap();
    let w_raw = upload(gpu, w);
    let mut encoder = gpu.device.create_command_encoder(&Default::default());
    gpu.record_product(&mut encoder, layer, &workspace, &x, &y, batch)
        .unwrap();
    let (rows, cols) = (layer.rows, layer.cols);
    gpu.record_matmul(
        &mut encoder,
        &w_raw,
        0,
        WeightType::BF16,
        rows,
        cols,
        &x,
        &y_raw,
        batch,
    )
    .unwrap();
    gpu.queue.submit([encoder.finish()]);
    (
        gpu.read_back(&y, out).unwrap(),
        gpu.read_back(&y_raw, out).unwrap(),
    )
}

/// f32 results as their bits, NaNs as one value: where a product meets NaN weights its result
/// is NaN whichever way W is kept, but which NaN (the payload) is the hardware's choice, and
/// differs between two compilations of the same arithmetic.
fn as_results(bytes: &[u8]) -> Vec<u32> {
    bytes
        .chunks(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .map(|v| {
            if v.is_nan() {
                f32::NAN.to_bits()
            } else {
                v.to_bits()
            }
        })
        .collect()
}

/// The rows `ids` of `layer` (fixed form) read back.
fn rows(gpu: &GpuContext, layer: &Linear, ids: &[u32]) -> Vec<u8> {
    let bytes = 2 * ids.len() as u64 * layer.cols as u64;
    let out = gpu.output_buffer(bytes).unwrap();
    let ids_buffer = upload(gpu, bytemuck::cast_slice(ids));
    let mut encoder = gpu.device.create_command_encoder(&Default::default());
    gpu.record_rows(&mut encoder, layer, &ids_buffer, ids.len() as u32, &out)
        .unwrap();
    gpu.queue.submit([encoder.finish()]);
    gpu.read_back(&out, bytes).unwrap()
}

fn archive_of(name: &str, tensors: &[(&str, &str, Vec<u64>, Vec<u8>)]) -> (TestDir, Archive) {
    let dir = tmpdir(name);
    let src = dir.join("w.safetensors");
    write_safetensors(&src, tensors, None);
    let archive = compress_into(&format!("{name}-vz"), &src, &CompressOptions::default());
    (dir, archive)
}

#[test]
fn any_bf16_values_give_the_bits_of_the_uncompressed_product_and_rows() {
    let gpu = gpu();
    // 520 columns: rows of 260 words, not whole 4-word loads (the narrow path); 1024: the wide
    let cases: [(&str, u64, u64, usize); 6] = [
        ("rare", 40, 1024, 97),
        ("wild3", 24, 520, 3),
        ("wild2", 24, 1024, 1),
        ("wild", 24, 520, 1),
        ("odd", 37, 520, 13),
        // 19,314 elements: not whole words of either plane
        ("ragged", 37, 522, 5),
    ];
    let tensors: Vec<_> = cases
        .iter()
        .map(|&(name, r, c, every)| {
            let w = with_wild_values((r * c) as usize, every, r);
            (name, "BF16", vec![r, c], w)
        })
        .collect();
    let (_dir, archive) = archive_of("resident-values", &tensors);
    for (name, _, shape, w) in &tensors {
        let (form, stats) = FixedForm::new(w).unwrap();
        assert!(stats.exceptions > 0, "{name}: some exponents listed apart");
        assert_eq!(&form.to_bf16().unwrap(), w, "{name}: the CPU reading");
        let layer = gpu.linear_as(&archive, name, Resident::Fixed).unwrap();
        assert_eq!(
            gpu.fixed_form(&layer).unwrap(),
            form,
            "{name}: built on the GPU"
        );
        assert_eq!(layer.fixed_exceptions(), Some(stats.exceptions));
        assert_eq!(layer.resident_bytes(), form.bytes());
        for batch in [1, 3, 17] {
            let (got, want) = products(&gpu, &layer, w, batch);
            assert_eq!(as_results(&got), as_results(&want), "{name}, batch {batch}");
        }
        // every row in order, then some out of order, repeated and past the end (zeros)
        let all: Vec<u32> = (0..shape[0] as u32).collect();
        assert_eq!(&rows(&gpu, &layer, &all), w, "{name}: all rows");
        let row_bytes = 2 * shape[1] as usize;
        let picked = [5u32, 0, 5, shape[0] as u32 - 1, shape[0] as u32, u32::MAX];
        let got = rows(&gpu, &layer, &picked);
        for (k, &id) in picked.iter().enumerate() {
            let want = match w.get(id as usize * row_bytes..(id as usize + 1) * row_bytes) {
                Some(row) => row.to_vec(),
                None => vec![0; row_bytes],
            };
            assert_eq!(
                got[k * row_bytes..(k + 1) * row_bytes],
                want,
                "{name}: row {id}"
            );
        }
    }
}

#[test]
fn the_gpu_builds_the_cpu_form_word_for_word() {
    // 300 exception blocks (the starts are summed 256 at a time), rare exponents in some blocks
    // only, and a tensor with no exceptions at all; then the sample's real matrices
    let gpu = gpu();
    let mut sparse = weightlike(300 * 4096, 7);
    let wild = noise(2 * 300 * 4096, 8);
    for i in (0..300 * 4096).step_by(40_009) {
        sparse[2 * i..2 * i + 2].copy_from_slice(&wild[2 * i..2 * i + 2]);
    }
    let tame: Vec<u8> = (0..64 * 64u32)
        .flat_map(|i| (0x3c00 + (i % 0x300) as u16).to_le_bytes())
        .collect();
    let (_dir, archive) = archive_of(
        "resident-build",
        &[
            ("sparse", "BF16", vec![300, 4096], sparse),
            ("tame", "BF16", vec![64, 64], tame),
        ],
    );
    let real = compress_into(
        "resident-build-real",
        &sample(),
        &CompressOptions::default(),
    );
    let mut checked = 0;
    for archive in [&archive, &real] {
        for t in
            (archive.tensors.iter()).filter(|t| t.meta.shape.len() == 2 && t.meta.dtype == "BF16")
        {
            let name = &t.meta.name;
            let huffman = gpu.linear(archive, name).unwrap();
            // the build's scratch is bound once, so no cached bind group keeps it alive
            let cached = gpu.cached_bind_groups();
            let layer = gpu.fixed_from(&huffman).unwrap();
            assert_eq!(gpu.cached_bind_groups(), cached, "{name}");
            drop(huffman);
            let w = archive.decode(t).unwrap();
            let (want, stats) = FixedForm::new(&w).unwrap();
            let got = gpu.fixed_form(&layer).unwrap();
            assert_eq!(got.words.len(), want.words.len(), "{name}");
            if let Some(i) = (0..got.words.len()).find(|&i| got.words[i] != want.words[i]) {
                panic!(
                    "{name}: word {i} is {:08x}, not {:08x}",
                    got.words[i], want.words[i]
                );
            }
            assert_eq!(got.to_bf16().unwrap(), w, "{name}");
            assert_eq!(layer.fixed_exceptions(), Some(stats.exceptions), "{name}");
            if name == "tame" {
                assert_eq!(stats.exceptions, 0);
            }
            checked += 1;
        }
    }
    assert_eq!(
        checked,
        2 + 6,
        "two made tensors and the sample's six bf16 matrices"
    );
    let e = gpu
        .fixed_form(&gpu.linear(&archive, "tame").unwrap())
        .unwrap_err();
    assert!(e.to_string().contains("Huffman"), "{e}");
}

#[test]
fn the_fixed_form_is_refused_where_it_cannot_be() {
    let gpu = gpu();
    let (_dir, archive) = archive_of(
        "resident-refused",
        &[
            ("f32", "F32", vec![8, 64], noise(4 * 8 * 64, 1)),
            ("f16", "F16", vec![8, 64], noise(2 * 8 * 64, 2)),
            ("bf16", "BF16", vec![8, 64], weightlike(8 * 64, 3)),
        ],
    );
    for name in ["f32", "f16"] {
        let e = gpu.linear_as(&archive, name, Resident::Fixed).unwrap_err();
        assert!(e.to_string().contains("BF16"), "{e}");
    }
    let huffman = gpu.linear_as(&archive, "bf16", Resident::Huffman).unwrap();
    let fixed = gpu.linear_as(&archive, "bf16", Resident::Fixed).unwrap();
    assert_eq!(
        (huffman.resident(), fixed.resident()),
        (Resident::Huffman, Resident::Fixed)
    );
    assert!(fixed.unfusable().unwrap().contains("fixed form"));
    let buffer = gpu.output_buffer(4096).unwrap();
    let mut encoder = gpu.device.create_command_encoder(&Default::default());
    let e = gpu
        .record_rows(&mut encoder, &huffman, &buffer, 1, &buffer)
        .unwrap_err();
    assert!(e.to_string().contains("Huffman"), "{e}");
    let e = gpu
        .record_linear(&mut encoder, &fixed, &buffer, &buffer, &buffer, 1)
        .unwrap_err();
    assert!(e.to_string().contains("fixed form"), "{e}");
    assert!(
        gpu.record_linear_fused(&mut encoder, &fixed, &buffer, &buffer, &buffer, 1)
            .is_err()
    );
    // 9 rows of 128 bytes do not fit 1 KiB
    let small = gpu.output_buffer(1024).unwrap();
    assert!(
        gpu.record_rows(&mut encoder, &fixed, &buffer, 9, &small)
            .is_err()
    );
    assert!("auto".parse::<Resident>().is_err());
    assert_eq!("fixed".parse::<Resident>().unwrap(), Resident::Fixed);
}

#[test]
fn real_weights_fit_three_quarters_of_their_bytes() {
    // the sample's real bf16 matrices: the target of the fixed form is <= 0.76 of bf16
    let gpu = gpu();
    let archive = compress_into("resident-real", &sample(), &CompressOptions::default());
    let (mut fixed, mut original) = (0, 0);
    for t in archive
        .tensors
        .iter()
        .filter(|t| t.meta.shape.len() == 2 && t.meta.dtype == "BF16")
    {
        let layer = gpu
            .linear_as(&archive, &t.meta.name, Resident::Fixed)
            .unwrap();
        fixed += layer.resident_bytes();
        original += t.meta.bytes;
    }
    let ratio = fixed as f64 / original as f64;
    assert!(
        original > 0 && ratio <= 0.76,
        "{fixed} of {original} bytes: {ratio}"
    );
}

#[test]
fn the_measured_choice_keeps_to_its_budget() {
    let gpu = gpu();
    let archive = compress_into("resident-auto", &sample(), &CompressOptions::default());
    let names: Vec<String> = (archive.tensors.iter())
        .filter(|t| t.meta.shape.len() == 2 && t.meta.dtype == "BF16")
        .map(|t| t.meta.name.clone())
        .collect();
    let names: Vec<&str> = names.iter().map(|s| s.as_str()).collect();
    let (layers, choices) = gpu.linears_auto(&archive, &names, None, 2).unwrap();
    assert_eq!(layers.len(), names.len());
    let huffman: u64 = choices.iter().map(|c| c.bytes.0).sum();
    for (l, c) in layers.iter().zip(&choices) {
        assert_eq!(l.name, c.name);
        assert_eq!(l.resident(), c.resident);
        let fixed = c.bytes.1.expect("bf16 layers can take the fixed form");
        assert!(
            fixed > c.bytes.0,
            "{}: fixed {fixed} vs {}",
            c.name,
            c.bytes.0
        );
        // unlimited: the faster form, as measured
        let faster = c.seconds.1.unwrap() < c.seconds.0;
        assert_eq!(c.resident == Resident::Fixed, faster, "{c:?}");
        let w = archive.decode(archive.tensor(&c.name).unwrap()).unwrap();
        let (got, want) = products(&gpu, l, &w, 2);
        assert_eq!(as_results(&got), as_results(&want), "{}", c.name);
    }
    // a budget of the Huffman forms alone leaves every layer Huffman-coded
    let (layers, choices) = gpu
        .linears_auto(&archive, &names, Some(huffman), 2)
        .unwrap();
    assert!(choices.iter().all(|c| c.resident == Resident::Huffman));
    assert_eq!(
        layers.iter().map(|l| l.resident_bytes()).sum::<u64>(),
        huffman
    );
    let e = gpu
        .linears_auto(&archive, &names, Some(huffman - 1), 2)
        .unwrap_err();
    assert!(e.to_string().contains("smallest resident form"), "{e}");
}

#[test]
fn bench_reports_the_resident_forms() {
    let out = vramzip(&["bench", "--resident", "auto", "--batch", "2", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let p = &doc["products"][0];
    assert_eq!(p["resident"], "auto");
    assert_eq!(p["batch"], 2);
    assert_eq!(p["layers"], 6, "the sample's six bf16 matrices");
    let original = p["original_bytes"].as_f64().unwrap();
    let (huffman, fixed) = (
        p["huffman_bytes"].as_f64().unwrap(),
        p["fixed_bytes"].as_f64().unwrap(),
    );
    assert!(huffman < fixed && fixed <= 0.76 * original, "{p}");
    for key in ["uncompressed_s", "huffman_s", "fixed_s"] {
        assert!(p[key].as_f64().unwrap() > 0.0, "{key}: {p}");
    }
    for key in ["bf16_s", "huffman_s", "build_s", "fixed_s"] {
        assert!(p["load"][key].as_f64().unwrap() > 0.0, "load {key}: {p}");
    }
    let auto = &p["auto"];
    let fixed_layers = auto["fixed_layers"].as_u64().unwrap();
    assert!(fixed_layers <= 6);
    let bytes = auto["bytes"].as_f64().unwrap();
    assert!(huffman <= bytes && bytes <= fixed, "{p}");
    // the chosen forms' products: the Huffman or the fixed figure where every layer took one
    // form, a mix of the two otherwise
    let (at_batch, huffman_s, fixed_s) = (
        auto["s"].as_f64().unwrap(),
        p["huffman_s"].as_f64().unwrap(),
        p["fixed_s"].as_f64().unwrap(),
    );
    match fixed_layers {
        0 => assert_eq!(at_batch, huffman_s, "{p}"),
        6 => assert_eq!(at_batch, fixed_s, "{p}"),
        _ => assert!(at_batch > 0.0 && at_batch < huffman_s + fixed_s, "{p}"),
    }
    let over = auto["over_uncompressed"].as_f64().unwrap();
    assert!((over - at_batch / p["uncompressed_s"].as_f64().unwrap()).abs() < 1e-9);
    // an unknown form is refused
    let bad = vramzip(&["bench", "--resident", "fast"]);
    assert!(!bad.status.success());
}
