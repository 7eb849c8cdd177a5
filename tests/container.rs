//! The container and the command line: byte-identical round trips, a valid safetensors output,
//! sharded directories, and clean errors on bad input.

mod common;

use common::*;
use vramzip::format::{self, Archive, CompressOptions};

fn compress(input: &std::path::Path, output: &std::path::Path) {
    format::compress_file(input, output, &CompressOptions::default(), &|_| {}).unwrap();
}

#[test]
fn sample_round_trips_byte_for_byte() {
    let dir = tmpdir("sample");
    let (vz, back) = (dir.join("s.vz.safetensors"), dir.join("s.safetensors"));
    compress(&sample(), &vz);
    Archive::open(&vz)
        .unwrap()
        .decompress_to(&back, &|_| {})
        .unwrap();
    assert_eq!(
        std::fs::read(&back).unwrap(),
        std::fs::read(sample()).unwrap()
    );
    assert!(
        std::fs::metadata(&vz).unwrap().len()
            < std::fs::metadata(sample()).unwrap().len() * 68 / 100
    );
}

#[test]
fn output_is_a_valid_safetensors_file() {
    let dir = tmpdir("valid");
    let vz = dir.join("m.vz.safetensors");
    mixed_file(&dir.join("m.safetensors"));
    compress(&dir.join("m.safetensors"), &vz);
    let bytes = std::fs::read(&vz).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).expect("the safetensors crate opens it");
    let names = st.names();
    assert!(names.contains(&"bf16.big"));
    assert!(names.contains(&format::MANIFEST_TENSOR));
    // stored tensors keep their dtype and stay usable as they are
    assert_eq!(st.tensor("ids").unwrap().dtype(), safetensors::Dtype::I64);
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let m = meta.metadata().as_ref().unwrap();
    assert_eq!(
        m.get("note").map(String::as_str),
        Some("mixed"),
        "original metadata kept"
    );
    assert!(m.contains_key(format::MANIFEST_KEY));
}

#[test]
fn every_dtype_and_edge_case_round_trips() {
    let dir = tmpdir("mixed");
    let (src, vz, back) = (
        dir.join("m.safetensors"),
        dir.join("m.vz"),
        dir.join("back.safetensors"),
    );
    let tensors = mixed_file(&src);
    compress(&src, &vz);
    let archive = Archive::open(&vz).unwrap();
    for (name, bytes) in &tensors {
        let t = archive.tensor(name).unwrap();
        assert_eq!(&archive.decode(t).unwrap(), bytes, "{name}");
    }
    let coded: Vec<&str> = archive
        .tensors
        .iter()
        .filter(|t| t.layout().is_some())
        .map(|t| t.meta.name.as_str())
        .collect();
    for name in ["bf16.big", "f16", "f32", "u8", "f8", "same"] {
        assert!(
            coded.contains(&name),
            "{name} should be coded, coded: {coded:?}"
        );
    }
    archive.decompress_to(&back, &|_| {}).unwrap();
    assert_eq!(std::fs::read(&back).unwrap(), std::fs::read(&src).unwrap());
}

