// The decoder's core, shared by decode.wgsl (decode to memory), decode_select.wgsl (chosen
// blocks) and fused.wgsl (decode and multiply), with the compressed data's bindings 1 to 6. Not a
// shader on its own: src/gpu/shaders.rs prepends it; each user adds binding 0 (its parameters)
// and its outputs from binding 7. The layout (v2) is described once, in src/codec/mod.rs: one
// workgroup of 256 invocations decodes a block, invocation s its stream s; the streams of a pair
// share a region, the even one read forward from its start, the odd one backward from its end.

struct Piece {
    n: u32,            // elements
    width: u32,        // bits per element: 8, 16 or 32
    sym_bits: u32,     // coded top bits
    raw_bits: u32,     // raw low bits
    chunk_groups: u32, // groups (output words) per stream
    groups: u32,       // output words
    first_block: u32,  // its first block in this dispatch
    raw_base: u32,     // its first word in `raw`
    table_base: u32,   // its decode table's first word in `table`
    out_base: u32,     // its first output word, relative to `out_offset`
    _pad0: u32,
    _pad1: u32,
}

const LANES: u32 = 64u;
const STREAMS: u32 = 256u;
const PAIRS: u32 = 128u;
const TABLE_WORDS: u32 = 2048u;

// Whether any table of this dispatch has an escape code (shared codebooks): a separate pipeline,
// so that per-tensor tables, the common case, skip the test (it cost 25% of speed on an H100).
override ESCAPES: bool = true;

@group(0) @binding(1) var<storage, read> pieces: array<Piece>;
// per block: (piece, first stream word, first index word, unused)
@group(0) @binding(2) var<storage, read> block_info: array<vec4<u32>>;
@group(0) @binding(3) var<storage, read> index: array<u32>;
@group(0) @binding(4) var<storage, read> stream: array<u32>;
@group(0) @binding(5) var<storage, read> raw: array<u32>;
// 2048 words a tensor: two 16-bit entries a word, `top << 4 | length`, escape `0xfff0 | length`
@group(0) @binding(6) var<storage, read> table: array<u32>;

// Whether the current tensor's table is copied to workgroup memory, once per tensor (else it is
// read from `table` through the cache). Both give the same bits; which is faster depends on the
// GPU (v1 measured the cache 2x faster on an H100 with 64-invocation workgroups).
override TABLE_IN_WORKGROUP: bool = true;
var<workgroup> wg_table: array<u32, TABLE_WORDS>;
// The current tensor's first table word in `table`.
var<private> table_base: u32;
// The end of each region of the current block, in bits from its first stream word.
var<workgroup> wg_region_end: array<u32, PAIRS>;
// Which table `wg_table` holds (the same in every invocation); none at first.
var<private> loaded_table: u32 = 0xffffffffu;

// Bits `shift..shift + 32` of the pair (lo, hi), shift in 0..32: `(hi << 1) << (31 - shift)`
// is `hi << (32 - shift)` without the shift by 32 that WGSL would wrap.
fn window(lo: u32, hi: u32, shift: u32) -> u32 {
    return (lo >> shift) | ((hi << 1u) << (31u - shift));
}

fn low_bits(count: u32) -> u32 {
    return select((1u << count) - 1u, 0xffffffffu, count >= 32u);
}

// The raw bits of group `g` of a piece (`count` <= 32 bits).
fn raw_group(pc: Piece, g: u32, count: u32) -> u32 {
    // Bit g * count of the piece's raw plane, split so that it cannot overflow 32 bits.
    let bit = (g & 31u) * count;
    let word = pc.raw_base + (g >> 5u) * count + (bit >> 5u);
    return window(raw[word], raw[word + 1u], bit & 31u) & low_bits(count);
}

// One stream's reader: a three-word window whose third word is loaded 32 bits before it is
// needed, so the load overlaps the decoding of a dozen symbols. A backward stream is read as a
// forward one over its region's words bit-reversed, in descending order: `rd_step` is then -1.
// Hot-path reads rely on the bounds checks that wgpu guarantees for every storage access (an
// index past the end reads an in-bounds value or zero).
var<private> rd_word: u32;
var<private> rd_step: u32;
var<private> rd_reverse: bool;
var<private> rd_shift: u32;
var<private> rd_cur: u32;
var<private> rd_nxt: u32;
var<private> rd_ahead: u32;

