#!/usr/bin/env bash
# Runs every GPU measurement of BENCHMARKS.md with a built `vramzip` binary and writes the JSON
# and logs into OUTDIR. Used on a lent GPU machine, which has python3 with numpy but no Rust:
#   scripts/gpu-report.sh VRAMZIP_BINARY MINILM_BF16.safetensors OUTDIR [GPU_DECODE_BENCH_BINARY]
# Set GEMV_BENCH to the `gemv` bench binary (products: uncompressed, decode+product, fused) and
# MINILM_EXAMPLE to the `minilm` example binary (the forward pass; needs data/minilm in the tree)
# to measure those too.
set -uo pipefail
bin=$1; minilm=$2; out=$3; crit=${4:-}
mkdir -p "$out"
scratch=$(mktemp -d "${TMPDIR:-/tmp}/vramzip-report.XXXXXX")
trap 'rm -rf "$scratch"' EXIT
llm=$scratch/llm-block.safetensors
python3 "$(dirname "$0")/make_llm_shaped.py" "$minilm" "$llm"
{
    date -u
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null
    "$bin" adapters --backend all
} > "$out/adapters.txt" 2>&1
cat "$out/adapters.txt"
"$bin" bench --json > "$out/bench-sample.json"
# the default layout (v2: a stream length per tensor), and streams of 64 groups
"$bin" bench "$minilm" --json > "$out/bench-minilm-default.json"
"$bin" bench "$llm" --json > "$out/bench-llm-default.json"
"$bin" bench "$minilm" --chunk-groups 64 --json > "$out/bench-minilm-cg64.json"
"$bin" bench "$llm" --chunk-groups 64 --json > "$out/bench-llm-cg64.json"
# the decoders' code table read through the cache instead of copied to workgroup memory
VRAMZIP_DECODE_TABLE=cache "$bin" bench "$minilm" --json > "$out/bench-minilm-table-cache.json"
VRAMZIP_DECODE_TABLE=cache "$bin" bench "$llm" --json > "$out/bench-llm-table-cache.json"
"$bin" bench "$minilm" --backend all --json > "$out/bench-minilm-all.json" 2> "$out/bench-minilm-all.err" || true
"$bin" compress "$llm" -o "$scratch/llm.vz" && "$bin" verify "$scratch/llm.vz" > "$out/verify-llm.txt" 2>&1
# products per resident form (Huffman, fixed, the measured choice) beside the uncompressed product
for batch in 1 8; do
    "$bin" bench "$minilm" --resident auto --batch $batch --json > "$out/bench-minilm-resident-b$batch.json"
    "$bin" bench "$llm" --resident auto --batch $batch --json > "$out/bench-llm-resident-b$batch.json"
done
if [ -n "$crit" ]; then
    VRAMZIP_BENCH_FILE="$llm" "$crit" --bench ${CRITERION_ARGS:-} 2>&1 | grep -E "^gpu/|time:|thrpt:|adapter" > "$out/criterion-gpu.txt"
fi
if [ -n "${GEMV_BENCH:-}" ]; then
    # the default layout at batch 1 and 8
    for batch in 1 8; do
        VRAMZIP_BENCH_BATCH=$batch "$GEMV_BENCH" --bench ${CRITERION_ARGS:-} > "$out/gemv-batch$batch.txt" 2>&1
        grep -A9 "side by side" "$out/gemv-batch$batch.txt"
    done
    VRAMZIP_DECODE_TABLE=cache "$GEMV_BENCH" --bench ${CRITERION_ARGS:-} > "$out/gemv-batch1-table-cache.txt" 2>&1
    grep -A9 "side by side" "$out/gemv-batch1-table-cache.txt"
fi
if [ -n "${MINILM_EXAMPLE:-}" ]; then
    "$MINILM_EXAMPLE" > "$out/minilm-example-f32.txt" 2>&1
    "$MINILM_EXAMPLE" --bf16 --resident fixed > "$out/minilm-example-bf16.txt" 2>&1
    "$MINILM_EXAMPLE" --bf16 --resident auto > "$out/minilm-example-bf16-auto.txt" 2>&1
    grep -h "VRAM\|same bits\|ms per\|measured faster" "$out"/minilm-example-*.txt | head -60
fi
python3 - "$out" <<'PY'
import json, glob, os, sys
for f in sorted(glob.glob(os.path.join(sys.argv[1], "bench-*.json"))):
    try:
        d = json.load(open(f))
    except Exception as e:
        print(os.path.basename(f), "unreadable:", e); continue
    g = (d.get("gpu") or [{}])[0]
    print(f"{os.path.basename(f):28} ratio {d['file_ratio']:.4f} cpu dec {d['cpu'][-1]['decode_mb_s']:.0f} MB/s ({d['cpu'][-1]['threads']} threads) | "
          f"gpu dec {g.get('decode_gb_s', 0):.1f} GB/s, copy {g.get('copy_gb_s', 0):.1f}, shader copy {g.get('shader_copy_gb_s', 0):.1f}, "
          f"dec/copy {g.get('decode_over_copy', 0):.3f}, dec/shader {g.get('decode_over_shader_copy', 0):.3f}, "
          f"load {g.get('load_compressed_s', 0)*1e3:.1f}/{g.get('load_raw_s', 0)*1e3:.1f} ms, exact {d['bit_exact']}/{g.get('bit_exact')}")
    for p in d.get("products") or []:
        print(f"{'':28} products batch {p['batch']}, {p['layers']} matrices: huffman {p['huffman_over_uncompressed']:.3f}x, "
              f"fixed {p.get('fixed_over_uncompressed') or 0:.3f}x the uncompressed time; resident {p['huffman_over_original']:.4f} / "
              f"{p.get('fixed_over_original') or 0:.4f} of the original; auto {p.get('auto')}")
PY
