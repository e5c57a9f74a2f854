#!/usr/bin/env bash
# Two-view SimCLR augmentation throughput, ssl vs torchvision, side by side on this machine.
# Usage: scripts/compare_augment.sh [WORKERS]   (default 2: threads for ssl, processes for torchvision)
# Sets up the PyTorch reference in ~/torchref when it is missing (a few GB).
set -euo pipefail
cd "$(dirname "$0")/.."
workers=${1:-2}
ref=../shared/bench/torch_augment.py
source scripts/torchref.sh
cargo build --release --example augment_throughput
lines=()
for spec in "28 1" "32 3" "96 3"; do
  set -- $spec
  s=$(./target/release/examples/augment_throughput "$workers" 40000 "$1" "$2" | tee /dev/stderr | sed -E 's/.*: ([0-9]+) images\/s.*/\1/')
  t=$("$py" "$ref" "$workers" 4000 "$1" "$2" | tee /dev/stderr | sed -E 's/.*: ([0-9]+) images\/s.*/\1/')
  r=$(python3 -c "print(f'{$s/$t:.1f}')")
  lines+=("augment $1x$1x$2: ssl $s images/s, torchvision $t images/s, ratio $r")
done
echo
printf '%s\n' "${lines[@]}"
