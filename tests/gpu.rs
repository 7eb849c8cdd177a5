//! GPU decode against the CPU decoder and the original bytes. These run on whatever adapter wgpu
//! finds (Mesa's lavapipe in CI); with no adapter they fail, loudly, rather than skip.

mod common;

use common::*;
use std::sync::OnceLock;
use vramzip::format::{self, Archive, CompressOptions};
use vramzip::gpu::{GpuContext, GpuOptions, Source};

fn ctx() -> &'static GpuContext {
    static CTX: OnceLock<GpuContext> = OnceLock::new();
    CTX.get_or_init(|| {
        GpuContext::new(&GpuOptions::default()).unwrap_or_else(|e| {
            panic!("GPU tests need a GPU adapter and found none: {e}. Install one (apt-get install mesa-vulkan-drivers) rather than skipping these tests.")
        })
    })
}

/// Compresses `src` into `x.vz` of a fresh directory; the directory goes when the first part of the
/// answer is dropped (the archive still reads the file through its open handle).
fn compressed(name: &str, src: &std::path::Path, chunk_groups: usize) -> (TestDir, Archive) {
    let dir = tmpdir(name);
    let vz = dir.join("x.vz");
    format::compress_file(
        src,
        &vz,
        &CompressOptions::default().with_chunk_groups(chunk_groups),
        &|_| {},
    )
    .unwrap();
    let a = Archive::open(&vz).unwrap();
    (dir, a)
}

/// Decodes every tensor of `archive` on `gpu` as one upload, checks each against the CPU decoder.
fn check_all(gpu: &GpuContext, archive: &Archive) -> usize {
    let entries: Vec<_> = archive.tensors.iter().collect();
    let groups = gpu.upload(archive, &entries).unwrap();
    let mut decoded: std::collections::HashMap<String, Vec<u8>> = Default::default();
    for g in &groups {
        // a decode read back once keeps no bind group, so nothing holds its buffers afterwards
        let cached = gpu.cached_bind_groups();
        let out = gpu.decode_to_vec(g).unwrap();
        assert_eq!(gpu.cached_bind_groups(), cached);
        for s in &g.slices {
            let t = archive.tensor(&s.name).unwrap();
            let buf = decoded
                .entry(s.name.clone())
                .or_insert_with(|| vec![0u8; t.meta.bytes as usize]);
            buf[s.tensor_offset as usize..(s.tensor_offset + s.bytes) as usize]
                .copy_from_slice(&out[s.offset as usize..(s.offset + s.bytes) as usize]);
        }
    }
    for t in &archive.tensors {
        let cpu = archive.decode(t).unwrap(); // checks the stored checksum of the original bytes
        assert_eq!(
            decoded[&t.meta.name], cpu,
            "GPU and CPU differ on '{}'",
            t.meta.name
        );
    }
    groups.len()
}

#[test]
fn real_weights_sample_decodes_bit_exact() {
    let (_, archive) = compressed("gpu-sample", &sample(), 1024);
    assert_eq!(check_all(ctx(), &archive), 1, "the sample fits one group");
}

#[test]
fn every_dtype_edge_case_and_chunk_size() {
    let dir = tmpdir("gpu-mixed-src");
    let src = dir.join("m.safetensors");
    let originals = mixed_file(&src);
    for cg in [1, 7, 64, 1024] {
        let (_, archive) = compressed(&format!("gpu-mixed-{cg}"), &src, cg);
        check_all(ctx(), &archive);
        for (name, bytes) in &originals {
            let t = archive.tensor(name).unwrap();
            assert_eq!(
                &ctx().decode_tensor(&archive, t).unwrap(),
                bytes,
                "{name}, chunk_groups {cg}"
            );
        }
    }
}

#[test]
fn small_binding_limit_splits_tensors_over_groups() {
    // 64 KiB bindings: the sample's 1536x384 matrices (1.2 MB decoded) need many pieces
    let small = GpuContext::new(&GpuOptions::default().with_max_binding_bytes(64 << 10)).unwrap();
    assert_eq!(small.limits.max_storage_buffer_binding_size, 64 << 10);
    let (_, archive) = compressed("gpu-split", &sample(), 16);
    let groups = check_all(&small, &archive);
    assert!(groups > 20, "expected many groups, got {groups}");
    // a block that cannot fit the binding limit is an error, not a crash
    let (_, big_chunks) = compressed("gpu-split-big", &sample(), 1024);
    let t = big_chunks
        .tensors
        .iter()
        .find(|t| t.meta.name.ends_with("intermediate.dense.weight"))
        .unwrap();
    let err = small.upload(&big_chunks, &[t]).unwrap_err().to_string();
    assert!(err.contains("binding limit"), "{err}");
}

