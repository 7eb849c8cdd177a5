//! Reliability: shared types across threads, killing the tool mid-run, and (opt-in, slow) a
//! tensor over 4 GiB.

mod common;

use common::*;
use std::sync::Arc;
use vramzip::format::{self, Archive, CompressOptions};

fn assert_send_sync<T: Send + Sync>() {}

#[test]
fn shared_types_are_send_and_sync() {
    assert_send_sync::<Archive>();
    assert_send_sync::<vramzip::gpu::GpuContext>();
    assert_send_sync::<vramzip::gpu::GpuGroup>();
    assert_send_sync::<vramzip::codec::shared::Codebooks>();
    assert_send_sync::<vramzip::codec::Codebook>();
    assert_send_sync::<vramzip::Error>();
    fn assert_send<T: Send>() {}
    assert_send::<vramzip::codec::shared::StreamEncoder>();
}

#[test]
fn many_threads_decoding_one_archive_get_the_same_bytes() {
    let dir = tmpdir("threads");
    let vz = dir.join("s.vz");
    format::compress_file(sample(), &vz, &CompressOptions::default(), &|_| {}).unwrap();
    let archive = Arc::new(Archive::open(&vz).unwrap());
    let expected: Vec<Vec<u8>> = archive
        .tensors
        .iter()
        .map(|t| archive.decode(t).unwrap())
        .collect();
    let expected = Arc::new(expected);
    let handles: Vec<_> = (0..8)
        .map(|k| {
            let (archive, expected) = (archive.clone(), expected.clone());
            std::thread::spawn(move || {
                // each thread walks the tensors in its own order
                for i in 0..archive.tensors.len() {
                    let j = (i * 7 + k * 3) % archive.tensors.len();
                    assert_eq!(archive.decode(&archive.tensors[j]).unwrap(), expected[j]);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
}

/// `tensors` bf16 tensors of `elements` values each, real statistics (seeds from `seed`), at
/// `path`.
fn write_big_model(path: &std::path::Path, tensors: u64, elements: usize, seed: u64) {
    let tensors: Vec<(String, Vec<u8>)> = (0..tensors)
        .map(|i| (format!("w{i}"), weightlike(elements, seed + i)))
        .collect();
    let refs: Vec<(&str, &str, Vec<u64>, Vec<u8>)> = tensors
        .iter()
        .map(|(n, b)| (n.as_str(), "BF16", vec![b.len() as u64 / 2], b.clone()))
        .collect();
    write_safetensors(path, &refs, None);
}

/// Kills `vramzip compress` and `decompress` at several moments: the final name holds either
/// nothing, the complete new file, or the untouched previous file, never a truncated one.
#[test]
fn killing_the_tool_never_leaves_a_truncated_file() {
    let dir = tmpdir("kill");
    let src = dir.join("big.safetensors");
    // about 40 MB of real-statistics weights: long enough to be killed in the middle
    write_big_model(&src, 8, 2_500_000, 0);
    let vz = dir.join("big.vz");
    let exe = env!("CARGO_BIN_EXE_vramzip");
    let previous = b"the previous file, which must survive an interrupted run".to_vec();
    let mut outcomes = std::collections::BTreeMap::new();
    for (round, delay_ms) in [0u64, 5, 20, 50, 100, 200, 400, 800].iter().enumerate() {
        let with_previous = round % 2 == 1;
        if with_previous {
            std::fs::write(&vz, &previous).unwrap();
        } else {
            let _ = std::fs::remove_file(&vz);
        }
        let mut child = std::process::Command::new(exe)
            .args([
                "compress",
                "--force",
                src.to_str().unwrap(),
                "-o",
                vz.to_str().unwrap(),
            ])
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(*delay_ms));
        let _ = child.kill();
        let _ = child.wait();
        let outcome = match std::fs::read(&vz) {
            Err(_) => {
                assert!(!with_previous, "the previous file vanished");
                "absent"
            }
            Ok(bytes) if bytes == previous => "previous",
            Ok(_) => {
                let archive = Archive::open(&vz).expect("a complete, valid file");
                for t in &archive.tensors {
                    archive
                        .decode(t)
                        .expect("every tensor decodes and matches its checksum");
                }
                "complete"
            }
        };
        *outcomes.entry(outcome).or_insert(0) += 1;
    }
    eprintln!("compress outcomes after kills: {outcomes:?}");
    // (how many rounds end in each state depends on the machine's speed; every round was checked)

    // the same for decompress
    format::compress_file(&src, &vz, &CompressOptions::default(), &|_| {}).unwrap();
    let back = dir.join("back.safetensors");
    let original = std::fs::read(&src).unwrap();
    for delay_ms in [0u64, 10, 50, 150, 400] {
        let _ = std::fs::remove_file(&back);
        let mut child = std::process::Command::new(exe)
            .args([
                "decompress",
                "--force",
                vz.to_str().unwrap(),
                "-o",
                back.to_str().unwrap(),
            ])
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        let _ = child.kill();
        let _ = child.wait();
        if let Ok(bytes) = std::fs::read(&back) {
            assert_eq!(bytes, original, "a killed decompress left a partial file");
        }
    }
}

/// A tensor over 4 GiB round-trips through the container. Slow (about a minute) and needs ~16 GB
/// of memory and ~12 GB of disk: run with `cargo test --release --test reliability -- --ignored`
/// or `scripts/huge-tensor.sh`.
#[test]
#[ignore]
fn a_tensor_over_4_gib_round_trips() {
    use std::io::Write;
    let dir = tmpdir("huge");
    let src = dir.join("huge.safetensors");
    let n: u64 = (4u64 << 30) / 2 + 12_345; // bf16 elements: just over 4 GiB
    {
        let header = format!(
            r#"{{"huge":{{"dtype":"BF16","shape":[{n}],"data_offsets":[0,{}]}}}}"#,
            2 * n
        );
        let mut header = header.into_bytes();
        header.resize(header.len().next_multiple_of(8), b' ');
        let mut f = std::io::BufWriter::new(std::fs::File::create(&src).unwrap());
        f.write_all(&(header.len() as u64).to_le_bytes()).unwrap();
        f.write_all(&header).unwrap();
        let piece = weightlike(1 << 24, 7);
        let mut left = 2 * n;
        while left > 0 {
            let k = left.min(piece.len() as u64) as usize;
            f.write_all(&piece[..k]).unwrap();
            left -= k as u64;
        }
    }
    let vz = dir.join("huge.vz");
    format::compress_file(&src, &vz, &CompressOptions::default(), &|_| {}).unwrap();
    let archive = Archive::open(&vz).unwrap();
    let bytes = archive.decode(&archive.tensors[0]).unwrap(); // checks the checksum
    assert_eq!(bytes.len() as u64, 2 * n);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Runs `cmd` (its output discarded), sends it SIG`signal` after `delay_ms`, and returns how it
/// ended.
#[cfg(unix)]
fn interrupt(
    mut cmd: std::process::Command,
    signal: &str,
    delay_ms: u64,
) -> std::process::ExitStatus {
    let mut child = cmd
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(delay_ms));
    let _ = std::process::Command::new("kill")
        .args([format!("-{signal}"), child.id().to_string()])
        .status();
    child.wait().unwrap()
}

/// Ctrl-C or SIGTERM in the middle of `vramzip bench`: its scratch folder in the temporary
/// directory (a compressed copy of the input, as large as the model) goes with the process.
#[cfg(unix)]
#[test]
fn an_interrupted_bench_leaves_no_scratch_folder() {
    let dir = tmpdir("bench-interrupt");
    let src = dir.join("big.safetensors");
    write_big_model(&src, 6, 2_000_000, 50);
    // the child's temporary directory: empty unless it leaves something behind
    let temp = dir.join("temp");
    std::fs::create_dir(&temp).unwrap();
    let mut interrupted = 0;
    for (signal, delay_ms) in [("INT", 150u64), ("TERM", 300), ("INT", 600), ("TERM", 1000)] {
        let mut bench = std::process::Command::new(env!("CARGO_BIN_EXE_vramzip"));
        bench
            .args(["bench", "--cpu", src.to_str().unwrap()])
            .env("TMPDIR", &temp);
        let status = interrupt(bench, signal, delay_ms);
        interrupted += (status.code() == Some(130)) as usize;
        let left: Vec<_> = std::fs::read_dir(&temp).unwrap().collect();
        assert!(
            left.is_empty(),
            "bench after SIG{signal} ({status}): {left:?}"
        );
    }
    assert!(
        interrupted > 0,
        "no bench was caught in the middle: the test proved nothing"
    );
}

/// Ctrl-C (SIGINT) and SIGTERM in the middle of `compress` or `decompress`: the temporaries go
/// with the process; the folder holds the inputs and, at most, complete outputs.
#[cfg(unix)]
#[test]
fn an_interrupted_run_leaves_no_temporary_files() {
    let dir = tmpdir("interrupt");
    let src = dir.join("big.safetensors");
    write_big_model(&src, 6, 2_000_000, 40);
    let packed = dir.join("packed.vz");
    format::compress_file(&src, &packed, &CompressOptions::default(), &|_| {}).unwrap();
    let exe = env!("CARGO_BIN_EXE_vramzip");
    let (vz, back) = (dir.join("out.vz"), dir.join("back.safetensors"));
    let mut interrupted = 0;
    for (signal, delay_ms) in [("INT", 30u64), ("TERM", 80), ("INT", 150), ("TERM", 300)] {
        for args in [
            vec![
                "compress",
                "--force",
                src.to_str().unwrap(),
                "-o",
                vz.to_str().unwrap(),
            ],
            vec![
                "decompress",
                "--force",
                packed.to_str().unwrap(),
                "-o",
                back.to_str().unwrap(),
            ],
        ] {
            let mut run = std::process::Command::new(exe);
            run.args(&args);
            let status = interrupt(run, signal, delay_ms);
            // 130: the handler ran in the middle of the work
            interrupted += (status.code() == Some(130)) as usize;
            let left: Vec<String> = std::fs::read_dir(&*dir)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".tmp"))
                .collect();
            assert!(
                left.is_empty(),
                "{args:?} after SIG{signal} ({status}): {left:?}"
            );
        }
    }
    assert!(
        interrupted > 0,
        "no run was caught in the middle: the test proved nothing"
    );
}
