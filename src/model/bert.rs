//! A BERT encoder forward pass on the GPU (all-MiniLM-L6-v2 and models of its shape) whose weight
//! matrices stay compressed in VRAM: vramzip inside a real inference loop.
//!
//! Every weight matrix (the three embedding tables and the six matrices of each layer) is
//! uploaded compressed once. A forward pass records, in one command encoder: the decode of just
//! the blocks of the embedding tables that hold its tokens' rows, and the lookup; per layer, the
//! six products (fused decode+product, or decode into a scratch buffer then product) with the
//! attention, GELU and LayerNorm kernels of `shaders/bert.wgsl` between them; then mean pooling
//! and L2 normalization. Biases and LayerNorm parameters (0.14% of MiniLM's parameters) are
//! decoded once on the CPU and kept as f32. The same code runs on uncompressed weights, and since
//! every kernel reduces in a fixed order, compressed and uncompressed weights give the same bits.

mod load;
mod weights;

use crate::error::{Error, Result};
pub use crate::gpu::Forms;
use crate::gpu::{GpuContext, GpuGroup, Kernel, Linear, ResidentChoice, WeightType, Workspace};
pub use weights::Weights;
use wgpu::util::DeviceExt;

/// The parameters of the bert.wgsl kernels (its `struct Params`); each entry reads the fields it
/// needs.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    tokens: u32,
    hidden: u32,
    heads: u32,
    head_dim: u32,
    /// bias_act: values per token.
    width: u32,
    /// bias_act: 0 none, 1 GELU.
    act: u32,
    /// embed: the tables' type (`WeightType::code`).
    dtype: u32,
    /// LayerNorm epsilon.
    eps: f32,
}

/// The fields of a Hugging Face `config.json` that the encoder needs.
#[derive(Clone, Debug, serde::Deserialize)]
pub struct BertConfig {
    /// Width of the hidden states.
    pub hidden_size: u32,
    /// Encoder layers.
    pub num_hidden_layers: u32,
    /// Attention heads.
    pub num_attention_heads: u32,
    /// Width of the feed-forward layer.
    pub intermediate_size: u32,
    /// LayerNorm epsilon.
    pub layer_norm_eps: f32,
    /// Positions the model knows.
    pub max_position_embeddings: u32,
    /// Activation of the feed-forward layer; only `gelu` (the erf form) is supported.
    pub hidden_act: String,
}

/// The most tokens a forward pass takes (the attention kernel keeps a row of scores in
/// workgroup memory).
pub const MAX_TOKENS: usize = 512;
/// The widest hidden state the kernels take.
const MAX_HIDDEN: u32 = 1024;

impl BertConfig {
    /// Reads and checks a `config.json`.
    pub fn from_file(path: impl AsRef<std::path::Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let config: BertConfig = serde_json::from_str(&text).map_err(|e| Error::InvalidFile {
            path: path.to_path_buf(),
            reason: format!("not a BERT config.json: {e}"),
        })?;
        config.check()?;
        Ok(config)
    }

    fn check(&self) -> Result<()> {
        let ok = self.hidden_size > 0
            && self.hidden_size <= MAX_HIDDEN
            && self.num_attention_heads > 0
            && self.hidden_size.is_multiple_of(self.num_attention_heads)
            && self.intermediate_size > 0
            && self.hidden_act == "gelu";
        if !ok {
            return Err(Error::InvalidArgument(format!(
                "unsupported BERT configuration (hidden size up to {MAX_HIDDEN}, a multiple of the heads, GELU): {self:?}"
            )));
        }
        Ok(())
    }
}

/// A weight matrix: compressed in VRAM, or uploaded as it is.
enum Matrix {
    Packed(Box<Linear>),
    Raw {
        buffer: wgpu::Buffer,
        dtype: WeightType,
        rows: u32,
        cols: u32,
    },
}

/// One encoder layer: six matrices, their biases, two LayerNorms (gamma then beta).
struct Layer {
    matrices: [Matrix; 6], // query, key, value, attention output, intermediate, output
    biases: [wgpu::Buffer; 6],
    norms: [wgpu::Buffer; 2], // after attention, after the feed-forward layer
}

