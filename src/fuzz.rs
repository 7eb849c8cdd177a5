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

/// Arbitrary bytes as a coded tensor (layout, code lengths, chunk index, stream, raw plane):
/// decoding must fail cleanly or produce bytes, never panic.
pub fn decoder(data: &[u8]) {
    if data.len() < 8 {
        return;
    }
    let width = [8, 16, 32][data[0] as usize % 3];
    let sym_bits = 1 + data[1] as u32 % width.min(12);
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
    let chunks = (2 * layout.chunks() as usize).min(rest.len());
    let raw = (layout.raw_bytes() as usize).min(rest.len() - chunks);
    let enc = Encoded {
        chunk_bits: rest[..chunks].to_vec(),
        raw: rest[chunks..chunks + raw].to_vec(),
        stream: rest[chunks + raw..].to_vec(),
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
