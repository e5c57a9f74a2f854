#!/usr/bin/env bash
# SimCLR step throughput and peak memory, ssl vs the PyTorch reference, side by side on this
# machine. Usage: scripts/compare_step.sh [BATCH] [STEPS]   (defaults 128 and 3; 2 and 1 threads)
# Sets up the PyTorch reference in ~/torchref when it is missing (a few GB).
set -euo pipefail
cd "$(dirname "$0")/.."
batch=${1:-128}
steps=${2:-3}
ref=../shared/bench/torch_simclr_step.py
source scripts/torchref.sh
cargo build --release --example simclr_step
out=$(mktemp -d)
for t in 2 1; do
  for b in resnet18_cifar small_fmnist; do
    ./target/release/examples/simclr_step "$t" "$batch" "$steps" "$b" | tee -a "$out/ssl"
  done
  /usr/bin/time -f "pytorch peak RSS %M KiB, threads $t" "$py" "$ref" "$t" "$batch" "$steps" 2>>"$out/torch_rss" | tee -a "$out/torch"
done
cat "$out/torch_rss"
echo
for t in 2 1; do
  for b in resnet18_cifar small_fmnist; do
    s=$(grep "^$b " "$out/ssl" | grep "threads $t," | sed -E 's/.* ([0-9.]+) views\/s.*/\1/')
    p=$(grep "^$b " "$out/torch" | grep "threads $t," | sed -E 's/.* ([0-9.]+) views\/s.*/\1/')
    r=$(python3 -c "print(f'{$s/$p:.2f}')")
    echo "step $b threads=$t: ssl $s views/s, pytorch $p views/s, ratio $r"
  done
done