/// The word, position and token-type tables, and the LayerNorm after them.
struct Embeddings {
    tables: Tables,
    dtype: WeightType,
    vocab: u32,
    positions: u32,
    norm: wgpu::Buffer,
}

const TABLES: [&str; 3] = [
    "embeddings.word_embeddings.weight",
    "embeddings.position_embeddings.weight",
    "embeddings.token_type_embeddings.weight",
];

enum Tables {
    /// Compressed, one group a table: a forward pass decodes just the blocks that hold its rows.
    Packed(Box<[GpuGroup; 3]>),
    /// As uploaded, one after the other from these bytes.
    Raw(wgpu::Buffer, [u64; 3]),
}

/// VRAM a loaded model holds, in bytes.
#[derive(Clone, Copy, Debug, Default)]
pub struct Vram {
    /// Weight matrices: compressed, or as uploaded.
    pub matrices: u64,
    /// Biases and LayerNorm parameters, as f32.
    pub vectors: u64,
    /// The decode scratch and the fused kernel's partial sums.
    pub scratch: u64,
}

impl Vram {
    /// Everything.
    pub fn total(&self) -> u64 {
        self.matrices + self.vectors + self.scratch
    }
}

/// A BERT encoder resident in VRAM.
pub struct Bert {
    /// The model's configuration.
    pub config: BertConfig,
    embeddings: Option<Embeddings>,
    layers: Vec<Layer>,
    /// Layers that did not get what they asked for (the fused kernel, the fixed form), and why.
    pub unfused: Vec<String>,
    /// With [`Forms::Fastest`]: the form each BF16 matrix took, and what was measured.
    pub chosen: Vec<ResidentChoice>,
    /// The decode scratch and partial sums every product shares.
    workspace: Workspace,
    empty: wgpu::Buffer,
    vram: Vram,
    /// Bytes of the buffers the last forward pass used for itself.
    transient: std::cell::Cell<u64>,
    /// Kept between passes, so that a pass binds what the one before bound.
    activations: std::cell::RefCell<Option<Activations>>,
    // embed, add_norm, bias_act, attention, pool
    kernels: Vec<std::sync::Arc<Kernel>>,
}

/// The activations of a forward pass of up to `tokens` tokens.
struct Activations {
    tokens: u32,
    hidden: wgpu::Buffer,
    out: wgpu::Buffer,
    q: wgpu::Buffer,
    k: wgpu::Buffer,
    v: wgpu::Buffer,
    qkv: wgpu::Buffer,
    context: wgpu::Buffer,
    branch: wgpu::Buffer,
    inner: wgpu::Buffer,
}

impl Activations {
    fn new(gpu: &GpuContext, config: &BertConfig, tokens: u32) -> Result<Self> {
        let (h, i) = (config.hidden_size, config.intermediate_size);
        let act = |n: u32| gpu.output_buffer(4 * (tokens * n) as u64);
        Ok(Activations {
            tokens,
            hidden: act(h)?,
            out: gpu.output_buffer(4 * h as u64)?,
            q: act(h)?,
            k: act(h)?,
            v: act(h)?,
            qkv: act(3 * h)?,
            context: act(h)?,
            branch: act(h)?,
            inner: act(i)?,
        })
    }
}

const EMBED: usize = 0;
const ADD_NORM: usize = 1;
const BIAS_ACT: usize = 2;
const ATTENTION: usize = 3;
const POOL: usize = 4;

impl Bert {
    /// What the model holds in VRAM.
    pub fn vram(&self) -> Vram {
        self.vram
    }

    /// Bytes of the buffers the last forward pass allocated for itself (activations, token
    /// rows, the decoded blocks of the embedding tables).
    pub fn last_transient_bytes(&self) -> u64 {
        self.transient.get()
    }

