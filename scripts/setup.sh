#!/usr/bin/env bash
# Installs what ssl needs when it is missing; safe to run again (it then does nothing).
# Debian packages: libhdf5-dev (the HDF5 store), pkg-config (to find it), dataset-fashion-mnist
# (the demo's data), libopenmpi-dev + openmpi-bin (data-parallel training under mpirun) and
# libclang-dev (the MPI bindings are generated at build time). Rust comes from rustup (stable,
# 1.89 or newer: AVX-512 intrinsics).
set -euo pipefail

need=()
for pkg in libhdf5-dev pkg-config dataset-fashion-mnist libopenmpi-dev openmpi-bin libclang-dev; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
done
if ((${#need[@]})); then
  echo "setup: installing ${need[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
if ! command -v cargo >/dev/null; then
  echo "setup: cargo not found; install Rust stable with rustup (https://rustup.rs) and run again" >&2
  exit 1
fi
