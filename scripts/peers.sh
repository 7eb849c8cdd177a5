#!/usr/bin/env bash
# The peers' figures on the same files: installs ZipNN 0.5.4 and zstandard in a virtual
# environment (data/.venv-peers) and prints JSON. DFloat11 is not installed (it needs CUDA and a
# multi-GB PyTorch); its ratio comes from shared/ANCHORS.md.
#   scripts/peers.sh [--zipnn-only] FILE.safetensors... > peers.json
set -euo pipefail
cd "$(dirname "$0")/.."
venv=data/.venv-peers
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q zipnn==0.5.4 zstandard >&2
fi
"$venv/bin/python" scripts/peers.py "$@"
