// Decodes vramzip's layout (v2, described once in src/codec/mod.rs) for a whole group of tensors
// in one dispatch. Each workgroup of 256 invocations stays resident over a contiguous range of
// blocks, one block at a time, invocation s decoding stream s: lane s % 64 of quarter s / 64. At
// step j lane l writes output word (quarter's first + j * 64 + l), so the 64 writes of a step
// are contiguous. A group holds pieces: whole tensors, or block ranges of tensors too large for
// one binding; `block_info` says which piece each block belongs to. Every read is clamped to
// its array and every loop is bounded by the layout, so corrupt data yields wrong words (caught
// by checksums), never a hang or an out-of-bounds access.

struct Params {
    blocks: u32,     // blocks in this dispatch
    out_offset: u32, // word of `out` where this group's output starts
    _unused: u32,    // decode_select's slot_words
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(7) var<storage, read_write> out: array<u32>;

@compute @workgroup_size(256)
fn decode(
    @builtin(local_invocation_index) s: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let range = block_range(wid, nwg, p.blocks);
    let out_len = arrayLength(&out);
    let lane = s % LANES;
    for (var block = range.x; block < range.y; block++) {
        let gm = start_block(block, s);
        var raw_next = raw_word(gm, gm.quarter_first + lane);
        for (var j = lane; j < gm.quarter_len; j += LANES) {
            let g = gm.quarter_first + j;
            let value = next_word(gm, g, &raw_next);
            let at = p.out_offset + gm.pc.out_base + g;
            if (at < out_len) {
                out[at] = value;
            }
        }
    }
}
