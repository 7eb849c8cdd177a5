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
    pieces: u32,
    _pad: u32,
}

struct Piece {
    n: u32,            // elements
    width: u32,        // bits per element: 8, 16 or 32
    sym_bits: u32,     // coded top bits
    raw_bits: u32,     // raw low bits
    chunk_groups: u32, // groups (output words) per chunk
    groups: u32,       // output words
    first_block: u32,  // its first block in this dispatch
    raw_base: u32,     // its first word in `raw`
    table_base: u32,   // its decode table's first entry in `table`
    out_base: u32,     // its first output word, relative to `out_offset`
    _pad0: u32,
    _pad1: u32,
}

const LANES: u32 = 64u;

// Whether any table of this dispatch has an escape code (shared codebooks): a separate pipeline,
// so that per-tensor tables, the common case, skip the test (it cost 25% of speed on an H100).
override ESCAPES: bool = true;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> pieces: array<Piece>;
@group(0) @binding(2) var<storage, read> block_info: array<vec2<u32>>; // (piece, first stream word)
@group(0) @binding(3) var<storage, read> chunk_bits: array<u32>;   // u16 chunk lengths, two a word
@group(0) @binding(4) var<storage, read> stream: array<u32>;
@group(0) @binding(5) var<storage, read> raw: array<u32>;
@group(0) @binding(6) var<storage, read> table: array<u32>;      // 4096 a tensor: top << 16 | length, escape: 0x8000 | length
@group(0) @binding(7) var<storage, read_write> out: array<u32>;


// Hot-path reads (stream, raw plane, table) rely on the bounds checks that wgpu guarantees for
// every storage access (an index past the end reads an in-bounds value or zero); the explicit
// clamps they once had doubled the work and cost about 10% of decode speed on an H100.
fn stream_word(i: u32) -> u32 {
    return stream[i];
}

// Bits `shift..shift + 32` of the pair (lo, hi), shift in 0..32: `(hi << 1) << (31 - shift)`
// is `hi << (32 - shift)` without the shift by 32 that WGSL would wrap.
fn window(lo: u32, hi: u32, shift: u32) -> u32 {
    return (lo >> shift) | ((hi << 1u) << (31u - shift));
}

// The raw bits of group `g` of a piece (`count` <= 32 bits).
fn raw_group(pc: Piece, g: u32, count: u32) -> u32 {
    // Bit g * count of the piece's raw plane, split so that it cannot overflow 32 bits.
    let bit = (g & 31u) * count;
    let word = pc.raw_base + (g >> 5u) * count + (bit >> 5u);
    let bits = window(raw[word], raw[word + 1u], bit & 31u);
    return bits & select((1u << count) - 1u, 0xffffffffu, count >= 32u);
}

// One lane's stream reader: a three-word window whose third word is loaded 32 bits before it is
// needed, so the load overlaps the decoding of a dozen symbols.
var<private> rd_word: u32;
var<private> rd_shift: u32;
var<private> rd_cur: u32;
var<private> rd_nxt: u32;
var<private> rd_ahead: u32;

fn advance(bits: u32) {
    rd_shift += bits;
    if (rd_shift >= 32u) {
        rd_shift -= 32u;
        rd_word += 1u;
        rd_cur = rd_nxt;
        rd_nxt = rd_ahead;
        rd_ahead = stream_word(rd_word + 2u);
    }
}

// Decodes the next symbol and returns its element's top bits.
fn next_top(table_base: u32, sym_bits: u32) -> u32 {
    // The table is read through the cache rather than copied to workgroup memory: on an H100
    // that was 2x faster (workgroup memory takes L1 away from the stream reads).
    let entry = table[table_base + (window(rd_cur, rd_nxt, rd_shift) & 4095u)];
    advance(entry & 15u);
    if (ESCAPES && (entry & 0x8000u) != 0u) {
        // the escape: the top bits follow verbatim
        let top = window(rd_cur, rd_nxt, rd_shift) & ((1u << sym_bits) - 1u);
        advance(sym_bits);
        return top;
    }
    return entry >> 16u;
}

@compute @workgroup_size(64)
fn decode(
    @builtin(local_invocation_index) lane: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let block = min(wid.x + wid.y * nwg.x, p.blocks - 1u);
    let info = block_info[min(block, arrayLength(&block_info) - 1u)];
    let pc = pieces[min(info.x, arrayLength(&pieces) - 1u)];
    if (wid.x + wid.y * nwg.x >= p.blocks) {
        return;
    }
    // This chunk starts after the chunks of the lanes before it in the block.
    var start = 0u;
    let first_chunk = block * LANES;
    let last_word = arrayLength(&chunk_bits) - 1u;
    for (var k = first_chunk; k < first_chunk + lane; k++) {
        start += (chunk_bits[min(k / 2u, last_word)] >> ((k & 1u) * 16u)) & 0xffffu;
    }
    rd_word = info.y + (start >> 5u);
    rd_shift = start & 31u;
    rd_cur = stream_word(rd_word);
    rd_nxt = stream_word(rd_word + 1u);
    rd_ahead = stream_word(rd_word + 2u);

    let width = clamp(pc.width, 8u, 32u);
    let raw_bits = min(pc.raw_bits, 24u);
    let per_word = 32u / width;
    let group_raw_bits = per_word * raw_bits; // <= 32: the raw bits of one output word
    let elem_mask = select((1u << width) - 1u, 0xffffffffu, width == 32u);
    let raw_mask = (1u << raw_bits) - 1u;
    let local_block = block - pc.first_block;
    let first_group = local_block * LANES * pc.chunk_groups;
    let groups = min(LANES * min(pc.chunk_groups, 1024u), pc.groups - min(first_group, pc.groups));
    let full_groups = pc.n / per_word;
    let out_len = arrayLength(&out);
    let tb = pc.table_base;
    let sym_bits = clamp(pc.sym_bits, 1u, 12u);

    // Raw bits are fetched one step ahead so their load overlaps the decode of this step.
    var raw_next = raw_group(pc, first_group + lane, group_raw_bits);
    for (var j = lane; j < groups; j += LANES) {
        let g = first_group + j;
        let raw_now = raw_next;
        raw_next = raw_group(pc, g + LANES, group_raw_bits);
        var value = 0u;
        if (per_word == 2u && g < full_groups) {
            // bf16 and f16, the common case, unrolled
            let a = (next_top(tb, sym_bits) << raw_bits) | (raw_now & raw_mask);
            let b = (next_top(tb, sym_bits) << raw_bits) | ((raw_now >> raw_bits) & raw_mask);
            value = (a & 0xffffu) | (b << 16u);
        } else if (per_word == 1u) {
            value = (next_top(tb, sym_bits) << raw_bits) | (raw_now & raw_mask);
        } else {
            let elems = min(per_word, pc.n - min(g * per_word, pc.n));
            for (var q = 0u; q < elems; q++) {
                let low = (raw_now >> (q * raw_bits)) & raw_mask;
                value |= (((next_top(tb, sym_bits) << raw_bits) | low) & elem_mask) << (q * width);
            }
        }
        let at = p.out_offset + pc.out_base + g;
        if (at < out_len) {
            out[at] = value;
        }
    }
}