#[test]
fn sharded_directory_round_trips() {
    let dir = tmpdir("sharded");
    let (src, vz, back) = (
        dir.join("model"),
        dir.join("model.vz"),
        dir.join("model.back"),
    );
    sharded_model(&src);
    std::fs::create_dir_all(src.join("sub")).unwrap();
    std::fs::write(src.join("sub/tokenizer.json"), "tok").unwrap();
    let out = vramzip(&[
        "compress",
        src.to_str().unwrap(),
        "-o",
        vz.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(vz.join("model-00002-of-00002.safetensors").exists());
    let new_index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(vz.join("model.safetensors.index.json")).unwrap())
            .unwrap();
    assert_eq!(
        new_index["weight_map"]["b"],
        "model-00002-of-00002.safetensors"
    );
    let out = vramzip(&[
        "decompress",
        vz.to_str().unwrap(),
        "-o",
        back.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for f in [
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
        "model.safetensors.index.json",
        "config.json",
        "sub/tokenizer.json",
    ] {
        assert_eq!(
            std::fs::read(back.join(f)).unwrap(),
            std::fs::read(src.join(f)).unwrap(),
            "{f}"
        );
    }
}

#[test]
fn cli_commands_and_exit_codes() {
    let dir = tmpdir("cli");
    let vz = dir.join("s.vz");
    let vz_s = vz.to_str().unwrap();
    let out = vramzip(&["compress", sample().to_str().unwrap(), "-o", vz_s]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("ratio"));

    let out = vramzip(&["inspect", vz_s, "--json"]);
    assert!(out.status.success());
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let ratio = doc["totals"]["ratio"].as_f64().unwrap();
    let bound = doc["totals"]["bound_ratio"].as_f64().unwrap();
    assert!(
        bound < ratio && ratio < 0.67,
        "ratio {ratio}, bound {bound}"
    );
    assert_eq!(doc["tensors"].as_array().unwrap().len(), 19);
    // streams and the index that finds them: per block of 256 streams a word, and a delta of a
    // few bits per pair of streams, far less than a u16 a stream
    let tensors = doc["tensors"].as_array().unwrap();
    let streams: u64 = tensors.iter().map(|t| t["streams"].as_u64().unwrap()).sum();
    assert_eq!(doc["totals"]["streams"].as_u64().unwrap(), streams);
    let index = doc["totals"]["index_bytes"].as_u64().unwrap();
    assert!(
        index.is_multiple_of(4) && index > 0 && index < streams,
        "{index} for {streams}"
    );
    let wide = tensors
        .iter()
        .find(|t| t["name"] == "encoder.layer.0.intermediate.dense.weight")
        .unwrap();
    // 1536x384 bf16 at 256 symbols (128 words) a stream: 294,912 words, 2,304 streams
    assert_eq!(wide["streams"].as_u64().unwrap(), 2304);

    let out = vramzip(&["verify", "--cpu", vz_s]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // usage errors exit 2, failures exit 1 with one `error:` line
    assert_eq!(vramzip(&["compress"]).status.code(), Some(2));
    assert_eq!(vramzip(&["frobnicate"]).status.code(), Some(2));
    // an existing output is refused unless --force, and left as it was
    let before = std::fs::read(&vz).unwrap();
    let again = vramzip(&["compress", sample().to_str().unwrap(), "-o", vz_s]);
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("--force"));
    assert_eq!(std::fs::read(&vz).unwrap(), before);
    let forced = vramzip(&[
        "compress",
        "--force",
        sample().to_str().unwrap(),
        "-o",
        vz_s,
    ]);
    assert!(forced.status.success());
    let missing = vramzip(&["inspect", dir.join("nope").to_str().unwrap()]);
    assert_eq!(missing.status.code(), Some(1));
    let err = String::from_utf8_lossy(&missing.stderr);
    assert!(err.starts_with("error: ") && err.contains("nope"), "{err}");
    let bad_cg = vramzip(&[
        "compress",
        "--force",
        sample().to_str().unwrap(),
        "-o",
        vz_s,
        "--chunk-groups",
        "0",
    ]);
    // out-of-range options are bad usage, refused before anything is done
    assert_eq!(bad_cg.status.code(), Some(2));
    let bad_backend = vramzip(&["verify", vz_s, "--backend", "nope"]);
    assert_eq!(bad_backend.status.code(), Some(2));
    // with no adapter for the asked backend, verify says how to do without one
    let no_gpu = vramzip(&["verify", vz_s, "--backend", "metal"]);
    assert_eq!(no_gpu.status.code(), Some(1));
    let err = String::from_utf8_lossy(&no_gpu.stderr);
    assert!(err.contains("--cpu"), "{err}");
}

#[test]
fn inspect_and_verify_take_directories_and_an_empty_one_is_an_error() {
    let dir = tmpdir("cli-dirs");
    let (src, packed, empty) = (dir.join("src"), dir.join("packed"), dir.join("empty"));
    std::fs::create_dir_all(&src).unwrap();
    std::fs::create_dir_all(&empty).unwrap();
    std::fs::copy(sample(), src.join("model-00001-of-00002.safetensors")).unwrap();
    std::fs::copy(sample(), src.join("model-00002-of-00002.safetensors")).unwrap();
    let s = |p: &std::path::Path| p.to_str().unwrap().to_string();
    let out = vramzip(&["compress", &s(&src), "-o", &s(&packed)]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = vramzip(&["verify", "--cpu", &s(&packed)]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("all 38 tensors match"));
    let out = vramzip(&["inspect", "--json", &s(&packed)]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["files"].as_array().unwrap().len(), 2);
    let one = doc["files"][0]["totals"]["original_bytes"]
        .as_u64()
        .unwrap();
    assert_eq!(doc["totals"]["original_bytes"].as_u64().unwrap(), 2 * one);
    for cmd in [
        vec!["compress", &s(&empty), "-o", &s(&dir.join("out"))],
        vec!["inspect", &s(&empty)],
        vec!["verify", "--cpu", &s(&empty)],
    ] {
        let cmd: Vec<&str> = cmd.iter().map(|a| a.as_ref()).collect();
        let out = vramzip(&cmd);
        assert_eq!(out.status.code(), Some(1), "{cmd:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("no .safetensors file"), "{cmd:?}: {err}");
    }
    assert!(!dir.join("out").exists());
}

#[test]
fn compressed_files_are_marked_so_other_loaders_do_not_take_them_for_checkpoints() {
    let dir = tmpdir("format-marker");
    let vz = dir.join("x.vz");
    format::compress_file(sample(), &vz, &CompressOptions::default(), &|_| {}).unwrap();
    let file = vramzip::format::SafetensorsFile::open(&vz).unwrap();
    let meta = file.header.metadata.clone().unwrap();
    assert_eq!(meta["format"], "vramzip");
    // the original's own metadata comes back whole
    let back = dir.join("back.safetensors");
    Archive::open(&vz)
        .unwrap()
        .decompress_to(&back, &|_| {})
        .unwrap();
    assert_eq!(
        std::fs::read(&back).unwrap(),
        std::fs::read(sample()).unwrap()
    );
    let original = vramzip::format::SafetensorsFile::open(sample()).unwrap();
    assert_ne!(
        original
            .header
            .metadata
            .unwrap()
            .get("format")
            .map(String::as_str),
        Some("vramzip")
    );
}

#[test]
fn bad_files_are_errors_not_panics() {
    let dir = tmpdir("bad");
    let real = std::fs::read(sample()).unwrap();
    let vz = dir.join("s.vz");
    compress(&sample(), &vz);
    let compressed = std::fs::read(&vz).unwrap();
    let mut cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty", vec![]),
        ("short", vec![1, 2, 3]),
        ("huge header length", u64::MAX.to_le_bytes().to_vec()),
        (
            "header beyond file",
            [&100u64.to_le_bytes()[..], b"{}"].concat(),
        ),
        ("not json", [&8u64.to_le_bytes()[..], b"nonsense"].concat()),
        ("truncated data", real[..real.len() - 10].to_vec()),
        (
            "truncated compressed",
            compressed[..compressed.len() / 2].to_vec(),
        ),
    ];
    let lying = br#"{"a":{"dtype":"F32","shape":[1000000000000],"data_offsets":[0,4]}}"#;
    cases.push((
        "lying shape",
        [&(lying.len() as u64).to_le_bytes()[..], lying, &[0u8; 4]].concat(),
    ));
    for (what, bytes) in cases {
        let p = dir.join("bad.safetensors");
        std::fs::write(&p, &bytes).unwrap();
        let out = dir.join("bad.out");
        assert!(
            format::compress_file(&p, &out, &CompressOptions::default(), &|_| {}).is_err(),
            "compress accepted {what}"
        );
        assert!(Archive::open(&p).is_err(), "open accepted {what}");
        assert!(
            !out.exists(),
            "{what}: a failed compress left an output file"
        );
        let cli = vramzip(&[
            "decompress",
            p.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
        ]);
        assert_eq!(cli.status.code(), Some(1), "{what}");
    }
    // an uncompressed file is not an archive, and a compressed one is not compressed twice
    assert!(
        Archive::open(sample())
            .unwrap_err()
            .to_string()
            .contains("not a vramzip file")
    );
    assert!(
        format::compress_file(&vz, dir.join("twice"), &CompressOptions::default(), &|_| {})
            .is_err()
    );
}

#[test]
fn flipped_bits_in_a_compressed_file_are_caught() {
    let dir = tmpdir("flip");
    let vz = dir.join("s.vz");
    compress(&sample(), &vz);
    let good = std::fs::read(&vz).unwrap();
    let archive = Archive::open(&vz).unwrap();
    let (start, end) = archive
        .range("encoder.layer.0.attention.self.query.weight")
        .unwrap();
    drop(archive);
    let mut s = 3u64;
    for _ in 0..50 {
        s = s.wrapping_mul(6364136223846793005).wrapping_add(1);
        let mut bad = good.clone();
        let at = start as usize + (s >> 33) as usize % (end - start) as usize;
        bad[at] ^= 1 << ((s >> 20) % 8);
        std::fs::write(&vz, &bad).unwrap();
        let archive = Archive::open(&vz).unwrap();
        let t = archive
            .tensor("encoder.layer.0.attention.self.query.weight")
            .unwrap();
        assert!(
            archive.decode(t).is_err(),
            "a flipped bit at {at} went unnoticed"
        );
    }
}

#[test]
fn committed_sample_is_the_documented_one() {
    // assets/README.md gives its provenance; a changed sample must be documented again.
    let bytes = std::fs::read(sample()).unwrap();
    assert_eq!(bytes.len(), 3_559_696);
    assert_eq!(format::checksum(&bytes), SAMPLE_XXH3);
}

const SAMPLE_XXH3: u64 = 4394774277393860941;

#[test]
fn a_manifest_that_claims_too_much_is_refused_before_allocating() {
    let dir = tmpdir("lying-manifest");
    let manifest = r#"{"original_header":"{}","file_xxh3":"0000000000000000","tensors":[{"name":"w","dtype":"BF16","shape":[1000000000000],"bytes":2000000000000,"xxh3":"0000000000000000","coding":"huffman","sym_bits":11,"chunk_groups":128,"index_bytes":4,"stream_bytes":4}]}"#;
    let p = with_manifest(&dir, 2, manifest, ("w", vec![0; 64]));
    let err = Archive::open(&p).unwrap_err().to_string();
    assert!(err.contains("claims"), "{err}");
}

/// A file in `dir` that holds `tensor` (as U8) and `manifest` as vramzip `format` writes them.
fn with_manifest(
    dir: &std::path::Path,
    format: u32,
    manifest: &str,
    tensor: (&str, Vec<u8>),
) -> std::path::PathBuf {
    let p = dir.join("m.safetensors");
    let packed = format::deflate(manifest.as_bytes());
    let marker = format!(
        r#"{{"format":{format},"lanes":64,"manifest_xxh3":"{:016x}"}}"#,
        format::checksum(&packed)
    );
    let (name, bytes) = tensor;
    write_safetensors(
        &p,
        &[
            (name, "U8", vec![bytes.len() as u64], bytes),
            (
                format::MANIFEST_TENSOR,
                "U8",
                vec![packed.len() as u64],
                packed,
            ),
        ],
        Some(&[(format::MANIFEST_KEY, &marker)]),
    );
    p
}

#[test]
fn a_version_1_file_gets_a_clear_error() {
    let dir = tmpdir("version-1");
    let p = with_manifest(&dir, 1, r#"{"tensors":[]}"#, ("w", vec![]));
    let err = Archive::open(&p).unwrap_err().to_string();
    assert!(
        err.contains("format 1 (layout v1)") && err.contains("compress the original again"),
        "{err}"
    );
}

#[test]
fn an_unknown_format_version_is_refused() {
    let dir = tmpdir("version");
    let p = with_manifest(&dir, 99, r#"{"tensors":[]}"#, ("w", vec![]));
    let err = Archive::open(&p).unwrap_err().to_string();
    assert!(err.contains("format 99"), "{err}");
    let out = vramzip(&["verify", "--cpu", p.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
}

/// `vramzip inspect FILE | head`: the reader goes away after a line; the command stops printing
/// and exits cleanly instead of panicking on the broken pipe.
#[test]
fn a_closed_stdout_is_not_a_panic() {
    use std::io::Read;
    let dir = tmpdir("pipe");
    let src = dir.join("many.safetensors");
    // enough tensors that inspect's table outgrows the pipe's buffer
    write_many_tiny_tensors(&src, 3000, |i| format!("layer.{i}.weight"));
    let out = dir.join("many.vz");
    compress(&src, &out);
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_vramzip"))
        .args(["inspect", out.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 16];
    child.stdout.take().unwrap().read_exact(&mut first).unwrap();
    // the read end is dropped here
    let result = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(result.status.success(), "{:?}: {stderr}", result.status);
    assert!(!stderr.contains("panicked"), "{stderr}");
}