#[test]
fn decode_records_into_the_callers_encoder_at_an_offset() {
    let gpu = ctx();
    let (_, archive) = compressed("gpu-offset", &sample(), 1024);
    let t = archive
        .tensor("encoder.layer.0.attention.self.key.weight")
        .unwrap();
    let group = gpu.upload(&archive, &[t]).unwrap().pop().unwrap();
    let offset = 260u64; // not a multiple of the binding alignment
    let total = offset + group.output_bytes + 64;
    let out = gpu.output_buffer(total).unwrap();
    gpu.queue
        .write_buffer(&out, 0, &vec![0xabu8; total as usize]);
    let mut encoder = gpu.device.create_command_encoder(&Default::default());
    gpu.record_decode(&mut encoder, &group, &out, offset)
        .unwrap();
    gpu.queue.submit([encoder.finish()]);
    let got = gpu.read_back(&out, total).unwrap();
    let end = (offset + t.meta.bytes) as usize;
    assert!(
        got[..offset as usize].iter().all(|&b| b == 0xab),
        "bytes before the offset were overwritten"
    );
    assert_eq!(
        &got[offset as usize..end],
        archive.decode(t).unwrap().as_slice()
    );
    assert!(
        got[end..].iter().all(|&b| b == 0xab),
        "bytes after the tensor were overwritten"
    );
    // misaligned or too-small outputs are refused
    let mut encoder = gpu.device.create_command_encoder(&Default::default());
    assert!(gpu.record_decode(&mut encoder, &group, &out, 2).is_err());
    assert!(
        gpu.record_decode(&mut encoder, &group, &out, total)
            .is_err()
    );
}

