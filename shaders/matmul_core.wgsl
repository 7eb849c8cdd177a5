// The reduction order of every matrix product in vramzip, shared by gemv.wgsl (weights read from
// memory) and fused.wgsl (weights decoded on the fly): the same order in both is what makes the
// fused product bit-identical to decode-then-multiply and to the uncompressed model. Not a shader
// on its own: src/gpu/shaders.rs prepends it.
//
// W is row-major, rows x cols, in 32-bit words of E elements (E = 2 for bf16 and f16, 1 for f32),
// `wpr` = cols / E words a row. A row is cut into pieces of 64 * Q words (Q = `piece_steps`, which
// the host derives from the shape alone; the last piece of a row may be short). For each column b
// of the batch:
//   lane partial  lane l (0..64) of piece k: starting from 0.0, acc = fma(w, x, acc) over the
//                 words j = k * 64Q + q * 64 + l, q = 0..Q (those with j < wpr), a word's
//                 elements in order;
//   piece sum     the 64 lane partials added by a halving tree: v[i] += v[i + h], h = 32, .., 1;
//   y             0.0 plus the piece sums, in order of k.
// Where that work runs (which thread, which workgroup) is free; the operations and their order
// are not. `fma` is written out because a compiler may or may not contract a * b + c, and could
// decide differently in two shaders.

// Largest batch one dispatch takes; the host cuts larger ones.
const MAX_BATCH: u32 = 16u;
// Lane partials kept per round: 16 sets of 64.
const ROUND: u32 = 1024u;
// Batch columns this pipeline computes: 1, 2, 4, 8 or 16 (the host rounds up; extra columns
// repeat the last real one and are not written).
override BATCH: u32 = 1u;

var<workgroup> lane_part: array<f32, ROUND>;

// The elements of one weight word as f32 (exact for every dtype). dtype 0: f32, 1: bf16, 2: f16.
fn weights(word: u32, dtype: u32) -> vec2<f32> {
    if (dtype == 1u) {
        return vec2<f32>(bitcast<f32>(word << 16u), bitcast<f32>(word & 0xffff0000u));
    }
    if (dtype == 2u) {
        return vec2<f32>(f16_bits_to_f32(word & 0xffffu), f16_bits_to_f32(word >> 16u));
    }
    return vec2<f32>(bitcast<f32>(word), 0.0);
}


fn elems_per_word(dtype: u32) -> u32 {
    return select(2u, 1u, dtype == 0u);
}

// Sums each of `sets` sets of 64 lane partials (lane_part[s * 64 ..]) into its first entry by the
// halving tree. Called by all `threads` threads of the workgroup, with uniform arguments.
fn tree(sets: u32, t: u32, threads: u32) {
    for (var h = 32u; h > 0u; h /= 2u) {
        workgroupBarrier();
        for (var i = t; i < sets * h; i += threads) {
            let at = (i / h) * 64u + i % h;
            lane_part[at] += lane_part[at + h];
        }
    }
    workgroupBarrier();
}
