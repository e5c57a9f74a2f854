#!/usr/bin/env bash
# The test suite: set-up, then every unit and integration test in release mode (dfdx code is
# about 60x slower unoptimised), sharing the build with the demo; then a type check of the
# `cuda` feature.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo test --release
# The CUDA code type-checks without CUDA (dfdx's ci-check), so it cannot rot where no GPU is.
cargo check --all-targets --features cuda,dfdx/ci-check
