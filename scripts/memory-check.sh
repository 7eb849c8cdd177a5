#!/usr/bin/env bash
# Peak memory of compress and decompress on a multi-GiB sharded model (synthetic shards whose
# values are sampled from real MiniLM weights), against the size of its largest tensor.
#   scripts/fetch-models.sh; scripts/memory-check.sh [BLOCKS_PER_SHARD] [SHARDS]
set -euo pipefail
cd "$(dirname "$0")/.."
per=${1:-4}; shards=${2:-2}
dir=$(mktemp -d /tmp/vramzip-mem.XXXX)
trap 'rm -rf "$dir"' EXIT
mkdir -p "$dir/model"
cargo build --release --quiet
map=""
for s in $(seq 0 $((shards - 1))); do
    name=$(printf "model-%05d-of-%05d.safetensors" $((s + 1)) "$shards")
    python3 scripts/make_llm_shaped.py data/minilm/model-bf16.safetensors "$dir/model/$name" \
        --blocks "$per" --first-block $((s * per)) --seed "$s"
    map="$map$(python3 -c "
import json,struct,sys
f=open('$dir/model/$name','rb'); n=struct.unpack('<Q',f.read(8))[0]; h=json.loads(f.read(n))
print(','.join('\"%s\":\"$name\"' % k for k in h if k!='__metadata__'))"),"
done
echo "{\"metadata\":{},\"weight_map\":{${map%,}}}" > "$dir/model/model.safetensors.index.json"
total=$(du -sb "$dir/model" | cut -f1)
echo "model: $total bytes in $shards shards; largest tensor: 117440512 bytes (14336x4096 bf16)"
for step in "compress $dir/model -o $dir/packed" "decompress $dir/packed -o $dir/back"; do
    /usr/bin/time -f "%M KiB peak RSS, %e s" target/release/vramzip $step 2>&1 | tail -n 2
done
cmp -s "$dir/model/model-00001-of-$(printf %05d "$shards").safetensors" \
    "$dir/back/model-00001-of-$(printf %05d "$shards").safetensors" && echo "round trip: identical"
