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

// The bf16 bits of element `e` from its low byte and code.
fn bf16_bits(low: u32, code: u32, e: u32) -> u32 {
    var exponent: u32;
    if (code == 15u) {
        exponent = listed_exponent(e);
    } else {
        exponent = (palette[code >> 2u] >> ((code & 3u) * 8u)) & 0xffu;
    }
    return ((low & 0x80u) << 8u) | (exponent << 7u) | (low & 0x7fu);
}

// Word `at` from the low bytes and codes of its two elements (the low 16 and 8 bits of the
// arguments).
fn weight_word_of(lows: u32, codes: u32, at: u32) -> u32 {
    let e = 2u * at;
    return bf16_bits(lows & 0xffu, codes & 0xfu, e)
        | (bf16_bits((lows >> 8u) & 0xffu, (codes >> 4u) & 0xfu, e + 1u) << 16u);
}

// Word `at` alone.
fn weight_word(at: u32) -> u32 {
    let e = 2u * at;
    // element e is even: its and the next element's low bytes share a word, as do their codes
    let lows = w[4u + e / 4u] >> (8u * (e % 4u));
    let codes = w[form.x + e / 8u] >> (4u * (e % 8u));
    return weight_word_of(lows, codes, at);
}

// Words at..at + 3: where `wide` (at a multiple of 4), the eight elements' low bytes in one 8-byte
// load and their codes in one word.
fn weight_words(at: u32, wide: bool) -> vec4<u32> {
    if (wide) {
        let lows = w2[2u + at / 4u];
        let codes = w[form.x + at / 4u];
        return vec4<u32>(
            weight_word_of(lows.x, codes, at),
            weight_word_of(lows.x >> 16u, codes >> 8u, at + 1u),
            weight_word_of(lows.y, codes >> 16u, at + 2u),
            weight_word_of(lows.y >> 16u, codes >> 24u, at + 3u),
        );
    }
    return vec4<u32>(weight_word(at), weight_word(at + 1u), weight_word(at + 2u), weight_word(at + 3u));
}
