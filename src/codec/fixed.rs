//! The fixed-rate resident form of a bf16 tensor: what a layer can be kept as in VRAM instead of
//! its Huffman code, for products that read 12 bits a weight at fixed positions and decode nothing
//! variable. Real bf16 weights use few exponents (the 15 most common of a tensor cover all but
//! ~0.02% of its weights: `examples/fixed_rate_report`), so each weight keeps its sign and
//! mantissa raw and a 4-bit code into a per-tensor palette of exponents; code 15 is the escape,
//! whose exponent is listed apart. Every weight stays exact.
//!
//! The form is one array of little-endian u32 words (bound whole on the GPU, read by
//! `shaders/weights_fixed.wgsl`, which follows this description), for a tensor of `n` elements:
//!
//! | words | what |
//! | --- | --- |
//! | 0..4 | header: the first word of the codes, of the palette, of the exception starts, of the exceptions |
//! | 4.. | low bytes: element i's sign (bit 7) and 7 mantissa bits at byte 16 + i; padded to 8 bytes |
//! | codes | element i's 4-bit code at nibble i (low nibble first); padded to a word |
//! | palette | 4 words: the exponent of code k in byte k; code 15 (the escape) has none |
//! | starts | `ceil(n / EXCEPTION_BLOCK) + 1` words: the first exception of each block of [`EXCEPTION_BLOCK`] elements, then their count |
//! | exceptions | one word an escaped element, in element order: its position in its block << 8, its exponent |
//!
//! The low bytes and codes of 8 consecutive elements are one 8-byte and one 4-byte load, so a
//! product reads 4 words of bf16 (8 weights) as 12 bytes, aligned, wherever it reads 16.

use crate::error::{Error, Result};
use rayon::prelude::*;

/// Elements a block of the exception index: an escaped element is found among the exceptions of
/// its block (about one a block on real weights, at most all of them) by a binary search.
pub const EXCEPTION_BLOCK: usize = 4096;
/// The escape code: the exponent is in the exception list.
pub const ESCAPE: u8 = 15;
/// Words before the low bytes.
const HEADER: usize = 4;

/// A bf16 tensor in the fixed-rate form (see the module doc).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FixedForm {
    /// Elements of the tensor.
    pub elements: usize,
    /// The form, as described in the module doc.
    pub words: Vec<u32>,
}

/// What [`FixedForm::new`] found in a tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FixedStats {
    /// Elements whose exponent is outside the palette.
    pub exceptions: usize,
    /// Distinct exponents in the tensor.
    pub exponents: usize,
}

/// A tensor's palette: its 15 most common exponents (fewer if it has fewer), the most common
/// first, ties to the smaller exponent, so that the form is a function of the data alone (the
/// GPU transcoder picks it the same way, from the same counts).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Palette {
    /// The exponent of code k, for the codes in use.
    pub(crate) exponents: Vec<u8>,
    /// Distinct exponents in the tensor.
    pub(crate) distinct: usize,
}

impl Palette {
    /// The palette of a tensor whose exponents occur `hist[e]` times.
    pub(crate) fn of(hist: &[u64; 256]) -> Palette {
        let mut order: Vec<usize> = (0..256).filter(|&e| hist[e] > 0).collect();
        let distinct = order.len();
        order.sort_by_key(|&e| (std::cmp::Reverse(hist[e]), e));
        order.truncate(ESCAPE as usize);
        Palette {
            exponents: order.iter().map(|&e| e as u8).collect(),
            distinct,
        }
    }

    /// The code of each exponent ([`ESCAPE`] for those outside the palette).
    pub(crate) fn codes(&self) -> [u8; 256] {
        let mut code_of = [ESCAPE; 256];
        for (k, &e) in self.exponents.iter().enumerate() {
            code_of[e as usize] = k as u8;
        }
        code_of
    }

    /// The palette's 4 words in the form (exponent of code k in byte k, unused bytes 0).
    pub(crate) fn words(&self) -> [u32; 4] {
        let mut bytes = [0u8; 16];
        bytes[..self.exponents.len()].copy_from_slice(&self.exponents);
        std::array::from_fn(|k| u32::from_le_bytes(std::array::from_fn(|j| bytes[4 * k + j])))
    }

