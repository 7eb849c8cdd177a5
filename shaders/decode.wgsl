// Decodes vramzip's chunked Huffman layout (described once, in src/codec/mod.rs) for a whole group
// of tensors in one dispatch. One workgroup decodes one block; each of its 64 threads decodes one
// chunk (lane). At step j lane t writes output word (block's first group + j * 64 + t), so the
// 64 writes of a step are contiguous. A group holds pieces: whole tensors, or block ranges of
// tensors too large for one binding; `block_info` says which piece each block belongs to.
// Every read is clamped to its array and every loop is bounded by the layout, so corrupt data
// yields wrong words (caught by checksums), never a hang or an out-of-bounds access.

struct Params {
    blocks: u32,     // blocks in this dispatch
    out_offset: u32, // word of `out` where this group's output starts
    _unused: u32,    // decode_select's slot_words
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(7) var<storage, read_write> out: array<u32>;

@compute @workgroup_size(64)
fn decode(
    @builtin(local_invocation_index) lane: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let block = wid.x + wid.y * nwg.x;
    if (block >= p.blocks) {
        return;
    }
    let gm = start_block(block, lane);
    let out_len = arrayLength(&out);
    var raw_next = raw_word(gm, gm.first_group + lane);
    for (var j = lane; j < gm.groups; j += LANES) {
        let g = gm.first_group + j;
        let raw_now = raw_next;
        raw_next = raw_word(gm, g + LANES);
        let value = decode_word(gm, g, raw_now);
        let at = p.out_offset + gm.pc.out_base + g;
        if (at < out_len) {
            out[at] = value;
        }
    }
}
