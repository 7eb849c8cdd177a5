#!/usr/bin/env bash
# Runs every GPU measurement of BENCHMARKS.md with a built `vramzip` binary and writes the JSON
# and logs into OUTDIR, with a summary in OUTDIR/summary.txt. Used on a lent GPU machine, which
# has python3 with numpy but no Rust (scripts/gpu-pack.sh here and scripts/gpu-run.sh there do
# the whole round, within the device tool's limits):
#   scripts/gpu-report.sh VRAMZIP_BINARY MINILM_BF16.safetensors OUTDIR [GPU_DECODE_BENCH_BINARY]
# Set GEMV_BENCH to the `gemv` bench binary (products: uncompressed, decode+product, fused) and
# MINILM_EXAMPLE to the `minilm` example binary (the forward pass; needs data/minilm in the tree)
# to measure those too.
set -uo pipefail
bin=$1; minilm=$2; out=$3; crit=${4:-}
mkdir -p "$out"
scratch=$(mktemp -d "${TMPDIR:-/tmp}/vramzip-report.XXXXXX")
trap 'rm -rf "$scratch"' EXIT
trap 'exit 143' TERM INT
# the tools' own temporaries too, so that a run cut short leaves nothing behind
export TMPDIR=$scratch
llm=$scratch/llm-block.safetensors
python3 "$(dirname "$0")/make_llm_shaped.py" "$minilm" "$llm"
{
    date -u
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null
    "$bin" adapters --backend all
} > "$out/adapters.txt" 2>&1
cat "$out/adapters.txt"
# Most telling first, so that a run cut short (scripts/gpu-run.sh stops it in time) has them:
# whole-model decode beside the copies, then the products on the Llama-3-8B shapes.
# the default layout (v2: a stream length per tensor)
"$bin" bench "$llm" --json > "$out/bench-llm-default.json"
"$bin" bench "$minilm" --json > "$out/bench-minilm-default.json"
gemv() { # batch, output name, environment
    if [ -n "${GEMV_BENCH:-}" ]; then
        env VRAMZIP_BENCH_BATCH="$1" "${@:3}" "$GEMV_BENCH" --bench ${CRITERION_ARGS:-} > "$out/$2.txt" 2>&1
        grep -A9 "side by side" "$out/$2.txt"
    fi
}
# uncompressed GEMV, decode+product and fused product on the Llama-3-8B shapes
gemv 1 gemv-batch1
# products per resident form (Huffman, fixed, the measured choice) beside the uncompressed product
"$bin" bench "$llm" --resident auto --batch 1 --json > "$out/bench-llm-resident-b1.json"
gemv 8 gemv-batch8
"$bin" bench "$llm" --resident auto --batch 8 --json > "$out/bench-llm-resident-b8.json"
if [ -n "${MINILM_EXAMPLE:-}" ]; then
    # f32 where the model is here (scripts/gpu-run.sh carries only bf16)
    if [ -f data/minilm/model.safetensors ]; then
        "$MINILM_EXAMPLE" > "$out/minilm-example-f32.txt" 2>&1
    fi
    "$MINILM_EXAMPLE" --bf16 --resident fixed > "$out/minilm-example-bf16.txt" 2>&1
    "$MINILM_EXAMPLE" --bf16 --resident auto > "$out/minilm-example-bf16-auto.txt" 2>&1
    grep -h "VRAM\|same bits\|ms per\|measured faster" "$out"/minilm-example-*.txt | head -60
fi
for batch in 1 8; do
    "$bin" bench "$minilm" --resident auto --batch $batch --json > "$out/bench-minilm-resident-b$batch.json"
done
# the decoders' code table read through the cache instead of copied to workgroup memory
VRAMZIP_DECODE_TABLE=cache "$bin" bench "$llm" --json > "$out/bench-llm-table-cache.json"
gemv 1 gemv-batch1-table-cache VRAMZIP_DECODE_TABLE=cache
VRAMZIP_DECODE_TABLE=cache "$bin" bench "$minilm" --json > "$out/bench-minilm-table-cache.json"
# streams of 64 groups
"$bin" bench "$llm" --chunk-groups 64 --json > "$out/bench-llm-cg64.json"
"$bin" bench "$minilm" --chunk-groups 64 --json > "$out/bench-minilm-cg64.json"
if [ -n "$crit" ]; then
    VRAMZIP_BENCH_FILE="$llm" "$crit" --bench ${CRITERION_ARGS:-} 2>&1 | grep -E "^gpu/|time:|thrpt:|adapter" > "$out/criterion-gpu.txt"
fi
"$bin" bench --json > "$out/bench-sample.json"
"$bin" bench "$minilm" --backend all --json > "$out/bench-minilm-all.json" 2> "$out/bench-minilm-all.err" || true
"$bin" compress "$llm" -o "$scratch/llm.vz" && "$bin" verify "$scratch/llm.vz" > "$out/verify-llm.txt" 2>&1
python3 "$(dirname "$0")/gpu-summary.py" "$out" | tee "$out/summary.txt"
