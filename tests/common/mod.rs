//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// The default GPU context (lavapipe on machines without a GPU); a test that needs one fails
/// without it, never skips.
pub fn gpu() -> vramzip::gpu::GpuContext {
    vramzip::gpu::GpuContext::new(&vramzip::gpu::GpuOptions::default())
        .unwrap_or_else(|e| panic!("these tests need a GPU adapter (lavapipe will do): {e}"))
}

/// A storage buffer holding `bytes`, readable back.
pub fn upload(gpu: &vramzip::gpu::GpuContext, bytes: &[u8]) -> wgpu::Buffer {
    use wgpu::util::DeviceExt;
    gpu.device
        .create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: None,
            contents: bytes,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
        })
}

/// Runs the `vramzip` command line with `args`.
pub fn vramzip(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_vramzip"))
        .args(args)
        .output()
        .unwrap()
}

/// The committed real-weights sample.
pub fn sample() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/minilm-layer0.safetensors")
}

/// A fresh temporary directory for one test, removed with everything in it when dropped: at the
/// end of the test, passing or failing (a panic unwinds through the drop).
pub struct TestDir(tempfile::TempDir);

impl std::ops::Deref for TestDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        self.0.path()
    }
}

impl AsRef<Path> for TestDir {
    fn as_ref(&self) -> &Path {
        self.0.path()
    }
}

pub fn tmpdir(name: &str) -> TestDir {
    TestDir(
        tempfile::Builder::new()
            .prefix(&format!("vramzip-test-{name}-"))
            .tempdir()
            .unwrap(),
    )
}

/// Compresses `src` with `opts` and opens the result. The file is gone once this returns: the
/// archive reads it through the handle it holds open.
pub fn compress_into(
    name: &str,
    src: &Path,
    opts: &vramzip::format::CompressOptions,
) -> vramzip::format::Archive {
    let dir = tmpdir(name);
    let vz = dir.join("w.vz");
    vramzip::format::compress_file(src, &vz, opts, &|_| {}).unwrap();
    vramzip::format::Archive::open(&vz).unwrap()
}

/// A small sharded model: two shards, an index, a config.
pub fn sharded_model(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    write_safetensors(
        &dir.join("model-00001-of-00002.safetensors"),
        &[("a", "BF16", vec![5000], weightlike(5000, 1))],
        None,
    );
    write_safetensors(
        &dir.join("model-00002-of-00002.safetensors"),
        &[("b", "BF16", vec![7000], weightlike(7000, 2))],
        None,
    );
    let index = r#"{"metadata": {"total_size": 24000}, "weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}"#;
    std::fs::write(dir.join("model.safetensors.index.json"), index).unwrap();
    std::fs::write(dir.join("config.json"), "{}").unwrap();
}

/// Writes a safetensors file from (name, dtype, shape, bytes), in the given order.
pub fn write_safetensors(
    path: &Path,
    tensors: &[(&str, &str, Vec<u64>, Vec<u8>)],
    metadata: Option<&[(&str, &str)]>,
) {
    let mut header = serde_json::Map::new();
    if let Some(m) = metadata {
        let m: serde_json::Map<String, serde_json::Value> = m
            .iter()
            .map(|(k, v)| (k.to_string(), (*v).into()))
            .collect();
        header.insert("__metadata__".into(), m.into());
    }
    let mut offset = 0u64;
    for (name, dtype, shape, bytes) in tensors {
        header.insert(name.to_string(), serde_json::json!({"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + bytes.len() as u64]}));
        offset += bytes.len() as u64;
    }
    let mut text = serde_json::to_vec(&serde_json::Value::Object(header)).unwrap();
    text.resize(text.len().next_multiple_of(8), b' ');
    let mut out = (text.len() as u64).to_le_bytes().to_vec();
    out.extend(text);
    for (_, _, _, bytes) in tensors {
        out.extend(bytes);
    }
    std::fs::write(path, out).unwrap();
}

/// Deterministic pseudo-random bytes.
pub fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (s >> 56) as u8
        })
        .collect()
}

/// bf16 weights with the statistics of real ones: the sample's own values, resampled.
pub fn weightlike(n: usize, seed: u64) -> Vec<u8> {
    let file = vramzip::format::SafetensorsFile::open(sample()).unwrap();
    let t = file
        .header
        .tensors
        .iter()
        .find(|t| t.dtype == "BF16" && t.shape.len() == 2)
        .unwrap();
    let pool = &file.read(t).unwrap();
    let picks = noise(4 * n, seed);
    (0..n)
        .flat_map(|i| {
            let r = u32::from_le_bytes([
                picks[4 * i],
                picks[4 * i + 1],
                picks[4 * i + 2],
                picks[4 * i + 3],
            ]) as usize;
            let j = r % (pool.len() / 2);
            [pool[2 * j], pool[2 * j + 1]]
        })
        .collect()
}

/// A file with every coded dtype, a stored dtype, edge-case tensors and real-statistics weights.
pub fn mixed_file(path: &Path) -> Vec<(&'static str, Vec<u8>)> {
    let f32s: Vec<u8> = weightlike(30_000, 5)
        .chunks(2)
        .flat_map(|c| (u32::from(u16::from_le_bytes([c[0], c[1]])) << 16 | 0x1234).to_le_bytes())
        .collect();
    let tensors: Vec<(&str, &str, Vec<u64>, Vec<u8>)> = vec![
        ("bf16.big", "BF16", vec![300, 1001], weightlike(300_300, 1)),
        ("bf16.odd", "BF16", vec![7, 9], weightlike(63, 2)),
        (
            "f16",
            "F16",
            vec![50_000],
            noise(100_000, 3).iter().map(|b| b & 0x3f).collect(),
        ),
        ("f32", "F32", vec![30_000], f32s),
        (
            "u8",
            "U8",
            vec![40_001],
            noise(40_001, 4).iter().map(|b| b % 7).collect(),
        ),
        ("i8", "I8", vec![3], vec![1, 2, 3]),
        (
            "f8",
            "F8_E4M3",
            vec![10_000],
            noise(10_000, 6).iter().map(|b| b & 0x87).collect(),
        ),
        ("empty", "BF16", vec![0, 4], vec![]),
        ("one", "F32", vec![1], 1.5f32.to_le_bytes().to_vec()),
        ("same", "BF16", vec![20_000], [0x80u8, 0x3f].repeat(20_000)),
        (
            "ids",
            "I64",
            vec![5],
            (0..5i64).flat_map(|i| i.to_le_bytes()).collect(),
        ),
    ];
    write_safetensors(path, &tensors, Some(&[("format", "pt"), ("note", "mixed")]));
    tensors.into_iter().map(|(n, _, _, b)| (n, b)).collect()
}

/// Writes `count` tiny bf16 tensors of 64 real-looking weights, tensor `i` named `name(i)` and
/// seeded `i`, into the safetensors file `path`; returns the names and bytes.
pub fn write_many_tiny_tensors(
    path: &Path,
    count: usize,
    name: impl Fn(usize) -> String,
) -> Vec<(String, Vec<u8>)> {
    let tensors: Vec<(String, Vec<u8>)> = (0..count)
        .map(|i| (name(i), weightlike(64, i as u64)))
        .collect();
    let refs: Vec<(&str, &str, Vec<u64>, Vec<u8>)> = tensors
        .iter()
        .map(|(n, b)| (n.as_str(), "BF16", vec![64], b.clone()))
        .collect();
    write_safetensors(path, &refs, None);
    tensors
}
