//! Linear layers on compressed weights. The weight stays compressed in VRAM; a product either
//! decodes it into a reused scratch buffer right before the matrix product ([`GpuContext::record_linear`]),
//! or decodes and multiplies in one kernel so that the decoded weight never reaches memory
//! ([`GpuContext::record_linear_fused`]). Both follow the reduction order of
//! `shaders/matmul_core.wgsl`, as does the product on uncompressed weights
//! ([`GpuContext::record_matmul`]): all three give the same bits. A bf16 layer may instead be kept
//! in the fixed-rate form (`resident.rs`), whose product reads it directly, in the same order.

use super::kernels::{MAX_BATCH, batch_constant};
use super::resident::Resident;
use super::{GpuContext, GpuGroup};
use crate::codec::LANES;
use crate::error::{Error, Result};
use crate::format::Archive;

/// Element type of a weight matrix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WeightType {
    /// 32-bit float.
    F32,
    /// bfloat16.
    BF16,
    /// IEEE half.
    F16,
}

impl WeightType {
    /// The type of a safetensors dtype name, if products take it.
    pub fn from_dtype(dtype: &str) -> Option<Self> {
        match crate::Dtype::parse(dtype)? {
            crate::Dtype::F32 => Some(WeightType::F32),
            crate::Dtype::BF16 => Some(WeightType::BF16),
            crate::Dtype::F16 => Some(WeightType::F16),
            _ => None,
        }
    }
    /// Bytes per element.
    pub fn bytes(self) -> u64 {
        match self {
            WeightType::F32 => 4,
            _ => 2,
        }
    }
    /// The shaders' `dtype` code.
    pub fn code(self) -> u32 {
        match self {
            WeightType::F32 => 0,
            WeightType::BF16 => 1,
            WeightType::F16 => 2,
        }
    }
    /// Elements per 32-bit word.
    fn per_word(self) -> u32 {
        (4 / self.bytes()) as u32
    }
}

/// Steps (of 64 words) per piece of a row of `words_per_row` words: the `Q` of
/// `shaders/matmul_core.wgsl`. It depends on the shape only, never on how the weight was
/// compressed, so that compressed and uncompressed weights are reduced alike. The largest power of
/// two up to 4 that keeps pieces whole in the row, so a row is a whole number of pieces whenever
/// it is a whole number of 64-word steps (a condition of the fused kernel).
pub fn piece_steps(words_per_row: u32) -> u32 {
    if words_per_row > 0 && words_per_row.is_multiple_of(64) {
        (1u32 << (words_per_row / 64).trailing_zeros()).min(4)
    } else {
        4
    }
}

/// gemv.wgsl's parameters (its `struct Params`).
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
struct GemvParams {
    rows: u32,
    cols: u32,
    /// First word of W in its buffer.
    w_offset: u32,
    /// Real batch columns of this dispatch.
    batch: u32,
    piece_steps: u32,
    dtype: u32,
    /// Words a row.
    wpr: u32,
    /// First batch column of this dispatch.
    first: u32,
    /// Rows a workgroup computes.
    rows_per_group: u32,
    pad: [u32; 3],
}

/// Pieces a gemv workgroup takes at least (where rows are short, several rows), so that its
/// fixed costs (the trees, the barriers) are shared by enough weight bytes.
const GEMV_GROUP_PIECES: u32 = 32;

/// Rows a gemv workgroup computes for rows of `wpr` words.
fn gemv_rows_per_group(wpr: u32) -> u32 {
    let pieces_per_row = wpr.max(1).div_ceil(64 * piece_steps(wpr));
    (GEMV_GROUP_PIECES / pieces_per_row).max(1)
}

/// fused.wgsl's parameters.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
struct FusedParams {
    blocks: u32,
    wpr: u32,
    cols: u32,
    batch: u32,
    piece_steps: u32,
    dtype: u32,
    /// Pieces of the whole weight: the stride of a batch column in the partial sums.
    pieces: u32,
    first: u32,
}

/// sum_pieces.wgsl's parameters.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
struct SumParams {
    rows: u32,
    pieces_per_row: u32,
    batch: u32,
    pieces: u32,
    first: u32,
    pad: [u32; 3],
}

/// How a fused product cuts the weight (see `shaders/fused.wgsl`).
#[derive(Clone, Copy, Debug)]
struct Fusion {
    blocks: u32,
    pieces: u32,
    pieces_per_row: u32,
    chunk_groups: usize,
}

