#!/usr/bin/env bash
# The test suite: set-up, then every unit and integration test in release mode (dfdx code is
# about 60x slower unoptimised), sharing the build with the demo; on AVX-512 CPUs the unit tests
# again on the AVX2 path; then a type check of the `cuda` feature.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo test --release
# On a CPU with AVX-512 the tests above ran the GEMM's AVX-512 kernels; the unit tests (layers,
# gradient checks, losses, optimisers) run again on the AVX2 path that AVX2-only machines use.
if grep -q avx512f /proc/cpuinfo; then
  cargo test --release --no-default-features --lib
fi
# The CUDA code type-checks without CUDA (dfdx's ci-check), so it cannot rot where no GPU is.
cargo check --all-targets --features cuda,dfdx/ci-check
