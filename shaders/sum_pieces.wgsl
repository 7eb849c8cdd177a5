// The last step of the fused product: y = 0.0 plus each row's piece sums in order (the order of
// matmul_core.wgsl). One thread a row and batch column.

struct Params {
    rows: u32,
    pieces_per_row: u32,
    batch: u32,
    pieces: u32, // pieces of the whole weight: partial[b * pieces + k]
    first: u32,  // the batch column that partial's column 0 is
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> partial: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(64)
fn sum_pieces(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let i = gid.x + gid.y * nwg.x * 64u;
    if (i >= p.rows * p.batch) {
        return;
    }
    let b = i / p.rows;
    let row = i % p.rows;
    let first = b * p.pieces + row * p.pieces_per_row;
    var s = 0.0;
    for (var k = 0u; k < p.pieces_per_row; k++) {
        s += partial[first + k];
    }
    y[(p.first + b) * p.rows + row] = s;
}
