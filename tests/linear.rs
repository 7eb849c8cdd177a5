//! Y = W X on compressed weights, four ways: decode then multiply, the fused kernel, the product
//! on the fixed resident form (bf16), and the product on the uncompressed weight. All give the
//! same bits; batches give the bits of their columns' single products; and the result is close to
//! a CPU f64 reference.

mod common;

use common::*;
use std::sync::Arc;
use vramzip::codec::shared::Histograms;
use vramzip::format::{self, CompressOptions};
use vramzip::gpu::{GpuContext, GpuOptions, Resident, WeightType};

fn read_bits(gpu: &GpuContext, b: &wgpu::Buffer, n: usize) -> Vec<u32> {
    gpu.read_back(b, 4 * n as u64)
        .unwrap()
        .chunks(4)
        .map(|c| u32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

fn weight(bytes: &[u8], dtype: WeightType, i: usize) -> f64 {
    match dtype {
        WeightType::F32 => f32::from_le_bytes(bytes[4 * i..4 * i + 4].try_into().unwrap()) as f64,
        WeightType::BF16 => half::bf16::from_le_bytes([bytes[2 * i], bytes[2 * i + 1]]).to_f64(),
        WeightType::F16 => half::f16::from_le_bytes([bytes[2 * i], bytes[2 * i + 1]]).to_f64(),
    }
}

/// `batch` columns of `cols` activations, different in each column.
fn activations(cols: usize, batch: usize) -> Vec<f32> {
    (0..batch * cols)
        .map(|i| (((i * 7919 + i / cols * 104729) % 1000) as f32 - 500.0) / 250.0)
        .collect()
}

/// What [`check_file`] checked: matrices, of which fused, of which in the fixed form too, of which
/// coded with a shared codebook.
#[derive(Debug, PartialEq)]
struct Checked {
    matrices: usize,
    fused: usize,
    fixed: usize,
    shared: usize,
}

/// What [`check_file`] checks of the sample: its six bf16 matrices, each fused and in the fixed
/// form too, each with its own codebook.
const SAMPLE: Checked = Checked {
    matrices: 6,
    fused: 6,
    fixed: 6,
    shared: 0,
};

/// Every 2-D weight of `src`, compressed with `opts`, multiplied by `batch` columns: decode then
/// multiply, fused (where the layer allows), the fixed form (bf16) and uncompressed agree bit for
/// bit; every column equals its own single product; all are within float rounding of an f64
/// reference.
fn check_file(
    gpu: &GpuContext,
    src: &std::path::Path,
    name: &str,
    opts: &CompressOptions,
    batch: u32,
) -> Checked {
    let archive = compress_into(name, src, opts);
    let (mut checked, mut fused, mut fixed, mut shared) = (0, 0, 0, 0);
    for t in archive
        .tensors
        .iter()
        .filter(|t| t.meta.shape.len() == 2 && WeightType::from_dtype(&t.meta.dtype).is_some())
    {
        let layer = gpu.linear(&archive, &t.meta.name).unwrap();
        let (rows, cols, n) = (layer.rows as usize, layer.cols as usize, batch as usize);
        let x = activations(cols, n);
        let xb = upload(gpu, bytemuck::cast_slice(&x));
        let out = || gpu.output_buffer(4 * (rows * n) as u64).unwrap();
        let (y_dec, y_fused, y_raw) = (out(), out(), out());
        let scratch = gpu.scratch_for(&[&layer]).unwrap();
        let partials = gpu.partials_for(&[&layer], batch).unwrap();
        let original = archive.decode(t).unwrap();
        let w_raw = upload(gpu, &original);
        let mut encoder = gpu.device.create_command_encoder(&Default::default());
        gpu.record_linear(&mut encoder, &layer, &scratch, &xb, &y_dec, batch)
            .unwrap();
        let can_fuse = layer.unfusable().is_none();
        if can_fuse {
            gpu.record_linear_fused(&mut encoder, &layer, &partials, &xb, &y_fused, batch)
                .unwrap();
        } else {
            assert!(
                gpu.record_linear_fused(&mut encoder, &layer, &partials, &xb, &y_fused, batch)
                    .is_err()
            );
        }
        gpu.record_matmul(
            &mut encoder,
            &w_raw,
            0,
            layer.dtype,
            layer.rows,
            layer.cols,
            &xb,
            &y_raw,
            batch,
        )
        .unwrap();
        gpu.queue.submit([encoder.finish()]);
        let raw = read_bits(gpu, &y_raw, rows * n);
        let what = &t.meta.name;
        if layer.dtype == WeightType::BF16 {
            assert_eq!(
                fixed_product(gpu, &archive, what, &xb, batch),
                raw,
                "{what}: fixed form != uncompressed"
            );
            fixed += 1;
        }
        assert_eq!(
            read_bits(gpu, &y_dec, rows * n),
            raw,
            "{what}: decode+matmul != uncompressed"
        );
        if can_fuse {
            assert_eq!(
                read_bits(gpu, &y_fused, rows * n),
                raw,
                "{what}: fused != uncompressed"
            );
            fused += 1;
        }
        // each column of the batch is the product of that column alone
        for b in [0, n / 2, n - 1] {
            let xs = upload(gpu, bytemuck::cast_slice(&x[b * cols..(b + 1) * cols]));
            let ys = gpu.output_buffer(4 * rows as u64).unwrap();
            let mut encoder = gpu.device.create_command_encoder(&Default::default());
            gpu.record_matmul(
                &mut encoder,
                &w_raw,
                0,
                layer.dtype,
                layer.rows,
                layer.cols,
                &xs,
                &ys,
                1,
            )
            .unwrap();
            gpu.queue.submit([encoder.finish()]);
            assert_eq!(
                read_bits(gpu, &ys, rows),
                raw[b * rows..(b + 1) * rows],
                "{what}: column {b}"
            );
        }
        for (i, got) in raw.iter().enumerate() {
            let (b, r) = (i / rows, i % rows);
            let (mut want, mut scale) = (0f64, 0f64);
            for c in 0..cols {
                let p = weight(&original, layer.dtype, r * cols + c) * x[b * cols + c] as f64;
                want += p;
                scale += p.abs();
            }
            let got = f32::from_bits(*got) as f64;
            assert!(
                (got - want).abs() <= 1e-5 * scale + 1e-30,
                "{what} row {r} column {b}: {got} vs {want}"
            );
        }
        checked += 1;
        if let format::Coding::Huffman {
            codebook: Some(_), ..
        } = t.meta.coding
        {
            shared += 1;
        }
    }
    Checked {
        matrices: checked,
        fused,
        fixed,
        shared,
    }
}

/// The bits of Y = W X with the weight `name` kept in the fixed form.
fn fixed_product(
    gpu: &GpuContext,
    archive: &format::Archive,
    name: &str,
    x: &wgpu::Buffer,
    batch: u32,
) -> Vec<u32> {
    let layer = gpu.linear_as(archive, name, Resident::Fixed).unwrap();
    assert_eq!(layer.resident(), Resident::Fixed);
    // built on the GPU, word for word the CPU builder's form
    let decoded = archive.decode(archive.tensor(name).unwrap()).unwrap();
    let want = vramzip::codec::fixed::FixedForm::new(&decoded).unwrap().0;
    assert!(
        gpu.fixed_form(&layer).unwrap() == want,
        "{name}: the form built on the GPU"
    );
    let y = gpu.output_buffer(4 * (layer.rows * batch) as u64).unwrap();
    // the fixed form needs no scratch and no partial sums
    let workspace = gpu.workspace_for(&[&layer], batch).unwrap();
    assert_eq!(workspace.bytes(), 0);
    let mut encoder = gpu.device.create_command_encoder(&Default::default());
    gpu.record_product(&mut encoder, &layer, &workspace, x, &y, batch)
        .unwrap();
    gpu.queue.submit([encoder.finish()]);
    read_bits(gpu, &y, (layer.rows * batch) as usize)
}

fn chunks(chunk_groups: usize) -> CompressOptions {
    CompressOptions::default().with_chunk_groups(chunk_groups)
}

#[test]
fn real_bf16_weights_default_chunks_single_vector() {
    let checked = check_file(
        &gpu(),
        &sample(),
        "linear-bf16",
        &CompressOptions::default(),
        1,
    );
    assert_eq!(
        checked, SAMPLE,
        "the sample's six dense matrices, all fusable"
    );
}

#[test]
fn real_bf16_weights_small_chunks_batches() {
    // 5 runs on the 8-column pipeline; 21 needs two dispatches (16 + 5)
    for batch in [5, 21] {
        let checked = check_file(&gpu(), &sample(), "linear-batch", &chunks(64), batch);
        assert_eq!(checked, SAMPLE);
    }
}

#[test]
fn shared_codebook_with_escapes_fuses() {
    // a book built from a few hundred values has no code for most symbols: the escape path
    let mut h = Histograms::default();
    h.add("BF16", &weightlike(300, 9));
    let opts = CompressOptions::default()
        .with_chunk_groups(64)
        .with_codebooks(Arc::new(h.build()));
    let checked = check_file(&gpu(), &sample(), "linear-escapes", &opts, 2);
    assert_eq!(
        checked,
        Checked {
            shared: 6,
            ..SAMPLE
        }
    );
}

#[test]
fn f32_and_f16_weights() {
    let dir = tmpdir("linear-types-src");
    let src = dir.join("w.safetensors");
    let widen = |bf16: Vec<u8>| -> Vec<u8> {
        bf16.chunks(2)
            .flat_map(|c| ((u16::from_le_bytes([c[0], c[1]]) as u32) << 16 | 0x5a5a).to_le_bytes())
            .collect()
    };
    // f16 of every finite kind (subnormals included): random bits with the exponent kept below 31
    let f16: Vec<u8> = noise(2 * 40 * 512, 4)
        .chunks(2)
        .flat_map(|c| (u16::from_le_bytes([c[0], c[1]]) & 0xbbff).to_le_bytes())
        .collect();
    write_safetensors(
        &src,
        &[
            (
                "f32.odd",
                "F32",
                vec![96, 130],
                widen(weightlike(96 * 130, 3)),
            ),
            ("f32", "F32", vec![40, 256], widen(weightlike(40 * 256, 5))),
            ("f16", "F16", vec![40, 512], f16),
            ("bf16.short", "BF16", vec![33, 100], weightlike(33 * 100, 6)),
        ],
        None,
    );
    let checked = check_file(&gpu(), &src, "linear-types", &chunks(64), 3);
    assert_eq!(
        checked,
        Checked {
            matrices: 4,
            fused: 2,
            fixed: 1,
            shared: 0
        },
        "the 130- and 100-column rows are not whole steps; the fixed form takes bf16 alone"
    );
}

#[test]
fn the_gl_backend_gives_the_same_products() {
    let gl = GpuContext::new(&GpuOptions::default().with_backend("gl"))
    .unwrap_or_else(|e| {
        panic!("no OpenGL adapter: {e}. Install one (apt-get install libegl-mesa0 libgl1-mesa-dri) rather than skipping.")
    });
    assert_eq!(gl.info.backend, wgpu::Backend::Gl);
    let checked = check_file(&gl, &sample(), "linear-gl", &chunks(64), 3);
    assert_eq!(checked, SAMPLE);
}

#[test]
fn the_table_read_through_the_cache_gives_the_same_products() {
    let cache = GpuContext::new(&GpuOptions::default().with_table_in_workgroup(false)).unwrap();
    let checked = check_file(
        &cache,
        &sample(),
        "linear-table-cache",
        &CompressOptions::default(),
        2,
    );
    assert_eq!(checked, SAMPLE);
}

#[test]
fn the_escape_test_on_every_symbol_gives_the_same_products() {
    let always = GpuContext::new(&GpuOptions::default().with_escape_test(true)).unwrap();
    let checked = check_file(
        &always,
        &sample(),
        "linear-escape-test",
        &CompressOptions::default(),
        1,
    );
    assert_eq!(checked, SAMPLE);
}

#[test]
fn pieces_follow_the_shape_alone() {
    use vramzip::gpu::piece_steps;
    // words a row -> steps of 64 words a piece: the largest power of two up to 4 that divides
    // the row's steps; rows that are not whole steps get 4 (they are never fused)
    let cases = [
        (192, 1),
        (128, 2),
        (768, 4),
        (2048, 4),
        (7168, 4),
        (64, 1),
        (50, 4),
        (0, 4),
    ];
    for (words, q) in cases {
        assert_eq!(piece_steps(words), q, "{words} words a row");
    }
}

#[test]
fn why_a_layer_is_not_fused_is_stated() {
    let gpu = gpu();
    let dir = tmpdir("linear-unfusable");
    let src = dir.join("w.safetensors");
    write_safetensors(
        &src,
        &[
            ("short", "BF16", vec![8, 100], weightlike(800, 1)),
            ("ok", "BF16", vec![8, 1024], weightlike(8192, 2)),
        ],
        None,
    );
    let archive = compress_into("linear-unfusable-vz", &src, &chunks(6));
    let short = gpu.linear(&archive, "short").unwrap();
    assert!(
        short.unfusable().unwrap().contains("50 words"),
        "{:?}",
        short.unfusable()
    );
    // 512 words a row: pieces of 4 steps, which 6-group chunks do not hold whole
    let mut ok = gpu.linear(&archive, "ok").unwrap();
    assert!(
        ok.unfusable().unwrap().contains("multiple of 4"),
        "{:?}",
        ok.unfusable()
    );
    // the layer decides once: it takes the fused kernel only where it can
    assert!(!ok.fused());
    let err = ok.set_fused(true).unwrap_err().to_string();
    assert!(err.contains("multiple of 4"), "{err}");
}

#[test]
fn record_product_follows_the_layers_choice() {
    let gpu = gpu();
    let archive = compress_into("linear-choice", &sample(), &chunks(64));
    let name = "encoder.layer.0.attention.self.query.weight";
    let mut layer = gpu.linear(&archive, name).unwrap();
    assert!(layer.fused(), "fused by default where it can be");
    let x = upload(
        &gpu,
        bytemuck::cast_slice(&activations(layer.cols as usize, 3)),
    );
    let rows = layer.rows as usize;
    let run = |layer: &vramzip::gpu::Linear| {
        let ws = gpu.workspace_for(&[layer], 3).unwrap();
        let y = gpu.output_buffer(4 * 3 * rows as u64).unwrap();
        let mut encoder = gpu.device.create_command_encoder(&Default::default());
        gpu.record_product(&mut encoder, layer, &ws, &x, &y, 3)
            .unwrap();
        gpu.queue.submit([encoder.finish()]);
        (read_bits(&gpu, &y, 3 * rows), ws.bytes())
    };
    let (fused, fused_ws) = run(&layer);
    layer.set_fused(false).unwrap();
    let (decoded, decode_ws) = run(&layer);
    assert_eq!(fused, decoded);
    // the fused product's workspace is its partial sums, far smaller than the decode scratch
    assert!(fused_ws * 8 < decode_ws, "{fused_ws} vs {decode_ws}");
    // a workspace made for another layer's choice is refused, not misused
    let other = gpu.workspace_for(&[], 3).unwrap();
    let y = gpu.output_buffer(4 * 3 * rows as u64).unwrap();
    let mut encoder = gpu.device.create_command_encoder(&Default::default());
    assert!(
        gpu.record_product(&mut encoder, &layer, &other, &x, &y, 3)
            .is_err()
    );
}

#[test]
fn linear_layers_refuse_what_they_cannot_multiply() {
    let gpu = gpu();
    let dir = tmpdir("linear-bad");
    let src = dir.join("w.safetensors");
    write_safetensors(
        &src,
        &[
            ("odd", "BF16", vec![4, 3], weightlike(12, 1)),
            ("flat", "BF16", vec![12], weightlike(12, 2)),
            ("ok", "BF16", vec![4, 128], weightlike(512, 3)),
        ],
        None,
    );
    let archive = compress_into("linear-bad-vz", &src, &CompressOptions::default());
    assert!(gpu.linear(&archive, "odd").is_err());
    assert!(gpu.linear(&archive, "flat").is_err());
    assert!(gpu.linear(&archive, "missing").is_err());
    // buffers too small for the batch are refused before anything is recorded
    let ok = gpu.linear(&archive, "ok").unwrap();
    let small = gpu.output_buffer(4 * 128).unwrap();
    let y = gpu.output_buffer(4 * 4 * 2).unwrap();
    let scratch = gpu.scratch_for(&[&ok]).unwrap();
    let mut encoder = gpu.device.create_command_encoder(&Default::default());
    assert!(
        gpu.record_linear(&mut encoder, &ok, &scratch, &small, &y, 2)
            .is_err()
    );
    assert!(
        gpu.record_linear(&mut encoder, &ok, &scratch, &small, &y, 0)
            .is_err()
    );
    let partials = gpu.output_buffer(4).unwrap();
    let x = gpu.output_buffer(4 * 128 * 2).unwrap();
    assert!(
        gpu.record_linear_fused(&mut encoder, &ok, &partials, &x, &y, 2)
            .is_err()
    );
}

#[test]
fn a_repeated_product_makes_no_new_bind_groups() {
    // an inference loop runs the same layers on the same buffers token after token: the second
    // round must bind what the first made, not make a uniform buffer and bind group a dispatch
    let gpu = gpu();
    let archive = compress_into("bind-reuse", &sample(), &chunks(64));
    let name = "encoder.layer.0.intermediate.dense.weight";
    let layer = gpu.linear(&archive, name).unwrap();
    let x = upload(
        &gpu,
        bytemuck::cast_slice(&activations(layer.cols as usize, 1)),
    );
    let y = gpu.output_buffer(4 * layer.rows as u64).unwrap();
    let scratch = gpu.scratch_for(&[&layer]).unwrap();
    let partials = gpu.partials_for(&[&layer], 1).unwrap();
    let round = || {
        let mut encoder = gpu.device.create_command_encoder(&Default::default());
        gpu.record_linear(&mut encoder, &layer, &scratch, &x, &y, 1)
            .unwrap();
        gpu.record_linear_fused(&mut encoder, &layer, &partials, &x, &y, 1)
            .unwrap();
        gpu.queue.submit([encoder.finish()]);
        gpu.wait().unwrap();
    };
    round();
    let made = gpu.cached_bind_groups();
    assert!(made >= 4, "decode, product, fused, sums: {made}");
    for _ in 0..3 {
        round();
    }
    assert_eq!(gpu.cached_bind_groups(), made);
}

/// The autotune measures each layer shape once per device and batch and makes the layer take the
/// faster kind at each batch; products follow that choice and give the bits of the other kind;
/// `set_fused` overrides it; a layer the fused kernel cannot take stays decoded, unmeasured.
#[test]
fn tuning_chooses_per_batch_and_measures_a_shape_once() {
    let gpu = gpu();
    let archive = compress_into("linear-tune", &sample(), &CompressOptions::default());
    let layer = |name: &str| gpu.linear(&archive, name).unwrap();
    let mut query = layer("encoder.layer.0.attention.self.query.weight");
    let mut key = layer("encoder.layer.0.attention.self.key.weight");
    let first = gpu.tune(&mut query, &[1, 8]).unwrap();
    for t in &first {
        let (fused, decoded) = t.seconds.expect("a new shape is measured");
        assert!(fused > 0.0 && decoded > 0.0);
        assert_eq!(t.fused, fused <= decoded);
        assert_eq!(query.fused_at(t.batch), t.fused);
    }
    // the same shape: the choices come from the context's cache
    let second = gpu.tune(&mut key, &[1, 8]).unwrap();
    assert!(second.iter().all(|t| t.seconds.is_none()), "{second:?}");
    assert_eq!(
        first.iter().map(|t| t.fused).collect::<Vec<_>>(),
        second.iter().map(|t| t.fused).collect::<Vec<_>>()
    );
    for batch in [1u32, 8] {
        let (rows, cols) = (query.rows as usize, query.cols as usize);
        let x = upload(
            &gpu,
            bytemuck::cast_slice(&activations(cols, batch as usize)),
        );
        let workspace = gpu.workspace_for(&[&query], batch).unwrap();
        let (y_chosen, y_decoded) = (
            gpu.output_buffer(4 * (rows * batch as usize) as u64)
                .unwrap(),
            gpu.output_buffer(4 * (rows * batch as usize) as u64)
                .unwrap(),
        );
        let scratch = gpu.scratch_for(&[&query]).unwrap();
        let mut encoder = gpu.device.create_command_encoder(&Default::default());
        gpu.record_product(&mut encoder, &query, &workspace, &x, &y_chosen, batch)
            .unwrap();
        gpu.record_linear(&mut encoder, &query, &scratch, &x, &y_decoded, batch)
            .unwrap();
        gpu.queue.submit([encoder.finish()]);
        let n = rows * batch as usize;
        assert_eq!(
            read_bits(&gpu, &y_chosen, n),
            read_bits(&gpu, &y_decoded, n)
        );
    }
    query.set_fused(false).unwrap();
    assert!(!query.fused_at(1) && !query.fused_at(8));
    // a 100-column bf16 layer is 50 words a row, not whole 64-word steps: never fused
    let dir = tmpdir("linear-tune-short");
    let src = dir.join("w.safetensors");
    write_safetensors(
        &src,
        &[("short", "BF16", vec![8, 100], weightlike(800, 1))],
        None,
    );
    let short_archive = compress_into("linear-tune-short-vz", &src, &CompressOptions::default());
    let mut short = gpu.linear(&short_archive, "short").unwrap();
    let tuned = gpu.tune(&mut short, &[1]).unwrap();
    assert_eq!((tuned[0].fused, tuned[0].seconds), (false, None));
    assert!(!short.fused_at(1));
}
