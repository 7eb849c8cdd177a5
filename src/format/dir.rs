//! Sharded models: a directory of `*.safetensors` shards and a `*.safetensors.index.json`.
//!
//! An output directory is built under a temporary name beside its final one and renamed into
//! place when complete, so the final name never holds a partial directory. Inside the input,
//! links to files are read through (model caches link their shards to a blob store); links to
//! directories are skipped (they can loop), and so are files that are not regular (a FIFO would
//! block). An output inside the input, or the input inside the output, is refused.

use super::write::{forget_temporary, make_beside, register_temporary};
use super::{Archive, CompressOptions, CompressStats, compress_file};
use crate::error::{Error, Result};
use std::path::{Path, PathBuf};

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

/// What a directory entry is to the walk.
enum Entry {
    File(PathBuf),
    Dir(PathBuf),
}

/// The entries of `dir`, sorted: regular files (or links to them) and real directories.
fn entries(dir: &Path) -> Result<Vec<Entry>> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .map(|e| e.map(|e| e.path()).map_err(|err| Error::io(dir, err)))
        .collect::<Result<_>>()?;
    paths.sort();
    let mut out = Vec::new();
    for p in paths {
        let own = std::fs::symlink_metadata(&p).map_err(|e| Error::io(&p, e))?;
        if own.is_dir() {
            out.push(Entry::Dir(p));
        } else if own.is_file() || std::fs::metadata(&p).is_ok_and(|m| m.is_file()) {
            out.push(Entry::File(p));
        } else {
            log::warn!(
                "{}: skipped (a link to a directory, or not a regular file)",
                p.display()
            );
        }
    }
    Ok(out)
}

/// The `.safetensors` files below `path`, in order (the walk [`compress_dir`] takes: links to
/// files included, links to directories not); `path` itself when it is not a directory.
pub fn safetensors_files(path: impl AsRef<Path>) -> Result<Vec<PathBuf>> {
    let path = path.as_ref();
    if !path.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut out = Vec::new();
    for entry in entries(path)? {
        match entry {
            Entry::Dir(p) => out.extend(safetensors_files(&p)?),
            Entry::File(p) if is_shard(&p) => out.push(p),
            Entry::File(_) => {}
        }
    }
    Ok(out)
}

/// Refuses an output inside the input (it would be compressed into itself) or the input inside
/// the output (replacing the output would remove it).
fn refuse_nesting(input: &Path, output: &Path) -> Result<()> {
    let canon = |p: &Path| -> Option<PathBuf> {
        // the output may not exist yet: its folder does
        p.canonicalize().ok().or_else(|| {
            let parent = p.parent().filter(|q| !q.as_os_str().is_empty());
            let parent = parent.unwrap_or(Path::new(".")).canonicalize().ok()?;
            Some(parent.join(p.file_name()?))
        })
    };
    let (Some(i), Some(o)) = (canon(input), canon(output)) else {
        return Ok(());
    };
    if o.starts_with(&i) || i.starts_with(&o) {
        return Err(Error::InvalidArgument(format!(
            "{} and {} are nested: the output must lie outside the input and not contain it",
            input.display(),
            output.display()
        )));
    }
    Ok(())
}

/// A directory being built beside its final place, removed if it is never finished (drop, or
/// Ctrl-C through [`super::remove_temporaries`]).
struct TempDir {
    dir: Option<tempfile::TempDir>,
}

impl TempDir {
    fn beside(output: &Path) -> Result<Self> {
        let dir = make_beside(output, ".tmp", true, |b, folder| b.tempdir_in(folder))?;
        register_temporary(dir.path());
        Ok(TempDir { dir: Some(dir) })
    }
    fn path(&self) -> &Path {
        self.dir.as_ref().map_or(Path::new(""), |d| d.path())
    }
    /// Renames the finished directory to `to`; a directory already there (`--force`) is moved
    /// aside first and removed after.
    fn persist(mut self, to: &Path) -> Result<()> {
        let Some(dir) = self.dir.take() else {
            return Ok(());
        };
        let built = dir.keep();
        forget_temporary(&built);
        let aside = if to.exists() {
            let aside = built.with_extension("old");
            std::fs::rename(to, &aside).map_err(|e| Error::io(to, e))?;
            Some(aside)
        } else {
            None
        };
        if let Err(e) = std::fs::rename(&built, to) {
            if let Some(aside) = &aside {
                let _ = std::fs::rename(aside, to);
            }
            let _ = std::fs::remove_dir_all(&built);
            return Err(Error::io(to, e));
        }
        if let Some(aside) = aside {
            let _ = std::fs::remove_dir_all(&aside).or_else(|_| std::fs::remove_file(&aside));
        }
        Ok(())
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if let Some(dir) = &self.dir {
            forget_temporary(dir.path());
        }
    }
}

/// A shard name from an index's `weight_map`: a plain relative path inside the directory.
fn shard_path(dir: &Path, index: &Path, shard: &str) -> Result<PathBuf> {
    let rel = Path::new(shard);
    let plain = rel
        .components()
        .all(|c| matches!(c, std::path::Component::Normal(_)));
    if shard.is_empty() || !plain {
        return Err(Error::invalid(
            index,
            format!("weight_map names '{shard}', which is not a file inside the model's folder"),
        ));
    }
    Ok(dir.join(rel))
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
    refuse_nesting(input, output)?;
    let tmp = TempDir::beside(output)?;
    let mut stats = Vec::new();
    compress_tree(input, tmp.path(), opts, progress, &mut stats)?;
    tmp.persist(output)?;
    Ok(stats)
}

fn compress_tree(
    input: &Path,
    output: &Path,
    opts: &CompressOptions,
    progress: &dyn Fn(&Path, u64),
    stats: &mut Vec<CompressStats>,
) -> Result<()> {
    std::fs::create_dir_all(output).map_err(|e| Error::io(output, e))?;
    let mut indexes = Vec::new();
    for entry in entries(input)? {
        let p = match entry {
            Entry::Dir(p) => {
                let to = output.join(p.file_name().unwrap_or_default());
                compress_tree(&p, &to, opts, progress, stats)?;
                continue;
            }
            Entry::File(p) => p,
        };
        let to = output.join(p.file_name().unwrap_or_default());
        if is_shard(&p) {
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
            let path = shard_path(output, &from, &shard)?;
            let archive = Archive::open(&path)?;
            total += std::fs::metadata(&path)
                .map_err(|e| Error::io(&path, e))?
                .len();
            for name in archive
                .tensor_names()
                .into_iter()
                .filter(|n| n != super::MANIFEST_TENSOR)
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
    Ok(())
}

/// Undoes [`compress_dir`]: every file comes back byte for byte.
pub fn decompress_dir(
    input: impl AsRef<Path>,
    output: impl AsRef<Path>,
    progress: &dyn Fn(&Path, u64),
) -> Result<()> {
    let (input, output) = (input.as_ref(), output.as_ref());
    refuse_nesting(input, output)?;
    let tmp = TempDir::beside(output)?;
    decompress_tree(input, tmp.path(), progress)?;
    tmp.persist(output)
}

fn decompress_tree(input: &Path, output: &Path, progress: &dyn Fn(&Path, u64)) -> Result<()> {
    std::fs::create_dir_all(output).map_err(|e| Error::io(output, e))?;
    for entry in entries(input)? {
        let p = match entry {
            Entry::Dir(p) => {
                let to = output.join(p.file_name().unwrap_or_default());
                decompress_tree(&p, &to, progress)?;
                continue;
            }
            Entry::File(p) => p,
        };
        let to = output.join(p.file_name().unwrap_or_default());
        if is_shard(&p) {
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
