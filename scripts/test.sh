#!/usr/bin/env bash
# The test suite: set-up, then every unit and integration test in release mode (dfdx code is
# about 60x slower unoptimised), sharing the build with the demo; on AVX-512 CPUs every test
# again on the AVX2 path (same build); then type checks of the `cuda` feature and of the build
# without default features.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo test --release
# On a CPU with AVX-512 the tests above ran the GEMM's AVX-512 kernels; everything runs again on
# the AVX2 kernels that AVX2-only machines use (SSL_CPU_ISA=avx2, inherited by the `ssl`
# processes the integration tests start).
if grep -q avx512f /proc/cpuinfo; then
  SSL_CPU_ISA=avx2 cargo test --release
fi
# The CUDA code type-checks without CUDA (dfdx's ci-check), so it cannot rot where no GPU is.
cargo check --all-targets --features cuda,dfdx/ci-check
cargo check --all-targets --no-default-features
