// Decodes vramzip's chunked Huffman layout (described once, in src/codec/mod.rs).
// One workgroup decodes one block; each of its 64 threads decodes one chunk (lane). At step j,
// lane t writes output word (block's first group + j * 64 + t), so the 64 writes are contiguous.
// Every read is clamped to its array and every loop is bounded by the layout, so corrupt data
// yields wrong words (caught by checksums), never a hang or an out-of-bounds access.

struct Params {
    n: u32,            // elements in this dispatch
    width: u32,        // bits per element: 8, 16 or 32
    sym_bits: u32,     // coded top bits
    raw_bits: u32,     // raw low bits
    chunk_groups: u32, // groups (output words) per chunk
    groups: u32,       // output words in this dispatch
    blocks: u32,       // blocks in this dispatch
    out_offset: u32,   // first output word in `out`
}

const LANES: u32 = 64u;
const TABLE_WORDS: u32 = 2048u; // 4096 u16 entries: symbol << 4 | length

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> chunk_bits: array<u32>;   // u16 lengths, two a word
@group(0) @binding(2) var<storage, read> block_start: array<u32>;  // stream word of each block
@group(0) @binding(3) var<storage, read> stream: array<u32>;
@group(0) @binding(4) var<storage, read> raw: array<u32>;
@group(0) @binding(5) var<storage, read> table: array<u32>;
@group(0) @binding(6) var<storage, read_write> out: array<u32>;

var<workgroup> lut: array<u32, TABLE_WORDS>;
var<workgroup> lens: array<u32, LANES>;

fn stream_word(i: u32) -> u32 {
    return stream[min(i, arrayLength(&stream) - 1u)];
}

// `count` (<= 32) raw bits starting at bit `word * 32 + bit` of the raw plane.
fn raw_bits_at(word: u32, bit: u32, count: u32) -> u32 {
    let last = arrayLength(&raw) - 1u;
    let lo = raw[min(word, last)] >> bit;
    let hi = select(raw[min(word + 1u, last)] << (32u - bit), 0u, bit == 0u);
    let mask = select((1u << count) - 1u, 0xffffffffu, count >= 32u);
    return (lo | hi) & mask;
}

@compute @workgroup_size(64)
fn decode(
    @builtin(local_invocation_index) lane: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let block = wid.x + wid.y * nwg.x;
    for (var i = lane; i < TABLE_WORDS; i += LANES) {
        lut[i] = table[min(i, arrayLength(&table) - 1u)];
    }
    let k = block * LANES + lane;
    let packed = chunk_bits[min(k / 2u, arrayLength(&chunk_bits) - 1u)];
    lens[lane] = (packed >> ((k & 1u) * 16u)) & 0xffffu;
    workgroupBarrier();
    if (block >= p.blocks) {
        return;
    }

    var start = 0u;
    for (var l = 0u; l < lane; l++) {
        start += lens[l];
    }
    var word = block_start[min(block, arrayLength(&block_start) - 1u)] + (start >> 5u);
    var shift = start & 31u;
    var cur = stream_word(word);
    var nxt = stream_word(word + 1u);

    let per_word = 32u / p.width;
    let group_raw_bits = per_word * p.raw_bits; // <= 32: the raw bits of one output word
    let elem_mask = select((1u << p.width) - 1u, 0xffffffffu, p.width == 32u);
    let raw_mask = (1u << p.raw_bits) - 1u;
    let first_group = block * LANES * p.chunk_groups;
    let groups = min(LANES * p.chunk_groups, p.groups - first_group);
    let out_len = arrayLength(&out);

    for (var j = lane; j < groups; j += LANES) {
        let g = first_group + j;
        // Bit g * group_raw_bits of the raw plane, split so that it cannot overflow 32 bits.
        let raw_bit = (g & 31u) * group_raw_bits;
        let raw_group = raw_bits_at((g >> 5u) * group_raw_bits + (raw_bit >> 5u), raw_bit & 31u, group_raw_bits);
        let elems = min(per_word, p.n - g * per_word);
        var value = 0u;
        for (var q = 0u; q < elems; q++) {
            let window = select((cur >> shift) | (nxt << (32u - shift)), cur, shift == 0u);
            let index = window & 4095u;
            let entry = (lut[index >> 1u] >> ((index & 1u) * 16u)) & 0xffffu;
            shift += entry & 15u;
            if (shift >= 32u) {
                shift -= 32u;
                word += 1u;
                cur = nxt;
                nxt = stream_word(word + 1u);
            }
            let sym = entry >> 4u;
            let top = (sym >> 1u) | ((sym & 1u) << (p.sym_bits - 1u));
            let low = (raw_group >> (q * p.raw_bits)) & raw_mask;
            value |= (((top << p.raw_bits) | low) & elem_mask) << (q * p.width);
        }
        let at = p.out_offset + g;
        if (at < out_len) {
            out[at] = value;
        }
    }
}
