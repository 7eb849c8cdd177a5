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

@compute @workgroup_size(64)
fn decode_selected(
    @builtin(local_invocation_index) lane: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let slot = wid.x + wid.y * nwg.x;
    if (slot >= p.blocks) {
        return;
    }
    let gm = start_block(selection[min(slot, arrayLength(&selection) - 1u)], lane);
    let out_len = arrayLength(&out);
    let groups = min(gm.groups, p.slot_words);
    var raw_next = raw_word(gm, gm.first_group + lane);
    for (var j = lane; j < groups; j += LANES) {
        let g = gm.first_group + j;
        let raw_now = raw_next;
        raw_next = raw_word(gm, g + LANES);
        let value = decode_word(gm, g, raw_now);
        let at = p.out_offset + slot * p.slot_words + j;
        if (at < out_len) {
            out[at] = value;
        }
    }
}
