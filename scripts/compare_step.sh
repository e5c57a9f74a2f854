#!/usr/bin/env bash
# ssl vs the PyTorch reference, side by side on this machine, in one run:
#   step    SimCLR training step (batch BATCH = 2 x BATCH views), views/s
#   forward feature extraction in evaluation mode (torch.no_grad()), 1000 images a batch, images/s
# each for both reference backbones at 2 and 1 threads, at the machine's native instruction set
# and with both sides capped at AVX2 (ssl: the build without its `avx512` feature, in
# target/avx2; PyTorch: ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2). One line per figure:
#   step MODEL threads=T[ avx2]: ssl X views/s, pytorch Y views/s, ratio R
# Usage: scripts/compare_step.sh [BATCH] [STEPS]   (defaults 128 and 3)
# Sets up the PyTorch reference in ~/torchref when it is missing (a few GB).
set -euo pipefail
cd "$(dirname "$0")/.."
batch=${1:-128}
steps=${2:-3}
bench=../shared/bench
source scripts/torchref.sh
cargo build --release --example simclr_step --example forward_throughput
cargo build --release --no-default-features --target-dir target/avx2 --example simclr_step --example forward_throughput
out=$(mktemp -d)
isas=(native)
grep -q avx512f /proc/cpuinfo && isas+=(avx2)
for isa in "${isas[@]}"; do
  bin=target/release/examples
  cap=()
  if [ "$isa" = avx2 ]; then bin=target/avx2/release/examples; cap=(ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2); fi
  for t in 2 1; do
    for b in resnet18_cifar small_fmnist; do
      "$bin/simclr_step" "$t" "$batch" "$steps" "$b" | sed "s/^/$isa step /" | tee -a "$out/ssl"
      "$bin/forward_throughput" "$t" 1000 3000 "$b" | sed "s/^/$isa forward /" | tee -a "$out/ssl"
    done
    env "${cap[@]}" /usr/bin/time -f "pytorch $isa step peak RSS %M KiB, threads $t" "$py" "$bench/torch_simclr_step.py" "$t" "$batch" "$steps" \
      2>>"$out/torch_rss" | sed "s/^/$isa step /" | tee -a "$out/torch"
    env "${cap[@]}" "$py" "$bench/torch_forward.py" "$t" 1000 3000 | sed "s/^/$isa forward /" | tee -a "$out/torch"
  done
done
cat "$out/torch_rss"
echo
for isa in "${isas[@]}"; do
  tag=""; [ "$isa" = avx2 ] && tag=" avx2"
  for what in step forward; do
    unit="views/s"; [ "$what" = forward ] && unit="images/s"
    for t in 2 1; do
      for b in resnet18_cifar small_fmnist; do
        pick() { grep "^$isa $what $b " "$1" | grep "threads $t," | sed -E "s/.* ([0-9.]+) ${unit//\//\\/}.*/\1/"; }
        s=$(pick "$out/ssl"); p=$(pick "$out/torch")
        r=$(python3 -c "print(f'{$s/$p:.2f}')")
        echo "$what $b threads=$t$tag: ssl $s $unit, pytorch $p $unit, ratio $r"
      done
    done
  done
done
