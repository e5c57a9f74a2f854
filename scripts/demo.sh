#!/usr/bin/env bash
# The demo on Fashion-MNIST: import into HDF5, show its info, write a preview grid.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --release
ssl=target/release/ssl
mkdir -p data runs/demo
$ssl data import idx /usr/share/datasets/fashion-mnist data/fashion-mnist.h5 --force
$ssl data info data/fashion-mnist.h5
$ssl data preview data/fashion-mnist.h5 --split train --out runs/demo/fashion-mnist-preview.png
