// Fused decode + matrix product: each workgroup decodes blocks of a compressed weight (as
// decode.wgsl does) and multiplies the words as they come out of the decoder, so the decoded
// weight never reaches memory. A block's four quarters are whole pieces (matmul_core.wgsl),
// because the host only fuses layers whose rows and quarters are whole numbers of pieces: the
// 64 lanes of a quarter are the 64 lanes of its pieces. The quarters take turns at the halving
// tree, and the workgroup writes one sum per piece and batch column to `partial`; sum_pieces.wgsl
// adds each row's pieces in order. The operations and their order are those of gemv.wgsl, so
// the result is the same bits.

struct Params {
    blocks: u32,      // blocks of the weight
    wpr: u32,         // words a row
    cols: u32,
    batch: u32,       // real batch columns, <= BATCH
    piece_steps: u32, // Q
    dtype: u32,       // 0: f32, 1: bf16, 2: f16
    pieces: u32,      // pieces of the whole weight: partial[b * pieces + k]
    first: u32,       // first batch column of this dispatch
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(7) var<storage, read> x: array<f32>;
@group(0) @binding(8) var<storage, read_write> partial: array<f32>;

// Lane partials a round: ROUND / 64 sets, a set per piece and batch column.
const SETS: u32 = ROUND / 64u;

@compute @workgroup_size(256)
fn fused(
    @builtin(local_invocation_index) s: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let range = block_range(wid, nwg, p.blocks);
    let batch = clamp(p.batch, 1u, BATCH);
    let q_steps = max(p.piece_steps, 1u);
    let piece_words = 64u * q_steps;
    let per_round = SETS / BATCH;
    let e = elems_per_word(p.dtype);
    let wpr = max(p.wpr, 1u);
    let lane = s % LANES;
    let quarter = s / LANES;
    for (var block = range.x; block < range.y; block++) {
        let gm = start_block(block, s);
        // pieces of a whole quarter (the same in every invocation), and of this one
        let quarter_pieces = gm.quarter_groups / piece_words;
        let my_pieces = gm.quarter_len / piece_words;
        var g = gm.quarter_first + lane;
        var raw_next = raw_word(gm, g);
        for (var k0 = 0u; k0 < quarter_pieces; k0 += per_round) {
            let rn = min(per_round, quarter_pieces - k0);
            // this lane's partial of each piece of the round and batch column
            var held: array<f32, SETS>;
            for (var pi = 0u; pi < rn && k0 + pi < my_pieces; pi++) {
                var acc: array<f32, MAX_BATCH>;
                // a piece lies within one row: its column once per piece, not a division per word
                let w0 = gm.quarter_first + (k0 + pi) * piece_words;
                let col0 = (w0 % wpr + lane) * e;
                for (var q = 0u; q < q_steps; q++) {
                    let wv = weights(next_word(gm, g, &raw_next), p.dtype);
                    let col = col0 + q * 64u * e;
                    for (var b = 0u; b < BATCH; b++) {
                        let xb = (p.first + min(b, batch - 1u)) * p.cols + col;
                        acc[b] = fma(wv.x, x[xb], acc[b]);
                        if (e == 2u) {
                            acc[b] = fma(wv.y, x[xb + 1u], acc[b]);
                        }
                    }
                    g += LANES;
                }
                for (var b = 0u; b < BATCH; b++) {
                    held[pi * BATCH + b] = acc[b];
                }
            }
            for (var turn = 0u; turn < 4u; turn++) {
                if (quarter == turn) {
                    for (var i = 0u; i < rn * BATCH; i++) {
                        lane_part[i * 64u + lane] = held[i];
                    }
                }
                tree(rn * BATCH, s, STREAMS);
                // the turn's quarter: its pieces, which may be fewer in the last block
                let turn_at = turn * gm.quarter_groups;
                let turn_len = min(gm.quarter_groups, gm.groups - min(turn_at, gm.groups));
                let turn_pieces = turn_len / piece_words;
                if (s < rn * BATCH && k0 + s / BATCH < turn_pieces) {
                    let b = s % BATCH;
                    if (b < batch) {
                        let first_piece = (gm.first_group + turn_at) / piece_words;
                        partial[b * p.pieces + first_piece + k0 + s / BATCH] = lane_part[s * 64u];
                    }
                }
                workgroupBarrier();
            }
        }
    }
}
