//! Uploading a BERT model: its matrices in the forms asked for, its vectors as f32, its
//! embedding tables.

use super::weights::to_f32;
use super::{
    Bert, BertConfig, Embeddings, Forms, Layer, Matrix, TABLES, Tables, Vram, Weights, f32_buffer,
};
use crate::error::{Error, Result};
use crate::gpu::{Access, GpuContext, GpuGroup, MAX_BATCH, Resident, WeightType};

impl Bert {
    /// Uploads the model. Loads the embeddings when the weights have them (a forward pass from
    /// token ids needs them; [`Bert::encode`] does not) and the first `config.num_hidden_layers`
    /// layers.
    pub fn load(gpu: &GpuContext, weights: &Weights, config: BertConfig) -> Result<Self> {
        config.check()?;
        let (fused, forms) = match weights {
            Weights::Compressed { fused, forms, .. } => (*fused, *forms),
            Weights::Uncompressed(_) => (false, Forms::All(Resident::Huffman)),
        };
        let vector = |name: &str, len: u32| -> Result<wgpu::Buffer> {
            let (dtype, _, bytes) = weights.tensor(name)?;
            let values = to_f32(name, &dtype, &bytes)?;
            if values.len() != len as usize {
                return Err(Error::InvalidArgument(format!(
                    "'{name}' has {} values, the configuration says {len}",
                    values.len()
                )));
            }
            Ok(f32_buffer(gpu, &values))
        };
        let norm = |prefix: &str| -> Result<wgpu::Buffer> {
            let (gamma, beta) = (format!("{prefix}.weight"), format!("{prefix}.bias"));
            let ((gt, _, g), (bt, _, b)) = (weights.tensor(&gamma)?, weights.tensor(&beta)?);
            let mut values = to_f32(&gamma, &gt, &g)?;
            values.extend(to_f32(&beta, &bt, &b)?);
            if values.len() != 2 * config.hidden_size as usize {
                return Err(Error::InvalidArgument(format!(
                    "'{prefix}' does not have {} values",
                    config.hidden_size
                )));
            }
            Ok(f32_buffer(gpu, &values))
        };
        let mut unfused = Vec::new();
        let mut chosen = Vec::new();
        let mut matrix = |name: &str, rows: u32, cols: u32| -> Result<Matrix> {
            let (got_rows, got_cols, m) = match weights {
                Weights::Compressed { archive, .. } => {
                    let bf16 = weights.meta(name)?.0 == "BF16";
                    let mut l = match (forms, bf16) {
                        (Forms::Fastest, true) => {
                            // by products of MAX_BATCH tokens, the most a pass's product takes
                            // at once (a sentence of more runs that many at a time)
                            let (mut l, c) = gpu.linears_auto(archive, &[name], None, MAX_BATCH)?;
                            chosen.extend(c);
                            l.pop()
                                .ok_or_else(|| Error::Gpu(format!("'{name}' not loaded")))?
                        }
                        (Forms::All(Resident::Fixed), false) => {
                            unfused.push(format!(
                                "{name}: kept Huffman-coded: the fixed form takes BF16"
                            ));
                            gpu.linear(archive, name)?
                        }
                        (Forms::All(form), _) => gpu.linear_as(archive, name, form)?,
                        (Forms::Fastest, false) => gpu.linear(archive, name)?,
                    };
                    // (products read the fixed form directly: there is nothing to fuse)
                    if let (true, Resident::Huffman, Some(why)) =
                        (fused, l.resident(), l.unfusable())
                    {
                        unfused.push(format!("{name}: {why}"));
                    }
                    if !fused {
                        l.set_fused(false)?;
                    }
                    (l.rows, l.cols, Matrix::Packed(Box::new(l)))
                }
                Weights::Uncompressed(_) => {
                    let (dtype, shape, bytes) = weights.tensor(name)?;
                    let dtype = WeightType::from_dtype(&dtype).ok_or_else(|| {
                        Error::InvalidArgument(format!("'{name}': {dtype} weights"))
                    })?;
                    let [r, c] = shape[..] else {
                        return Err(Error::InvalidArgument(format!("'{name}' is not 2-D")));
                    };
                    let buffer = gpu.storage_buffer(name, bytes);
                    let (r, c) = (r as u32, c as u32);
                    (
                        r,
                        c,
                        Matrix::Raw {
                            buffer,
                            dtype,
                            rows: r,
                            cols: c,
                        },
                    )
                }
            };
            if (got_rows, got_cols) != (rows, cols) {
                return Err(Error::InvalidArgument(format!(
                    "'{name}' is {got_rows}x{got_cols}, the configuration says {rows}x{cols}"
                )));
            }
            Ok(m)
        };
        let (h, i) = (config.hidden_size, config.intermediate_size);
        let mut layers = Vec::new();
        for l in 0..config.num_hidden_layers {
            let p = format!("encoder.layer.{l}");
            let names = [
                "attention.self.query",
                "attention.self.key",
                "attention.self.value",
                "attention.output.dense",
                "intermediate.dense",
                "output.dense",
            ];
            let shapes = [(h, h), (h, h), (h, h), (h, h), (i, h), (h, i)];
            let mut matrices = Vec::new();
            let mut biases = Vec::new();
            for (n, (r, c)) in names.iter().zip(shapes) {
                matrices.push(matrix(&format!("{p}.{n}.weight"), r, c)?);
                biases.push(vector(&format!("{p}.{n}.bias"), r)?);
            }
            let (Ok(matrices), Ok(biases)) = (matrices.try_into(), biases.try_into()) else {
                unreachable!("six of each")
            };
            layers.push(Layer {
                matrices,
                biases,
                norms: [
                    norm(&format!("{p}.attention.output.LayerNorm"))?,
                    norm(&format!("{p}.output.LayerNorm"))?,
                ],
            });
        }
        let embeddings = if weights.meta(TABLES[0]).is_ok() {
            Some(load_embeddings(
                gpu,
                weights,
                &config,
                norm("embeddings.LayerNorm")?,
            )?)
        } else {
            None
        };

        let mut vram = Vram::default();
        let mut packed = Vec::new();
        for m in layers.iter().flat_map(|l| &l.matrices) {
            match m {
                Matrix::Packed(l) => {
                    vram.matrices += l.resident_bytes();
                    packed.push(l.as_ref());
                }
                Matrix::Raw { buffer, .. } => vram.matrices += buffer.size(),
            }
        }
        // one scratch for the layers decoded before their product, one set of partial sums for
        // the fused ones (a product takes at most MAX_BATCH tokens a dispatch)
        let workspace = gpu.workspace_for(&packed, MAX_BATCH)?;
        if let Some(e) = &embeddings {
            vram.matrices += match &e.tables {
                Tables::Packed(g) => g.iter().map(|g| g.resident_bytes).sum(),
                Tables::Raw(b, _) => b.size(),
            };
            vram.vectors += e.norm.size();
        }
        for l in &layers {
            vram.vectors += l
                .biases
                .iter()
                .chain(&l.norms)
                .map(|b| b.size())
                .sum::<u64>();
        }
        vram.scratch = workspace.bytes();
        let access = [Access::Read; 4]
            .into_iter()
            .chain([Access::ReadWrite])
            .collect::<Vec<_>>();
        let kernels = gpu.kernels_of(
            "bert",
            crate::gpu::shaders::BERT,
            &access,
            &["embed", "add_norm", "bias_act", "attention", "pool"],
        )?;
        Ok(Bert {
            config,
            embeddings,
            layers,
            unfused,
            chosen,
            workspace,
            empty: f32_buffer(gpu, &[0.0; 4]),
            vram,
            transient: Default::default(),
            activations: Default::default(),
            kernels,
        })
    }
}