    /// Elements of a tensor with exponent counts `hist` that the palette does not cover: its
    /// exceptions.
    pub(crate) fn exceptions(&self, hist: &[u64; 256]) -> u64 {
        let covered: u64 = self.exponents.iter().map(|&e| hist[e as usize]).sum();
        hist.iter().sum::<u64>() - covered
    }
}

/// The first word of the codes, the palette, the exception starts and the exceptions of the form
/// of `n` elements: what its header holds. The exceptions run to the end of the form.
pub(crate) fn offsets(n: usize) -> [usize; 4] {
    let codes_at = HEADER + n.div_ceil(8) * 2;
    let palette_at = codes_at + n.div_ceil(8);
    let starts_at = palette_at + 4;
    [
        codes_at,
        palette_at,
        starts_at,
        starts_at + n.div_ceil(EXCEPTION_BLOCK) + 1,
    ]
}

/// The exponent of bf16 bits.
fn exponent(v: u16) -> u8 {
    (v >> 7) as u8
}

impl FixedForm {
    /// The fixed form of `bytes`, a bf16 tensor (little-endian, 2 bytes an element).
    pub fn new(bytes: &[u8]) -> Result<(FixedForm, FixedStats)> {
        if !bytes.len().is_multiple_of(2) || bytes.len() / 2 > u32::MAX as usize {
            return Err(Error::InvalidArgument(format!(
                "the fixed form takes bf16 tensors of at most 2^32 - 1 elements, not {} bytes",
                bytes.len()
            )));
        }
        let n = bytes.len() / 2;
        let value = |i: usize| u16::from_le_bytes([bytes[2 * i], bytes[2 * i + 1]]);
        let hist = bytes
            .par_chunks(2 * EXCEPTION_BLOCK)
            .fold(
                || [0u64; 256],
                |mut h, c| {
                    c.chunks_exact(2)
                        .for_each(|v| h[exponent(u16::from_le_bytes([v[0], v[1]])) as usize] += 1);
                    h
                },
            )
            .reduce(|| [0u64; 256], |a, b| std::array::from_fn(|e| a[e] + b[e]));
        let palette = Palette::of(&hist);
        let exponents = palette.distinct;
        let code_of = palette.codes();
        let at = offsets(n);
        let [codes_at, palette_at, starts_at, exceptions_at] = at;
        let blocks = n.div_ceil(EXCEPTION_BLOCK);
        let mut words = vec![0u32; exceptions_at];
        words[..HEADER].copy_from_slice(&at.map(|a| a as u32));
        // a block of EXCEPTION_BLOCK elements fills whole words of both planes (it is a multiple
        // of 8), so blocks are written side by side
        const LO_BLOCK: usize = EXCEPTION_BLOCK / 4;
        const CODE_BLOCK: usize = EXCEPTION_BLOCK / 8;
        let (lo, codes) = words[HEADER..palette_at].split_at_mut(codes_at - HEADER);
        let exceptions: Vec<Vec<u32>> = lo
            .par_chunks_mut(LO_BLOCK)
            .zip(codes.par_chunks_mut(CODE_BLOCK))
            .enumerate()
            .map(|(b, (lo, codes))| {
                let mut found = Vec::new();
                let first = b * EXCEPTION_BLOCK;
                for i in first..(first + EXCEPTION_BLOCK).min(n) {
                    let (v, at) = (value(i), i - first);
                    let code = code_of[exponent(v) as usize];
                    lo[at / 4] |= ((v >> 8 & 0x80 | v & 0x7f) as u32) << (8 * (at % 4));
                    codes[at / 8] |= (code as u32) << (4 * (at % 8));
                    if code == ESCAPE {
                        found.push((at as u32) << 8 | exponent(v) as u32);
                    }
                }
                found
            })
            .collect();
        words[palette_at..starts_at].copy_from_slice(&palette.words());
        let mut count = 0u32;
        for (b, found) in exceptions.iter().enumerate() {
            words[starts_at + b] = count;
            count += found.len() as u32;
        }
        words[starts_at + blocks] = count;
        words.extend(exceptions.into_iter().flatten());
        let stats = FixedStats {
            exceptions: count as usize,
            exponents,
        };
        Ok((FixedForm { elements: n, words }, stats))
    }

    /// Bytes of the form (what it occupies resident).
    pub fn bytes(&self) -> u64 {
        4 * self.words.len() as u64
    }

