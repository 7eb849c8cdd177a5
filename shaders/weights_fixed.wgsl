// A bf16 W in the fixed-rate resident form, read as the bf16 words it stands for: 12 bits a
// weight (sign and mantissa raw, a 4-bit code into a palette of exponents, code 15 an escape whose
// exponent is listed apart). The layout is described once, in src/codec/fixed.rs; this follows
// it. Word `at` is word `at` of the bf16 tensor (elements 2 at and 2 at + 1). Not a shader on its
// own: src/gpu/shaders.rs prepends it. Reads past the end are clamped by the runtime, so a
// corrupt form gives wrong weights, never a fault or a hang.

// The form, as words.
@group(0) @binding(1) var<storage, read> w: array<u32>;
// The same buffer, for the 8-byte loads of the low bytes.
@group(0) @binding(4) var<storage, read> w2: array<vec2<u32>>;

// EXCEPTION_BLOCK of src/codec/fixed.rs.
const EXCEPTION_BLOCK: u32 = 4096u;
// First word of the codes, the palette, the exception starts, the exceptions.
var<private> form: vec4<u32>;
// Exponent of code k in byte k.
var<private> palette: vec4<u32>;

fn weight_setup() {
    form = vec4<u32>(w[0], w[1], w[2], w[3]);
    palette = vec4<u32>(w[form.y], w[form.y + 1u], w[form.y + 2u], w[form.y + 3u]);
    // the escape's exponent is 0 in the words built from the palette, and listed apart
    palette.w &= 0x00ffffffu;
}

// The exponent of element `e`, listed apart: a binary search of its block's exceptions (in
// element order), a fixed 13 steps at most (2^13 > EXCEPTION_BLOCK). A linear scan would do on
// real weights (about one exception a block) but not on any weights: it would cost up to 4096
// reads a weight, and Mesa's software drivers cap the iterations of a loop in a shader.
fn listed_exponent(e: u32) -> u32 {
    let block = e / EXCEPTION_BLOCK;
    var lo = w[form.z + block];
    var n = min(w[form.z + block + 1u] - lo, EXCEPTION_BLOCK);
    let want = e % EXCEPTION_BLOCK;
    for (var step = 0u; step < 13u; step++) {
        if (n > 1u) {
            let half = n / 2u;
            if ((w[form.w + lo + half] >> 8u) <= want) {
                lo += half;
                n -= half;
            } else {
                n = half;
            }
        }
    }
    let x = w[form.w + lo];
    return select(0u, x & 0xffu, n == 1u && (x >> 8u) == want);
}

// The exponent of palette code `code`, by selects rather than an indexed vector, which some
// compilers put in memory.
fn palette_exponent(code: u32) -> u32 {
    let half = (code & 4u) != 0u;
    let word = select(select(palette.x, palette.y, half), select(palette.z, palette.w, half), code >= 8u);
    return (word >> ((code & 3u) * 8u)) & 0xffu;
}

// Two elements' bf16 bits in the halves of a word, from their low bytes and codes (the low 16
// and 8 bits of the arguments), an escaped one with exponent 0.
fn palette_word(lows: u32, codes: u32) -> u32 {
    let spread = (lows & 0xffu) | ((lows & 0xff00u) << 8u);
    let exponents = palette_exponent(codes & 0xfu) | (palette_exponent((codes >> 4u) & 0xfu) << 16u);
    return (spread & 0x007f007fu) | ((spread & 0x00800080u) << 8u) | (exponents << 7u);
}

// Words 4 g .. 4 g + 3 (elements 8 g .. 8 g + 7): their low bytes in one 8-byte load, their
// codes in one word, then the exponents of the escaped ones (none, nearly always, on real
// weights) put in one at a time. The exceptions are looked up in this one place so that the
// search is compiled once, not once a weight.
fn group_words(g: u32) -> vec4<u32> {
    let lows = w2[2u + g];
    let codes = w[form.x + g];
    var words = vec4<u32>(
        palette_word(lows.x, codes),
        palette_word(lows.x >> 16u, codes >> 8u),
        palette_word(lows.y, codes >> 16u),
        palette_word(lows.y >> 16u, codes >> 24u),
    );
    // bit 4 k set where element k's code is 15
    var escaped = codes & (codes >> 1u) & (codes >> 2u) & (codes >> 3u) & 0x11111111u;
    for (var n = 0u; n < 8u && escaped != 0u; n++) {
        let k = firstTrailingBit(escaped) / 4u;
        escaped &= escaped - 1u;
        let bits = listed_exponent(8u * g + k) << (7u + 16u * (k & 1u));
        words |= select(vec4<u32>(0u), vec4<u32>(bits), vec4<u32>(0u, 1u, 2u, 3u) == vec4<u32>(k / 2u));
    }
    return words;
}

// Word `at` alone.
fn weight_word(at: u32) -> u32 {
    let words = group_words(at / 4u);
    let i = at % 4u;
    return select(select(words.x, words.y, i == 1u), select(words.z, words.w, i == 3u), i >= 2u);
}

// Words at..at + 3: one group where at is a multiple of 4 (always where `wide`), else the ends
// of two.
fn weight_words(at: u32, wide: bool) -> vec4<u32> {
    let g = at / 4u;
    let a = group_words(g);
    let s = at % 4u;
    if (s == 0u) {
        return a;
    }
    let b = group_words(g + 1u);
    if (s == 1u) {
        return vec4<u32>(a.y, a.z, a.w, b.x);
    }
    if (s == 2u) {
        return vec4<u32>(a.z, a.w, b.x, b.y);
    }
    return vec4<u32>(a.w, b.x, b.y, b.z);
}