    /// The sentence embedding of `ids` (token ids, special tokens included): the encoder, mean
    /// pooling over the tokens, L2 normalization, as sentence-transformers computes it.
    pub fn embed(&self, gpu: &GpuContext, ids: &[u32]) -> Result<Vec<f32>> {
        let e = self
            .embeddings
            .as_ref()
            .ok_or_else(|| Error::InvalidArgument("the weights have no embedding tables".into()))?;
        let limit = (e.positions as usize).min(MAX_TOKENS);
        if ids.is_empty() || ids.len() > limit {
            return Err(Error::InvalidArgument(format!(
                "{} tokens: a forward pass takes 1 to {limit}",
                ids.len()
            )));
        }
        if let Some(bad) = ids.iter().find(|&&id| id >= e.vocab) {
            return Err(Error::InvalidArgument(format!(
                "token id {bad} is outside the vocabulary of {}",
                e.vocab
            )));
        }
        let tokens = ids.len() as u32;
        let h = self.config.hidden_size;
        let acts = self.activations(gpu, tokens)?;
        let (hidden, out) = (&acts.hidden, &acts.out);
        let mut encoder = gpu.device.create_command_encoder(&Default::default());
        // The first byte of each token's word, position and token-type row.
        let row_bytes = h as u64 * e.dtype.bytes();
        let wanted: [Vec<u64>; 3] = [
            ids.iter().map(|&id| id as u64 * row_bytes).collect(),
            (0..tokens as u64).map(|t| t * row_bytes).collect(),
            vec![0; ids.len()],
        ];
        let mut rows = vec![0u32; 3 * ids.len()];
        let mut transient = 0;
        let table = match &e.tables {
            Tables::Raw(buffer, starts) => {
                for (k, starts_k) in wanted.iter().enumerate() {
                    for (t, at) in starts_k.iter().enumerate() {
                        rows[3 * t + k] = ((starts[k] + at) / e.dtype.bytes()) as u32;
                    }
                }
                buffer.clone()
            }
            Tables::Packed(groups) => {
                let plans: Vec<_> = groups
                    .iter()
                    .zip(TABLES)
                    .zip(&wanted)
                    .map(|((g, name), starts)| plan_rows(g, name, starts, row_bytes))
                    .collect::<Result<_>>()?;
                let total: u64 = plans.iter().map(|p| p.bytes).sum();
                let scratch = gpu.output_buffer(total)?;
                transient += scratch.size();
                let mut region = 0;
                for (k, (plan, group)) in plans.iter().zip(groups.iter()).enumerate() {
                    match &plan.blocks {
                        Some(blocks) => {
                            gpu.record_decode_blocks(&mut encoder, group, blocks, &scratch, region)?
                        }
                        None => {
                            gpu.record_decode(&mut encoder, group, &scratch, region)?;
                            0
                        }
                    };
                    for (t, at) in plan.rows.iter().enumerate() {
                        rows[3 * t + k] = ((region + at) / e.dtype.bytes()) as u32;
                    }
                    region += plan.bytes;
                }
                scratch
            }
        };
        let rows = gpu.storage_buffer("token rows", bytemuck::cast_slice(&rows).to_vec());
        transient += hidden.size() + out.size() + rows.size();
        let params = Params {
            dtype: e.dtype.code(),
            ..self.params(tokens)
        };
        let k = &self.kernels[EMBED];
        let buffers = [&table, &rows, &e.norm, &self.empty, hidden];
        gpu.dispatch(&mut encoder, k, &[], &params, &buffers, [tokens, 1]);
        let (h, i) = (h as u64, self.config.intermediate_size as u64);
        transient += 4 * tokens as u64 * (8 * h + i); // record_layers' activations
        self.transient.set(transient);
        self.record_layers(gpu, &mut encoder, &acts, tokens)?;
        let k = &self.kernels[POOL];
        let buffers = [&self.empty, &self.empty, &self.empty, hidden, out];
        gpu.dispatch(&mut encoder, k, &[], &self.params(tokens), &buffers, [1, 1]);
        gpu.queue.submit([encoder.finish()]);
        read_f32(gpu, out, h as usize)
    }

