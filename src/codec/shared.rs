//! Single-stage coding: fixed codebooks made once from the summed histograms of earlier data, then
//! used to encode new data in one pass, with no analysis and no table sent along.
//!
//! Books are kept per dtype and, within a dtype, per *role* of a tensor, told from its name
//! ([`role`]: embeddings, norms, biases, attention projections, feed-forward ones): tensors of one
//! role share their value ranges across layers and models, tensors of different roles do not, and
//! one book for all of them costs about 1% (measured in BENCHMARKS.md). A tensor takes its role's
//! book when there is one, else its dtype's.

use super::{
    Codebook, CodedTensor, Layout, element_bits, huffman, symbol_histogram, top_histogram,
};
use crate::error::{Error, Result};
use std::collections::BTreeMap;
use std::sync::Arc;

const MAGIC: &[u8; 4] = b"VZCB";
/// Version 2 names books `DTYPE` or `DTYPE/ROLE`; version 1 files (`DTYPE` only) are read too.
const VERSION: u8 = 2;

/// The roles [`role`] tells, each a book of its own within a dtype.
pub const ROLES: [&str; 11] = [
    "embedding",
    "norm",
    "bias",
    "attention.q",
    "attention.k",
    "attention.v",
    "attention.qkv",
    "attention.out",
    "mlp.up",
    "mlp.down",
    "other",
];

/// The role of a tensor from its name, by the names the common checkpoints use (BERT, MPNet,
/// Llama, Mistral, Qwen, GPT-2 style): embeddings and the output head, norms, biases, attention
/// query, key and value projections (each its own: their ranges differ; fused ones together) and
/// output projections, feed-forward up (and gate) and down projections; anything else is "other".
pub fn role(name: &str) -> &'static str {
    let name = name.to_ascii_lowercase();
    let parts: Vec<&str> = name.split('.').collect();
    let has = |words: &[&str]| parts.iter().any(|p| words.contains(p));
    if name.contains("norm") || parts.iter().any(|p| *p == "ln" || p.starts_with("ln_")) {
        "norm"
    } else if name.contains("embed") || has(&["wte", "wpe", "lm_head"]) {
        "embedding"
    } else if parts.last() == Some(&"bias") {
        "bias"
    } else if has(&["q_proj", "query", "q"]) {
        "attention.q"
    } else if has(&["k_proj", "key", "k"]) {
        "attention.k"
    } else if has(&["v_proj", "value", "v"]) {
        "attention.v"
    } else if has(&["qkv", "c_attn", "wqkv", "query_key_value"]) {
        "attention.qkv"
    } else if has(&["o_proj", "out_proj", "o"])
        || (has(&["attention", "attn", "self_attn"]) && has(&["output", "dense", "c_proj"]))
    {
        "attention.out"
    } else if has(&[
        "up_proj",
        "gate_proj",
        "gate_up_proj",
        "fc1",
        "w1",
        "w3",
        "c_fc",
        "intermediate",
    ]) {
        "mlp.up"
    } else if has(&["down_proj", "fc2", "w2", "output", "c_proj"]) {
        "mlp.down"
    } else {
        "other"
    }
}

/// The book a tensor of `dtype` named `name` is coded with, and its key in [`Codebooks`]: its
/// role's.
pub fn role_key(dtype: &str, name: &str) -> String {
    format!("{dtype}/{}", role(name))
}

/// The dtype of a book key (`DTYPE` or `DTYPE/ROLE`).
fn key_dtype(key: &str) -> &str {
    key.split('/').next().unwrap_or(key)
}

/// Widest symbol a shared codebook uses: 11 bits leave room for the escape in a 12-bit code.
pub const MAX_SHARED_SYM_BITS: u32 = 11;

/// How often the escape is assumed to occur, as a fraction of the training symbols: rare enough
/// to cost the known symbols nothing measurable, so it gets a long (about 12-bit) code.
const ESCAPE_SHARE: u64 = 1 << 20;

/// Histograms of each element's top 12 bits, summed per book key (a dtype, or a dtype and a
/// role) over any number of tensors.
#[derive(Clone, Debug, Default)]
pub struct Histograms {
    per_key: BTreeMap<String, Vec<u64>>,
}

