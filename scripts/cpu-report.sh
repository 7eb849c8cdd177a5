#!/usr/bin/env bash
# vramzip's CPU codec against ZipNN 0.5.4 on the same files, in the same run: per file,
# `vramzip bench --cpu --json` (encode and decode in memory, one thread and all, best of 3), then
# ZipNN (scripts/peers.sh, a virtual environment), one thread and ZipNN's default, best of 3; the
# two alternate ROUNDS times (default 3) so that a noisy stretch of a shared machine falls on both,
# and each figure is the best over the rounds. Prints a markdown table of MB/s and vramzip's ratio
# to ZipNN.
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
for round in $(seq "${ROUNDS:-3}"); do
    for f in "${files[@]}"; do
        echo "round $round: $f" >&2
        target/release/vramzip bench --cpu --json "$f" >> "$out/vramzip.jsonl"
        scripts/peers.sh --zipnn-only "$f" | python3 -c 'import json, sys; [print(json.dumps(r)) for r in json.load(sys.stdin)]' >> "$out/peers.jsonl"
    done
done
echo "date $(date -u +%Y-%m-%d), $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p' | head -1)"
python3 - "$out" <<'PY'
import json, os, sys
d = sys.argv[1]
def best(rows, merge):
    by_file = {}
    for r in rows:
        by_file[r["file"]] = merge(by_file[r["file"]], r) if r["file"] in by_file else r
    return by_file
def faster(a, b, keys):
    return {k: max(a[k], b[k]) if k in keys else a[k] for k in a}
def ours_merge(a, b):
    cpu = [faster(x, y, ("encode_mb_s", "decode_mb_s")) for x, y in zip(a["cpu"], b["cpu"])]
    return {**a, "cpu": cpu}
def peers_merge(a, b):
    return {**a, **{k: faster(a[k], b[k], ("compress_mb_s", "decompress_mb_s")) for k in ("zipnn", "zipnn-all")}}
ours = best(map(json.loads, open(os.path.join(d, "vramzip.jsonl"))), ours_merge)
peers = best(map(json.loads, open(os.path.join(d, "peers.jsonl"))), peers_merge)
print("| file | threads | vramzip encode | ZipNN compress | ratio | vramzip decode | ZipNN decompress | ratio | size vramzip / ZipNN |")
print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
for p in peers.values():
    v = ours[p["file"]]
    for c in v["cpu"]:
        z = p["zipnn"] if c["threads"] == 1 else p["zipnn-all"]
        print(f"| {p['file']} | {c['threads']} (ZipNN {z['threads']}) | {c['encode_mb_s']:.0f} | {z['compress_mb_s']:.0f} | "
              f"{c['encode_mb_s'] / z['compress_mb_s']:.2f}x | {c['decode_mb_s']:.0f} | {z['decompress_mb_s']:.0f} | "
              f"{c['decode_mb_s'] / z['decompress_mb_s']:.2f}x | {v['file_ratio']:.4f} / {z['ratio']:.4f} |")
PY
