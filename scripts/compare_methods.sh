#!/usr/bin/env bash
# The equal-budget comparison: every pretraining method on Fashion-MNIST with the small ResNet
# (small_fmnist_e512) for about 30 minutes each on 2 cores (each recipe's epochs are set for
# that), evaluated the same way (linear probe on the full train and test splits, kNN with
# k = 200 over the 60k training images; random-init and raw-pixel baselines once), then one
# report: runs/compare/simclr_fmnist/report/report.md with every run compared.
# Resumable: a finished step is skipped, an interrupted pretraining continues from its last
# checkpoint (the same numbers, and the same elapsed time, as an uninterrupted run).
#   bash scripts/compare_methods.sh            # all seven, about 4 hours
#   METHODS="byol dino" bash scripts/compare_methods.sh
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f data/fashion-mnist.h5 ] || { bash scripts/setup.sh; cargo build --release; target/release/ssl data import idx /usr/share/datasets/fashion-mnist data/fashion-mnist.h5; }
cargo build --release
ssl=target/release/ssl
runs=${RUNS:-runs/compare}
all="simclr byol moco_v2 simsiam barlow_twins vicreg dino"
methods=${METHODS:-$all}
mkdir -p "$runs"
for m in $methods; do
    run=$runs/${m}_fmnist
    if [ -f "$run/backbone.safetensors" ]; then
        echo "$m: pretrained already ($run)"
    elif [ -d "$run/checkpoints" ]; then
        $ssl pretrain --resume "$run"
    else
        $ssl pretrain "recipes/${m}_fmnist.ron" --set "run_dir=$runs"
    fi
    baselines=()
    [ "$m" = simclr ] && baselines=(--baselines)
    [ -f "$run/eval/probe.json" ] || $ssl probe "$run" "${baselines[@]}"
    [ -f "$run/eval/knn.json" ] || $ssl knn "$run" --k 200 "${baselines[@]}"
done
compare=()
for m in $all; do
    [ "$m" != simclr ] && [ -f "$runs/${m}_fmnist/eval/knn.json" ] && compare+=(--compare "$runs/${m}_fmnist")
done
$ssl report "$runs/simclr_fmnist" "${compare[@]}"
echo "report: $runs/simclr_fmnist/report/report.md"