/// Makes a region of the first block of `index` one bit longer and the next one bit shorter (the
/// layout is in src/codec/mod.rs): the index stays valid, two streams' starts are wrong.
fn shift_first_boundary(index: &mut [u8]) {
    let mut words: Vec<u32> = index
        .chunks(4)
        .map(|c| u32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    let width = (words[0] >> 27) as u64;
    let bits = |words: &[u32], at: u64| -> u64 {
        (0..width).fold(0, |v, k| {
            let b = 32 + at + k;
            v | (((words[(b / 32) as usize] >> (b % 32)) & 1) as u64) << k
        })
    };
    let set = |words: &mut [u32], at: u64, v: u64| {
        for k in 0..width {
            let b = 32 + at + k;
            let w = &mut words[(b / 32) as usize];
            *w = (*w & !(1 << (b % 32))) | (((v >> k) & 1) as u32) << (b % 32);
        }
    };
    let p = (0..127u64)
        .find(|&p| bits(&words, p * width) + 1 < 1 << width && bits(&words, (p + 1) * width) > 0)
        .expect("two regions whose boundary can move");
    let (d0, d1) = (bits(&words, p * width), bits(&words, (p + 1) * width));
    set(&mut words, p * width, d0 + 1);
    set(&mut words, (p + 1) * width, d1 - 1);
    for (c, w) in index.chunks_mut(4).zip(&words) {
        c.copy_from_slice(&w.to_le_bytes());
    }
}

#[test]
fn corrupt_streams_do_not_hang_and_are_reported() {
    let gpu = ctx();
    let (dir, archive) = compressed("gpu-corrupt", &sample(), 64);
    let vz = dir.join("x.vz");
    let name = "encoder.layer.0.intermediate.dense.weight";
    let (start, end) = archive.range(name).unwrap();
    let index = archive.tensor(name).unwrap().parts().unwrap().index;
    drop(archive);
    let good = std::fs::read(&vz).unwrap();
    let mut s = 17u64;
    for round in 0..100 {
        let mut bad = good.clone();
        for _ in 0..(1 + round % 5) {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let at = start as usize + (s >> 33) as usize % (end - start) as usize;
            bad[at] ^= 1 << ((s >> 8) % 8);
        }
        if round % 6 == 5 {
            // an index that passes every check but moves the boundary between two regions of a
            // block by a bit: two streams start where they do not
            shift_first_boundary(&mut bad[index.0 as usize..index.1 as usize]);
        }
        std::fs::write(&vz, &bad).unwrap();
        let archive = Archive::open(&vz).unwrap();
        let t = archive.tensor(name).unwrap();
        match gpu.decode_tensor(&archive, t) {
            Ok(bytes) => assert_ne!(
                format::checksum(&bytes),
                t.xxh3,
                "round {round}: corruption went unseen"
            ),
            Err(e) => assert!(!e.to_string().is_empty()),
        }
    }
    std::fs::write(&vz, &good).unwrap();
    let archive = Archive::open(&vz).unwrap();
    let t = archive.tensor(name).unwrap();
    assert_eq!(
        format::checksum(&gpu.decode_tensor(&archive, t).unwrap()),
        t.xxh3,
        "the device still decodes correctly after corrupt input"
    );
}

#[test]
fn verify_command_names_the_tensors_that_differ() {
    let (dir, archive) = compressed("gpu-verify", &sample(), 1024);
    let vz = dir.join("x.vz");
    let (start, _) = archive
        .range("encoder.layer.0.output.dense.weight")
        .unwrap();
    let run = vramzip;
    let ok = run(&["verify", vz.to_str().unwrap()]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let mut bytes = std::fs::read(&vz).unwrap();
    let parts = archive
        .tensor("encoder.layer.0.output.dense.weight")
        .unwrap()
        .parts()
        .copied()
        .unwrap();
    let at = (parts.stream.0 + 1000) as usize;
    assert!(at > start as usize);
    bytes[at] ^= 0x10;
    std::fs::write(&vz, &bytes).unwrap();
    for args in [vec!["verify"], vec!["verify", "--cpu"]] {
        let mut args = args.clone();
        args.push(vz.to_str().unwrap());
        let bad = run(&args);
        assert_eq!(bad.status.code(), Some(1), "{args:?}");
        let err = String::from_utf8_lossy(&bad.stderr);
        assert!(
            err.contains("encoder.layer.0.output.dense.weight") && err.contains("1 of 19"),
            "{args:?}: {err}"
        );
    }
}

#[test]
fn gpu_errors_in_recorded_work_are_errors_not_panics() {
    // its own context: the error is reported once, by the next wait
    let gpu = GpuContext::new(&GpuOptions::default()).unwrap();
    let small = gpu.output_buffer(16).unwrap();
    let big = gpu.output_buffer(1024).unwrap();
    let mut encoder = gpu.device.create_command_encoder(&Default::default());
    encoder.copy_buffer_to_buffer(&big, 0, &small, 0, 1024); // out of range
    gpu.queue.submit([encoder.finish()]);
    let err = gpu.wait().unwrap_err().to_string();
    assert!(err.starts_with("GPU error"), "{err}");
    gpu.wait().unwrap();
}

#[test]
fn shared_codebooks_and_escapes_decode_on_the_gpu() {
    let dir = tmpdir("gpu-shared-src");
    let src = dir.join("m.safetensors");
    mixed_file(&src);
    // books from different data (the sample), so the mixed file escapes many symbols
    let mut h = vramzip::codec::shared::Histograms::default();
    vramzip::format::add_to_histograms(&mut h, sample()).unwrap();
    vramzip::format::add_to_histograms(&mut h, &src).unwrap();
    let opts = CompressOptions::default().with_codebooks(std::sync::Arc::new(h.build()));
    let vz = dir.join("m.vz");
    format::compress_file(&src, &vz, &opts, &|_| {}).unwrap();
    check_all(ctx(), &Archive::open(&vz).unwrap());

    let mut h = vramzip::codec::shared::Histograms::default();
    h.add("BF16", &weightlike(50_000, 9));
    let only_small = CompressOptions::default()
        .with_codebooks(std::sync::Arc::new(h.build()))
        .with_chunk_groups(64);
    let odd = dir.join("odd.safetensors");
    let mut data = weightlike(100_000, 3);
    for i in (0..data.len()).step_by(22) {
        data[i + 1] = 0x7f; // huge exponents the book never saw
    }
    write_safetensors(&odd, &[("w", "BF16", vec![100_000], data)], None);
    format::compress_file(&odd, &vz, &only_small, &|_| {}).unwrap();
    check_all(ctx(), &Archive::open(&vz).unwrap());
}

#[test]
fn the_table_read_through_the_cache_decodes_bit_exact_too() {
    let cache = GpuContext::new(&GpuOptions::default().with_table_in_workgroup(false)).unwrap();
    assert!(!cache.table_in_workgroup && ctx().table_in_workgroup);
    let (_, archive) = compressed("gpu-table-cache", &sample(), 64);
    check_all(&cache, &archive);
    // escapes (shared codebooks) too
    let dir = tmpdir("gpu-table-cache-shared");
    let src = dir.join("m.safetensors");
    mixed_file(&src);
    let mut h = vramzip::codec::shared::Histograms::default();
    vramzip::format::add_to_histograms(&mut h, sample()).unwrap();
    let opts = CompressOptions::default().with_codebooks(std::sync::Arc::new(h.build()));
    let vz = dir.join("m.vz");
    format::compress_file(&src, &vz, &opts, &|_| {}).unwrap();
    check_all(&cache, &Archive::open(&vz).unwrap());
}

#[test]
fn the_escape_test_on_every_symbol_decodes_bit_exact_too() {
    // the pipeline that tests each symbol for an escape, on per-tensor tables that have none:
    // what `VRAMZIP_DECODE_ESCAPES=always` measures on a GPU
    let always = GpuContext::new(&GpuOptions::default().with_escape_test(true)).unwrap();
    assert!(always.escape_test_always && !ctx().escape_test_always);
    let (_, archive) = compressed("gpu-escape-test", &sample(), 64);
    check_all(&always, &archive);
}

#[test]
fn the_gl_backend_decodes_bit_exact_too() {
    let gl = GpuContext::new(&GpuOptions::default().with_backend("gl")).unwrap_or_else(|e| {
        panic!("no OpenGL adapter: {e}. Install one (apt-get install libegl-mesa0 libgl1-mesa-dri) rather than skipping.")
    });
    assert_eq!(gl.info.backend, wgpu::Backend::Gl);
    let (_, archive) = compressed("gpu-gl", &sample(), 64);
    check_all(&gl, &archive);
}

#[test]
fn bench_command_reports_json_and_draws_a_plot() {
    let dir = tmpdir("bench-cli");
    let svg = dir.join("bench.svg");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_vramzip"))
        .args(["bench", "--json", "--plot", svg.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["bit_exact"], true);
    let gpu = &doc["gpu"][0];
    assert_eq!(gpu["bit_exact"], true);
    assert!(gpu["decode_gb_s"].as_f64().unwrap() > 0.0 && gpu["copy_gb_s"].as_f64().unwrap() > 0.0);
    let plot = std::fs::read_to_string(&svg).unwrap();
    assert!(
        plot.starts_with("<svg") && plot.contains("Load to VRAM"),
        "not the plot"
    );
}

#[test]
fn kernels_build_on_the_callers_own_device() {
    // the caller opens the device as it likes; vramzip builds its kernels there
    let instance =
        wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
    let adapter = pollster::block_on(instance.request_adapter(&Default::default()))
        .expect("a GPU adapter (lavapipe on machines without a GPU)");
    let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
        required_limits: adapter.limits(),
        ..Default::default()
    }))
    .unwrap();
    let gpu = GpuContext::from_device(device.clone(), queue).unwrap();
    assert_eq!(gpu.info.name, adapter.get_info().name);
    assert!(!gpu.timestamps, "no timestamp features were asked for");
    let (_vz, archive) = compressed("own-device", &sample(), 64);
    check_all(&gpu, &archive); // every tensor equal to the CPU decoder's bytes

    // a device opened with too few storage buffers is refused with a reason, not a panic
    let (small, small_queue) =
        pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            required_limits: wgpu::Limits {
                max_storage_buffers_per_shader_stage: 4,
                ..wgpu::Limits::downlevel_defaults()
            },
            ..Default::default()
        }))
        .unwrap();
    let err = GpuContext::from_device(small, small_queue).unwrap_err();
    assert!(err.to_string().contains("storage buffers"), "{err}");
}

