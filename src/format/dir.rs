//! Sharded models: a directory of `*.safetensors` shards and a `*.safetensors.index.json`.

use super::{Archive, CompressOptions, CompressStats, compress_file};
use crate::error::{Error, Result};
use std::path::Path;

/// Key in a rewritten index's `metadata` holding the original index text.
pub const ORIGINAL_INDEX_KEY: &str = "vramzip_original_index";

fn is_shard(p: &Path) -> bool {
    p.extension().is_some_and(|e| e == "safetensors")
}

fn is_index(p: &Path) -> bool {
    p.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.ends_with(".safetensors.index.json"))
}

fn entries(dir: &Path) -> Result<Vec<std::path::PathBuf>> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .map(|e| e.map(|e| e.path()).map_err(|err| Error::io(dir, err)))
        .collect::<Result<_>>()?;
    v.sort();
    Ok(v)
}

/// Compresses every shard of `input` into `output` under the same name, rewrites the index (same
/// names, new total size, the original text kept), and copies every other file.
/// `progress(file, bytes_done_in_file)` reports progress.
pub fn compress_dir(
    input: impl AsRef<Path>,
    output: impl AsRef<Path>,
    opts: &CompressOptions,
    progress: &dyn Fn(&Path, u64),
) -> Result<Vec<CompressStats>> {
    let (input, output) = (input.as_ref(), output.as_ref());
    std::fs::create_dir_all(output).map_err(|e| Error::io(output, e))?;
    let mut stats = Vec::new();
    let mut indexes = Vec::new();
    for p in entries(input)? {
        let to = output.join(p.file_name().unwrap_or_default());
        if p.is_dir() {
            compress_dir(&p, &to, opts, progress)?;
        } else if is_shard(&p) {
            stats.push(compress_file(&p, &to, opts, &|b| progress(&p, b))?);
        } else if is_index(&p) {
            indexes.push((p, to));
        } else {
            std::fs::copy(&p, &to).map_err(|e| Error::io(&p, e))?;
        }
    }
    for (from, to) in indexes {
        let text = std::fs::read_to_string(&from).map_err(|e| Error::io(&from, e))?;
        let mut index: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| Error::invalid(&from, format!("index is not JSON: {e}")))?;
        let mut map = serde_json::Map::new();
        let mut total = 0u64;
        let shards: std::collections::BTreeSet<String> = index["weight_map"]
            .as_object()
            .ok_or_else(|| Error::invalid(&from, "index has no weight_map"))?
            .values()
            .filter_map(|v| v.as_str().map(String::from))
            .collect();
        for shard in shards {
            let path = output.join(&shard);
            let archive = Archive::open(&path)?;
            total += std::fs::metadata(&path)
                .map_err(|e| Error::io(&path, e))?
                .len();
            for name in archive
                .tensor_names()
                .into_iter()
                .filter(|n| n != super::HEADER_TENSOR)
            {
                map.insert(name, serde_json::Value::String(shard.clone()));
            }
        }
        index["weight_map"] = serde_json::Value::Object(map);
        if !index["metadata"].is_object() {
            index["metadata"] = serde_json::json!({});
        }
        index["metadata"]["total_size"] = total.into();
        index["metadata"][ORIGINAL_INDEX_KEY] = text.into();
        let out = serde_json::to_string_pretty(&index)
            .map_err(|e| Error::InvalidArgument(e.to_string()))?;
        std::fs::write(&to, out).map_err(|e| Error::io(&to, e))?;
    }
    Ok(stats)
}

/// Undoes [`compress_dir`]: every file comes back byte for byte.
pub fn decompress_dir(
    input: impl AsRef<Path>,
    output: impl AsRef<Path>,
    progress: &dyn Fn(&Path, u64),
) -> Result<()> {
    let (input, output) = (input.as_ref(), output.as_ref());
    std::fs::create_dir_all(output).map_err(|e| Error::io(output, e))?;
    for p in entries(input)? {
        let to = output.join(p.file_name().unwrap_or_default());
        if p.is_dir() {
            decompress_dir(&p, &to, progress)?;
        } else if is_shard(&p) {
            Archive::open(&p)?.decompress_to(&to, &|b| progress(&p, b))?;
        } else if is_index(&p) {
            let text = std::fs::read_to_string(&p).map_err(|e| Error::io(&p, e))?;
            let index: serde_json::Value = serde_json::from_str(&text)
                .map_err(|e| Error::invalid(&p, format!("index is not JSON: {e}")))?;
            let original = index["metadata"][ORIGINAL_INDEX_KEY]
                .as_str()
                .unwrap_or(&text);
            std::fs::write(&to, original).map_err(|e| Error::io(&to, e))?;
        } else {
            std::fs::copy(&p, &to).map_err(|e| Error::io(&p, e))?;
        }
    }
    Ok(())
}