    /// The kept activations, grown first if they hold fewer than `tokens` tokens.
    fn activations(
        &self,
        gpu: &GpuContext,
        tokens: u32,
    ) -> Result<std::cell::RefMut<'_, Activations>> {
        let mut slot = self.activations.borrow_mut();
        if slot.as_ref().is_none_or(|a| a.tokens < tokens) {
            *slot = Some(Activations::new(gpu, &self.config, tokens)?);
        }
        Ok(std::cell::RefMut::map(slot, |a| {
            a.as_mut().expect("just made")
        }))
    }

    /// Runs the encoder layers on `hidden` (tokens x hidden_size f32 hidden states) and returns
    /// the new hidden states: the forward pass without embeddings and pooling.
    pub fn encode(&self, gpu: &GpuContext, hidden: &[f32]) -> Result<Vec<f32>> {
        let h = self.config.hidden_size as usize;
        let tokens = hidden.len() / h;
        if tokens == 0 || tokens > MAX_TOKENS || !hidden.len().is_multiple_of(h) {
            return Err(Error::InvalidArgument(format!(
                "{} values are not 1 to {MAX_TOKENS} tokens of {h}",
                hidden.len()
            )));
        }
        let acts = self.activations(gpu, tokens as u32)?;
        gpu.queue
            .write_buffer(&acts.hidden, 0, bytemuck::cast_slice(hidden));
        let mut encoder = gpu.device.create_command_encoder(&Default::default());
        self.record_layers(gpu, &mut encoder, &acts, tokens as u32)?;
        gpu.queue.submit([encoder.finish()]);
        read_f32(gpu, &acts.hidden, hidden.len())
    }

    /// The uniform of the bert.wgsl kernels, with the fields every entry shares.
    fn params(&self, tokens: u32) -> Params {
        let c = &self.config;
        Params {
            tokens,
            hidden: c.hidden_size,
            heads: c.num_attention_heads,
            head_dim: c.hidden_size / c.num_attention_heads,
            width: 0,
            act: 0,
            dtype: 0,
            eps: c.layer_norm_eps,
        }
    }

    /// y = W x for the `tokens` columns of x.
    fn product(
        &self,
        gpu: &GpuContext,
        encoder: &mut wgpu::CommandEncoder,
        m: &Matrix,
        x: &wgpu::Buffer,
        y: &wgpu::Buffer,
        tokens: u32,
    ) -> Result<()> {
        match m {
            Matrix::Packed(l) => gpu.record_product(encoder, l, &self.workspace, x, y, tokens),
            Matrix::Raw {
                buffer,
                dtype,
                rows,
                cols,
            } => gpu.record_matmul(encoder, buffer, 0, *dtype, *rows, *cols, x, y, tokens),
        }
    }

    /// Records every layer on `hidden` (tokens x hidden_size), in place.
    fn record_layers(
        &self,
        gpu: &GpuContext,
        encoder: &mut wgpu::CommandEncoder,
        acts: &Activations,
        tokens: u32,
    ) -> Result<()> {
        let (h, i) = (self.config.hidden_size, self.config.intermediate_size);
        let Activations {
            hidden,
            q,
            k,
            v,
            qkv,
            context,
            branch,
            inner,
            ..
        } = acts;
        let bytes = 4 * (tokens * h) as u64;
        let base = self.params(tokens);
        // dst += bias, then GELU when `gelu`
        let bias = |encoder: &mut wgpu::CommandEncoder, dst, bias, width: u32, gelu: bool| {
            let p = Params {
                width,
                act: gelu as u32,
                ..base
            };
            let buffers = [&self.empty, &self.empty, bias, &self.empty, dst];
            let groups = (tokens * width).div_ceil(64);
            gpu.dispatch(
                encoder,
                &self.kernels[BIAS_ACT],
                &[],
                &p,
                &buffers,
                [groups, 1],
            );
        };
        // hidden = LayerNorm(hidden + branch)
        let add_norm = |encoder: &mut wgpu::CommandEncoder, norm| {
            let buffers = [&self.empty, &self.empty, norm, branch, hidden];
            let k = &self.kernels[ADD_NORM];
            gpu.dispatch(encoder, k, &[], &base, &buffers, [tokens, 1]);
        };
        for layer in &self.layers {
            let [wq, wk, wv, wo, wi, wd] = &layer.matrices;
            for (n, (m, y)) in [(wq, &q), (wk, &k), (wv, &v)].into_iter().enumerate() {
                self.product(gpu, encoder, m, hidden, y, tokens)?;
                bias(encoder, y, &layer.biases[n], h, false);
                encoder.copy_buffer_to_buffer(y, 0, qkv, n as u64 * bytes, bytes);
            }
            let buffers = [&self.empty, &self.empty, &self.empty, qkv, context];
            let heads = self.config.num_attention_heads;
            let k = &self.kernels[ATTENTION];
            gpu.dispatch(encoder, k, &[], &base, &buffers, [heads, tokens]);
            self.product(gpu, encoder, wo, context, branch, tokens)?;
            bias(encoder, branch, &layer.biases[3], h, false);
            add_norm(encoder, &layer.norms[0]);
            self.product(gpu, encoder, wi, hidden, inner, tokens)?;
            bias(encoder, inner, &layer.biases[4], i, true);
            self.product(gpu, encoder, wd, inner, branch, tokens)?;
            bias(encoder, branch, &layer.biases[5], h, false);
            add_norm(encoder, &layer.norms[1]);
        }
        Ok(())
    }
}

