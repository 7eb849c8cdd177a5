// y = W x for one matrix: W row-major (rows x cols) in bf16 (two to a u32) or f32, x and y f32,
// accumulation in f32. One workgroup computes one row: thread t sums the elements t, t + 256, ...
// of its row in order, then the 256 partial sums are added in a fixed tree. The reduction order
// depends only on the shape, so results are identical run to run, and identical whether W was
// just decoded by vramzip or uploaded uncompressed.

struct Params {
    rows: u32,
    cols: u32,
    w_offset: u32, // first u32 of W in `w`
    is_f32: u32,   // 0: bf16, 1: f32
}

const THREADS: u32 = 256u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> w: array<u32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;

var<workgroup> partial: array<f32, THREADS>;

@compute @workgroup_size(256)
fn gemv(
    @builtin(local_invocation_index) t: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let row = wid.x + wid.y * nwg.x;
    var sum = 0.0;
    if (row < p.rows) {
        if (p.is_f32 == 0u) {
            // two bf16 a word: thread t takes words t, t + 256, ... of the row
            let words = p.cols / 2u;
            let base = p.w_offset + row * words;
            for (var k = t; k < words; k += THREADS) {
                let pair = w[base + k];
                sum += bitcast<f32>(pair << 16u) * x[2u * k];
                sum += bitcast<f32>(pair & 0xffff0000u) * x[2u * k + 1u];
            }
        } else {
            let base = p.w_offset + row * p.cols;
            for (var k = t; k < p.cols; k += THREADS) {
                sum += bitcast<f32>(w[base + k]) * x[k];
            }
        }
    }
    partial[t] = sum;
    workgroupBarrier();
    for (var half = THREADS / 2u; half > 0u; half /= 2u) {
        if (t < half) {
            partial[t] += partial[t + half];
        }
        workgroupBarrier();
    }
    if (t == 0u && row < p.rows) {
        y[row] = partial[0];
    }
}
