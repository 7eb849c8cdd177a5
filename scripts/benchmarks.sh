#!/usr/bin/env bash
# Regenerates a generated section of BENCHMARKS.md on this machine: `vramzip bench --backend all`
# on every real model present (the committed sample; MiniLM and mpnet from
# scripts/fetch-models.sh [--mpnet]) or on FILES, with SVG plots, and the peers
# (scripts/peers.sh) on the same files. JSON and plots go to bench/SECTION/.
#   scripts/benchmarks.sh [--no-peers] [--section NAME] [FILES...]
# VRAMZIP_BIN names a built binary (on a machine without Rust, such as a lent GPU machine).
set -euo pipefail
cd "$(dirname "$0")/.."
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp}"
peers=1; section=this-machine; files=()
while [ $# -gt 0 ]; do
    case "$1" in
        --no-peers) peers=0 ;;
        --section) section=$2; shift ;;
        *) files+=("$1") ;;
    esac
    shift
done
bin=${VRAMZIP_BIN:-}
if [ -z "$bin" ]; then
    cargo build --release --quiet
    bin=target/release/vramzip
fi
if [ ${#files[@]} -eq 0 ]; then
    files=(assets/minilm-layer0.safetensors)
    for f in data/minilm/model-bf16.safetensors data/minilm/model-f16.safetensors data/minilm/model.safetensors \
             data/mpnet/model-bf16.safetensors data/mpnet/model-f16.safetensors data/mpnet/model.safetensors; do
        [ -f "$f" ] && files+=("$f")
    done
fi
out=bench/$section
mkdir -p "$out"
for f in "${files[@]}"; do
    name=$(echo "$f" | sed 's|^.*/data/||; s|^data/||; s|^assets/||; s|^/tmp/||; s|\.safetensors$||; s|/|-|g')
    echo "bench $f" >&2
    "$bin" bench "$f" --backend all --json --plot "$out/$name.svg" > "$out/$name.json"
done
[ $peers = 1 ] && scripts/peers.sh "${files[@]}" > "$out/peers.json"
{
    echo "date: $(date -u +%Y-%m-%d)"
    echo "machine: $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(free -g | awk '/Mem:/{print $2}') GiB"
} > "$out/machine.txt"
python3 scripts/render_benchmarks.py "$out" BENCHMARKS.md "$section"
