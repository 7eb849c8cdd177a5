// Builds the fixed-rate form of a bf16 tensor already in VRAM (decoded there from its Huffman
// code), word for word what the CPU builder writes (src/codec/fixed.rs describes the form). Four
// passes, one workgroup a block of 4096 elements (the form's exception block), 16 elements an
// invocation:
//   fixed_histogram   counts the exponents (the CPU picks the palette from the counts, as its own
//                     builder does, and sizes the form);
//   fixed_pack        writes the header, the palette, the low bytes and the codes, and counts the
//                     escapes of each block;
//   fixed_starts      sums the counts into the exception starts (one workgroup);
//   fixed_exceptions  lists the escapes of each block that has any, in element order.

struct Params {
    // elements of the tensor
    n: u32,
    // blocks of 4096 elements
    blocks: u32,
    // word of `src` where the tensor starts
    src_at: u32,
    // exponents in the palette (at most 15)
    palette_len: u32,
    // the form's header: the first word of the codes, the palette, the starts, the exceptions
    at: vec4<u32>,
    // the exponent of code k in byte k
    palette: vec4<u32>,
}

@group(0) @binding(0) var<uniform> p: Params;
// the tensor as bf16, two elements a word
@group(0) @binding(1) var<storage, read> src: array<u32>;
@group(0) @binding(2) var<storage, read_write> form: array<u32>;
// 256 exponent counts, then the escapes of each block
@group(0) @binding(3) var<storage, read_write> counts: array<atomic<u32>>;

const BLOCK: u32 = 4096u;
const PER: u32 = 16u;
const ESCAPE: u32 = 15u;
// words before the low bytes
const HEADER: u32 = 4u;

var<workgroup> local_counts: array<atomic<u32>, 256>;
var<workgroup> code_of: array<u32, 256>;
var<workgroup> scan: array<u32, 256>;
var<workgroup> span: vec2<u32>;

fn block_index(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wid.x + wid.y * nwg.x;
}

// bf16 element i (i < p.n)
fn element(i: u32) -> u32 {
    return (src[p.src_at + i / 2u] >> (16u * (i % 2u))) & 0xffffu;
}

fn exponent(v: u32) -> u32 {
    return (v >> 7u) & 0xffu;
}

// Inclusive prefix sums of scan[0..256] in place; every invocation of the workgroup calls it.
fn scan_workgroup(t: u32) {
    for (var d = 1u; d < 256u; d *= 2u) {
        workgroupBarrier();
        var add = 0u;
        if (t >= d) {
            add = scan[t - d];
        }
        workgroupBarrier();
        scan[t] += add;
    }
    workgroupBarrier();
}

@compute @workgroup_size(256)
fn fixed_histogram(
    @builtin(local_invocation_index) t: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    atomicStore(&local_counts[t], 0u);
    workgroupBarrier();
    let first = block_index(wid, nwg) * BLOCK + t * PER;
    for (var k = 0u; k < PER; k++) {
        if (first + k < p.n) {
            atomicAdd(&local_counts[exponent(element(first + k))], 1u);
        }
    }
    workgroupBarrier();
    let c = atomicLoad(&local_counts[t]);
    if (c > 0u) {
        atomicAdd(&counts[t], c);
    }
}

@compute @workgroup_size(256)
fn fixed_pack(
    @builtin(local_invocation_index) t: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    var code = ESCAPE;
    for (var k = 0u; k < p.palette_len; k++) {
        if (((p.palette[k / 4u] >> (8u * (k % 4u))) & 0xffu) == t) {
            code = k;
        }
    }
    code_of[t] = code;
    workgroupBarrier();
    let b = block_index(wid, nwg);
    if (b == 0u && t < 4u) {
        form[t] = p.at[t];
        form[p.at.y + t] = p.palette[t];
    }
    let first = b * BLOCK + t * PER;
    if (first >= p.n) {
        return;
    }
    var lo = array<u32, 4>();
    var codes = array<u32, 2>();
    var escapes = 0u;
    for (var k = 0u; k < PER; k++) {
        if (first + k < p.n) {
            let v = element(first + k);
            let c = code_of[exponent(v)];
            lo[k / 4u] |= (((v >> 8u) & 0x80u) | (v & 0x7fu)) << (8u * (k % 4u));
            codes[k / 8u] |= c << (4u * (k % 8u));
            escapes += u32(c == ESCAPE);
        }
    }
    // the planes end at the next region (the last block's tail words are padding)
    for (var k = 0u; k < 4u; k++) {
        let at = HEADER + first / 4u + k;
        if (at < p.at.x) {
            form[at] = lo[k];
        }
    }
    for (var k = 0u; k < 2u; k++) {
        let at = p.at.x + first / 8u + k;
        if (at < p.at.y) {
            form[at] = codes[k];
        }
    }
    if (escapes > 0u) {
        atomicAdd(&counts[256u + b], escapes);
    }
}

@compute @workgroup_size(256)
fn fixed_starts(@builtin(local_invocation_index) t: u32) {
    var carry = 0u;
    for (var tile = 0u; tile < (p.blocks + 255u) / 256u; tile++) {
        let b = tile * 256u + t;
        var c = 0u;
        if (b < p.blocks) {
            c = atomicLoad(&counts[256u + b]);
        }
        scan[t] = c;
        scan_workgroup(t);
        if (b < p.blocks) {
            form[p.at.z + b] = carry + scan[t] - c;
        }
        carry += scan[255];
        // everyone has read this tile's sums before the next tile overwrites them
        workgroupBarrier();
    }
    if (t == 0u) {
        form[p.at.z + p.blocks] = carry;
    }
}

// Whether element first + k, whose codes word pair is `codes`, is an escape (past the tensor's end
// the words read belong to the palette).
fn escaped(codes: vec2<u32>, first: u32, k: u32) -> bool {
    return first + k < p.n && ((codes[k / 8u] >> (4u * (k % 8u))) & 0xfu) == ESCAPE;
}

@compute @workgroup_size(256)
fn fixed_exceptions(
    @builtin(local_invocation_index) t: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let b = block_index(wid, nwg);
    if (t == 0u) {
        span = vec2<u32>(0u, 0u);
        if (b < p.blocks) {
            span = vec2<u32>(form[p.at.z + b], form[p.at.z + b + 1u]);
        }
    }
    let s = workgroupUniformLoad(&span);
    if (s.x >= s.y) {
        return;
    }
    let first = b * BLOCK + t * PER;
    var codes = vec2<u32>(0u, 0u);
    if (first < p.n) {
        codes = vec2<u32>(form[p.at.x + first / 8u], form[p.at.x + first / 8u + 1u]);
    }
    var mine = 0u;
    for (var k = 0u; k < PER; k++) {
        mine += u32(escaped(codes, first, k));
    }
    scan[t] = mine;
    scan_workgroup(t);
    // clamped to the block's list and the form: a miscount writes wrong words, never out of it
    var at = s.x + scan[t] - mine;
    let end = min(s.y, max(arrayLength(&form), p.at.w) - p.at.w);
    for (var k = 0u; k < PER; k++) {
        if (escaped(codes, first, k)) {
            if (at < end) {
                form[p.at.w + at] = ((t * PER + k) << 8u) | exponent(element(first + k));
            }
            at += 1u;
        }
    }
}
