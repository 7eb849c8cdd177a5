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
# step NAME COMMAND...: the command's output into $out/NAME (its stderr into $out/stderr.log).
# With REPORT_FROM=NAME the steps before that one are skipped, so that a second call picks up
# where a run cut short stopped.
from=${REPORT_FROM:-}
step() {
    local name=$1
    shift
    if [ -n "$from" ]; then
        if [ "$name" != "$from" ]; then
            echo "skipped $name"
            return 0
        fi
        from=""
    fi
    echo "step $name ($(date -u +%T))"
    "$@" > "$out/$name" 2>> "$out/stderr.log"
}
# the gemv bench: criterion on the benchmarks whose names contain FILTER (all with ""), then its
# own side-by-side table of every shape (best of 3 alternating rounds; the targets are read there)
gemv() { # batch, filter, environment
    env VRAMZIP_BENCH_BATCH="$1" "${@:3}" "$GEMV_BENCH" --bench ${CRITERION_ARGS:-} $2 2>&1
}
[ -n "${GEMV_BENCH:-}" ] || gemv() { echo "no GEMV_BENCH given"; }
example() {
    if [ -z "${MINILM_EXAMPLE:-}" ]; then
        echo "no MINILM_EXAMPLE given"
    elif [ "$1" = --f32 ] && [ ! -f data/minilm/model.safetensors ]; then
        echo "no data/minilm/model.safetensors here (scripts/gpu-run.sh carries only bf16)"
    else
        [ "$1" = --f32 ] && shift
        "$MINILM_EXAMPLE" "$@" 2>&1
    fi
}
criterion_decode() {
    if [ -n "$crit" ]; then
        VRAMZIP_BENCH_FILE="$llm" "$crit" --bench ${CRITERION_ARGS:-} 2>&1 | grep -E "^gpu/|time:|thrpt:|adapter"
    else
        echo "no gpu_decode bench given"
    fi
}
verify_llm() {
    "$bin" compress "$llm" -o "$scratch/llm.vz" && "$bin" verify "$scratch/llm.vz" 2>&1
}
# Most telling first, so that a run cut short (scripts/gpu-run.sh stops it in time) has them:
# whole-model decode beside the copies (the default layout, v2: a stream length per tensor), the
# products on the Llama-3-8B shapes (uncompressed GEMV, decode+product, fused, fixed form), the
# products per resident form beside the uncompressed one, the MiniLM forward pass.
step bench-llm-default.json "$bin" bench "$llm" --json
step bench-minilm-default.json "$bin" bench "$minilm" --json
step gemv-batch1.txt gemv 1 ""
step bench-llm-resident-b1.json "$bin" bench "$llm" --resident auto --batch 1 --json
step gemv-batch8.txt gemv 8 llm-4096x4096
step bench-llm-resident-b8.json "$bin" bench "$llm" --resident auto --batch 8 --json
step minilm-example-bf16.txt example --bf16 --resident fixed
step minilm-example-bf16-auto.txt example --bf16 --resident auto
step minilm-example-f32.txt example --f32
step bench-minilm-resident-b1.json "$bin" bench "$minilm" --resident auto --batch 1 --json
step bench-minilm-resident-b8.json "$bin" bench "$minilm" --resident auto --batch 8 --json
# the decoders' code table read through the cache instead of copied to workgroup memory
step bench-llm-table-cache.json env VRAMZIP_DECODE_TABLE=cache "$bin" bench "$llm" --json
step gemv-batch1-table-cache.txt gemv 1 llm-4096x4096 VRAMZIP_DECODE_TABLE=cache
step bench-minilm-table-cache.json env VRAMZIP_DECODE_TABLE=cache "$bin" bench "$minilm" --json
# every decode testing each symbol for an escape (per-tensor tables have none): what per-tensor
# codes with an escape would cost (they would make f16 files 0.02-0.03% smaller; BENCHMARKS.md)
step bench-llm-escape-test.json env VRAMZIP_DECODE_ESCAPES=always "$bin" bench "$llm" --json
step gemv-batch1-escape-test.txt gemv 1 llm-4096x4096 VRAMZIP_DECODE_ESCAPES=always
# streams of 64 groups
step bench-llm-cg64.json "$bin" bench "$llm" --chunk-groups 64 --json
step bench-minilm-cg64.json "$bin" bench "$minilm" --chunk-groups 64 --json
step criterion-gpu.txt criterion_decode
step bench-sample.json "$bin" bench --json
step bench-minilm-all.json "$bin" bench "$minilm" --backend all --json
step verify-llm.txt verify_llm
[ -z "$from" ] || echo "REPORT_FROM=$from names no step: nothing was measured" | tee -a "$out/stderr.log"
python3 "$(dirname "$0")/gpu-summary.py" "$out" | tee "$out/summary.txt"
