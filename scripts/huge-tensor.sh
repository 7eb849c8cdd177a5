#!/usr/bin/env bash
# The opt-in check that a tensor over 4 GiB round-trips through the container (about 90 s,
# ~12 GB of memory and ~12 GB of temporary disk): too slow and too big for every CI run.
set -euo pipefail
cd "$(dirname "$0")/.."
/usr/bin/time -f "%M KiB peak RSS, %e s" cargo test --release --test reliability -- --ignored a_tensor_over_4_gib_round_trips
