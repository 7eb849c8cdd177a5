//! Where a model's tensors come from: a vramzip archive or an ordinary safetensors file.

use super::Forms;
use crate::error::{Error, Result};
use crate::format::Archive;
use crate::gpu::WeightType;

/// Where the weights come from.
pub enum Weights<'a> {
    /// A vramzip archive: matrices stay compressed in VRAM, Huffman-coded and multiplied by the
    /// fused kernel (`fused`) or decoded into a scratch buffer right before each product, or
    /// (`forms`) the bf16 ones in the fixed-rate form, which products read directly.
    Compressed {
        /// The archive.
        archive: &'a Archive,
        /// Use the fused decode+product kernel wherever the layer allows it.
        fused: bool,
        /// The forms the matrices are kept in.
        forms: Forms,
    },
    /// An ordinary safetensors file, uploaded as it is (the baseline).
    Uncompressed(&'a safetensors::SafeTensors<'a>),
}

impl Weights<'_> {
    /// dtype and shape of tensor `name`, without reading its data.
    pub(super) fn meta(&self, name: &str) -> Result<(String, Vec<u64>)> {
        let missing = || Error::InvalidArgument(format!("the model has no tensor '{name}'"));
        match self {
            Weights::Compressed { archive, .. } => {
                let t = archive.tensor(name).ok_or_else(missing)?;
                Ok((t.meta.dtype.clone(), t.meta.shape.clone()))
            }
            Weights::Uncompressed(st) => {
                let t = st.tensor(name).map_err(|_| missing())?;
                let shape = t.shape().iter().map(|&d| d as u64).collect();
                Ok((format!("{:?}", t.dtype()), shape))
            }
        }
    }

    /// dtype, shape and bytes of tensor `name`.
    pub(super) fn tensor(&self, name: &str) -> Result<(String, Vec<u64>, Vec<u8>)> {
        let (dtype, shape) = self.meta(name)?;
        let bytes = match self {
            Weights::Compressed { archive, .. } => {
                archive.decode(archive.tensor(name).expect("meta found it"))?
            }
            Weights::Uncompressed(st) => st.tensor(name).expect("meta found it").data().to_vec(),
        };
        Ok((dtype, shape, bytes))
    }
}

/// Values of a float tensor as f32 (exact for f32, bf16 and f16).
pub(super) fn to_f32(name: &str, dtype: &str, bytes: &[u8]) -> Result<Vec<f32>> {
    let dtype = WeightType::from_dtype(dtype).ok_or_else(|| {
        Error::InvalidArgument(format!("'{name}': expected a float tensor, not {dtype}"))
    })?;
    Ok(match dtype {
        WeightType::F32 => bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        WeightType::BF16 => bytes
            .chunks_exact(2)
            .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        WeightType::F16 => bytes
            .chunks_exact(2)
            .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
    })
}
