#!/usr/bin/env bash
# The equal-budget comparison: every pretraining method on Fashion-MNIST with the small ResNet
# (small_fmnist_e512) for about 30 minutes each on 2 cores (each recipe's epochs are set for
# that), evaluated the same way (linear probe on the full train and test splits, kNN with
# k = 200 over the 60k training images; random-init and raw-pixel baselines once), then one
# report over every finished method: benchmarks/compare_fmnist/report/report.md.
# Resumable: a finished step is skipped, an interrupted pretraining continues from its last
# checkpoint (the same numbers, and the same elapsed time, as an uninterrupted run).
# Each finished method is archived without its weights in benchmarks/compare_fmnist/NAME/
# (recipe, metrics, probe and kNN results, and the machine it ran on), which is committed:
# the report is made from the archive, so the seven runs may be spread over machines and
# sessions. An archived method is not run again (delete its folder to rerun it).
#   bash scripts/compare_methods.sh            # all seven, about 4 hours
#   METHODS="byol dino" bash scripts/compare_methods.sh
#   SSL=/path/to/ssl bash scripts/compare_methods.sh   # a built binary (no build here), e.g. a copy
#                                                      # kept while the tree changes under a long run
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f data/fashion-mnist.h5 ] || { bash scripts/setup.sh; cargo build --release; target/release/ssl data import idx /usr/share/datasets/fashion-mnist data/fashion-mnist.h5; }
if [ -n "${SSL:-}" ]; then
    ssl=$SSL
else
    cargo build --release
    ssl=target/release/ssl
fi
# The binary's version, read once at the start (the tree may change during a four-hour run);
# for a kept binary, from SSL.version beside it when there is one (write it when copying).
version="ssl $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src Cargo.toml Cargo.lock || echo ' (modified)')"
if [ -n "${SSL:-}" ]; then
    version=$(cat "$SSL.version" 2>/dev/null || echo "$version (tree at the start; the binary $SSL may be older)")
fi
runs=${RUNS:-runs/compare}
archive=${ARCHIVE:-benchmarks/compare_fmnist}
all="simclr byol moco_v2 simsiam barlow_twins vicreg dino"
methods=${METHODS:-$all}
mkdir -p "$runs" "$archive"
for m in $methods; do
    run=$runs/${m}_fmnist
    kept=$archive/${m}_fmnist
    if [ -f "$kept/eval/knn.json" ]; then
        echo "$m: archived already ($kept)"
        continue
    fi
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
    rm -rf "$kept.tmp" && mkdir -p "$kept.tmp/eval"
    cp "$run/recipe.ron" "$run/metrics.jsonl" "$kept.tmp/"
    cp "$run/eval/probe.json" "$run/eval/knn.json" "$kept.tmp/eval/"
    {
        (lscpu 2>/dev/null || true) | sed -n 's/^Model name: *//p'
        echo "avx512f: $(grep -qw avx512f /proc/cpuinfo && echo yes || echo no), amx: $(grep -qw amx_tile /proc/cpuinfo && echo yes || echo no), cpus: $(nproc)"
        echo "$version, $(date -u +%F)"
    } > "$kept.tmp/machine.txt"
    rm -rf "$kept" && mv "$kept.tmp" "$kept"
done
first=
compare=()
for m in $all; do
    [ -f "$archive/${m}_fmnist/eval/knn.json" ] || continue
    if [ -z "$first" ]; then first=$archive/${m}_fmnist; else compare+=(--compare "$archive/${m}_fmnist"); fi
done
[ -n "$first" ] || exit 0
$ssl report "$first" "${compare[@]}" --out "$archive/report"
echo "report: $archive/report/report.md"
