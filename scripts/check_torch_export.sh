#!/usr/bin/env bash
# Checks `ssl export --format torch` against PyTorch; not part of CI (PyTorch is a large
# install, set up as the comparison scripts do). For every model with a PyTorch mapping: a
# short SimCLR pretraining (4 steps, so BatchNorm's running statistics are no longer their
# initial values), the export, `ssl embed` of 100 images with the network's inputs; then
# PyTorch loads the export with load_state_dict(strict=True) into scripts/torch_models.py's
# module (and torchvision's, for the standard ResNets) and its evaluation-mode features on
# the same inputs must match ssl's to 1e-4 relative. One line per model; exit 1 on a failure.
#   bash scripts/check_torch_export.sh
#   MODELS="small_fmnist_e512 resnet18_cifar" bash scripts/check_torch_export.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/torchref.sh
"$py" -c "import h5py, safetensors" 2>/dev/null || ~/torchref/bin/pip install -q h5py safetensors
cargo build --release
ssl=target/release/ssl
work=${WORK:-runs/torch_export}
models=${MODELS:-"small_fmnist small_fmnist_e512 resnet18_cifar resnet34_cifar resnet50_cifar resnet18_imagenet"}
mkdir -p "$work"
[ -f data/fashion-mnist.h5 ] || $ssl data import idx /usr/share/datasets/fashion-mnist data/fashion-mnist.h5
# Colour images for the 3-channel models: smooth random patterns in two class folders.
for side in 32 96; do
    [ -f "$work/images$side.h5" ] && continue
    "$py" - "$work/images$side" "$side" <<'PY'
import os, sys
import numpy as np
from PIL import Image
root, side = sys.argv[1], int(sys.argv[2])
rng = np.random.default_rng(0)
for c in ["a", "b"]:
    os.makedirs(os.path.join(root, c), exist_ok=True)
    for i in range(64):
        coarse = rng.random((4, 4, 3)) * 255
        img = Image.fromarray(coarse.astype(np.uint8)).resize((side, side), Image.BICUBIC)
        noise = rng.normal(0, 20, (side, side, 3))
        img = Image.fromarray(np.clip(np.asarray(img) + noise, 0, 255).astype(np.uint8))
        img.save(os.path.join(root, c, f"{i}.png"))
PY
    $ssl data import folder "$work/images$side" "$work/images$side.h5" --force > /dev/null
done
fail=0
for m in $models; do
    case $m in
        small_fmnist*) store=data/fashion-mnist.h5 split=test ;;
        *imagenet) store=$work/images96.h5 split=train ;;
        *) store=$work/images32.h5 split=train ;;
    esac
    run=$work/$m
    rm -rf "$run"
    $ssl pretrain recipes/simclr_resnet.ron --set "name=$m" --set "run_dir=$work" --set "model=$m" --set "data.file=$store" \
        --set data.subset=128 --set batch_size=32 --set epochs=1 --set lr.warmup_epochs=0 --set knn.every_epochs=0 > "$run.log" 2>&1 \
        || { echo "export $m: pretraining failed, see $run.log"; fail=1; continue; }
    $ssl export "$run" --out "$run/backbone_torch.safetensors" > /dev/null || { echo "export $m: ssl export failed"; fail=1; continue; }
    $ssl embed "$run" --split $split --limit 100 --inputs --out "$run/embeddings.h5" > /dev/null || { echo "export $m: ssl embed failed"; fail=1; continue; }
    "$py" scripts/check_torch_export.py "$m" "$run/backbone_torch.safetensors" "$run/embeddings.h5" || fail=1
done
exit $fail