/// How a layer's weight is kept in VRAM.
#[derive(Debug)]
pub(super) enum Stored {
    /// Its Huffman code, as in the file, at byte `offset` of the decoded group.
    Huffman { group: Box<GpuGroup>, offset: u64 },
    /// The fixed-rate form (see `codec::fixed`).
    Fixed(super::resident::FixedWeight),
}

/// A 2-D weight (f32, bf16 or f16, rows x cols) resident in VRAM in compressed form: its Huffman
/// code ([`Resident::Huffman`]), or for bf16 the fixed-rate form ([`Resident::Fixed`]).
#[derive(Debug)]
pub struct Linear {
    /// The weight's name.
    pub name: String,
    /// Output features.
    pub rows: u32,
    /// Input features.
    pub cols: u32,
    /// Element type.
    pub dtype: WeightType,
    pub(super) stored: Stored,
    fusion: std::result::Result<Fusion, String>,
    /// Whether [`GpuContext::record_product`] takes the fused kernel (only where it can), for
    /// batches without a measured choice.
    fuse: bool,
    /// Choices measured by [`GpuContext::tune`]: batch -> fused.
    tuned: std::collections::BTreeMap<u32, bool>,
}

/// What a measured choice is cached by: the layer's shape, element type and stream length (the
/// context is one device), and the batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) struct TuneKey {
    rows: u32,
    cols: u32,
    dtype: u32,
    chunk_groups: usize,
    batch: u32,
}

/// One choice made by [`GpuContext::tune`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Tuned {
    /// Batch columns.
    pub batch: u32,
    /// Whether the layer's products of this batch take the fused kernel.
    pub fused: bool,
    /// Seconds a product took (fused, decode-then-multiply), when measured now; `None` when the
    /// choice came from an earlier measurement of the same shape on this device, or when the
    /// layer cannot be fused.
    pub seconds: Option<(f64, f64)>,
}

/// The buffers the products of a set of layers share: the decode scratch of the layers that are
/// decoded before their product, the partial sums of those that are fused. Made once, reused by
/// every product of those layers.
#[derive(Debug)]
pub struct Workspace {
    scratch: Option<wgpu::Buffer>,
    partials: Option<wgpu::Buffer>,
}

impl Workspace {
    /// Bytes it holds in VRAM.
    pub fn bytes(&self) -> u64 {
        [&self.scratch, &self.partials]
            .iter()
            .filter_map(|b| b.as_ref().map(|b| b.size()))
            .sum()
    }
}

impl Linear {
    /// Bytes of the decoded weight (what the scratch must hold).
    pub fn decoded_bytes(&self) -> u64 {
        match &self.stored {
            Stored::Huffman { group, .. } => group.output_bytes,
            Stored::Fixed(_) => self.rows as u64 * self.cols as u64 * self.dtype.bytes(),
        }
    }
    /// Bytes the compressed weight occupies in VRAM.
    pub fn resident_bytes(&self) -> u64 {
        match &self.stored {
            Stored::Huffman { group, .. } => group.resident_bytes,
            Stored::Fixed(f) => f.buffer.size(),
        }
    }
    /// The form its weight is kept in.
    pub fn resident(&self) -> Resident {
        match self.stored {
            Stored::Huffman { .. } => Resident::Huffman,
            Stored::Fixed(_) => Resident::Fixed,
        }
    }
    /// Whether its products run the fused kernel where no batch was measured: by default
    /// wherever the layer allows it.
    pub fn fused(&self) -> bool {
        self.fuse
    }
    /// Whether its products of `batch` columns run the fused kernel: the choice
    /// [`GpuContext::tune`] measured for that batch, else [`Linear::fused`].
    pub fn fused_at(&self, batch: u32) -> bool {
        self.tuned.get(&batch).copied().unwrap_or(self.fuse)
    }
    /// Chooses the fused kernel or decode-then-multiply for all of this layer's products,
    /// overriding any measured choice; the fused kernel only where it can take the layer (else
    /// an error says why).
    pub fn set_fused(&mut self, on: bool) -> Result<()> {
        if let (true, Some(why)) = (on, self.unfusable()) {
            return Err(Error::InvalidArgument(format!(
                "'{}' cannot be fused: {why}",
                self.name
            )));
        }
        self.fuse = on;
        self.tuned.clear();
        Ok(())
    }
    /// Whether some product of at most `batch` columns is fused, and whether some decodes into
    /// scratch (neither, for the fixed form).
    fn kinds_up_to(&self, batch: u32) -> (bool, bool) {
        if self.resident() == Resident::Fixed {
            return (false, false);
        }
        let tuned = self.tuned.range(..=batch).map(|(_, &f)| f);
        let all: Vec<bool> = tuned.chain([self.fuse]).collect();
        (all.contains(&true), all.contains(&false))
    }
    /// Why the fused kernel cannot take this layer, or `None` if it can.
    pub fn unfusable(&self) -> Option<&str> {
        self.fusion.as_ref().err().map(|s| s.as_str())
    }
    /// Bytes of the partial-sum buffer a fused product of `batch` columns needs.
    pub fn partial_bytes(&self, batch: u32) -> u64 {
        let pieces = self.fusion.as_ref().map_or(0, |f| f.pieces as u64);
        pieces * batch.clamp(1, MAX_BATCH) as u64 * 4
    }
    fn words_per_row(&self) -> u32 {
        self.cols / self.dtype.per_word()
    }
}

