#!/usr/bin/env bash
# The 1-thread SimCLR step rows of compare_step.sh, measured with ssl and PyTorch running at the
# same time, each pinned to its own core (taskset), then again with the cores swapped: whatever
# the machine's speed does meanwhile, it does to both (run one after the other, the ratio of a
# few seconds each swings by ±15-30% on a noisy machine). Needs 2 cores; one line per pair:
#   step MODEL threads=1[ avx2] pinned ssl core A: ssl X views/s, pytorch Y views/s, ratio R
# and, per row, the geometric mean of the two pairs' ratios:
#   step MODEL threads=1[ avx2] pinned: ratio R
# Usage: scripts/compare_step_pinned.sh [BATCH] [STEPS]   (defaults 128 and 8; resnet18_cifar
# takes STEPS / 2). Sets up the PyTorch reference in ~/torchref when it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
batch=${1:-128}
steps=${2:-8}
bench=../shared/bench
source scripts/torchref.sh
[ "$(nproc)" -ge 2 ] || { echo "compare_step_pinned.sh: needs 2 cores, this machine has $(nproc)" >&2; exit 1; }
cargo build --release --example simclr_step
out=$(mktemp -d)
# The reference step for one backbone (the bench script times every backbone it lists).
loop='for name, (cin, hw, widths, blocks) in cases.items():'
grep -qF "$loop" "$bench/torch_simclr_step.py" || { echo "compare_step_pinned.sh: $bench/torch_simclr_step.py has no '$loop'" >&2; exit 1; }
prog=$(cat <<PY
import sys
model = sys.argv.pop()
src = open("$bench/torch_simclr_step.py").read()
src = src.replace("$loop", "for name, (cin, hw, widths, blocks) in [c for c in cases.items() if c[0].startswith(model + ' ')]:")
exec(compile(src, "torch_simclr_step.py", "exec"))
PY
)
isas=(native)
grep -q avx512f /proc/cpuinfo && isas+=(avx2)
for isa in "${isas[@]}"; do
  tag=""; ours=(); cap=()
  if [ "$isa" = avx2 ]; then tag=" avx2"; ours=(SSL_CPU_ISA=avx2); cap=(ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2); fi
  for b in resnet18_cifar small_fmnist; do
    n=$steps; [ "$b" = resnet18_cifar ] && n=$(( (steps + 1) / 2 ))
    ratios=()
    for ours_core in 0 1; do
      theirs_core=$((1 - ours_core))
      env "${ours[@]}" taskset -c "$ours_core" target/release/examples/simclr_step 1 "$batch" "$n" "$b" >"$out/ssl" &
      env "${cap[@]}" taskset -c "$theirs_core" "$py" -c "$prog" 1 "$batch" "$n" cpu "$b" >"$out/torch"
      wait
      s=$(grep -oE '[0-9.]+ views/s' "$out/ssl" | cut -d' ' -f1)
      p=$(grep -oE '[0-9.]+ views/s' "$out/torch" | cut -d' ' -f1)
      r=$(python3 -c "print(f'{$s/$p:.2f}')")
      ratios+=("$s/$p")
      echo "step $b threads=1$tag pinned ssl core $ours_core: ssl $s views/s, pytorch $p views/s, ratio $r"
    done
    echo "step $b threads=1$tag pinned: ratio $(python3 -c "print(f'{(${ratios[0]} * ${ratios[1]}) ** 0.5:.2f}')")"
  done
done
rm -rf "$out"
