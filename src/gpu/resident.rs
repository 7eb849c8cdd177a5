//! The forms a linear layer's weight can be kept in VRAM: its Huffman code (the least VRAM,
//! products decode it) or, for bf16, the fixed-rate form of `codec::fixed` (about 0.75 of the
//! bf16 bytes, products read it at fixed positions with no variable-length decoding). Products on
//! either follow the reduction order of `shaders/matmul_core.wgsl`, so every form gives the bits
//! of the uncompressed product. [`GpuContext::linears_auto`] chooses per layer, by measurement,
//! under a VRAM budget.

use super::GpuContext;
use super::linear::{Linear, Stored, WeightType};
use crate::codec::fixed::FixedForm;
use crate::error::{Error, Result};
use crate::format::Archive;

/// How a layer's weight is kept in VRAM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resident {
    /// Its Huffman code, as in the file: the least VRAM.
    Huffman,
    /// The fixed-rate form (bf16 only): more VRAM than Huffman, less work a product.
    Fixed,
}

impl std::str::FromStr for Resident {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "huffman" => Ok(Resident::Huffman),
            "fixed" => Ok(Resident::Fixed),
            _ => Err(Error::InvalidArgument(format!(
                "resident form '{s}': expected huffman or fixed"
            ))),
        }
    }
}

/// The forms a set of layers (a model's compressed matrices) is kept in VRAM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Forms {
    /// All in this form; [`Resident::Fixed`] applies to BF16 matrices, the others stay
    /// Huffman-coded.
    All(Resident),
    /// Each BF16 matrix in the form whose product is faster on this device, measured at load
    /// ([`GpuContext::linears_auto`], no VRAM budget, at the batch the model's products take);
    /// the others Huffman-coded.
    Fastest,
}

impl std::str::FromStr for Forms {
    type Err = Error;
    /// `huffman`, `fixed` or `auto` (the fastest).
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "auto" => Ok(Forms::Fastest),
            _ => s.parse().map(Forms::All).map_err(|_| {
                Error::InvalidArgument(format!("'{s}': expected huffman, fixed or auto"))
            }),
        }
    }
}

/// A weight in the fixed-rate form, in VRAM.
#[derive(Debug)]
pub(crate) struct FixedWeight {
    pub(crate) buffer: wgpu::Buffer,
    /// Weights whose exponent is listed apart.
    pub(crate) exceptions: usize,
}

/// What [`GpuContext::linears_auto`] chose for one layer, and what it measured.
#[derive(Clone, Debug, PartialEq)]
pub struct ResidentChoice {
    /// The layer.
    pub name: String,
    /// The form it is kept in.
    pub resident: Resident,
    /// Resident bytes in the Huffman form and, where the layer can take it, the fixed form.
    pub bytes: (u64, Option<u64>),
    /// Seconds a product of the batch it was chosen by took on each form (as `bytes`).
    pub seconds: (f64, Option<f64>),
}

impl Linear {
    /// Weights listed apart in its fixed form (rare exponents); `None` in the Huffman form.
    pub fn fixed_exceptions(&self) -> Option<usize> {
        match &self.stored {
            Stored::Fixed(f) => Some(f.exceptions),
            Stored::Huffman { .. } => None,
        }
    }
}

impl GpuContext {
    /// The fixed form of `layer` (kept in it) read back to the CPU: what `FixedForm::to_bf16`
    /// turns back into the weight, so a caller can check a layer built on the GPU against the
    /// file's checksum. Submits and waits.
    pub fn fixed_form(&self, layer: &Linear) -> Result<FixedForm> {
        let f = fixed_of(layer)?;
        let bytes = self.read_back(&f.buffer, f.buffer.size())?;
        Ok(FixedForm {
            elements: layer.rows as usize * layer.cols as usize,
            words: bytemuck::pod_collect_to_vec(&bytes),
        })
    }

    /// Records Y = W X for a layer kept in the fixed form (layouts as for
    /// [`GpuContext::record_linear`]); [`GpuContext::record_product`] calls it for such layers.
    pub(super) fn record_fixed(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        layer: &Linear,
        x: &wgpu::Buffer,
        y: &wgpu::Buffer,
        batch: u32,
    ) -> Result<()> {
        let f = fixed_of(layer)?;
        super::linear::check_product(layer.rows, layer.cols, batch, x, y, None)?;
        let kernel = &self.kernels.gemv_fixed;
        let shape = [layer.rows, layer.cols];
        self.record_gemv(
            encoder,
            kernel,
            &f.buffer,
            0,
            WeightType::BF16,
            shape,
            x,
            y,
            batch,
        );
        Ok(())
    }