/// The error of a Huffman-only operation asked of a layer kept in the fixed form.
fn kept_fixed(layer: &Linear) -> Error {
    Error::InvalidArgument(format!(
        "'{}' is kept in the fixed form: its products are recorded by record_product",
        layer.name
    ))
}

/// Checks that x, y and W fit their buffers for a `rows` x `cols` product of `batch` columns.
pub(super) fn check_product(
    rows: u32,
    cols: u32,
    batch: u32,
    x: &wgpu::Buffer,
    y: &wgpu::Buffer,
    w: Option<(&wgpu::Buffer, u64, u64)>,
) -> Result<()> {
    let (xb, yb) = (
        4 * cols as u64 * batch as u64,
        4 * rows as u64 * batch as u64,
    );
    let w_ok =
        w.is_none_or(|(w, offset, bytes)| offset.is_multiple_of(4) && offset + bytes <= w.size());
    if batch == 0 || x.size() < xb || y.size() < yb || !w_ok {
        let w = w.map_or(String::new(), |(w, offset, bytes)| {
            format!(", W {bytes} bytes at offset {offset} of {}", w.size())
        });
        return Err(Error::InvalidArgument(format!(
            "product {rows}x{cols}, batch {batch}: x needs {xb} bytes of {}, y {yb} of {}{w}",
            x.size(),
            y.size()
        )));
    }
    Ok(())
}

impl GpuContext {
    /// Uploads the weight `name` of `archive` for use as a linear layer. It must be a 2-D F32,
    /// BF16 or F16 tensor (with an even number of columns for the 16-bit types) that fits one
    /// binding.
    pub fn linear(&self, archive: &Archive, name: &str) -> Result<Linear> {
        let (t, rows, cols, dtype) = matrix_of(archive, name)?;
        let group = self.upload_one(archive, t, "one linear layer")?;
        let offset = group.slices[0].offset;
        let wpr = cols / dtype.per_word();
        let q = piece_steps(wpr);
        let fusion = match (t.layout(), &group.coded) {
            (None, _) | (_, None) => Err("stored uncompressed".to_string()),
            (Some(_), _) if !wpr.is_multiple_of(64) => Err(format!(
                "a row is {wpr} words, not a whole number of 64-word steps"
            )),
            (Some(l), _) if !l.chunk_groups.is_multiple_of(q as usize) => Err(format!(
                "chunks of {} groups are not whole pieces of {q} steps (compress with a --chunk-groups that is a multiple of 4)",
                l.chunk_groups
            )),
            (Some(l), Some(c)) => {
                let pieces = l.groups() / (LANES as u64 * q as u64);
                Ok(Fusion {
                    blocks: c.blocks as u32,
                    pieces: pieces as u32,
                    pieces_per_row: wpr / (64 * q),
                    chunk_groups: l.chunk_groups,
                })
            }
        };
        Ok(Linear {
            fuse: fusion.is_ok(),
            tuned: Default::default(),
            name: name.to_string(),
            rows,
            cols,
            dtype,
            stored: Stored::Huffman {
                group: Box::new(group),
                offset,
            },
            fusion,
        })
    }

    /// Uploads the weight `name` of `archive` as [`GpuContext::linear`] does, kept in VRAM in the
    /// form `resident`: [`Resident::Huffman`] is [`GpuContext::linear`]; [`Resident::Fixed`] (bf16
    /// only) is [`GpuContext::fixed_from`] of that.
    pub fn linear_as(&self, archive: &Archive, name: &str, resident: Resident) -> Result<Linear> {
        let huffman = self.linear(archive, name)?;
        match resident {
            Resident::Huffman => Ok(huffman),
            Resident::Fixed => self.fixed_from(&huffman),
        }
    }