    /// The bf16 tensor back, little-endian: the CPU reference of the GPU's reading. Errors if
    /// the form is inconsistent (it is built by [`FixedForm::new`], so only a bug or a change of
    /// the words makes it so).
    pub fn to_bf16(&self) -> Result<Vec<u8>> {
        let corrupt = |what: &str| Error::Corrupt {
            tensor: String::new(),
            reason: format!("fixed form: {what}"),
        };
        let w = &self.words;
        let header = w.get(..HEADER).ok_or_else(|| corrupt("no header"))?;
        let at = offsets(self.elements);
        if header.iter().zip(at).any(|(&h, a)| h as usize != a) || at[3] > w.len() {
            return Err(corrupt("header out of place"));
        }
        let [codes_at, palette_at, starts_at, exceptions_at] = at;
        let n = self.elements;
        let byte = |at: usize, k: usize| (w[at + k / 4] >> (8 * (k % 4))) as u8;
        let exceptions = &w[exceptions_at..];
        let mut out = Vec::with_capacity(2 * n);
        for i in 0..n {
            let lo = byte(HEADER, i) as u16;
            let code = (w[codes_at + i / 8] >> (4 * (i % 8))) as u8 & 0xf;
            let exp = if code == ESCAPE {
                let b = i / EXCEPTION_BLOCK;
                let (s, e) = (w[starts_at + b] as usize, w[starts_at + b + 1] as usize);
                let want = (i % EXCEPTION_BLOCK) as u32;
                exceptions
                    .get(s..e)
                    .and_then(|list| list.iter().find(|&&x| x >> 8 == want))
                    .map(|&x| x as u8)
                    .ok_or_else(|| corrupt("an escaped element has no exception"))?
            } else {
                byte(palette_at, code as usize)
            };
            let v = (lo & 0x80) << 8 | (exp as u16) << 7 | lo & 0x7f;
            out.extend_from_slice(&v.to_le_bytes());
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bf16(values: &[u16]) -> Vec<u8> {
        values.iter().flat_map(|v| v.to_le_bytes()).collect()
    }

    #[test]
    fn few_exponents_need_no_exceptions() {
        let values: Vec<u16> = (0..10_000u32)
            .map(|i| (0x3c00 + i % 0x400) as u16)
            .collect();
        let (form, stats) = FixedForm::new(&bf16(&values)).unwrap();
        assert_eq!(stats.exceptions, 0);
        assert_eq!(stats.exponents, 8);
        assert_eq!(form.to_bf16().unwrap(), bf16(&values));
        // 12 bits a weight, plus the header, palette and block starts
        assert_eq!(form.bytes(), 16 + 15_000 + 16 + 4 * 4);
    }

    #[test]
    fn rare_exponents_are_exceptions_and_exact() {
        // every exponent, NaNs, infinities, subnormals and zeros of both signs
        let mut values: Vec<u16> = (0..=u16::MAX).step_by(7).collect();
        values.extend([
            0x7fc0, 0xffc1, 0x7f80, 0xff80, 0x0001, 0x8001, 0x0000, 0x8000,
        ]);
        let (form, stats) = FixedForm::new(&bf16(&values)).unwrap();
        assert_eq!(stats.exponents, 256);
        assert!(stats.exceptions > values.len() * 9 / 10);
        assert_eq!(form.to_bf16().unwrap(), bf16(&values));
    }

    #[test]
    fn empty_and_odd_sizes() {
        for n in [0usize, 1, 7, 8, 9, EXCEPTION_BLOCK - 1, EXCEPTION_BLOCK + 1] {
            let values: Vec<u16> = (0..n).map(|i| (i as u16).wrapping_mul(40503)).collect();
            let (form, _) = FixedForm::new(&bf16(&values)).unwrap();
            assert_eq!(form.to_bf16().unwrap(), bf16(&values), "{n} elements");
        }
        assert!(FixedForm::new(&[1, 2, 3]).is_err());
    }

    #[test]
    fn a_lost_exception_is_an_error() {
        let values: Vec<u16> = (0..64u16).map(|i| i << 7).collect();
        let (mut form, stats) = FixedForm::new(&bf16(&values)).unwrap();
        assert!(stats.exceptions > 0);
        form.words.pop();
        let starts_at = form.words[2] as usize;
        form.words[starts_at + 1] -= 1;
        assert!(form.to_bf16().is_err());
    }
}