/// Which blocks of one compressed table a forward pass decodes, and where each wanted row lands.
struct RowPlan {
    /// The blocks, ascending (slot i holds blocks[i]); `None`: the table is stored verbatim in
    /// the group and is copied whole.
    blocks: Option<Vec<u32>>,
    /// Per wanted row, the byte where it starts in this table's region of the scratch.
    rows: Vec<u64>,
    /// Bytes of the region.
    bytes: u64,
}

/// Plans the decode of the rows of `name` that start at bytes `starts` (each `row_bytes` long).
/// Blocks come in ascending order, so a row that runs from one block into the next finds the two
/// in adjacent slots, contiguous (a table is one group, so every slot but the last is full).
fn plan_rows(group: &GpuGroup, name: &str, starts: &[u64], row_bytes: u64) -> Result<RowPlan> {
    let slice = group
        .slice(name)
        .ok_or_else(|| Error::InvalidArgument(format!("'{name}' is not in its group")))?;
    let Some((_, block_words)) = slice.blocks else {
        let rows = starts.iter().map(|&s| slice.offset + s).collect();
        return Ok(RowPlan {
            blocks: None,
            rows,
            bytes: group.output_bytes,
        });
    };
    let locate = |at: u64| {
        group.locate(name, at).ok_or_else(|| {
            Error::InvalidArgument(format!("byte {at} of '{name}' is outside the table"))
        })
    };
    let mut blocks = std::collections::BTreeSet::new();
    for &s in starts {
        let (first, _) = locate(s)?;
        let (last, _) = locate(s + row_bytes - 1)?;
        blocks.extend(first..=last);
    }
    let blocks: Vec<u32> = blocks.into_iter().collect();
    let slot_bytes = 4 * block_words as u64;
    let rows = starts
        .iter()
        .map(|&s| {
            let (block, within) = locate(s)?;
            let slot = blocks.binary_search(&block).expect("planned") as u64;
            Ok(slot * slot_bytes + within)
        })
        .collect::<Result<_>>()?;
    Ok(RowPlan {
        bytes: slot_bytes * blocks.len() as u64,
        blocks: Some(blocks),
        rows,
    })
}

fn f32_buffer(gpu: &GpuContext, values: &[f32]) -> wgpu::Buffer {
    gpu.device
        .create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("f32"),
            contents: bytemuck::cast_slice(values),
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_SRC
                | wgpu::BufferUsages::COPY_DST,
        })
}

fn read_f32(gpu: &GpuContext, buffer: &wgpu::Buffer, n: usize) -> Result<Vec<f32>> {
    let bytes = gpu.read_back(buffer, 4 * n as u64)?;
    Ok(bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect())
}
