//! Rewriting a compressed file's manifest in memory, with its checksum made to fit: how the tests
//! and the fuzz targets tell lies that reach the checks behind that checksum.

use super::{MANIFEST_KEY, MANIFEST_TENSOR, checksum, deflate, hex, inflate};
use serde_json::{Map, Value};

/// `file` (a compressed file's bytes, its manifest last as [`super::compress_file`] writes it)
/// with its manifest, as JSON, changed by `change`.
pub fn rewrite_manifest(file: &[u8], change: impl FnOnce(&mut Value)) -> Result<Vec<u8>, String> {
    let n = file
        .get(..8)
        .map(|b| u64::from_le_bytes(b.try_into().unwrap_or_default()) as usize)
        .ok_or("shorter than a header length")?;
    let text = file.get(8..8 + n).ok_or("shorter than its header")?;
    let mut header: Map<String, Value> = serde_json::from_slice(text).map_err(|e| e.to_string())?;
    let body = &file[8 + n..];
    let offsets = &header.get(MANIFEST_TENSOR).ok_or("no manifest tensor")?["data_offsets"];
    let (start, end) = (
        offsets[0].as_u64().unwrap_or(u64::MAX) as usize,
        offsets[1].as_u64().unwrap_or(0) as usize,
    );
    if start > end || end != body.len() {
        return Err("the manifest is not the last tensor".into());
    }
    let mut manifest: Value =
        serde_json::from_slice(&inflate(&body[start..end])?).map_err(|e| e.to_string())?;
    change(&mut manifest);
    let packed = deflate(manifest.to_string().as_bytes());
    header[MANIFEST_TENSOR] = serde_json::json!({
        "dtype": "U8", "shape": [packed.len()], "data_offsets": [start, start + packed.len()]
    });
    let marker = header["__metadata__"][MANIFEST_KEY]
        .as_str()
        .ok_or("no vramzip marker")?;
    let mut marker: Value = serde_json::from_str(marker).map_err(|e| e.to_string())?;
    marker["manifest_xxh3"] = hex(checksum(&packed)).into();
    header["__metadata__"][MANIFEST_KEY] = marker.to_string().into();

    let mut text = serde_json::to_vec(&header).map_err(|e| e.to_string())?;
    text.resize(text.len().next_multiple_of(8), b' ');
    let mut out = (text.len() as u64).to_le_bytes().to_vec();
    out.extend(text);
    out.extend(&body[..start]);
    out.extend(packed);
    Ok(out)
}