    /// Records the copy of rows `ids[0..count]` of a layer kept in the fixed form into `out`, as
    /// bf16 (`count` x `cols` elements, row after row): an embedding lookup that decodes nothing
    /// else. An id past the last row gives a row of zeros.
    pub fn record_rows(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        layer: &Linear,
        ids: &wgpu::Buffer,
        count: u32,
        out: &wgpu::Buffer,
    ) -> Result<()> {
        let f = fixed_of(layer)?;
        let wpr = layer.cols / 2;
        let words = count as u64 * wpr as u64;
        if ids.size() < 4 * count as u64 || out.size() < 4 * words || words > u32::MAX as u64 - 4 {
            return Err(Error::InvalidArgument(format!(
                "'{}': {count} rows need {} bytes of ids (have {}) and {} of output (have {})",
                layer.name,
                4 * count as u64,
                ids.size(),
                4 * words,
                out.size()
            )));
        }
        if count == 0 {
            return Ok(());
        }
        let params = RowsParams {
            count,
            wpr,
            rows: layer.rows,
            pad: 0,
        };
        let buffers = [&f.buffer, ids, out, &f.buffer];
        // four words an invocation, 256 invocations a workgroup
        let groups = words.div_ceil(4 * 256) as u32;
        let kernel = &self.kernels.fixed_rows;
        self.dispatch(encoder, kernel, &[], &params, &buffers, [groups, 1]);
        Ok(())
    }

    /// Uploads the weights `names` of `archive` as linear layers, each in the form that makes its
    /// product of `batch` columns fastest on this device (the form stays for every batch: choose
    /// by the one the caller runs most), as far as `budget` (resident bytes of all the layers
    /// together; `None`: no limit) allows. Every layer starts in the Huffman form; the
    /// bf16 ones are also timed in the fixed form, and take it in order of time saved per byte
    /// added while the budget holds. Errors if the Huffman forms alone exceed the budget. The
    /// fixed form of each bf16 layer is built on the GPU twice (to measure, then to keep), so
    /// that at most one layer is in VRAM in both forms at a time.
    pub fn linears_auto(
        &self,
        archive: &Archive,
        names: &[&str],
        budget: Option<u64>,
        batch: u32,
    ) -> Result<(Vec<Linear>, Vec<ResidentChoice>)> {
        let mut layers = Vec::with_capacity(names.len());
        let mut choices = Vec::with_capacity(names.len());
        for &name in names {
            let mut layer = self.linear(archive, name)?;
            self.tune(&mut layer, &[batch])?;
            let huffman = (layer.resident_bytes(), self.product_seconds(&layer, batch)?);
            let fixed = if layer.dtype == WeightType::BF16 {
                let f = self.fixed_from(&layer)?;
                Some((f.resident_bytes(), self.product_seconds(&f, batch)?))
            } else {
                None
            };
            choices.push(ResidentChoice {
                name: name.to_string(),
                resident: Resident::Huffman,
                bytes: (huffman.0, fixed.map(|f| f.0)),
                seconds: (huffman.1, fixed.map(|f| f.1)),
            });
            layers.push(layer);
        }
        let mut total: u64 = choices.iter().map(|c| c.bytes.0).sum();
        if let Some(b) = budget.filter(|&b| total > b) {
            return Err(Error::TooLarge {
                what: "the layers in their smallest resident form".into(),
                size: total,
                limit: b,
            });
        }
        // (seconds saved, bytes added, layer) of every layer the fixed form speeds up
        let mut gains: Vec<(f64, u64, usize)> = (choices.iter().enumerate())
            .filter_map(|(i, c)| {
                let (saved, added) = (
                    c.seconds.0 - c.seconds.1?,
                    c.bytes.1?.saturating_sub(c.bytes.0),
                );
                (saved > 0.0).then_some((saved, added, i))
            })
            .collect();
        gains.sort_by(|a, b| (b.0 / b.1.max(1) as f64).total_cmp(&(a.0 / a.1.max(1) as f64)));
        for (_, added, i) in gains {
            if budget.is_some_and(|b| total + added > b) {
                continue;
            }
            layers[i] = self.fixed_from(&layers[i])?;
            choices[i].resident = Resident::Fixed;
            total += added;
        }
        Ok((layers, choices))
    }

    /// Seconds a product of `batch` columns on `layer` takes here, in the way it was chosen: best
    /// of two rounds of a few products.
    fn product_seconds(&self, layer: &Linear, batch: u32) -> Result<f64> {
        let workspace = self.workspace_for(&[layer], batch)?;
        let x = self.output_buffer(4 * layer.cols as u64 * batch as u64)?;
        let y = self.output_buffer(4 * layer.rows as u64 * batch as u64)?;
        let mut best = f64::INFINITY;
        for _ in 0..2 {
            let t = self.time(5, &mut |e| {
                self.record_product(e, layer, &workspace, &x, &y, batch)
            })?;
            best = best.min(t.seconds);
        }
        Ok(best)
    }
}

/// fixed_rows.wgsl's parameters.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
struct RowsParams {
    count: u32,
    wpr: u32,
    rows: u32,
    pad: u32,
}

fn fixed_of(layer: &Linear) -> Result<&FixedWeight> {
    match &layer.stored {
        Stored::Fixed(f) => Ok(f),
        Stored::Huffman { .. } => Err(Error::InvalidArgument(format!(
            "'{}' is kept Huffman-coded, not in the fixed form",
            layer.name
        ))),
    }
}
