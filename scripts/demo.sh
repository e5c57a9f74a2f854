#!/usr/bin/env bash
# The demo on Fashion-MNIST: import into HDF5, show its info, write a preview grid and a grid of
# SimCLR views, and summarise the model pretraining will use.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --release
ssl=target/release/ssl
mkdir -p data runs/demo
$ssl data import idx /usr/share/datasets/fashion-mnist data/fashion-mnist.h5 --force
$ssl data info data/fashion-mnist.h5
$ssl data preview data/fashion-mnist.h5 --split train --out runs/demo/fashion-mnist-preview.png
$ssl augment preview data/fashion-mnist.h5 --split train --recipe recipes/simclr_resnet.ron --out runs/demo/simclr-views.png
$ssl models summary small_fmnist | tail -n 1
$ssl models
