// Decodes chosen blocks of a group only, each into its own slot: block selection[i] into words
// out_offset + i * slot_words of `out`. Random access into a compressed tensor at block
// granularity, for reads that need a few rows of a large table (an embedding lookup). Otherwise
// as decode.wgsl; the layout is described once, in src/codec/mod.rs.

struct Params {
    blocks: u32,     // selected blocks
    out_offset: u32, // word of `out` where slot 0 starts
    slot_words: u32, // words between slots (at least a block's)
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(7) var<storage, read_write> out: array<u32>;
@group(0) @binding(8) var<storage, read> selection: array<u32>;

@compute @workgroup_size(256)
fn decode_selected(
    @builtin(local_invocation_index) s: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let range = block_range(wid, nwg, p.blocks);
    let out_len = arrayLength(&out);
    let lane = s % LANES;
    for (var slot = range.x; slot < range.y; slot++) {
        let gm = start_block(selection[min(slot, arrayLength(&selection) - 1u)], s);
        let start = gm.quarter_first - gm.first_group;
        var raw_next = raw_word(gm, gm.quarter_first + lane);
        for (var j = lane; j < gm.quarter_len; j += LANES) {
            let value = next_word(gm, gm.quarter_first + j, &raw_next);
            if (start + j < p.slot_words) {
                let at = p.out_offset + slot * p.slot_words + start + j;
                if (at < out_len) {
                    out[at] = value;
                }
            }
        }
    }
}
