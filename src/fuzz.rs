//! Entry points shared by the fuzz targets (`fuzz/`) and the unit tests: each takes arbitrary
//! bytes and must neither panic nor hang, whatever they hold. A panic here is a bug.

use crate::codec::{self, Codebook, Encoded, Layout};
use crate::format::{self, Archive, CompressOptions};

/// Arbitrary bytes as a safetensors file: compress must fail cleanly or round-trip exactly; as a
/// compressed file: opening and decoding must fail cleanly or give checksum-verified bytes.
pub fn container(data: &[u8]) {
    // removed when dropped, also when an assertion below fails
    let Ok(tmp) = tempfile::Builder::new().prefix("vramzip-fuzz-").tempdir() else {
        return;
    };
    let dir = tmp.path();
    let (input, packed, back) = (dir.join("in"), dir.join("packed"), dir.join("back"));
    if std::fs::write(&input, data).is_ok() {
        if let Ok(archive) = Archive::open(&input) {
            for t in &archive.tensors {
                let _ = archive.decode(t);
            }
            let _ = archive.stats();
        }
        if format::compress_file(
            &input,
            &packed,
            &CompressOptions::default().with_chunk_groups(3),
            &|_| {},
        )
        .is_ok()
        {
            let archive = Archive::open(&packed).expect("a file vramzip wrote must open");
            archive
                .decompress_to(&back, &|_| {})
                .expect("a file vramzip wrote must decompress");
            assert_eq!(
                std::fs::read(&back).ok().as_deref(),
                Some(data),
                "round trip changed the file"
            );
        }
    }
}

/// Arbitrary bytes as a coded tensor (layout, code lengths, index, raw plane, stream):
/// decoding must fail cleanly or produce bytes, never panic.
pub fn decoder(data: &[u8]) {
    if data.len() < 8 {
        return;
    }
    let width = [8, 16, 32][data[0] as usize % 3];
    let widths = codec::sym_bits_candidates(width);
    let sym_bits = widths.start() + data[1] as u32 % (widths.end() - widths.start() + 1);
    let chunk_groups = 1 + data[2] as usize % 8;
    let n = u32::from_le_bytes([data[3], data[4], data[5], 0]) as u64 % 5000;
    let Ok(layout) = Layout::new(n, width, sym_bits, chunk_groups) else {
        return;
    };
    let rest = &data[6..];
    let book = Codebook::from_bytes(rest).unwrap_or_else(|_| {
        // a complete code, so decoding gets past the table and into the streams
        let mut hist = vec![1u64; 1 << sym_bits];
        let size = hist.len();
        rest.iter()
            .for_each(|&b| hist[b as usize % size] += b as u64);
        Codebook::from_histogram(sym_bits, &hist)
    });
    // an index of the size one delta width would give every block, so decoding can get past it
    let delta_bits = (data[2] / 8) as u32 % 25;
    let index: u64 = (0..layout.blocks())
        .map(|b| codec::index_words(layout.block_pairs(b), delta_bits))
        .sum();
    let index = (4 * index as usize).min(rest.len() / 4 * 4);
    let raw = (layout.raw_bytes() as usize).min(rest.len() - index);
    let enc = Encoded {
        index: rest[..index].to_vec(),
        raw: rest[index..index + raw].to_vec(),
        stream: rest[index + raw..].to_vec(),
    };
    let mut out = vec![0u8; layout.decoded_bytes() as usize];
    let _ = codec::decode(&layout, &enc, &book, &mut out, "fuzz");
}

/// Arbitrary bytes as a codebook file or a codebook: loading must fail cleanly, or give a book
/// that serializes back to the same thing.
pub fn codebook(data: &[u8]) {
    if let Ok(books) = codec::shared::Codebooks::from_bytes(data) {
        assert_eq!(
            codec::shared::Codebooks::from_bytes(&books.to_bytes()).as_ref(),
            Ok(&books)
        );
        assert!(books.books.values().all(Codebook::codes_everything));
    }
    if let Ok(book) = Codebook::from_bytes(data) {
        assert_eq!(Codebook::from_bytes(&book.to_bytes()).as_ref(), Ok(&book));
        let _ = codec::huffman::decode_table(&book.lens);
    }
}

/// Arbitrary bytes as tensor data: the codec must give them back exactly.
pub fn round_trip(data: &[u8]) {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let width = [8u32, 16, 32][sel as usize % 3];
    let bytes = &rest[..rest.len() / (width as usize / 8) * (width as usize / 8)];
    let chunk_groups = 1 + (sel as usize / 3) % 16;
    assert_eq!(
        codec::round_trip(bytes, width, chunk_groups)
            .expect("round trip")
            .as_slice(),
        bytes
    );
}

