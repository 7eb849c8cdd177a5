// The decoder's core, shared by decode.wgsl (decode to memory), decode_select.wgsl (chosen
// blocks) and fused.wgsl (decode and multiply), with the compressed data's bindings 1 to 6. Not a
// shader on its own: src/gpu/shaders.rs prepends it; each user adds binding 0 (its parameters)
// and its outputs from binding 7. The layout is described once, in src/codec/mod.rs.

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

@group(0) @binding(1) var<storage, read> pieces: array<Piece>;
@group(0) @binding(2) var<storage, read> block_info: array<vec2<u32>>; // (piece, first stream word)
@group(0) @binding(3) var<storage, read> chunk_bits: array<u32>;   // u16 chunk lengths, two a word
@group(0) @binding(4) var<storage, read> stream: array<u32>;
@group(0) @binding(5) var<storage, read> raw: array<u32>;
@group(0) @binding(6) var<storage, read> table: array<u32>;      // 4096 a tensor: top << 16 | length, escape: 0x8000 | length

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

// Positions lane `lane` of block `block` (whose stream starts at word `first_word`) at the start
// of its chunk: after the chunks of the lanes before it in the block.
fn begin_chunk(block: u32, lane: u32, first_word: u32) {
    var start = 0u;
    let first_chunk = block * LANES;
    let last_word = arrayLength(&chunk_bits) - 1u;
    for (var k = first_chunk; k < first_chunk + lane; k++) {
        start += (chunk_bits[min(k / 2u, last_word)] >> ((k & 1u) * 16u)) & 0xffffu;
    }
    rd_word = first_word + (start >> 5u);
    rd_shift = start & 31u;
    rd_cur = stream_word(rd_word);
    rd_nxt = stream_word(rd_word + 1u);
    rd_ahead = stream_word(rd_word + 2u);
}

// What one block of a piece needs to decode its words, each field clamped to what the layout
// allows, so that a corrupt descriptor cannot make a loop unbounded.
struct Geom {
    pc: Piece,
    width: u32,
    raw_bits: u32,
    per_word: u32,
    group_raw_bits: u32, // the raw bits of one output word, <= 32
    elem_mask: u32,
    raw_mask: u32,
    full_groups: u32,    // words whose elements all exist
    sym_bits: u32,
    first_group: u32,    // the block's first word in the piece
    groups: u32,         // the block's words
}

fn geom(pc: Piece, block: u32) -> Geom {
    var gm: Geom;
    gm.pc = pc;
    gm.width = clamp(pc.width, 8u, 32u);
    gm.raw_bits = min(pc.raw_bits, 24u);
    gm.per_word = 32u / gm.width;
    gm.group_raw_bits = gm.per_word * gm.raw_bits;
    gm.elem_mask = select((1u << gm.width) - 1u, 0xffffffffu, gm.width == 32u);
    gm.raw_mask = (1u << gm.raw_bits) - 1u;
    gm.full_groups = pc.n / gm.per_word;
    gm.sym_bits = clamp(pc.sym_bits, 1u, 12u);
    gm.first_group = (block - pc.first_block) * LANES * pc.chunk_groups;
    gm.groups = min(LANES * min(pc.chunk_groups, 1024u), pc.groups - min(gm.first_group, pc.groups));
    return gm;
}

// Sets this lane up to decode block `block` of the dispatch (clamped to the blocks there are) and
// returns the block's geometry.
fn start_block(block: u32, lane: u32) -> Geom {
    let b = min(block, arrayLength(&block_info) - 1u);
    let info = block_info[b];
    let pc = pieces[min(info.x, arrayLength(&pieces) - 1u)];
    begin_chunk(b, lane, info.y);
    return geom(pc, b);
}

// The raw bits of word `g` of the piece; fetched a step ahead by the callers so that the load
// overlaps the decode of the current step.
fn raw_word(gm: Geom, g: u32) -> u32 {
    return raw_group(gm.pc, g, gm.group_raw_bits);
}

// Decodes this lane's next output word, word `g` of the piece, whose raw bits are `raw_now`.
fn decode_word(gm: Geom, g: u32, raw_now: u32) -> u32 {
    let tb = gm.pc.table_base;
    var value = 0u;
    if (gm.per_word == 2u && g < gm.full_groups) {
        // bf16 and f16, the common case, unrolled
        let a = (next_top(tb, gm.sym_bits) << gm.raw_bits) | (raw_now & gm.raw_mask);
        let b = (next_top(tb, gm.sym_bits) << gm.raw_bits) | ((raw_now >> gm.raw_bits) & gm.raw_mask);
        value = (a & 0xffffu) | (b << 16u);
    } else if (gm.per_word == 1u) {
        value = (next_top(tb, gm.sym_bits) << gm.raw_bits) | (raw_now & gm.raw_mask);
    } else {
        let elems = min(gm.per_word, gm.pc.n - min(g * gm.per_word, gm.pc.n));
        for (var q = 0u; q < elems; q++) {
            let low = (raw_now >> (q * gm.raw_bits)) & gm.raw_mask;
            value |= (((next_top(tb, gm.sym_bits) << gm.raw_bits) | low) & gm.elem_mask) << (q * gm.width);
        }
    }
    return value;
}