    /// The layer `layer` (kept Huffman-coded, bf16) in the fixed-rate form: a new layer whose
    /// weight is built on the GPU from `layer`'s Huffman code, word for word what
    /// `codec::fixed::FixedForm::new` makes of the decoded weight. Only the compressed bytes
    /// crossed the bus; nothing is decoded on the CPU, and, as for products on the Huffman form,
    /// the decoded weight is not checked against its checksum (`vramzip verify` checks the file).
    /// `layer` stays as it was; drop it to keep only the fixed form.
    pub fn fixed_from(&self, layer: &Linear) -> Result<Linear> {
        if layer.dtype != WeightType::BF16 {
            return Err(Error::InvalidArgument(format!(
                "'{}': the fixed resident form takes BF16 weights, not {:?}",
                layer.name, layer.dtype
            )));
        }
        Ok(Linear {
            fuse: false,
            tuned: Default::default(),
            name: layer.name.clone(),
            rows: layer.rows,
            cols: layer.cols,
            dtype: layer.dtype,
            stored: Stored::Fixed(self.transcode_fixed(layer)?),
            fusion: Err("kept in the fixed form, which products read directly".into()),
        })
    }
}

/// The 2-D tensor `name` of `archive` that products can take: it, its rows and columns, and its
/// element type; an error says why not.
pub(super) fn matrix_of<'a>(
    archive: &'a Archive,
    name: &str,
) -> Result<(&'a crate::format::TensorEntry, u32, u32, WeightType)> {
    let t = archive
        .tensor(name)
        .ok_or_else(|| Error::InvalidArgument(format!("no tensor '{name}'")))?;
    let (rows, cols) = match t.meta.shape[..] {
        [r, c] if r <= u32::MAX as u64 && c <= u32::MAX as u64 => (r as u32, c as u32),
        _ => {
            return Err(Error::InvalidArgument(format!(
                "'{name}' is not a 2-D matrix: {:?}",
                t.meta.shape
            )));
        }
    };
    let dtype = WeightType::from_dtype(&t.meta.dtype)
        .filter(|d| cols.is_multiple_of(d.per_word()))
        .ok_or_else(|| {
            Error::InvalidArgument(format!(
                "'{name}': linear layers take F32, or BF16 and F16 with an even column count, not {} x {cols}",
                t.meta.dtype
            ))
        })?;
    Ok((t, rows, cols, dtype))
}

impl GpuContext {
    /// The buffers that the products of `layers`, `batch` columns at most, share (see
    /// [`Workspace`]); only what their fused-or-not choice needs.
    pub fn workspace_for(&self, layers: &[&Linear], batch: u32) -> Result<Workspace> {
        let (mut fused, mut decoded) = (Vec::new(), Vec::new());
        for &l in layers {
            let (any_fused, any_decoded) = l.kinds_up_to(batch);
            if any_fused {
                fused.push(l);
            }
            if any_decoded {
                decoded.push(l);
            }
        }
        Ok(Workspace {
            scratch: (!decoded.is_empty())
                .then(|| self.scratch_for(&decoded))
                .transpose()?,
            partials: (!fused.is_empty())
                .then(|| self.partials_for(&fused, batch))
                .transpose()?,
        })
    }

    /// Records Y = W X the way the layer chose for this batch ([`Linear::fused_at`]), with the buffers of
    /// `workspace` (made by [`GpuContext::workspace_for`] for this layer among others).
    pub fn record_product(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        layer: &Linear,
        workspace: &Workspace,
        x: &wgpu::Buffer,
        y: &wgpu::Buffer,
        batch: u32,
    ) -> Result<()> {
        let missing = || {
            Error::InvalidArgument(format!(
                "'{}': the workspace was not made for this layer",
                layer.name
            ))
        };
        if layer.resident() == Resident::Fixed {
            self.record_fixed(encoder, layer, x, y, batch)
        } else if layer.fused_at(batch) {
            let partials = workspace.partials.as_ref().ok_or_else(missing)?;
            self.record_linear_fused(encoder, layer, partials, x, y, batch)
        } else {
            let scratch = workspace.scratch.as_ref().ok_or_else(missing)?;
            self.record_linear(encoder, layer, scratch, x, y, batch)
        }
    }