/// A small real-shaped model (coded bf16 and f32 tensors, a stored one) and its compressed form,
/// made once per process: what [`manifest`] lies about.
fn manifest_base() -> Option<&'static (Vec<u8>, Vec<u8>)> {
    static BASE: std::sync::OnceLock<Option<(Vec<u8>, Vec<u8>)>> = std::sync::OnceLock::new();
    BASE.get_or_init(|| {
        let tmp = tempfile::Builder::new()
            .prefix("vramzip-fuzz-")
            .tempdir()
            .ok()?;
        let (src, vz) = (tmp.path().join("m.safetensors"), tmp.path().join("m.vz"));
        let mut s = 5u64;
        let mut bf16 = |n: usize| -> Vec<u8> {
            (0..n)
                .flat_map(|_| {
                    s = s.wrapping_mul(6364136223846793005).wrapping_add(1);
                    // weights near 1e-2: exponents clustered as in trained models
                    let top = 0x3c00 | ((s >> 40) as u16 & 0x0fff) ^ (((s >> 60) as u16) << 15);
                    top.to_le_bytes()
                })
                .collect()
        };
        let tensors: Vec<(&str, &str, Vec<u64>, Vec<u8>)> = vec![
            ("a.weight", "BF16", vec![64, 96], bf16(64 * 96)),
            ("a.bias", "BF16", vec![96], bf16(96)),
            ("b.weight", "BF16", vec![96, 64], bf16(96 * 64)),
            (
                "ids",
                "I64",
                vec![16],
                (0..16u64).flat_map(|i| i.to_le_bytes()).collect(),
            ),
        ];
        let mut header = serde_json::Map::new();
        let mut offset = 0;
        for (name, dtype, shape, bytes) in &tensors {
            let end = offset + bytes.len();
            header.insert(
                name.to_string(),
                serde_json::json!({"dtype": dtype, "shape": shape, "data_offsets": [offset, end]}),
            );
            offset = end;
        }
        header.insert("__metadata__".into(), serde_json::json!({"format": "pt"}));
        let mut text = serde_json::to_vec(&header).ok()?;
        text.resize(text.len().next_multiple_of(8), b' ');
        let mut file = (text.len() as u64).to_le_bytes().to_vec();
        file.extend(text);
        tensors.iter().for_each(|t| file.extend(&t.3));
        std::fs::write(&src, &file).ok()?;
        let opts = CompressOptions::default().with_chunk_groups(4);
        format::compress_file(&src, &vz, &opts, &|_| {}).ok()?;
        Some((file, std::fs::read(&vz).ok()?))
    })
    .as_ref()
}

/// Lies in a compressed file's manifest, with its checksum recomputed so that they reach the
/// checks behind it: entries swapped, dropped, duplicated or changed field by field, bytes of the
/// original header it holds changed. Opening and decompressing must fail cleanly, or give back
/// exactly the original file.
pub fn manifest(data: &[u8]) {
    if let (Some(Ok(back)), Some((original, _))) = (lie(data), manifest_base()) {
        assert_eq!(
            &back, original,
            "a lie in the manifest or the original header came back as a different file"
        );
    }
}

/// Tells the lie `data` describes: `None` if it describes none, else what opening and
/// decompressing gave (the output's bytes, or the error).
fn lie(data: &[u8]) -> Option<std::result::Result<Vec<u8>, String>> {
    let (_, packed) = manifest_base()?;
    if data.len() < 4 {
        return None;
    }
    let pick = |k: usize| data.get(k).copied().unwrap_or(0) as usize;
    let file = format::rewrite_manifest(packed, |m| {
        let entries = m["tensors"].as_array().map_or(0, |t| t.len());
        let (i, j) = (pick(1) % entries, pick(2) % entries);
        match data[0] % 6 {
            0 => {
                if let Some(t) = m["tensors"].as_array_mut() {
                    t.swap(i, j);
                }
            }
            1 => {
                if let Some(t) = m["tensors"].as_array_mut() {
                    t.remove(i);
                }
            }
            2 => {
                if let Some(t) = m["tensors"].as_array_mut() {
                    let e = t[i].clone();
                    t.insert(j, e);
                }
            }
            3 => {
                // one field of one entry, to a value made from the input
                let fields = [
                    "name",
                    "dtype",
                    "shape",
                    "bytes",
                    "xxh3",
                    "sym_bits",
                    "chunk_groups",
                    "stream_bytes",
                    "coding",
                ];
                let field = fields[pick(2) % fields.len()];
                let rest = data.get(3..).unwrap_or_default();
                let value: serde_json::Value = serde_json::from_slice(rest)
                    .unwrap_or_else(|_| String::from_utf8_lossy(rest).into_owned().into());
                m["tensors"][i][field] = value;
            }
            _ => {
                // bytes of the original header, xored with the input
                let mut original = m["original_header"]
                    .as_str()
                    .unwrap_or("")
                    .as_bytes()
                    .to_vec();
                let len = original.len().max(1);
                for (k, &x) in data[1..].iter().enumerate() {
                    if let Some(b) = original.get_mut((pick(1) * 31 + k * 7) % len) {
                        *b ^= x;
                    }
                }
                m["original_header"] = String::from_utf8_lossy(&original).into_owned().into();
            }
        }
    })
    .ok()?;
    let tmp = tempfile::Builder::new()
        .prefix("vramzip-fuzz-")
        .tempdir()
        .ok()?;
    let (vz, back) = (tmp.path().join("lie.vz"), tmp.path().join("back"));
    std::fs::write(&vz, &file).ok()?;
    let told = Archive::open(&vz).and_then(|a| a.decompress_to(&back, &|_| {}));
    Some(match told {
        Ok(()) => std::fs::read(&back).map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_manifest_target_has_a_file_to_lie_about_and_its_lies_are_refused() {
        let (original, _) = manifest_base().expect("the base model compresses");
        // no lie (an entry swapped with itself): the original comes back
        assert_eq!(lie(&[0, 1, 1, 0]), Some(Ok(original.clone())));
        // a swap, a drop, a renamed entry, a changed original header: refused before writing
        for told in [
            &[0u8, 0, 1, 0][..],
            &[1, 2, 0, 0],
            &[3, 0, 0, b'1'],
            &[4, 3, 0x20, 0x01],
        ] {
            let outcome = lie(told).expect("a lie");
            assert!(outcome.is_err(), "{told:?} came back: {outcome:?}");
        }
    }
}
