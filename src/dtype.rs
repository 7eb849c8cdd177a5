//! The safetensors element types, in one table: their names in a file, their sizes, and which of
//! them the codec codes.

/// An element type a safetensors header can name. Files may name others (new types appear); those
/// have no `Dtype`, and vramzip stores their tensors verbatim without checking their sizes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Dtype {
    /// Boolean, one byte.
    Bool,
    /// Unsigned byte.
    U8,
    /// Signed byte.
    I8,
    /// 8-bit float, 5 exponent bits.
    F8E5M2,
    /// 8-bit float, 4 exponent bits.
    F8E4M3,
    /// 8-bit scale, exponent only.
    F8E8M0,
    /// Signed 16-bit integer.
    I16,
    /// Unsigned 16-bit integer.
    U16,
    /// IEEE half.
    F16,
    /// bfloat16.
    BF16,
    /// Signed 32-bit integer.
    I32,
    /// Unsigned 32-bit integer.
    U32,
    /// 32-bit float.
    F32,
    /// Signed 64-bit integer.
    I64,
    /// Unsigned 64-bit integer.
    U64,
    /// 64-bit float.
    F64,
}

/// Each type with its name in a file and its size in bytes.
const TABLE: [(Dtype, &str, u64); 16] = [
    (Dtype::Bool, "BOOL", 1),
    (Dtype::U8, "U8", 1),
    (Dtype::I8, "I8", 1),
    (Dtype::F8E5M2, "F8_E5M2", 1),
    (Dtype::F8E4M3, "F8_E4M3", 1),
    (Dtype::F8E8M0, "F8_E8M0", 1),
    (Dtype::I16, "I16", 2),
    (Dtype::U16, "U16", 2),
    (Dtype::F16, "F16", 2),
    (Dtype::BF16, "BF16", 2),
    (Dtype::I32, "I32", 4),
    (Dtype::U32, "U32", 4),
    (Dtype::F32, "F32", 4),
    (Dtype::I64, "I64", 8),
    (Dtype::U64, "U64", 8),
    (Dtype::F64, "F64", 8),
];

impl Dtype {
    /// The type a file names `name`, if it is one of these.
    pub fn parse(name: &str) -> Option<Dtype> {
        TABLE.iter().find(|e| e.1 == name).map(|e| e.0)
    }
    /// Its name in a safetensors header.
    pub fn name(self) -> &'static str {
        TABLE.iter().find(|e| e.0 == self).map_or("", |e| e.1)
    }
    /// Bytes per element.
    pub fn size(self) -> u64 {
        TABLE.iter().find(|e| e.0 == self).map_or(0, |e| e.2)
    }
    /// Bits per element for the types the codec codes (floats and bytes whose top bits are
    /// skewed); `None` for those stored verbatim (integers, where the split gains nothing, and
    /// 64-bit types).
    pub fn coded_bits(self) -> Option<u32> {
        match self {
            Dtype::BF16 | Dtype::F16 => Some(16),
            Dtype::F32 => Some(32),
            Dtype::U8 | Dtype::I8 | Dtype::F8E4M3 | Dtype::F8E5M2 => Some(8),
            _ => None,
        }
    }
}

impl std::fmt::Display for Dtype {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_sizes_are_whole_bytes() {
        for (d, name, size) in TABLE {
            assert_eq!(Dtype::parse(name), Some(d));
            assert_eq!(d.name(), name);
            assert_eq!(d.size(), size);
            if let Some(bits) = d.coded_bits() {
                assert_eq!(bits as u64, 8 * size);
            }
        }
        assert_eq!(Dtype::parse("F4"), None);
    }
}
