//! Integrity: vramzip never hands back bytes that differ from the original while saying they are
//! fine. Each test is named after the hole it closes, found by trying hostile inputs on real
//! weights (the committed MiniLM layer).

mod common;

use common::*;
use std::path::Path;
use vramzip::format::{self, Archive, CompressOptions};

fn compress(src: &Path, vz: &Path) {
    format::compress_file(src, vz, &CompressOptions::default(), &|_| {}).unwrap();
}

/// Rewrites the manifest of the compressed file `vz` with `change`, keeping everything else.
fn rewrite_manifest(vz: &Path, change: impl FnOnce(&mut serde_json::Value)) {
    let bytes = std::fs::read(vz).unwrap();
    std::fs::write(vz, format::rewrite_manifest(&bytes, change).unwrap()).unwrap();
}

/// Opens `vz` and decompresses it: the error, if any step refuses.
fn open_and_decompress(vz: &Path, back: &Path) -> Option<String> {
    let result = Archive::open(vz).and_then(|a| a.decompress_to(back, &|_| {}));
    result.err().map(|e| e.to_string())
}

#[test]
fn a_flipped_bit_in_the_manifest_is_refused() {
    // the manifest holds the original header too: every byte of it is under its checksum
    let dir = tmpdir("manifest-flip");
    let (vz, back) = (dir.join("s.vz"), dir.join("back"));
    compress(&sample(), &vz);
    let good = std::fs::read(&vz).unwrap();
    let (start, end) = Archive::open(&vz)
        .unwrap()
        .range(format::MANIFEST_TENSOR)
        .unwrap();
    let mut s = 7u64;
    for _ in 0..40 {
        s = s.wrapping_mul(6364136223846793005).wrapping_add(1);
        let mut bad = good.clone();
        let at = start as usize + (s >> 33) as usize % (end - start) as usize;
        bad[at] ^= 1 << ((s >> 20) % 8);
        std::fs::write(&vz, &bad).unwrap();
        let err = open_and_decompress(&vz, &back)
            .unwrap_or_else(|| panic!("a flipped bit at {at} of the manifest passed"));
        assert!(
            err.contains("the manifest does not match its checksum"),
            "{err}"
        );
        assert!(!back.exists());
    }
}

