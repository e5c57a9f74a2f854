#!/usr/bin/env bash
# SimCLR step throughput, ssl vs the PyTorch reference, side by side on this machine.
# Usage: scripts/compare_step.sh [BATCH] [STEPS]   (defaults 128 and 3; both thread counts)
# Sets up the PyTorch reference in ~/torchref when it is missing (a few GB).
set -euo pipefail
cd "$(dirname "$0")/.."
batch=${1:-128}
steps=${2:-3}
ref=../shared/bench/torch_simclr_step.py
py=~/torchref/bin/python
if ! "$py" -c "import torch" 2>/dev/null; then
  echo "setting up the PyTorch reference in ~/torchref"
  python3 -m venv ~/torchref
  ~/torchref/bin/pip install -q torch torchvision
fi
cargo build --release --example simclr_step
out=$(mktemp -d)
for t in 2 1; do
  ./target/release/examples/simclr_step "$t" "$batch" "$steps" | tee -a "$out/ssl"
  "$py" "$ref" "$t" "$batch" "$steps" | tee -a "$out/torch"
done
echo
for t in 2 1; do
  for b in resnet18_cifar small_fmnist; do
    s=$(grep "^$b " "$out/ssl" | grep "threads $t," | sed -E 's/.* ([0-9.]+) views\/s.*/\1/')
    p=$(grep "^$b " "$out/torch" | grep "threads $t," | sed -E 's/.* ([0-9.]+) views\/s.*/\1/')
    r=$(python3 -c "print(f'{$s/$p:.2f}')")
    echo "step $b threads=$t: ssl $s views/s, pytorch $p views/s, ratio $r"
  done
done