#[test]
fn coded_tensors_in_memory_upload_and_decode_without_a_file() {
    // a StreamEncoder's buffers (single stage, one shared book) go straight to the GPU, beside a
    // tensor of an archive, in one upload
    let mut h = vramzip::codec::shared::Histograms::default();
    h.add("BF16", &weightlike(40_000, 21));
    let book = h.build().books.remove("BF16").unwrap();
    let mut enc = vramzip::codec::shared::StreamEncoder::new("BF16", book, 64, None).unwrap();
    let buffers: Vec<Vec<u8>> = (0..3)
        .map(|i| weightlike(30_000 + 999 * i, 30 + i as u64))
        .collect();
    let coded: Vec<_> = buffers.iter().map(|b| enc.encode(b).unwrap()).collect();
    let names = ["a", "b", "c"];
    let (_vz, archive) = compressed("in-memory", &sample(), 64);
    let from_file = &archive.tensors[1];
    let mut sources: Vec<Source> = names
        .iter()
        .zip(&coded)
        .map(|(n, c)| Source::Coded(n, c))
        .collect();
    sources.push(Source::Archive(&archive, from_file));
    let groups = ctx().upload_sources(&sources).unwrap();
    assert_eq!(groups.len(), 1);
    let out = ctx().decode_to_vec(&groups[0]).unwrap();
    let slice = |name: &str| {
        let s = groups[0].slice(name).unwrap();
        out[s.offset as usize..(s.offset + s.bytes) as usize].to_vec()
    };
    for (name, original) in names.iter().zip(&buffers) {
        assert_eq!(&slice(name), original, "'{name}'");
    }
    assert_eq!(
        slice(&from_file.meta.name),
        archive.decode(from_file).unwrap()
    );
}

