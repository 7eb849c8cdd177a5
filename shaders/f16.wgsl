// Shared by matmul_core.wgsl and bert.wgsl (prepended by src/gpu/shaders.rs).

// An f16 from its bits, exactly. By hand because `unpack2x16float` needs a feature that some
// DX12 adapters lack.
fn f16_bits_to_f32(h: u32) -> f32 {
    let sign = (h & 0x8000u) << 16u;
    let exp = (h >> 10u) & 0x1fu;
    let man = h & 0x3ffu;
    if (exp == 0u) {
        // zero and subnormals: man * 2^-24, exact in f32
        let mag = f32(man) * 5.9604645e-8;
        return select(mag, -mag, sign != 0u);
    }
    if (exp == 31u) {
        return bitcast<f32>(sign | 0x7f800000u | (man << 13u));
    }
    return bitcast<f32>(sign | ((exp + 112u) << 23u) | (man << 13u));
}
