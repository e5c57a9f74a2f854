#!/usr/bin/env bash
# The test suite: set-up, then every unit and integration test in release mode (dfdx code is
# about 60x slower unoptimised), sharing the build with the demo.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo test --release