impl Histograms {
    /// Adds one tensor's bytes to its dtype's histogram (ignored when its dtype is not coded).
    pub fn add(&mut self, dtype: &str, data: &[u8]) {
        if let Some(width) = element_bits(dtype) {
            self.add_to(dtype, &top_histogram(data, width));
        }
    }

    /// Adds one tensor's bytes to its dtype's histogram and to its role's ([`role_key`]).
    pub fn add_named(&mut self, name: &str, dtype: &str, data: &[u8]) {
        if let Some(width) = element_bits(dtype) {
            let h = top_histogram(data, width);
            self.add_to(dtype, &h);
            self.add_to(&role_key(dtype, name), &h);
        }
    }

    fn add_to(&mut self, key: &str, h: &[u64]) {
        let sum = self
            .per_key
            .entry(key.to_string())
            .or_insert_with(|| vec![0; h.len()]);
        sum.iter_mut().zip(h).for_each(|(a, b)| *a += b);
    }

    /// One codebook per dtype, each with the symbol width that codes the summed data smallest,
    /// and an escape so that symbols never seen still code.
    pub fn build(&self) -> Codebooks {
        self.build_with_escape(true)
    }

    /// As [`Histograms::build`]; `escape: false` gives books that code only the symbols seen (for
    /// measuring what the escape costs; such books cannot be saved or used on unseen data).
    pub fn build_with_escape(&self, escape: bool) -> Codebooks {
        let mut books = BTreeMap::new();
        for (key, top) in &self.per_key {
            let Some(width) = element_bits(key_dtype(key)) else {
                continue;
            };
            let n: u64 = top.iter().sum();
            if n == 0 {
                continue;
            }
            let best = (8..=MAX_SHARED_SYM_BITS.min(width))
                .map(|s| {
                    let mut hist = symbol_histogram(top, width, s);
                    hist.push(if escape { (n / ESCAPE_SHARE).max(1) } else { 0 });
                    let book = Codebook::from_histogram(s, &hist);
                    let bits = huffman::coded_bits(&hist, &book.lens) + n * (width - s) as u64;
                    (bits, book)
                })
                .min_by_key(|(bits, _)| *bits);
            if let Some((_, book)) = best {
                books.insert(key.clone(), book);
            }
        }
        Codebooks { books }
    }
}

/// Shared codebooks, one per dtype and (optionally) one per role within a dtype.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Codebooks {
    /// By key: a dtype (`BF16`, `F32`, ...) or a dtype and a role (`BF16/mlp.up`).
    pub books: BTreeMap<String, Codebook>,
}

impl Codebooks {
    /// The book, and its key, for a tensor of `dtype` named `name`: its role's if there is one,
    /// else its dtype's.
    pub fn book_for(&self, dtype: &str, name: &str) -> Option<(&str, &Codebook)> {
        let by_role = self.books.get_key_value(&role_key(dtype, name));
        by_role
            .or_else(|| self.books.get_key_value(dtype))
            .map(|(k, b)| (k.as_str(), b))
    }

