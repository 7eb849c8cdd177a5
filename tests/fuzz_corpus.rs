//! The fuzz targets' entries (`vramzip::fuzz`), run over the committed corpus (grown by
//! `scripts/fuzz.sh`, crash reproducers included) and over fresh random inputs.

mod common;

use std::path::Path;

fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files.iter().map(|p| std::fs::read(p).unwrap()).collect()
}

fn random_inputs(seed: u64) -> Vec<Vec<u8>> {
    (0..300u64)
        .map(|i| common::noise((i as usize * 37) % 3000, seed * 1000 + i))
        .collect()
}

fn run(target: &str, entry: fn(&[u8])) {
    let inputs = corpus(target);
    assert!(
        !inputs.is_empty(),
        "the {target} corpus is empty: nothing would be checked"
    );
    for input in inputs.iter().chain(&random_inputs(target.len() as u64)) {
        entry(input);
    }
}

#[test]
fn container_corpus() {
    run("container", vramzip::fuzz::container);
}

#[test]
fn decoder_corpus() {
    run("decoder", vramzip::fuzz::decoder);
}

#[test]
fn codebook_corpus() {
    run("codebook", vramzip::fuzz::codebook);
}

#[test]
fn round_trip_corpus() {
    run("round_trip", vramzip::fuzz::round_trip);
}

#[test]
fn manifest_corpus() {
    run("manifest", vramzip::fuzz::manifest);
}
