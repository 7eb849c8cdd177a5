//! Single-stage coding with shared codebooks: round trips on every dtype, symbols the codebook
//! never saw, codebook files that are corrupt or of the wrong kind, and the streaming encoder.

mod common;

use common::*;
use std::sync::Arc;
use vramzip::codec::shared::{Codebooks, Histograms, StreamEncoder, encode_with};
use vramzip::codec::{self, Codebook};
use vramzip::format::{self, Archive, CompressOptions};

fn books_from(path: &std::path::Path) -> Codebooks {
    let mut h = Histograms::default();
    vramzip::format::add_to_histograms(&mut h, path).unwrap();
    h.build()
}

fn decode_all(archive: &Archive) {
    for t in &archive.tensors {
        archive
            .decode(t)
            .unwrap_or_else(|e| panic!("{}: {e}", t.meta.name));
    }
}

#[test]
fn shared_codebooks_round_trip_every_dtype() {
    let dir = tmpdir("cb-mixed");
    let (src, vz, back) = (
        dir.join("m.safetensors"),
        dir.join("m.vz"),
        dir.join("back"),
    );
    mixed_file(&src);
    let books = books_from(&src);
    for dtype in ["BF16", "F16", "F32", "U8", "I8", "F8_E4M3"] {
        let book = &books.books[dtype];
        assert!(book.codes_everything(), "{dtype}");
        assert!(book.sym_bits <= 11, "{dtype}");
    }
    let opts = CompressOptions::default().with_codebooks(Arc::new(books));
    format::compress_file(&src, &vz, &opts, &|_| {}).unwrap();
    let archive = Archive::open(&vz).unwrap();
    let shared: Vec<&str> = archive
        .tensors
        .iter()
        .filter(|t| {
            matches!(
                &t.meta.coding,
                format::Coding::Huffman {
                    codebook: Some(_),
                    ..
                }
            )
        })
        .map(|t| t.meta.name.as_str())
        .collect();
    assert!(
        shared.contains(&"bf16.big") && shared.contains(&"f32") && shared.contains(&"u8"),
        "{shared:?}"
    );
    decode_all(&archive);
    archive.decompress_to(&back, &|_| {}).unwrap();
    assert_eq!(std::fs::read(&back).unwrap(), std::fs::read(&src).unwrap());
    // the book is stored once per dtype, not per tensor
    let names = archive.tensor_names();
    assert_eq!(
        names
            .iter()
            .filter(|n| n.starts_with("__vramzip__.codebook."))
            .count(),
        6,
        "{names:?}"
    );
}

