#!/usr/bin/env bash
# The GPU checks of the `cuda` feature, as one short script for a lent GPU machine (which has
# CUDA 13 libraries through PyTorch's wheels but no Rust):
#   here:        bash scripts/gpu_check.sh build   # needs scripts/setup_cuda.sh; fills gpu/
#   on the GPU:  bash scripts/gpu_check.sh run     # results in $OUT (or gpu/results)
# `run` prints the GPU, runs the CPU-vs-CUDA parity tests (every owned layer, the optimisers, SimCLR and
# fine-tuning steps), then the SimCLR step benchmark of both reference backbones at batch 256
# and 1024 beside ../shared/bench/torch_simclr_step.py on CUDA (eager PyTorch), with ratios.
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in
build)
  bash scripts/setup_cuda.sh
  # shellcheck disable=SC1091
  source .cuda/env.sh
  cargo build --release --features cuda --example simclr_step
  test_bin=$(cargo test --release --features cuda --test cuda_parity --no-run --message-format=json 2>/dev/null |
    python3 -c 'import sys, json
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "cuda_parity": print(m["executable"])')
  mkdir -p gpu
  cp "$test_bin" gpu/cuda_parity
  cp "$CARGO_TARGET_DIR/release/examples/simclr_step" gpu/simclr_step
  strip gpu/cuda_parity gpu/simclr_step
  cp ../shared/bench/torch_simclr_step.py gpu/
  ls -la gpu
  echo "gpu_check: built; carry gpu/ and run: bash scripts/gpu_check.sh run"
  ;;
run)
  out=${OUT:-gpu/results}
  mkdir -p "$out"
  # CUDA 13 libraries (cuBLAS, NVRTC) from the Python wheels PyTorch brought.
  libs=$(python3 -c 'import glob, os, nvidia
dirs = {os.path.dirname(p) for r in nvidia.__path__ for p in glob.glob(os.path.join(r, "**", "lib*.so*"), recursive=True)}
print(":".join(sorted(dirs)))')
  export LD_LIBRARY_PATH="$libs:${LD_LIBRARY_PATH:-}"
  nvidia-smi --query-gpu=name,driver_version,compute_cap,memory.total --format=csv | tee "$out/gpu.txt"
  for b in gpu/cuda_parity gpu/simclr_step; do
    if ldd "$b" | grep "not found"; then echo "gpu_check: $b is missing the libraries above" | tee -a "$out/gpu.txt"; fi
  done
  set +e
  timeout 240 gpu/cuda_parity --test-threads 1 --nocapture 2>&1 | tee "$out/parity.txt"
  for batch in 256 1024; do
    timeout 120 gpu/simclr_step 16 "$batch" 10 all cuda 2>&1 | tee -a "$out/ssl_step.txt"
    PYTHONUNBUFFERED=1 timeout 120 python3 gpu/torch_simclr_step.py 16 "$batch" 10 cuda 2>&1 | tee -a "$out/torch_step.txt"
  done
  set -e
  for batch in 256 1024; do
    for m in resnet18_cifar small_fmnist; do
      s=$(grep "^$m .*batch $batch " "$out/ssl_step.txt" | sed -E 's/.* ([0-9.]+) views\/s.*/\1/' | head -1)
      p=$(grep "^$m .*batch $batch " "$out/torch_step.txt" | sed -E 's/.* ([0-9.]+) views\/s.*/\1/' | head -1)
      if [ -n "$s" ] && [ -n "$p" ]; then
        echo "cuda step $m batch $batch: ssl $s views/s, pytorch $p views/s, ratio $(python3 -c "print(f'{$s/$p:.2f}')")" | tee -a "$out/summary.txt"
      else
        echo "cuda step $m batch $batch: ssl '${s:-failed}', pytorch '${p:-failed}'" | tee -a "$out/summary.txt"
      fi
    done
  done
  ;;
*)
  echo "usage: bash scripts/gpu_check.sh build|run" >&2
  exit 2
  ;;
esac
