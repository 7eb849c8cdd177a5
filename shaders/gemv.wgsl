// Y = W X on weights in memory (decoded by vramzip, or never compressed): W row-major, rows x
// cols, in f32, bf16 or f16; X and Y f32, column b of the batch at x[b * cols ..] and
// y[b * rows ..]; one dispatch computes columns first .. first + batch. One workgroup computes
// one row for the whole batch, in the order that matmul_core.wgsl defines: its 256 threads
// compute the lane partials of up to 16 pieces a round (64 threads a piece), the tree sums them,
// and thread 0 adds the piece sums in order.

struct Params {
    rows: u32,
    cols: u32,
    w_offset: u32,    // first u32 of W in `w`
    batch: u32,       // real batch columns, <= BATCH
    piece_steps: u32, // Q
    dtype: u32,       // 0: f32, 1: bf16, 2: f16
    wpr: u32,         // words a row
    first: u32,       // first batch column of this dispatch
}

const THREADS: u32 = 256u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> w: array<u32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(256)
fn gemv(
    @builtin(local_invocation_index) t: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let row = wid.x + wid.y * nwg.x;
    if (row >= p.rows) {
        return;
    }
    let batch = clamp(p.batch, 1u, BATCH);
    let q_steps = max(p.piece_steps, 1u);
    let piece_words = 64u * q_steps;
    let pieces = (p.wpr + piece_words - 1u) / piece_words;
    let per_round = ROUND / 64u / BATCH;
    let e = elems_per_word(p.dtype);
    let base = p.w_offset + row * p.wpr;
    var y_acc: array<f32, MAX_BATCH>;
    for (var k0 = 0u; k0 < pieces; k0 += per_round) {
        let rn = min(per_round, pieces - k0);
        for (var item = t; item < rn * 64u; item += THREADS) {
            let pi = item / 64u;
            let l = item % 64u;
            var acc: array<f32, MAX_BATCH>;
            for (var q = 0u; q < q_steps; q++) {
                let j = (k0 + pi) * piece_words + q * 64u + l;
                if (j < p.wpr) {
                    let wv = weights(w[base + j], p.dtype);
                    let col = j * e;
                    for (var b = 0u; b < BATCH; b++) {
                        let xb = (p.first + min(b, batch - 1u)) * p.cols + col;
                        acc[b] = fma(wv.x, x[xb], acc[b]);
                        if (e == 2u) {
                            acc[b] = fma(wv.y, x[xb + 1u], acc[b]);
                        }
                    }
                }
            }
            for (var b = 0u; b < BATCH; b++) {
                lane_part[(pi * BATCH + b) * 64u + l] = acc[b];
            }
        }
        tree(rn * BATCH, t, THREADS);
        if (t == 0u) {
            for (var pi = 0u; pi < rn; pi++) {
                for (var b = 0u; b < BATCH; b++) {
                    y_acc[b] += lane_part[(pi * BATCH + b) * 64u];
                }
            }
        }
        workgroupBarrier();
    }
    if (t == 0u) {
        for (var b = 0u; b < batch; b++) {
            y[(p.first + b) * p.rows + row] = y_acc[b];
        }
    }
}
