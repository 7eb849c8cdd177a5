#!/usr/bin/env bash
# Runs on a lent GPU machine, in the repository's root with .gl and .gpu carried (made here by
# scripts/gpu-pack.sh): installs the loaders, unpacks the binaries and MiniLM, runs
# scripts/gpu-report.sh for at most REPORT_S seconds (default 540, under the tool's 600 s a
# call), and leaves in $OUT one archive of every output (the tool returns at most 8 files) and
# the summary, which it also prints. A second call with REPORT_FROM=NAME (an output's name, as the
# log's "step NAME" lines give it) skips the steps before that one.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:?OUT: the folder whose files come back}
# the loaders and the driver's manifests, where the NVIDIA driver is mounted (elsewhere, say on
# this project's machines with lavapipe, the system's own are used)
if [ -d /usr/local/nvidia ]; then
    for f in .gl/*.deb; do dpkg -x "$f" /; done
    ldconfig
    export VK_DRIVER_FILES=${VK_DRIVER_FILES:-/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json}
    export __EGL_VENDOR_LIBRARY_FILENAMES=${__EGL_VENDOR_LIBRARY_FILENAMES:-/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json}
fi
nvidia-smi 2>/dev/null | head -15
work=$(mktemp -d)
python3 -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' .gpu/pack.tar.xz "$work"
echo "binaries of commit $(cat "$work/commit")"
# the example reads data/minilm beside tests/data; the report reads the bf16 file
mkdir -p data/minilm
cp "$work"/minilm/*.json "$work"/minilm/vocab.txt data/minilm/
"$work/bin/vramzip" decompress --force "$work/minilm/model-bf16.vz.safetensors" \
    -o data/minilm/model-bf16.safetensors || exit 1
report=$work/report
CRITERION_ARGS=${CRITERION_ARGS:---warm-up-time 1 --measurement-time 3} \
    GEMV_BENCH=$work/bin/gemv MINILM_EXAMPLE=$work/bin/minilm \
    timeout "${REPORT_S:-540}" bash scripts/gpu-report.sh "$work/bin/vramzip" \
    data/minilm/model-bf16.safetensors "$report" "$work/bin/gpu_decode" 2>&1 | tee "$work/report.log"
echo "report exit ${PIPESTATUS[0]} (124: cut at ${REPORT_S:-540} s)"
mkdir -p "$report"
cp "$work/report.log" "$report/"
# a report cut short wrote no summary: one of as far as it got
[ -f "$report/summary.txt" ] || python3 scripts/gpu-summary.py "$report" | tee "$report/summary.txt"
tar -C "$work" -czf "$out/gpu-report.tar.gz" report
cp "$report/summary.txt" "$out/" 2>/dev/null
rm -rf "$work"
