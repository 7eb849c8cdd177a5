#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (default 120) with cargo-fuzz (libFuzzer), growing the
# corpus in fuzz/corpus/TARGET; crashes land in fuzz/artifacts/TARGET. The toolchain here is
# stable, so RUSTC_BOOTSTRAP lets cargo-fuzz use its nightly-only flags.
#   cargo install cargo-fuzz; scripts/fuzz.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
secs=${1:-120}
for t in container decoder codebook round_trip manifest; do
    mkdir -p corpus/$t
    RUSTC_BOOTSTRAP=1 cargo fuzz run --sanitizer none "$t" corpus/$t -- -max_total_time="$secs" -max_len=65536 2>&1 | tail -n 3
done
