#!/usr/bin/env bash
# ssl vs the PyTorch reference, side by side on this machine, in one run:
#   step    SimCLR training step (batch BATCH = 2 x BATCH views), views/s
#   forward feature extraction in evaluation mode (torch.no_grad()), 1000 images a batch, images/s
#   epoch   the whole pretraining loop on Fashion-MNIST (loader, two-view augmentation, step;
#           batch 256, 2 threads; PyTorch with a DataLoader of 2 workers), source images/s over
#           EPOCH_STEPS steps after 3 warm-up steps (native instruction set only)
# each for both reference backbones at 2 and 1 threads, at the machine's native instruction set
# and with both sides capped at AVX2 (ssl: SSL_CPU_ISA=avx2, gemm's AVX2 kernels in the same
# binary; PyTorch: ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2). One line per figure:
#   step MODEL threads=T[ avx2]: ssl X views/s, pytorch Y views/s, ratio R
# Usage: scripts/compare_step.sh [BATCH] [STEPS] [EPOCH_STEPS]   (defaults 128, 3 and 20)
# Sets up the PyTorch reference in ~/torchref when it is missing (a few GB).
set -euo pipefail
cd "$(dirname "$0")/.."
batch=${1:-128}
steps=${2:-3}
epoch_steps=${3:-20}
bench=../shared/bench
source scripts/torchref.sh
cargo build --release --example simclr_step --example forward_throughput --bin ssl
out=$(mktemp -d)
isas=(native)
grep -q avx512f /proc/cpuinfo && isas+=(avx2)
for isa in "${isas[@]}"; do
  bin=target/release/examples
  cap=()
  ours=()
  if [ "$isa" = avx2 ]; then ours=(SSL_CPU_ISA=avx2); cap=(ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2); fi
  for t in 2 1; do
    for b in resnet18_cifar small_fmnist; do
      env "${ours[@]}" "$bin/simclr_step" "$t" "$batch" "$steps" "$b" | sed "s/^/$isa step /" | tee -a "$out/ssl"
      env "${ours[@]}" "$bin/forward_throughput" "$t" 1000 3000 "$b" | sed "s/^/$isa forward /" | tee -a "$out/ssl"
    done
    env "${cap[@]}" /usr/bin/time -f "pytorch $isa step peak RSS %M KiB, threads $t" "$py" "$bench/torch_simclr_step.py" "$t" "$batch" "$steps" \
      2>>"$out/torch_rss" | sed "s/^/$isa step /" | tee -a "$out/torch"
    env "${cap[@]}" "$py" "$bench/torch_forward.py" "$t" 1000 3000 | sed "s/^/$isa forward /" | tee -a "$out/torch"
  done
done
# The epoch row: the same loop as ../shared/bench/torch_simclr_epoch.py (small_fmnist + head
# 128-512-128, crop 0.2-1, flip, jitter 0.4/0.4 p 0.8, no blur, NT-Xent T 0.2, AdamW 1e-3).
[ -f data/fashion-mnist.h5 ] || { mkdir -p data; target/release/ssl data import idx /usr/share/datasets/fashion-mnist data/fashion-mnist.h5; }
runs=$(mktemp -d)
target/release/ssl pretrain recipes/simclr_resnet.ron --threads 2 --set name=epoch_row --set run_dir="\"$runs\"" \
  --set model=small_fmnist --set method.projector.hidden=512 --set method.projector.out=128 --set batch_size=256 --set epochs=1 \
  --set optimizer.kind=AdamW --set optimizer.weight_decay=0.0001 --set lr.base=0.001 --set lr.scaling=None \
  --set lr.warmup_epochs=0 --set method.temperature=0.2 --set "augment.crop_scale=(0.2, 1.0)" --set augment.blur_p=0.0 \
  --set augment.strength=0.5 --set knn.every_epochs=0 --stop-after-steps $((epoch_steps + 3)) >/dev/null 2>&1 || true
python3 - "$runs/epoch_row/metrics.jsonl" "$epoch_steps" <<'PY' | tee -a "$out/ssl"
import json, sys
steps = [json.loads(l) for l in open(sys.argv[1]) if '"step"' in l]
steps = [s for s in steps if s.get("kind") == "step"]
n = int(sys.argv[2]); t = steps[n + 2]["elapsed_s"] - steps[2]["elapsed_s"]
print(f"native epoch small_fmnist 28x28x1: epoch loop batch 256, {n * 256 / t:.1f} images/s, threads 2, cpu")
PY
"$py" "$bench/torch_simclr_epoch.py" 2 256 "$epoch_steps" 2 | sed "s/^/native epoch /" | tee -a "$out/torch"
rm -rf "$runs"
cat "$out/torch_rss"
echo
for isa in "${isas[@]}"; do
  tag=""; [ "$isa" = avx2 ] && tag=" avx2"
  whats=(step forward); [ "$isa" = native ] && whats+=(epoch)
  for what in "${whats[@]}"; do
    unit="views/s"; [ "$what" != step ] && unit="images/s"
    for t in 2 1; do
      for b in resnet18_cifar small_fmnist; do
        [ "$what" = epoch ] && { [ "$t" = 2 ] && [ "$b" = small_fmnist ] || continue; }
        pick() { grep "^$isa $what $b " "$1" | grep "threads $t," | sed -E "s/.* ([0-9.]+) ${unit//\//\\/}.*/\1/"; }
        s=$(pick "$out/ssl"); p=$(pick "$out/torch")
        r=$(python3 -c "print(f'{$s/$p:.2f}')")
        echo "$what $b threads=$t$tag: ssl $s $unit, pytorch $p $unit, ratio $r"
      done
    done
  done
done
