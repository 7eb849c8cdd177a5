//! Every WGSL shader of the crate, in one list (tests validate each one with naga). The
//! `*_core.wgsl` files and `f16.wgsl` hold code that several shaders share (the decoder, the
//! reduction order of the matrix products, f16 conversion); WGSL has no includes, so they are
//! prepended here.

/// Decodes the chunked Huffman layout into output words.
pub const DECODE: &str = concat!(
    include_str!("../../shaders/decode_core.wgsl"),
    include_str!("../../shaders/decode.wgsl")
);

/// Decodes chosen blocks only, each into a slot of its own (random access).
pub const DECODE_SELECT: &str = concat!(
    include_str!("../../shaders/decode_core.wgsl"),
    include_str!("../../shaders/decode_select.wgsl")
);

/// A plain copy, the baseline for decode throughput.
pub const COPY: &str = include_str!("../../shaders/copy.wgsl");

/// Matrix-vector and small-batch matrix products on weights in memory.
pub const GEMV: &str = concat!(
    include_str!("../../shaders/f16.wgsl"),
    include_str!("../../shaders/matmul_core.wgsl"),
    include_str!("../../shaders/weights_plain.wgsl"),
    include_str!("../../shaders/gemv.wgsl")
);

/// The same products on bf16 weights kept in the fixed-rate form (`codec::fixed`).
pub const GEMV_FIXED: &str = concat!(
    include_str!("../../shaders/f16.wgsl"),
    include_str!("../../shaders/matmul_core.wgsl"),
    include_str!("../../shaders/weights_fixed.wgsl"),
    include_str!("../../shaders/gemv.wgsl")
);

/// Rows of a matrix in the fixed-rate form, as bf16 (an embedding lookup).
pub const FIXED_ROWS: &str = concat!(
    include_str!("../../shaders/weights_fixed.wgsl"),
    include_str!("../../shaders/fixed_rows.wgsl")
);

/// Builds the fixed-rate form of a bf16 tensor in VRAM, in four passes (one entry point each).
pub const FIXED_BUILD: &str = include_str!("../../shaders/fixed_build.wgsl");

/// Decode fused with the matrix product: decoded weights never reach memory.
pub const FUSED: &str = concat!(
    include_str!("../../shaders/decode_core.wgsl"),
    include_str!("../../shaders/f16.wgsl"),
    include_str!("../../shaders/matmul_core.wgsl"),
    include_str!("../../shaders/fused.wgsl")
);

/// Adds the fused product's piece sums, row by row.
pub const SUM_PIECES: &str = include_str!("../../shaders/sum_pieces.wgsl");

/// The non-matmul operations of the BERT example forward pass.
pub const BERT: &str = concat!(
    include_str!("../../shaders/f16.wgsl"),
    include_str!("../../shaders/bert.wgsl")
);

/// All shaders, by file name.
pub const ALL: &[(&str, &str)] = &[
    ("decode.wgsl", DECODE),
    ("decode_select.wgsl", DECODE_SELECT),
    ("copy.wgsl", COPY),
    ("gemv.wgsl", GEMV),
    ("gemv_fixed.wgsl", GEMV_FIXED),
    ("fixed_rows.wgsl", FIXED_ROWS),
    ("fixed_build.wgsl", FIXED_BUILD),
    ("fused.wgsl", FUSED),
    ("sum_pieces.wgsl", SUM_PIECES),
    ("bert.wgsl", BERT),
];