fn load_word(i: u32) -> u32 {
    let w = stream[i];
    return select(w, reverseBits(w), rd_reverse);
}

fn advance(bits: u32) {
    rd_shift += bits;
    if (rd_shift >= 32u) {
        rd_shift -= 32u;
        rd_word += rd_step;
        rd_cur = rd_nxt;
        rd_nxt = rd_ahead;
        rd_ahead = load_word(rd_word + 2u * rd_step);
    }
}

// The table entry for the code whose bits start `bits`.
fn table_entry(bits: u32) -> u32 {
    let i = bits & 4095u;
    var word: u32;
    if (TABLE_IN_WORKGROUP) {
        word = wg_table[i >> 1u];
    } else {
        word = table[table_base + (i >> 1u)];
    }
    return (word >> ((i & 1u) * 16u)) & 0xffffu;
}

// Decodes the next symbol and returns its element's top bits.
fn next_top(sym_bits: u32) -> u32 {
    let entry = table_entry(window(rd_cur, rd_nxt, rd_shift));
    advance(entry & 15u);
    if (ESCAPES && (entry >> 4u) == 0xfffu && sym_bits < 12u) {
        // the escape: the top bits follow verbatim (12-bit symbols have no escape)
        let top = window(rd_cur, rd_nxt, rd_shift) & low_bits(sym_bits);
        advance(sym_bits);
        return top;
    }
    return entry >> 4u;
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
    chunk_groups: u32,
    quarter_groups: u32,
    first_group: u32,    // the block's first word in the piece
    groups: u32,         // the block's words
    // this invocation's stream: its quarter's first word in the piece and the words after it
    // that are this quarter's
    quarter_first: u32,
    quarter_len: u32,
}

fn geom(pc: Piece, block: u32, s: u32) -> Geom {
    var gm: Geom;
    gm.pc = pc;
    gm.width = clamp(pc.width, 8u, 32u);
    gm.raw_bits = min(pc.raw_bits, 24u);
    gm.per_word = 32u / gm.width;
    gm.group_raw_bits = gm.per_word * gm.raw_bits;
    gm.elem_mask = low_bits(gm.width);
    gm.raw_mask = (1u << gm.raw_bits) - 1u;
    gm.full_groups = pc.n / gm.per_word;
    gm.sym_bits = clamp(pc.sym_bits, 1u, 12u);
    gm.chunk_groups = clamp(pc.chunk_groups, 1u, 1024u);
    gm.quarter_groups = LANES * gm.chunk_groups;
    gm.first_group = (block - min(pc.first_block, block)) * STREAMS * gm.chunk_groups;
    gm.groups = min(STREAMS * gm.chunk_groups, pc.groups - min(gm.first_group, pc.groups));
    let quarter_at = (s / LANES) * gm.quarter_groups;
    gm.quarter_first = gm.first_group + quarter_at;
    gm.quarter_len = min(gm.quarter_groups, gm.groups - min(quarter_at, gm.groups));
    return gm;
}

