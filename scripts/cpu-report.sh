#!/usr/bin/env bash
# vramzip's CPU codec against its peers on the same files, in the same run: per file,
# `vramzip bench --cpu --json` (encode and decode in memory, one thread and all, best of 3), then
# ZipNN 0.5.4 and zstd (scripts/peers.sh, a virtual environment) on the same files, one thread and
# ZipNN's default, best of 3; prints a markdown table of MB/s and vramzip's ratio to ZipNN.
#   scripts/cpu-report.sh [FILES...]   (default: the real models scripts/fetch-models.sh fetched)
set -euo pipefail
cd "$(dirname "$0")/.."
files=("$@")
if [ ${#files[@]} -eq 0 ]; then
    for f in data/minilm/model-bf16.safetensors data/minilm/model-f16.safetensors data/minilm/model.safetensors \
             data/mpnet/model-bf16.safetensors data/mpnet/model-f16.safetensors data/mpnet/model.safetensors; do
        [ -f "$f" ] && files+=("$f")
    done
fi
[ ${#files[@]} -gt 0 ] || { echo "no files: run scripts/fetch-models.sh --mpnet first" >&2; exit 1; }
cargo build --release --quiet
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for f in "${files[@]}"; do
    echo "vramzip bench --cpu $f" >&2
    target/release/vramzip bench --cpu --json "$f" >> "$out/vramzip.jsonl"
done
scripts/peers.sh "${files[@]}" > "$out/peers.json"
echo "date $(date -u +%Y-%m-%d), $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p' | head -1)"
python3 - "$out" <<'PY'
import json, os, sys
d = sys.argv[1]
ours = {r["file"]: r for r in map(json.loads, open(os.path.join(d, "vramzip.jsonl")))}
print("| file | threads | vramzip encode | ZipNN compress | ratio | vramzip decode | ZipNN decompress | ratio | size vramzip / ZipNN |")
print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
for p in json.load(open(os.path.join(d, "peers.json"))):
    v = ours[p["file"]]
    for c in v["cpu"]:
        z = p["zipnn"] if c["threads"] == 1 else p["zipnn-all"]
        print(f"| {p['file']} | {c['threads']} (ZipNN {z['threads']}) | {c['encode_mb_s']:.0f} | {z['compress_mb_s']:.0f} | "
              f"{c['encode_mb_s'] / z['compress_mb_s']:.2f}x | {c['decode_mb_s']:.0f} | {z['decompress_mb_s']:.0f} | "
              f"{c['decode_mb_s'] / z['decompress_mb_s']:.2f}x | {v['file_ratio']:.4f} / {z['ratio']:.4f} |")
PY
