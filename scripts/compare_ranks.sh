#!/usr/bin/env bash
# Data-parallel pretraining throughput on this machine, and what it predicts for a cluster.
# SimCLR pretraining steps (loader, two-view augmentation, step, online probe), global batch
# BATCH, for both reference backbones: small_fmnist on Fashion-MNIST, resnet18_cifar on random
# 32x32x3 images (made here once, data/random-cifar.h5). Each: 1 process x 2 threads against
# `mpirun -np 2` x 1 thread, images/s over STEPS steps after 3 warm-up steps. One line each:
#   ranks MODEL: 1x2 X images/s, 2x1 Y images/s, ratio R; collectives Z ms a step
# then the bytes each rank exchanges a step and the scaling model (see the README's
# "Data-parallel pretraining"): for W nodes of this machine at 10 and 100 Gb/s,
#   step(W) = (BATCH / W) t_image + bytes(W) / bandwidth,  images/s = BATCH / step(W),
#   bytes(W) = 2 (W - 1) / W x 4 P  (gradients, ring all-reduce of P parameters)
#            + 3 (W - 1) / W x 2 BATCH d x 4  (projections of d dims: all-gather, and the
#                                              all-reduce of their gradient in backward)
# with t_image measured here (1 process, 2 threads). Latency and synchronised batch norm's
# per-channel sums (a few KB a layer) are left out of the model; the measured collective time
# includes them.
# Usage: scripts/compare_ranks.sh [STEPS] [BATCH]   (defaults 20 and 256)
set -euo pipefail
cd "$(dirname "$0")/.."
steps=${1:-20}
batch=${2:-256}
cargo build --release
ssl=target/release/ssl
# Open MPI as root in a container: allowed, and without the kernel's cross-memory attach.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_btl_vader_single_copy_mechanism=none
[ -f data/fashion-mnist.h5 ] || { mkdir -p data; $ssl data import idx /usr/share/datasets/fashion-mnist data/fashion-mnist.h5; }
cifar=data/random-cifar.h5
if [ ! -f "$cifar" ]; then
  raw=$(mktemp -d)
  python3 - "$raw" <<'PY'
import random, sys
random.seed(0)
for name, n in [(f"data_batch_{i}.bin", 1024) for i in range(1, 6)] + [("test_batch.bin", 1024)]:
    with open(f"{sys.argv[1]}/{name}", "wb") as f:
        for _ in range(n):
            f.write(bytes([random.randrange(10)]) + random.randbytes(3072))
PY
  $ssl data import cifar10 "$raw" "$cifar"
  rm -rf "$raw"
fi
runs=$(mktemp -d)
trap 'rm -rf "$runs"' EXIT
for pair in "small_fmnist data/fashion-mnist.h5" "resnet18_cifar $cifar"; do
  set -- $pair
  model=$1 data=$2
  common=(pretrain recipes/simclr_fmnist.ron --set model=$model --set "data.file=$data" --set batch_size=$batch
          --set knn.every_epochs=0 --set "run_dir=$runs" --stop-after-steps $((steps + 3)))
  $ssl --threads 2 "${common[@]}" --set name=${model}_1x2 >/dev/null 2>&1 || true
  mpirun -np 2 --oversubscribe $ssl --threads 1 "${common[@]}" --set name=${model}_2x1 >/dev/null 2>&1 || true
  python3 - "$runs" "$model" "$steps" "$batch" <<'PY'
import glob, json, struct, sys
runs, model, steps, batch = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
def rate(name):
    recs = [json.loads(l) for l in open(f"{runs}/{name}/metrics.jsonl")]
    recs = [r for r in recs if r.get("kind") == "step"]
    t = recs[steps + 2]["elapsed_s"] - recs[2]["elapsed_s"]
    comm = [r.get("comm_s", 0.0) for r in recs[3:steps + 3]]
    return steps * batch / t, sum(comm) / len(comm)
def trained(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        head = json.loads(f.read(n))
    total = 0
    for k, v in head.items():
        if k == "__metadata__" or "running" in k or v["dtype"] != "F32":
            continue
        size = 1
        for d in v["shape"]:
            size *= d
        total += size
    return total
(one, _), (two, comm) = rate(f"{model}_1x2"), rate(f"{model}_2x1")
print(f"ranks {model}: 1x2 {one:.1f} images/s, 2x1 {two:.1f} images/s, ratio {two / one:.2f}; collectives {1e3 * comm:.1f} ms a step")
ck = sorted(glob.glob(f"{runs}/{model}_1x2/checkpoints/step-*"))[-1]
params = sum(trained(p) for p in glob.glob(f"{ck}/*.safetensors") if "optimizer" not in p)
d = 128  # simclr_fmnist.ron's projection width
t_image = 1.0 / one
for w in (2, 8, 32):
    grad = 2 * (w - 1) / w * 4 * params
    emb = 3 * (w - 1) / w * 2 * batch * d * 4
    cells = []
    for gbit in (10, 100):
        step = batch / w * t_image + (grad + emb) * 8 / (gbit * 1e9)
        cells.append(f"{gbit} Gb/s {batch / step:.0f} images/s")
    print(f"model {model}: {w} nodes, {params:,} parameters, {(grad + emb) / 1e6:.1f} MB a rank a step; " + ", ".join(cells))
PY
done