fn load_embeddings(
    gpu: &GpuContext,
    weights: &Weights,
    config: &BertConfig,
    norm: wgpu::Buffer,
) -> Result<Embeddings> {
    let mut shapes = Vec::new();
    let mut dtypes = Vec::new();
    for name in TABLES {
        let (dtype, shape) = weights.meta(name)?;
        match shape[..] {
            [_, c] if c == config.hidden_size as u64 => shapes.push(shape[0] as u32),
            _ => {
                return Err(Error::InvalidArgument(format!(
                    "'{name}' is {shape:?}, not rows of {}",
                    config.hidden_size
                )));
            }
        }
        dtypes.push(dtype);
    }
    let dtype = WeightType::from_dtype(&dtypes[0])
        .filter(|_| dtypes.iter().all(|d| *d == dtypes[0]))
        .ok_or_else(|| Error::InvalidArgument(format!("embedding tables of types {dtypes:?}")))?;
    let tables = match weights {
        Weights::Compressed { archive, .. } => {
            let mut groups = Vec::new();
            for name in TABLES {
                let t = archive.tensor(name).expect("checked above");
                groups.push(gpu.upload_one(archive, t, "an embedding table")?);
            }
            let Ok(groups) = <[GpuGroup; 3]>::try_from(groups) else {
                unreachable!("one group per table")
            };
            Tables::Packed(Box::new(groups))
        }
        Weights::Uncompressed(_) => {
            // Each table starts on a word; the kernel addresses elements.
            let mut bytes = Vec::new();
            let mut starts = [0; 3];
            for (k, name) in TABLES.iter().enumerate() {
                starts[k] = bytes.len() as u64;
                bytes.extend(weights.tensor(name)?.2);
                bytes.resize(bytes.len().next_multiple_of(4), 0);
            }
            Tables::Raw(gpu.storage_buffer("embeddings", bytes), starts)
        }
    };
    Ok(Embeddings {
        tables,
        dtype,
        vocab: shapes[0],
        positions: shapes[1],
        norm,
    })
}
