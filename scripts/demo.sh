#!/usr/bin/env bash
# The demo on Fashion-MNIST, end to end in about 20 minutes on 2 cores (build included):
# import into HDF5, previews, a short SimCLR pretraining of the small ResNet on 20,000
# unlabeled training images, the linear probe and kNN on frozen features (with the random-init
# and raw-pixel baselines), fine-tuning on 10% of the labels from the pretrained backbone and
# from scratch, and the report: runs/demo_simclr/report/report.html (and report.md).
# The fine-tuning runs are kept to 3 short epochs (min_steps=0: the shipped recipes would
# stretch 10% of the labels to 500 steps, about 6 minutes each).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --release
ssl=target/release/ssl
mkdir -p data runs/demo
start=$(date +%s)
$ssl data import idx /usr/share/datasets/fashion-mnist data/fashion-mnist.h5 --force
$ssl data info data/fashion-mnist.h5
$ssl data preview data/fashion-mnist.h5 --split train --out runs/demo/fashion-mnist-preview.png
$ssl augment preview data/fashion-mnist.h5 --split train --recipe recipes/simclr_fmnist_2h.ron --out runs/demo/simclr-views.png
$ssl models summary small_fmnist | tail -n 1

# Pretraining with a short budget: the two-hour recipe (AdamW, batch 64, crop 0.2-1, T 0.2)
# for 2 epochs over a 20k subset (624 steps of 64 images), on the plain small ResNet (128
# features; the fine-tuning recipes below use it too).
$ssl pretrain recipes/simclr_fmnist_2h.ron --force --set name=demo_simclr --set model=small_fmnist \
    --set data.subset=20000 --set epochs=2 --set knn.max_train=5000 --set knn.max_test=1000

# Frozen features: linear probe and kNN, with the baselines (10k training images, full test).
$ssl probe runs/demo_simclr --baselines --max-train 10000
$ssl knn runs/demo_simclr --baselines --max-train 10000

# Fine-tuning on 10% of the labels: from the pretrained backbone, and from scratch.
$ssl finetune recipes/finetune_resnet.ron --force --set name=demo_finetune \
    --set pretrained=runs/demo_simclr --set data.label_fraction=0.1 --set epochs=3 --set min_steps=0
$ssl finetune recipes/supervised_resnet.ron --force --set name=demo_supervised \
    --set data.label_fraction=0.1 --set epochs=3 --set min_steps=0

$ssl report runs/demo_simclr --finetune runs/demo_finetune --finetune runs/demo_supervised
echo "demo finished in $(( $(date +%s) - start )) s after the build; open runs/demo_simclr/report/report.html"
