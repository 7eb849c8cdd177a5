#!/usr/bin/env bash
# Packs what `scripts/gpu-run.sh` needs on a lent GPU machine (no Rust, no internet) into .gpu/,
# small enough to travel with the working tree (the device tool carries 64 MiB in all): the
# stripped `vramzip` binary, the `gemv` and `gpu_decode` bench binaries and the `minilm` example,
# xz-compressed, and all-MiniLM-L6-v2 in bf16 compressed by vramzip itself (30 MB instead of 45;
# gpu-run.sh decompresses it there, checksums checked) with its config and tokenizer.
#   scripts/gpu-pack.sh     then: run(command="bash scripts/gpu-run.sh", carry=[".gl", ".gpu"])
# .gl holds the Vulkan and EGL loaders (see the device tool's README); .gpu/ is git-ignored.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f data/minilm/model-bf16.safetensors ] || scripts/fetch-models.sh
cargo build --release --quiet --bin vramzip --example minilm
# the bench binaries' paths, from cargo's own report of what it built
benches=$(cargo bench --no-run --bench gemv --bench gpu_decode --message-format=json 2>/dev/null |
    python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and "bench" in m["target"]["kind"]:
        print(m["target"]["name"], m["executable"])
')
stage=$(mktemp -d "${TMPDIR:-/tmp}/vramzip-pack.XXXXXX")
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/bin" "$stage/minilm"
cp target/release/vramzip target/release/examples/minilm "$stage/bin/"
while read -r name exe; do cp "$exe" "$stage/bin/$name"; done <<< "$benches"
for b in vramzip minilm gemv gpu_decode; do
    [ -x "$stage/bin/$b" ] || { echo "gpu-pack: $b was not built" >&2; exit 1; }
    strip "$stage/bin/$b"
done
cp data/minilm/*.json data/minilm/vocab.txt "$stage/minilm/"
target/release/vramzip compress data/minilm/model-bf16.safetensors \
    -o "$stage/minilm/model-bf16.vz.safetensors" > /dev/null
git rev-parse HEAD > "$stage/commit"
mkdir -p .gpu
rm -f .gpu/pack.tar.xz
tar -C "$stage" -cJf .gpu/pack.tar.xz .
tree=$(git ls-files -z | xargs -0 du -cb | tail -1 | cut -f1)
total=$(( tree + $(du -sb .gpu | cut -f1) + $( (du -sb .gl 2>/dev/null || echo 0) | cut -f1) ))
echo "packed .gpu/pack.tar.xz: $(du -h .gpu/pack.tar.xz | cut -f1) (commit $(cat "$stage/commit")); with the tree and .gl $((total / 1048576)) MiB of the 64 MiB a run carries"
[ "$total" -lt $((64 * 1048576)) ] || { echo "gpu-pack: too large to carry" >&2; exit 1; }
[ -d .gl ] || echo "note: no .gl folder (the Vulkan and EGL loaders); see the device tool's README"