#[test]
fn manifest_entries_that_disagree_with_the_original_header_are_refused() {
    let dir = tmpdir("manifest-lies");
    let (vz, back) = (dir.join("s.vz"), dir.join("back"));
    compress(&sample(), &vz);
    let good = std::fs::read(&vz).unwrap();
    let names = |m: &serde_json::Value| -> Vec<String> {
        m["tensors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap().to_string())
            .collect()
    };
    let mut manifest = serde_json::Value::Null;
    rewrite_manifest(&vz, |m| manifest = m.clone());
    let all = names(&manifest);
    let wide = all
        .iter()
        .position(|n| n.ends_with("intermediate.dense.weight"))
        .unwrap();
    let (bias, weight) = (
        all.iter()
            .position(|n| n.ends_with("LayerNorm.bias"))
            .unwrap(),
        all.iter()
            .position(|n| n.ends_with("LayerNorm.weight"))
            .unwrap(),
    );
    type Lie = Box<dyn Fn(&mut Vec<serde_json::Value>)>;
    let lies: Vec<(&str, Lie)> = vec![
        // same size, checksums carried along: the weights would come back swapped
        ("swapped entries", Box::new(move |t| t.swap(bias, weight))),
        (
            "a dropped entry",
            Box::new(|t| {
                t.remove(3);
            }),
        ),
        (
            "a duplicated entry",
            Box::new(|t| {
                let e = t[2].clone();
                t.insert(2, e);
            }),
        ),
        (
            "200 copies of one entry",
            Box::new(|t| {
                let e = t[1].clone();
                t.extend(std::iter::repeat_n(e, 200));
            }),
        ),
        ("no entries", Box::new(|t| t.clear())),
        (
            "a renamed entry",
            Box::new(|t| t[0]["name"] = "Position_ids".into()),
        ),
        // 1536x384 read as 384x1536: the same bytes, a transposed model
        (
            "another shape",
            Box::new(move |t| {
                let shape = t[wide]["shape"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .rev()
                    .cloned()
                    .collect();
                t[wide]["shape"] = serde_json::Value::Array(shape);
            }),
        ),
    ];
    for (what, lie) in lies {
        std::fs::write(&vz, &good).unwrap();
        rewrite_manifest(&vz, |m| lie(m["tensors"].as_array_mut().unwrap()));
        let err = open_and_decompress(&vz, &back).unwrap_or_else(|| panic!("{what} passed"));
        assert!(
            err.contains("manifest") || err.contains("original header"),
            "{what}: {err}"
        );
        assert!(!back.exists(), "{what}: an output was written");
        // the command line says so too, with exit 1 and no "ok"
        for args in [vec!["verify", "--cpu"], vec!["decompress", "-o"]] {
            let mut args: Vec<&str> = args;
            if args[0] == "decompress" {
                args.push(back.to_str().unwrap());
            }
            args.push(vz.to_str().unwrap());
            let out = vramzip(&args);
            assert_eq!(out.status.code(), Some(1), "{what}: {args:?}");
            assert!(
                !String::from_utf8_lossy(&out.stdout).contains("ok"),
                "{what}"
            );
        }
    }
}

#[test]
fn a_file_without_its_checksums_is_refused() {
    // files that cannot be checked whole are not trusted
    let dir = tmpdir("no-checksums");
    let vz = dir.join("s.vz");
    compress(&sample(), &vz);
    let good = std::fs::read(&vz).unwrap();
    rewrite_manifest(&vz, |m| {
        m.as_object_mut().unwrap().remove("file_xxh3");
    });
    let err = Archive::open(&vz).unwrap_err().to_string();
    assert!(err.contains("file_xxh3"), "{err}");
    // the marker without the manifest's checksum
    let marker = r#"{"format":2,"lanes":64}"#;
    let (n, text) = header_of(&good);
    let mut header: serde_json::Value = serde_json::from_slice(text).unwrap();
    header["__metadata__"][format::MANIFEST_KEY] = marker.into();
    let mut out = serde_json::to_vec(&header).unwrap();
    out.resize(out.len().next_multiple_of(8), b' ');
    let mut file = (out.len() as u64).to_le_bytes().to_vec();
    file.extend(out);
    file.extend(&good[8 + n..]);
    std::fs::write(&vz, file).unwrap();
    let err = Archive::open(&vz).unwrap_err().to_string();
    assert!(err.contains("no manifest checksum"), "{err}");
}

/// The header length and header bytes of a safetensors file.
fn header_of(bytes: &[u8]) -> (usize, &[u8]) {
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    (n, &bytes[8..8 + n])
}

#[test]
fn many_coded_tensors_open_and_are_found_by_name() {
    // 20,000 tiny coded tensors (a scan of the header per manifest entry once made this
    // quadratic: 111 s for 100K; timings stay out of tests, BENCHMARKS.md has them)
    let dir = tmpdir("many-tensors");
    let src = dir.join("many.safetensors");
    let tensors = write_many_tiny_tensors(&src, 20_000, |i| format!("t{i}"));
    let vz = dir.join("many.vz");
    compress(&src, &vz);
    let archive = Archive::open(&vz).unwrap();
    assert_eq!(archive.tensors.len(), 20_000);
    for i in [0, 7777, 19_999] {
        let t = archive.tensor(&format!("t{i}")).unwrap();
        assert_eq!(archive.decode(t).unwrap(), tensors[i].1);
    }
}

#[cfg(unix)]
#[test]
fn planted_links_in_the_output_folder_are_never_followed() {
    // temporaries once had predictable names (OUT.data-PID.tmp): a link planted there made
    // compress overwrite its target. Plant links at every name of that shape the run could use.
    let dir = tmpdir("planted");
    let victim = dir.join("victim");
    std::fs::write(&victim, b"must survive").unwrap();
    let out = dir.join("out.vz");
    let exe = env!("CARGO_BIN_EXE_vramzip");
    let child = std::process::Command::new(exe)
        .args([
            "compress",
            sample().to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
        ])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    for tag in ["data", "vramzip"] {
        for pid in [child.id(), std::process::id()] {
            let link = dir.join(format!("out.vz.{tag}-{pid}.tmp"));
            let _ = std::os::unix::fs::symlink(&victim, link);
        }
    }
    let status = child.wait_with_output().unwrap().status;
    assert!(status.success());
    assert_eq!(std::fs::read(&victim).unwrap(), b"must survive");
    Archive::open(&out).unwrap();
    // and nothing of the run is left beside the output
    let names: Vec<String> = std::fs::read_dir(&*dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".out.vz"))
        .collect();
    assert!(names.is_empty(), "{names:?}");
}

#[test]
fn a_failed_decompress_leaves_nothing_behind_and_names_the_output() {
    let dir = tmpdir("failed-decompress");
    let (vz, back) = (dir.join("s.vz"), dir.join("back.safetensors"));
    compress(&sample(), &vz);
    let mut bytes = std::fs::read(&vz).unwrap();
    let (start, end) = Archive::open(&vz)
        .unwrap()
        .range("encoder.layer.0.output.dense.weight")
        .unwrap();
    bytes[((start + end) / 2) as usize] ^= 0x40;
    std::fs::write(&vz, &bytes).unwrap();
    let err = open_and_decompress(&vz, &back).expect("a corrupt tensor is an error");
    assert!(err.contains("output.dense.weight"), "{err}");
    let left: Vec<_> = std::fs::read_dir(&*dir).unwrap().collect();
    assert_eq!(left.len(), 1, "only the input remains");
}

/// Every file below `dir`, relative, sorted.
fn tree(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        if std::fs::symlink_metadata(&p).unwrap().is_dir() {
            out.extend(tree(&p).into_iter().map(|f| format!("{name}/{f}")));
        } else {
            out.push(name);
        }
    }
    out.sort();
    out
}

