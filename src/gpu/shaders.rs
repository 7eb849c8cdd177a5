//! Every WGSL shader of the crate, in one list (tests validate each one with naga).

/// Decodes the chunked Huffman layout into output words.
pub const DECODE: &str = include_str!("../../shaders/decode.wgsl");

/// A plain copy, the baseline for decode throughput.
pub const COPY: &str = include_str!("../../shaders/copy.wgsl");

/// Matrix-vector product on (decoded) weights.
pub const GEMV: &str = include_str!("../../shaders/gemv.wgsl");

/// All shaders, by file name.
pub const ALL: &[(&str, &str)] = &[
    ("decode.wgsl", DECODE),
    ("copy.wgsl", COPY),
    ("gemv.wgsl", GEMV),
];
