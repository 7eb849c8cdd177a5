// W as it is in memory (decoded by vramzip, or never compressed): the reading of weight words for
// gemv.wgsl. Not a shader on its own: src/gpu/shaders.rs prepends it.

@group(0) @binding(1) var<storage, read> w: array<u32>;
// The same buffer as `w`, for 16-byte loads.
@group(0) @binding(4) var<storage, read> w4: array<vec4<u32>>;

fn weight_setup() {}

// Words at..at + 3 of `w`: one 16-byte load where `wide` (at a multiple of 4 and W aligned) and
// the four words are within `w4`, else four loads.
fn weight_words(at: u32, wide: bool) -> vec4<u32> {
    if (wide && (at >> 2u) < arrayLength(&w4)) {
        return w4[at >> 2u];
    }
    return vec4<u32>(w[at], w[at + 1u], w[at + 2u], w[at + 3u]);
}
