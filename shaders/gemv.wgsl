// Y = W X on weights in memory (decoded by vramzip, or never compressed): W row-major, rows x
// cols, in f32, bf16 or f16; X and Y f32, column b of the batch at x[b * cols ..] and
// y[b * rows ..]; one dispatch computes columns first .. first + batch. One workgroup computes
// `rows_per_group` consecutive rows for the whole batch, in the order that matmul_core.wgsl
// defines. Its 256 invocations take the pieces of those rows a round at a time, 16 invocations
// a piece: each reads four adjacent words a step (one 16-byte load where W is aligned) and keeps
// the four lane partials they belong to, so the reduction order is that of 64 lanes while the
// loads are wide; the tree sums each piece's lanes and invocation 0 adds the piece sums of a row
// in order.

struct Params {
    rows: u32,
    cols: u32,
    w_offset: u32,      // first u32 of W in `w`
    batch: u32,         // real batch columns, <= BATCH
    piece_steps: u32,   // Q
    dtype: u32,         // 0: f32, 1: bf16, 2: f16
    wpr: u32,           // words a row
    first: u32,         // first batch column of this dispatch
    rows_per_group: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

const THREADS: u32 = 256u;
// Invocations a piece: each takes four of its 64 lanes.
const QUADS: u32 = 16u;

// W's bindings (1 and 4) and the reading of its words, `weight_words`, come from the file
// prepended before this one: weights_plain.wgsl (W as it is) or weights_fixed.wgsl (W in the
// fixed-rate form). The products differ in nothing else, so they give the same bits.
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(256)
fn gemv(
    @builtin(local_invocation_index) t: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let rows_per_group = max(p.rows_per_group, 1u);
    let row0 = (wid.x + wid.y * nwg.x) * rows_per_group;
    if (row0 >= p.rows) {
        return;
    }
    let row_end = min(row0 + rows_per_group, p.rows);
    weight_setup();
    let batch = clamp(p.batch, 1u, BATCH);
    let q_steps = max(p.piece_steps, 1u);
    let piece_words = 64u * q_steps;
    let wpr = max(p.wpr, 1u);
    let pieces_per_row = (wpr + piece_words - 1u) / piece_words;
    let total = (row_end - row0) * pieces_per_row;
    let per_round = ROUND / 64u / BATCH;
    let e = elems_per_word(p.dtype);
    let aligned = (p.w_offset & 3u) == 0u && (wpr & 3u) == 0u;
    // invocation 0's running sum of the current row
    var y_acc: array<f32, MAX_BATCH>;
    for (var k0 = 0u; k0 < total; k0 += per_round) {
        let rn = min(per_round, total - k0);
        for (var item = t; item < rn * QUADS; item += THREADS) {
            let pi = item / QUADS;
            let quad = item % QUADS;
            let piece = k0 + pi;
            let row = row0 + piece / pieces_per_row;
            let base = p.w_offset + row * wpr;
            var acc: array<vec4<f32>, MAX_BATCH>;
            for (var q = 0u; q < q_steps; q++) {
                let j = (piece % pieces_per_row) * piece_words + q * 64u + quad * 4u;
                if (j < wpr) {
                    let words = weight_words(base + j, aligned);
                    for (var i = 0u; i < 4u; i++) {
                        if (j + i < wpr) {
                            let wv = weights(words[i], p.dtype);
                            let col = (j + i) * e;
                            for (var b = 0u; b < BATCH; b++) {
                                let xb = (p.first + min(b, batch - 1u)) * p.cols + col;
                                acc[b][i] = fma(wv.x, x[xb], acc[b][i]);
                                if (e == 2u) {
                                    acc[b][i] = fma(wv.y, x[xb + 1u], acc[b][i]);
                                }
                            }
                        }
                    }
                }
            }
            for (var b = 0u; b < BATCH; b++) {
                for (var i = 0u; i < 4u; i++) {
                    lane_part[(pi * BATCH + b) * 64u + quad * 4u + i] = acc[b][i];
                }
            }
        }
        tree(rn * BATCH, t, THREADS);
        if (t == 0u) {
            for (var pi = 0u; pi < rn; pi++) {
                let piece = k0 + pi;
                for (var b = 0u; b < BATCH; b++) {
                    y_acc[b] += lane_part[(pi * BATCH + b) * 64u];
                }
                if (piece % pieces_per_row == pieces_per_row - 1u) {
                    let row = row0 + piece / pieces_per_row;
                    for (var b = 0u; b < BATCH; b++) {
                        if (b < batch) {
                            y[(p.first + b) * p.rows + row] = y_acc[b];
                        }
                        y_acc[b] = 0.0;
                    }
                }
            }
        }
        workgroupBarrier();
    }
}