#[test]
fn symbols_the_codebook_never_saw_go_through_the_escape() {
    // a book made from small weights, then data full of values it never saw
    let train = weightlike(100_000, 1);
    let mut h = Histograms::default();
    h.add("BF16", &train);
    let book = h.build().books.remove("BF16").unwrap();
    let mut data = weightlike(50_000, 2);
    let specials: [u16; 6] = [0x7f80, 0xff80, 0x7fc1, 0x4780, 0xc780, 0x0001]; // inf, -inf, NaN, big, -big, subnormal
    for (i, v) in specials.iter().cycle().take(5000).enumerate() {
        data[2 * (i * 7 + 3)..2 * (i * 7 + 3) + 2].copy_from_slice(&v.to_le_bytes());
    }
    let coded = encode_with(&data, 16, book, 64).unwrap();
    assert_eq!(coded.decode("escaped").unwrap(), data);
    // the reference decoder, the oracle, reads the escapes the same way
    let mut oracle = vec![0u8; data.len()];
    vramzip::codec::decode_reference(
        &coded.layout,
        &coded.encoded,
        &coded.codebook,
        &mut oracle,
        "escaped",
    )
    .unwrap();
    assert_eq!(oracle, data);
    // the code's size with its escapes (as `inspect` reports it) is what the stream's regions hold
    let top = vramzip::codec::top_histogram(&data, 16);
    let hist = vramzip::codec::symbol_histogram(&top, 16, coded.layout.sym_bits);
    let starts = vramzip::codec::block_starts(&coded.layout, &coded.encoded.index).unwrap();
    let index: Vec<u32> = (coded.encoded.index.chunks(4))
        .map(|c| u32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    let regions: u64 = starts.index[..starts.index.len() - 1]
        .iter()
        .enumerate()
        .map(|(b, &i)| {
            let pairs = coded.layout.block_pairs(b as u64);
            vramzip::codec::region_bits(&index[i as usize..], pairs)
                .iter()
                .sum::<u64>()
        })
        .sum();
    assert_eq!(coded.codebook.coded_bits(&hist), regions);
}

#[test]
fn a_book_without_escape_or_code_cannot_be_loaded() {
    let mut h = Histograms::default();
    h.add("BF16", &weightlike(10_000, 3));
    let books = h.build();
    let bytes = books.to_bytes();
    assert_eq!(Codebooks::from_bytes(&bytes).unwrap(), books);

    // a per-tensor style book (no escape) inside a codebook file is refused
    let own = codec::choose(&weightlike(10_000, 3), 16, 1024)
        .unwrap()
        .unwrap()
        .codebook;
    assert!(!own.codes_everything());
    let mut no_escape = Codebooks::default();
    no_escape.books.insert("BF16".into(), own);
    let err = Codebooks::from_bytes(&no_escape.to_bytes()).unwrap_err();
    assert!(err.contains("cannot code every"), "{err}");

    // corrupt, truncated, wrong magic, wrong version, a dtype vramzip does not code
    let mut flipped = bytes.clone();
    flipped[9] ^= 4;
    assert!(
        Codebooks::from_bytes(&flipped)
            .unwrap_err()
            .contains("checksum")
    );
    assert!(Codebooks::from_bytes(&bytes[..bytes.len() - 3]).is_err());
    assert!(
        Codebooks::from_bytes(b"PK\x03\x04 not a codebook")
            .unwrap_err()
            .contains("not a vramzip codebook")
    );
    let mut version = bytes.clone();
    version[4] = 7;
    assert!(
        Codebooks::from_bytes(&version)
            .unwrap_err()
            .contains("version")
    );
    let mut wrong_kind = Codebooks::default();
    wrong_kind
        .books
        .insert("I64".into(), books.books["BF16"].clone());
    assert!(
        Codebooks::from_bytes(&wrong_kind.to_bytes())
            .unwrap_err()
            .contains("I64")
    );
    // a 12-bit book cannot carry an escape
    let mut lens = vec![12u8; 4096];
    lens.push(0);
    let twelve = Codebook { sym_bits: 12, lens };
    assert!(Codebook::from_bytes(&twelve.to_bytes()).is_ok());
    let mut bad = twelve.to_bytes();
    bad[1] = 13;
    assert!(Codebook::from_bytes(&bad).is_err());
}

#[test]
fn eight_bit_data_the_book_never_saw_round_trips() {
    let dir = tmpdir("cb-overflow");
    let (train, src, vz) = (
        dir.join("train.safetensors"),
        dir.join("s.safetensors"),
        dir.join("s.vz"),
    );
    write_safetensors(
        &train,
        &[(
            "t",
            "U8",
            vec![10_000],
            noise(10_000, 1).iter().map(|b| b & 3).collect(),
        )],
        None,
    );
    let random = noise(300_000, 2);
    write_safetensors(&src, &[("r", "U8", vec![300_000], random.clone())], None);
    let opts = CompressOptions::default().with_codebooks(Arc::new(books_from(&train)));
    format::compress_file(&src, &vz, &opts, &|_| {}).unwrap();
    let archive = Archive::open(&vz).unwrap();
    assert_eq!(archive.decode(&archive.tensors[0]).unwrap(), random);
}

#[test]
fn stream_encoder_rebuilds_its_book_from_the_running_histogram() {
    let mut h = Histograms::default();
    h.add("BF16", &weightlike(20_000, 4));
    let book = h.build().books.remove("BF16").unwrap();
    let mut enc = StreamEncoder::new("BF16", book.clone(), 256, Some(2)).unwrap();
    let mut books = Vec::new();
    for i in 0..5 {
        let data: Vec<u8> = weightlike(30_000 + i, 10 + i as u64);
        let coded = enc.encode(&data).unwrap();
        assert_eq!(coded.decode("stream").unwrap(), data, "buffer {i}");
        books.push(coded.codebook);
    }
    assert!(
        Arc::ptr_eq(&books[0], &books[1]),
        "same book until the first rebuild"
    );
    assert!(
        !Arc::ptr_eq(&books[1], &books[2]),
        "rebuilt after two buffers"
    );
    assert!(StreamEncoder::new("I64", book, 256, None).is_err());
}

#[test]
fn cli_codebook_build_and_shared_compression_of_a_sharded_model() {
    let dir = tmpdir("cb-cli");
    let src = dir.join("model");
    std::fs::create_dir_all(&src).unwrap();
    write_safetensors(
        &src.join("a.safetensors"),
        &[(
            "layers.0.mlp.up_proj.weight",
            "BF16",
            vec![40_000],
            weightlike(40_000, 1),
        )],
        None,
    );
    write_safetensors(
        &src.join("b.safetensors"),
        &[(
            "layers.1.mlp.up_proj.weight",
            "BF16",
            vec![40_000],
            weightlike(40_000, 2),
        )],
        None,
    );
    let run = vramzip;
    let s = |p: &std::path::Path| p.to_str().unwrap().to_string();
    let cb = dir.join("model.vzcb");
    let out = run(&["codebook", "build", &s(&src), "-o", &s(&cb)]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        listed.contains("BF16:") && listed.contains("BF16/mlp.up:"),
        "{listed}"
    );
    let one = dir.join("one.vz");
    let out = run(&[
        "compress",
        &s(&src.join("a.safetensors")),
        "-o",
        &s(&one),
        "--codebook",
        &s(&cb),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(run(&["verify", "--cpu", &s(&one)]).status.success());
    let shared = dir.join("shared");
    let out = run(&["compress", &s(&src), "-o", &s(&shared), "--shared-codebook"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // one book for the role built from both shards: the same table bytes in each
    let a = Archive::open(shared.join("a.safetensors")).unwrap();
    let b = Archive::open(shared.join("b.safetensors")).unwrap();
    assert_eq!(
        a.read("__vramzip__.codebook.BF16/mlp.up").unwrap(),
        b.read("__vramzip__.codebook.BF16/mlp.up").unwrap()
    );
    // a corrupt codebook file is a clean error
    std::fs::write(&cb, b"VZCB\x01garbage-garbage").unwrap();
    let out = run(&[
        "compress",
        "--force",
        &s(&src.join("a.safetensors")),
        "-o",
        &s(&one),
        "--codebook",
        &s(&cb),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("error: "));
}

#[test]
fn roles_are_told_from_the_names_of_common_checkpoints() {
    let cases = [
        ("embeddings.word_embeddings.weight", "embedding"),
        ("model.embed_tokens.weight", "embedding"),
        ("lm_head.weight", "embedding"),
        ("encoder.layer.0.attention.output.LayerNorm.weight", "norm"),
        ("model.layers.3.input_layernorm.weight", "norm"),
        ("model.norm.weight", "norm"),
        ("encoder.layer.0.attention.self.query.weight", "attention.q"),
        ("encoder.layer.0.attention.attn.k.weight", "attention.k"),
        ("model.layers.0.self_attn.v_proj.weight", "attention.v"),
        ("transformer.h.0.attn.c_attn.weight", "attention.qkv"),
        (
            "encoder.layer.0.attention.output.dense.weight",
            "attention.out",
        ),
        ("encoder.layer.0.attention.attn.o.weight", "attention.out"),
        ("model.layers.0.self_attn.o_proj.weight", "attention.out"),
        ("encoder.layer.0.intermediate.dense.weight", "mlp.up"),
        ("model.layers.0.mlp.gate_proj.weight", "mlp.up"),
        ("model.layers.0.mlp.up_proj.weight", "mlp.up"),
        ("encoder.layer.0.output.dense.weight", "mlp.down"),
        ("model.layers.0.mlp.down_proj.weight", "mlp.down"),
        ("encoder.layer.0.attention.self.query.bias", "bias"),
        ("encoder.relative_attention_bias.weight", "other"),
        ("pooler.dense.weight", "other"),
    ];
    for (name, role) in cases {
        assert_eq!(vramzip::codec::shared::role(name), role, "{name}");
        assert!(vramzip::codec::shared::ROLES.contains(&role));
    }
}

#[test]
fn a_tensor_takes_its_roles_book_else_its_dtypes_and_version_1_files_still_load() {
    let mut h = Histograms::default();
    h.add_named(
        "layers.0.mlp.up_proj.weight",
        "BF16",
        &weightlike(20_000, 3),
    );
    let books = h.build();
    let (key, _) = books
        .book_for("BF16", "layers.7.mlp.up_proj.weight")
        .unwrap();
    assert_eq!(key, "BF16/mlp.up");
    // no book of its own role: the dtype's
    let (key, _) = books
        .book_for("BF16", "layers.0.self_attn.q_proj.weight")
        .unwrap();
    assert_eq!(key, "BF16");
    assert!(
        books
            .book_for("F16", "layers.0.mlp.up_proj.weight")
            .is_none()
    );
    // a version-1 file (dtype keys only) reads as it did
    let mut one = Codebooks::default();
    one.books.insert("BF16".into(), books.books["BF16"].clone());
    let mut bytes = one.to_bytes();
    bytes[4] = 1;
    let body = bytes.len() - 8;
    let sum = xxhash_rust::xxh3::xxh3_64(&bytes[..body]);
    bytes[body..].copy_from_slice(&sum.to_le_bytes());
    assert_eq!(Codebooks::from_bytes(&bytes).unwrap(), one);
    // an unknown role is refused
    let mut odd = Codebooks::default();
    odd.books
        .insert("BF16/nonsense".into(), books.books["BF16"].clone());
    assert!(
        Codebooks::from_bytes(&odd.to_bytes())
            .unwrap_err()
            .contains("role")
    );
}