#[test]
fn a_stored_tensor_larger_than_a_binding_splits_too() {
    // once: a stored tensor over the binding limit verified as "differs" on the GPU
    let dir = tmpdir("gpu-stored-split");
    let src = dir.join("ints.safetensors");
    let ids: Vec<u8> = (0..40_000u64)
        .flat_map(|i| (i * 2_654_435_761).to_le_bytes())
        .collect();
    write_safetensors(&src, &[("ids", "I64", vec![40_000], ids)], None);
    let (_vz, archive) = compressed("gpu-stored-split-vz", &src, 64);
    assert!(
        archive.tensors[0].layout().is_none(),
        "I64 is stored verbatim"
    );
    let small = GpuContext::new(&GpuOptions::default().with_max_binding_bytes(64 << 10)).unwrap();
    // 320 KB over 64 KiB bindings: five groups or more, each checked against the CPU's bytes
    assert!(check_all(&small, &archive) >= 5);
    assert_eq!(
        small.decode_tensor(&archive, &archive.tensors[0]).unwrap(),
        archive.decode(&archive.tensors[0]).unwrap()
    );
}

#[test]
fn the_gpu_refuses_what_the_cpu_refuses() {
    // one validation before either decoder: a code table for other symbols, or one that codes
    // nothing, is refused by both (once the GPU decoded such tables into wrong words)
    let (dir, archive) = compressed("gpu-agree", &sample(), 64);
    let name = "encoder.layer.0.output.dense.weight";
    let table = archive.tensor(name).unwrap().parts().unwrap().table;
    let good = std::fs::read(dir.join("x.vz")).unwrap();
    let (start, end) = (table.0 as usize, table.1 as usize);
    type Corrupt = Box<dyn Fn(&mut Vec<u8>)>;
    let cases: Vec<(&str, Corrupt)> = vec![
        (
            "a table for 1-bit-narrower symbols",
            Box::new(move |b| b[start + 1] -= 1),
        ),
        (
            "a table that codes nothing",
            Box::new(move |b| b[start + 6..end].fill(0)),
        ),
    ];
    for (what, corrupt) in cases {
        let mut bytes = good.clone();
        corrupt(&mut bytes);
        let vz = dir.join("bad.vz");
        std::fs::write(&vz, &bytes).unwrap();
        let bad = Archive::open(&vz).unwrap();
        let t = bad.tensor(name).unwrap();
        let cpu = bad.decode(t).map(|_| ()).map_err(|e| e.to_string());
        let gpu = ctx()
            .decode_tensor(&bad, t)
            .map(|_| ())
            .map_err(|e| e.to_string());
        assert!(
            cpu.is_err() && gpu.is_err(),
            "{what}: cpu {cpu:?}, gpu {gpu:?}"
        );
    }
}