#[test]
fn a_directory_output_appears_only_when_complete() {
    let dir = tmpdir("dir-atomic");
    let (src, out) = (dir.join("model"), dir.join("packed"));
    sharded_model(&src);
    // a second shard that opens but is refused (vramzip's own prefix): the run fails half way,
    // after the first shard is written
    write_safetensors(
        &src.join("model-00002-of-00002.safetensors"),
        &[("__vramzip__.b", "BF16", vec![7000], weightlike(7000, 2))],
        None,
    );
    let run = vramzip(&[
        "compress",
        src.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!(run.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&run.stderr).contains("own prefix"));
    assert!(!out.exists(), "a partial directory under the final name");
    assert_eq!(
        tree(&dir)
            .iter()
            .filter(|f| !f.starts_with("model/"))
            .count(),
        0
    );
    // with --force, a finished output replaces the old one whole: no stale file survives
    sharded_model(&src);
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("stale.tmp"), b"from an old run").unwrap();
    let run = vramzip(&[
        "compress",
        "--force",
        src.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(!out.join("stale.tmp").exists());
    assert!(out.join("model-00002-of-00002.safetensors").exists());
}

#[test]
fn an_output_inside_the_input_is_refused() {
    let dir = tmpdir("dir-nested");
    let src = dir.join("model");
    sharded_model(&src);
    let before = tree(&src);
    for (input, output) in [(src.clone(), src.join("out")), (src.join("."), src.clone())] {
        let run = vramzip(&[
            "compress",
            "--force",
            input.to_str().unwrap(),
            "-o",
            output.to_str().unwrap(),
        ]);
        assert_eq!(run.status.code(), Some(1), "{output:?}");
        assert!(String::from_utf8_lossy(&run.stderr).contains("nested"));
    }
    assert_eq!(tree(&src), before, "the input was touched");
}

#[cfg(unix)]
#[test]
fn links_to_directories_are_not_followed_and_fifos_do_not_hang() {
    let dir = tmpdir("dir-links");
    let (src, out) = (dir.join("model"), dir.join("packed"));
    sharded_model(&src);
    // a loop (once: 41 nested copies), and a FIFO (once: compress hung on it)
    std::os::unix::fs::symlink(".", src.join("loop")).unwrap();
    let fifo = src.join("pipe");
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    // a link to a file is read through, as model caches link shards to their blob store
    let blob = dir.join("blob.json");
    std::fs::write(&blob, "linked").unwrap();
    std::os::unix::fs::symlink(&blob, src.join("tokenizer.json")).unwrap();
    let run = vramzip(&[
        "compress",
        src.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert_eq!(
        tree(&out),
        [
            "config.json",
            "model-00001-of-00002.safetensors",
            "model-00002-of-00002.safetensors",
            "model.safetensors.index.json",
            "tokenizer.json"
        ]
    );
    assert_eq!(
        std::fs::read(out.join("tokenizer.json")).unwrap(),
        b"linked"
    );
    // a FIFO named as the input is refused at once
    let run = vramzip(&[
        "compress",
        fifo.to_str().unwrap(),
        "-o",
        dir.join("x").to_str().unwrap(),
    ]);
    assert_eq!(run.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&run.stderr).contains("not a regular file"));
}

#[test]
fn weight_map_paths_outside_the_model_are_refused() {
    let dir = tmpdir("dir-weight-map");
    std::fs::create_dir_all(dir.join("outside")).unwrap();
    write_safetensors(
        &dir.join("outside/x.safetensors"),
        &[("x", "BF16", vec![100], weightlike(100, 5))],
        None,
    );
    for shard in ["../outside/x.safetensors", "/etc/passwd", ""] {
        let src = dir.join("model");
        let _ = std::fs::remove_dir_all(&src);
        sharded_model(&src);
        let index = serde_json::json!({"weight_map": {"a": "model-00001-of-00002.safetensors", "x": shard}});
        std::fs::write(src.join("model.safetensors.index.json"), index.to_string()).unwrap();
        let out = dir.join("packed");
        let run = vramzip(&[
            "compress",
            src.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
        ]);
        assert_eq!(run.status.code(), Some(1), "{shard}");
        let err = String::from_utf8_lossy(&run.stderr);
        assert!(err.contains("not a file inside"), "{shard}: {err}");
        assert!(!out.exists());
    }
}

#[cfg(unix)]
#[test]
fn outputs_get_the_permissions_of_a_plain_new_file() {
    // temporaries are created owner-only; what is renamed into place must not stay so
    use std::os::unix::fs::PermissionsExt;
    let dir = tmpdir("permissions");
    let plain = dir.join("plain");
    std::fs::write(&plain, b"").unwrap();
    std::fs::create_dir(dir.join("plain-dir")).unwrap();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let (vz, back) = (dir.join("s.vz"), dir.join("back"));
    compress(&sample(), &vz);
    Archive::open(&vz)
        .unwrap()
        .decompress_to(&back, &|_| {})
        .unwrap();
    assert_eq!(mode(&vz), mode(&plain));
    assert_eq!(mode(&back), mode(&plain));
    let (src, packed) = (dir.join("model"), dir.join("packed"));
    sharded_model(&src);
    format::compress_dir(&src, &packed, &CompressOptions::default(), &|_, _| {}).unwrap();
    assert_eq!(mode(&packed), mode(&dir.join("plain-dir")));
}