    /// Measures on this device the fused kernel against decode-then-multiply for the products
    /// of `layer` with each of `batches` columns, and makes the layer take the faster at each
    /// batch ([`Linear::fused_at`]): a short autotune for load time, a few products of each kind,
    /// best of two alternating rounds. The choices are cached in the context (one device) by
    /// shape, element type, stream length and batch, so each shape is measured once;
    /// [`Linear::set_fused`] overrides them. A layer the fused kernel cannot take stays
    /// decode-then-multiply, unmeasured.
    pub fn tune(&self, layer: &mut Linear, batches: &[u32]) -> Result<Vec<Tuned>> {
        /// Products of each kind a round.
        const ITERS: u32 = 5;
        let mut made = Vec::with_capacity(batches.len());
        for &batch in batches {
            if batch == 0 {
                return Err(Error::InvalidArgument("tune: a batch of 0 columns".into()));
            }
            let Ok(fusion) = &layer.fusion else {
                layer.tuned.insert(batch, false);
                made.push(Tuned {
                    batch,
                    fused: false,
                    seconds: None,
                });
                continue;
            };
            let key = TuneKey {
                rows: layer.rows,
                cols: layer.cols,
                dtype: layer.dtype.code(),
                chunk_groups: fusion.chunk_groups,
                batch,
            };
            let cache = || self.tuning.lock().unwrap_or_else(|e| e.into_inner());
            let cached = cache().get(&key).copied();
            let (fused, seconds) = match cached {
                Some(fused) => (fused, None),
                None => {
                    let l: &Linear = layer;
                    let x = self.output_buffer(4 * l.cols as u64 * batch as u64)?;
                    let y = self.output_buffer(4 * l.rows as u64 * batch as u64)?;
                    let scratch = self.scratch_for(&[l])?;
                    let partials = self.partials_for(&[l], batch)?;
                    let mut best = [f64::INFINITY; 2];
                    for _ in 0..2 {
                        let fused = self.time(ITERS, &mut |e| {
                            self.record_linear_fused(e, l, &partials, &x, &y, batch)
                        })?;
                        let decoded = self.time(ITERS, &mut |e| {
                            self.record_linear(e, l, &scratch, &x, &y, batch)
                        })?;
                        best = [best[0].min(fused.seconds), best[1].min(decoded.seconds)];
                    }
                    let fused = best[0] <= best[1];
                    cache().insert(key, fused);
                    (fused, Some((best[0], best[1])))
                }
            };
            layer.tuned.insert(batch, fused);
            made.push(Tuned {
                batch,
                fused,
                seconds,
            });
        }
        Ok(made)
    }

    /// A scratch buffer large enough for the decoded weight of any of `layers`, reused by all.
    pub fn scratch_for(&self, layers: &[&Linear]) -> Result<wgpu::Buffer> {
        self.output_buffer(layers.iter().map(|l| l.decoded_bytes()).max().unwrap_or(4))
    }

    /// A partial-sum buffer large enough for the fused product of any of `layers` with up to
    /// `batch` columns, reused by all.
    pub fn partials_for(&self, layers: &[&Linear], batch: u32) -> Result<wgpu::Buffer> {
        self.output_buffer(
            layers
                .iter()
                .map(|l| l.partial_bytes(batch))
                .max()
                .unwrap_or(4),
        )
    }

    /// Records Y = W X: the decode of W into `scratch`, then the product, in `encoder`. `x`
    /// holds `batch` columns of `cols` f32 one after the other, `y` receives `batch` columns of
    /// `rows` f32.
    pub fn record_linear(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        layer: &Linear,
        scratch: &wgpu::Buffer,
        x: &wgpu::Buffer,
        y: &wgpu::Buffer,
        batch: u32,
    ) -> Result<()> {
        let Stored::Huffman { group, offset } = &layer.stored else {
            return Err(kept_fixed(layer));
        };
        check_product(layer.rows, layer.cols, batch, x, y, None)?;
        self.record_decode(encoder, group, scratch, 0)?;
        self.record_matmul(
            encoder,
            scratch,
            *offset,
            layer.dtype,
            layer.rows,
            layer.cols,
            x,
            y,
            batch,
        )
    }

