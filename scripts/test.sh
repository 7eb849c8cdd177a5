#!/usr/bin/env bash
# The test command: installs what the tests need, then runs every test.
# GPU tests run on a real adapter; on a machine without a GPU that is Mesa's lavapipe (a software
# Vulkan device), installed here when no Vulkan driver is present. They never skip.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! ls /usr/share/vulkan/icd.d/*.json /etc/vulkan/icd.d/*.json >/dev/null 2>&1; then
    echo "no Vulkan driver found: installing Mesa's software Vulkan driver (mesa-vulkan-drivers)"
    SUDO=""
    [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq mesa-vulkan-drivers >/dev/null
fi
# the Vulkan loader complains on stderr without it; harmless, but noisy
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp}"

cargo test --release --all-targets
cargo test --release --doc