// Sets invocation `s` up to decode its stream of block `block` of the dispatch (clamped to the
// blocks there are) and returns the block's geometry. Called by all 256 invocations of the
// workgroup, with the same block: it loads the tensor's table when it changes and finds where
// each region ends (a prefix sum over the block's index, in workgroup memory).
fn start_block(block: u32, s: u32) -> Geom {
    let b = min(block, arrayLength(&block_info) - 1u);
    let info = block_info[b];
    let pc = pieces[min(info.x, arrayLength(&pieces) - 1u)];
    // the previous block's invocations are done with the table and the regions
    workgroupBarrier();
    table_base = pc.table_base;
    if (TABLE_IN_WORKGROUP && pc.table_base != loaded_table) {
        for (var i = s; i < TABLE_WORDS; i += STREAMS) {
            wg_table[i] = table[pc.table_base + i];
        }
        loaded_table = pc.table_base;
    }
    let gm = geom(pc, b, s);
    // the block's index: `min | width << 27`, then one `width`-bit delta for each region that
    // holds symbols, the first `pairs`: those of its whole quarters and of a partial one's lanes
    let quarters = gm.groups / gm.quarter_groups;
    let streams = quarters * LANES + min(gm.groups % gm.quarter_groups, LANES);
    let pairs = (streams + 1u) / 2u;
    let head = index[info.z];
    let width = min(head >> 27u, 24u);
    if (s < PAIRS) {
        var len = 0u;
        if (s < pairs) {
            let bit = s * width;
            let word = info.z + 1u + (bit >> 5u);
            let delta = window(index[word], index[word + 1u], bit & 31u) & low_bits(width);
            len = (head & 0x7ffffffu) + delta;
        }
        wg_region_end[s] = len;
    }
    // inclusive prefix sum, Hillis-Steele: 7 steps for 128 regions
    for (var offset = 1u; offset < PAIRS; offset *= 2u) {
        workgroupBarrier();
        var before = 0u;
        if (s < PAIRS && s >= offset) {
            before = wg_region_end[s - offset];
        }
        workgroupBarrier();
        if (s < PAIRS) {
            wg_region_end[s] += before;
        }
    }
    workgroupBarrier();
    let pair = s / 2u;
    let region_start = select(0u, wg_region_end[max(pair, 1u) - 1u], pair > 0u);
    if ((s & 1u) == 0u) {
        rd_reverse = false;
        rd_step = 1u;
        rd_word = info.y + (region_start >> 5u);
        rd_shift = region_start & 31u;
    } else {
        // the last bit of the region comes first
        let last = wg_region_end[pair] - 1u;
        rd_reverse = true;
        rd_step = 0xffffffffu;
        rd_word = info.y + (last >> 5u);
        rd_shift = 31u - (last & 31u);
    }
    rd_cur = load_word(rd_word);
    rd_nxt = load_word(rd_word + rd_step);
    rd_ahead = load_word(rd_word + 2u * rd_step);
    return gm;
}

// The blocks [first, end) that workgroup `wid` of `nwg` takes of `blocks`: a contiguous range,
// so that it loads a tensor's table once for all its blocks of that tensor.
fn block_range(wid: vec3<u32>, nwg: vec3<u32>, blocks: u32) -> vec2<u32> {
    let groups = max(nwg.x * nwg.y, 1u);
    let per = (blocks + groups - 1u) / groups;
    let first = min((wid.x + wid.y * nwg.x) * per, blocks);
    return vec2<u32>(first, min(first + per, blocks));
}

// The raw bits of word `g` of the piece; fetched a step ahead by the callers so that the load
// overlaps the decode of the current step.
fn raw_word(gm: Geom, g: u32) -> u32 {
    return raw_group(gm.pc, g, gm.group_raw_bits);
}

// Decodes this stream's next output word, word `g` of the piece, whose raw bits are in
// `raw_next`, and fetches the raw bits of the stream's word after it into `raw_next`, so that
// the load overlaps this word's decode.
fn next_word(gm: Geom, g: u32, raw_next: ptr<function, u32>) -> u32 {
    let raw_now = *raw_next;
    *raw_next = raw_word(gm, g + LANES);
    return decode_word(gm, g, raw_now);
}

// Decodes this stream's next output word, word `g` of the piece, whose raw bits are `raw_now`.
fn decode_word(gm: Geom, g: u32, raw_now: u32) -> u32 {
    var value = 0u;
    if (gm.per_word == 2u && g < gm.full_groups) {
        // bf16 and f16, the common case, unrolled
        let a = (next_top(gm.sym_bits) << gm.raw_bits) | (raw_now & gm.raw_mask);
        let b = (next_top(gm.sym_bits) << gm.raw_bits) | ((raw_now >> gm.raw_bits) & gm.raw_mask);
        value = (a & 0xffffu) | (b << 16u);
    } else if (gm.per_word == 1u) {
        value = (next_top(gm.sym_bits) << gm.raw_bits) | (raw_now & gm.raw_mask);
    } else {
        let elems = min(gm.per_word, gm.pc.n - min(g * gm.per_word, gm.pc.n));
        for (var q = 0u; q < elems; q++) {
            let low = (raw_now >> (q * gm.raw_bits)) & gm.raw_mask;
            value |= (((next_top(gm.sym_bits) << gm.raw_bits) | low) & gm.elem_mask) << (q * gm.width);
        }
    }
    return value;
}
