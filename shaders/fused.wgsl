// Fused decode + matrix product: each workgroup decodes one block of a compressed weight (as
// decode.wgsl does) and multiplies the words as they come out of the decoder, so the decoded
// weight never reaches memory. Each block's pieces (matmul_core.wgsl) are whole, because the host
// only fuses layers whose rows and blocks are whole numbers of pieces; the workgroup writes one
// sum per piece and batch column to `partial`, and sum_pieces.wgsl adds each row's pieces in
// order. The operations and their order are those of gemv.wgsl, so the result is the same bits.

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

@compute @workgroup_size(64)
fn fused(
    @builtin(local_invocation_index) lane: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let block = wid.x + wid.y * nwg.x;
    if (block >= p.blocks) {
        return;
    }
    let gm = start_block(block, lane);
    let batch = clamp(p.batch, 1u, BATCH);
    let q_steps = max(p.piece_steps, 1u);
    let piece_words = 64u * q_steps;
    let block_pieces = gm.groups / piece_words;
    let first_piece = gm.first_group / piece_words;
    let per_round = ROUND / 64u / BATCH;
    let e = elems_per_word(p.dtype);
    let wpr = max(p.wpr, 1u);
    var g = gm.first_group + lane;
    var raw_next = raw_word(gm, g);
    for (var k0 = 0u; k0 < block_pieces; k0 += per_round) {
        let rn = min(per_round, block_pieces - k0);
        for (var pi = 0u; pi < rn; pi++) {
            var acc: array<f32, MAX_BATCH>;
            // a piece lies within one row: its column once per piece, not a division per word
            let w0 = gm.first_group + (k0 + pi) * piece_words;
            let col0 = (w0 % wpr + lane) * e;
            for (var q = 0u; q < q_steps; q++) {
                let raw_now = raw_next;
                raw_next = raw_word(gm, g + LANES);
                let wv = weights(decode_word(gm, g, raw_now), p.dtype);
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
                lane_part[(pi * BATCH + b) * 64u + lane] = acc[b];
            }
        }
        tree(rn * BATCH, lane, 64u);
        if (lane < rn * BATCH) {
            let b = lane % BATCH;
            if (b < batch) {
                partial[b * p.pieces + first_piece + k0 + lane / BATCH] = lane_part[lane * 64u];
            }
        }
        workgroupBarrier();
    }
}