    /// Records Y = W X by the fused kernel: each workgroup decodes a block of W and multiplies
    /// it at once, writing only sums (to `partials`, see [`Linear::partial_bytes`]), which a
    /// second small dispatch adds up into `y`. The same bits as [`GpuContext::record_linear`].
    /// Errors if the layer cannot be fused ([`Linear::unfusable`] says why).
    pub fn record_linear_fused(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        layer: &Linear,
        partials: &wgpu::Buffer,
        x: &wgpu::Buffer,
        y: &wgpu::Buffer,
        batch: u32,
    ) -> Result<()> {
        let fusion = layer.fusion.as_ref().map_err(|why| {
            Error::InvalidArgument(format!("'{}' cannot be fused: {why}", layer.name))
        })?;
        check_product(layer.rows, layer.cols, batch, x, y, None)?;
        if partials.size() < layer.partial_bytes(batch) {
            return Err(Error::InvalidArgument(format!(
                "'{}': the partial sums need {} bytes, the buffer has {}",
                layer.name,
                layer.partial_bytes(batch),
                partials.size()
            )));
        }
        let Stored::Huffman { group, .. } = &layer.stored else {
            return Err(kept_fixed(layer));
        };
        let coded = group.coded.as_ref().expect("fusion implies coded");
        let wpr = layer.words_per_row();
        for first in (0..batch).step_by(MAX_BATCH as usize) {
            let n = (batch - first).min(MAX_BATCH);
            let params = FusedParams {
                blocks: fusion.blocks,
                wpr,
                cols: layer.cols,
                batch: n,
                piece_steps: piece_steps(wpr),
                dtype: layer.dtype.code(),
                pieces: fusion.pieces,
                first,
            };
            let mut buffers: Vec<&wgpu::Buffer> = coded.buffers().to_vec();
            buffers.extend([x, partials]);
            let [escapes, table] = self.decoder_constants(coded.escapes);
            let constants = [escapes, table, batch_constant(n)];
            let kernel = &self.kernels.fused;
            let workgroups = [super::decode::resident_workgroups(fusion.blocks as u64), 1];
            self.dispatch(encoder, kernel, &constants, &params, &buffers, workgroups);
            let params = SumParams {
                rows: layer.rows,
                pieces_per_row: fusion.pieces_per_row,
                batch: n,
                pieces: fusion.pieces,
                first,
                pad: [0; 3],
            };
            let sums = (layer.rows * n).div_ceil(64);
            let kernel = &self.kernels.sum_pieces;
            self.dispatch(encoder, kernel, &[], &params, &[partials, y], [sums, 1]);
        }
        Ok(())
    }

    /// Records Y = W X for an uncompressed W at byte `offset` of `w` (`batch` columns; layouts
    /// as for [`GpuContext::record_linear`]). The reduction order depends on the shape only, so
    /// the same W gives the same bits whether it was decoded by vramzip or never compressed.
    #[allow(clippy::too_many_arguments)]
    pub fn record_matmul(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        w: &wgpu::Buffer,
        offset: u64,
        dtype: WeightType,
        rows: u32,
        cols: u32,
        x: &wgpu::Buffer,
        y: &wgpu::Buffer,
        batch: u32,
    ) -> Result<()> {
        let w_bytes = rows as u64 * cols as u64 * dtype.bytes();
        check_product(rows, cols, batch, x, y, Some((w, offset, w_bytes)))?;
        if !cols.is_multiple_of(dtype.per_word()) {
            return Err(Error::InvalidArgument(format!(
                "product on {dtype:?} weights needs an even column count, not {cols}"
            )));
        }
        let kernel = &self.kernels.gemv;
        self.record_gemv(encoder, kernel, w, offset, dtype, [rows, cols], x, y, batch);
        Ok(())
    }

    /// Records the dispatches of `kernel` (gemv.wgsl on either reading of W) for Y = W X, W at
    /// byte `offset` of `w`; the arguments checked by the caller.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn record_gemv(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        kernel: &super::Kernel,
        w: &wgpu::Buffer,
        offset: u64,
        dtype: WeightType,
        [rows, cols]: [u32; 2],
        x: &wgpu::Buffer,
        y: &wgpu::Buffer,
        batch: u32,
    ) {
        let wpr = cols / dtype.per_word();
        for first in (0..batch).step_by(MAX_BATCH as usize) {
            let n = (batch - first).min(MAX_BATCH);
            let params = GemvParams {
                rows,
                cols,
                w_offset: (offset / 4) as u32,
                batch: n,
                piece_steps: piece_steps(wpr),
                dtype: dtype.code(),
                wpr,
                first,
                rows_per_group: gemv_rows_per_group(wpr),
                pad: [0; 3],
            };
            let constants = [batch_constant(n)];
            let groups = rows.div_ceil(params.rows_per_group);
            // W bound twice: as words, and as vectors for the wide loads
            self.dispatch(
                encoder,
                kernel,
                &constants,
                &params,
                &[w, x, y, w],
                [groups, 1],
            );
        }
    }
}
