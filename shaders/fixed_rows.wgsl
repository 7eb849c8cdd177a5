// Rows of a bf16 matrix kept in the fixed-rate form, written out as bf16 words: an embedding
// lookup (or the whole matrix) without decoding anything else. One invocation four words.

struct Params {
    // rows asked for (entries of `ids`)
    count: u32,
    // words a row
    wpr: u32,
    // rows of the matrix
    rows: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
// The rows asked for; one past the matrix gives a row of zeros.
@group(0) @binding(2) var<storage, read> ids: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<u32>;

@compute @workgroup_size(256)
fn fixed_rows(
    @builtin(local_invocation_index) t: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    // four output words an invocation: one group of the form where a row is whole groups
    let first = 4u * ((wid.x + wid.y * nwg.x) * 256u + t);
    let wpr = max(p.wpr, 1u);
    let total = p.count * wpr;
    if (first >= total) {
        return;
    }
    weight_setup();
    let col = first % wpr;
    if (first + 3u < total && col + 3u < wpr) {
        let row = ids[first / wpr];
        var words = vec4<u32>(0u);
        if (row < p.rows) {
            words = weight_words(row * wpr + col, false);
        }
        out[first] = words.x;
        out[first + 1u] = words.y;
        out[first + 2u] = words.z;
        out[first + 3u] = words.w;
        return;
    }
    // the words span two rows, or end the output
    for (var i = 0u; i < 4u; i++) {
        let k = first + i;
        if (k < total) {
            let row = ids[k / wpr];
            var word = 0u;
            if (row < p.rows) {
                word = weight_word(row * wpr + k % wpr);
            }
            out[k] = word;
        }
    }
}