    /// The file form: `VZCB`, a version byte, the number of books (u16 LE), then per book its
    /// key (length byte and text: `DTYPE` or `DTYPE/ROLE`) and its serialized [`Codebook`] (u16 LE length and bytes), and
    /// last the xxh3-64 of everything before it (u64 LE).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        out.push(VERSION);
        out.extend_from_slice(&(self.books.len() as u16).to_le_bytes());
        for (key, book) in &self.books {
            out.push(key.len() as u8);
            out.extend_from_slice(key.as_bytes());
            let b = book.to_bytes();
            out.extend_from_slice(&(b.len() as u16).to_le_bytes());
            out.extend_from_slice(&b);
        }
        let sum = xxhash_rust::xxh3::xxh3_64(&out);
        out.extend_from_slice(&sum.to_le_bytes());
        out
    }

    /// Parses and checks a codebook file: magic, version, checksum, each book valid, able to code
    /// every symbol, and of the right width for its dtype.
    pub fn from_bytes(bytes: &[u8]) -> std::result::Result<Self, String> {
        if bytes.len() < 15 || &bytes[..4] != MAGIC {
            return Err("not a vramzip codebook file".into());
        }
        if !(1..=VERSION).contains(&bytes[4]) {
            return Err(format!(
                "codebook file version {} (this build reads 1 to {VERSION})",
                bytes[4]
            ));
        }
        let (body, sum) = bytes.split_at(bytes.len() - 8);
        let stored = u64::from_le_bytes(sum.try_into().map_err(|_| "truncated")?);
        if xxhash_rust::xxh3::xxh3_64(body) != stored {
            return Err("codebook file checksum mismatch: the file is corrupt".into());
        }
        let count = u16::from_le_bytes([body[5], body[6]]) as usize;
        let mut at = 7;
        let mut take = |n: usize| -> std::result::Result<&[u8], String> {
            let s = body.get(at..at + n).ok_or("codebook file truncated")?;
            at += n;
            Ok(s)
        };
        let mut books = BTreeMap::new();
        for _ in 0..count {
            let len = take(1)?[0] as usize;
            let key = String::from_utf8(take(len)?.to_vec()).map_err(|_| "book key is not text")?;
            let dtype = key_dtype(&key);
            let width = element_bits(dtype).ok_or(format!(
                "codebook for dtype {dtype}, which vramzip does not code"
            ))?;
            if key != dtype && !ROLES.iter().any(|r| key == format!("{dtype}/{r}")) {
                return Err(format!("codebook for '{key}', not a dtype or a known role"));
            }
            let len = u16::from_le_bytes(take(2)?.try_into().map_err(|_| "truncated")?) as usize;
            let book = Codebook::from_bytes(take(len)?)?;
            if book.sym_bits > width || !book.codes_everything() {
                return Err(format!(
                    "the {key} codebook cannot code every {dtype} value"
                ));
            }
            books.insert(key, book);
        }
        if at != body.len() {
            return Err("codebook file has trailing bytes".into());
        }
        Ok(Codebooks { books })
    }
}

/// Encodes `data` in one pass with a fixed codebook: no histogram, no table to send.
pub fn encode_with(
    data: &[u8],
    width: u32,
    book: impl Into<Arc<Codebook>>,
    chunk_groups: usize,
) -> Result<CodedTensor> {
    let book = book.into();
    let n = (data.len() / (width as usize / 8)) as u64;
    let layout = Layout::new(n, width, book.sym_bits, chunk_groups)?;
    let encoded = super::encode(data, &layout, &book)?;
    Ok(CodedTensor {
        layout,
        codebook: book,
        encoded,
    })
}

/// Encodes buffers one after another (weights or activations in flight) with a fixed codebook,
/// optionally rebuilt from the running histogram every `rebuild_every` buffers.
#[derive(Debug)]
pub struct StreamEncoder {
    dtype: String,
    width: u32,
    chunk_groups: usize,
    book: Arc<Codebook>,
    rebuild_every: Option<usize>,
    seen: Histograms,
    count: usize,
}

impl StreamEncoder {
    /// A stream of `dtype` buffers coded with `book`.
    pub fn new(
        dtype: &str,
        book: Codebook,
        chunk_groups: usize,
        rebuild_every: Option<usize>,
    ) -> Result<Self> {
        let width = element_bits(dtype)
            .ok_or_else(|| Error::InvalidArgument(format!("dtype {dtype} is not coded")))?;
        if !book.codes_everything() || book.sym_bits > width {
            return Err(Error::InvalidArgument(format!(
                "the codebook cannot code every {dtype} value"
            )));
        }
        Ok(StreamEncoder {
            dtype: dtype.to_string(),
            width,
            chunk_groups,
            book: Arc::new(book),
            rebuild_every: rebuild_every.filter(|&k| k > 0),
            seen: Histograms::default(),
            count: 0,
        })
    }

    /// Encodes one buffer. Its codebook is the same `Arc` until a rebuild, so a sender ships a
    /// book only when it changes.
    pub fn encode(&mut self, data: &[u8]) -> Result<CodedTensor> {
        let coded = encode_with(data, self.width, self.book.clone(), self.chunk_groups)?;
        if let Some(k) = self.rebuild_every {
            self.seen.add(&self.dtype, data);
            self.count += 1;
            if self.count.is_multiple_of(k)
                && let Some(book) = self.seen.build().books.remove(&self.dtype)
            {
                self.book = Arc::new(book);
            }
        }
        Ok(coded)
    }
}
