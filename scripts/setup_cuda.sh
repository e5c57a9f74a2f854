#!/usr/bin/env bash
# A CUDA toolchain for `cargo build --release --features cuda` on a machine with no GPU and no
# system CUDA (as this project's build machines): NVIDIA's CUDA 13.0 wheels from PyPI (nvcc,
# headers, NVRTC, cuBLAS) in .cuda/py, a stand-in `nvidia-smi` that reports the target GPU's
# compute capability (dfdx's build script asks it), and a stub libcuda.so for linking (the
# real driver library is loaded when the binary runs on a GPU machine). CUDA 13.0 matches the
# lent H200's driver 580, so the PTX that nvcc writes loads there.
#
# Usage:  bash scripts/setup_cuda.sh [COMPUTE_CAP]      (default 90: H100/H200)
#         source .cuda/env.sh && cargo build --release --features cuda
# Safe to run again. Type-checking alone needs none of this:
#         cargo check --all-targets --features cuda,dfdx/ci-check
set -euo pipefail
cd "$(dirname "$0")/.."
cap=${1:-90}
root=$PWD/.cuda
mkdir -p "$root/bin" "$root/stubs"

# 1. The wheels (about 1 GB unpacked).
if [ ! -x "$root/py/nvidia/cu13/bin/nvcc" ]; then
  echo "setup_cuda: installing CUDA 13.0 wheels into $root/py"
  python3 -m pip install --quiet --no-deps --target "$root/py" \
    "nvidia-cuda-nvcc==13.0.*" "nvidia-nvvm==13.0.*" "nvidia-cuda-crt==13.0.*" "nvidia-cuda-runtime==13.0.*" \
    "nvidia-cuda-nvrtc==13.0.*" "nvidia-cublas==13.0.*" "nvidia-cuda-cccl==13.0.*"
fi
cuda=$root/py/nvidia/cu13
# nvcc looks for cicc and libdevice under its own tree; the nvvm wheel puts them beside.
[ -e "$cuda/bin/nvvm" ] || [ ! -d "$cuda/nvvm" ] || ln -s ../nvvm "$cuda/bin/nvvm"
# The linker wants unversioned names.
for lib in cudart nvrtc cublas cublasLt; do
  so=$(ls "$cuda/lib/lib$lib.so."* 2>/dev/null | grep -v alt | head -1 || true)
  [ -n "$so" ] || { echo "setup_cuda: lib$lib missing from the wheels" >&2; exit 1; }
  ln -sf "$(basename "$so")" "$cuda/lib/lib$lib.so"
done

# 2. The stand-in nvidia-smi (only the query dfdx's build script makes).
cat > "$root/bin/nvidia-smi" <<EOF
#!/bin/sh
# Stand-in for builds without a GPU: the compute capability to compile for.
echo compute_cap
echo $((cap / 10)).$((cap % 10))
EOF
chmod +x "$root/bin/nvidia-smi"

# 3. The stub libcuda: every driver function cudarc declares, doing nothing (never run).
cargo fetch --quiet
sys=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/cudarc-0.9.*/src/driver/sys.rs | tail -1)
# Every call fails with CUDA_ERROR_UNKNOWN (999), whose name and text the stub gives, so a
# binary run here against the stub reports "no usable CUDA device" instead of crashing.
grep -oE "pub fn cu[A-Za-z0-9_]+" "$sys" | sort -u | grep -vE "^pub fn cuGetError(String|Name)$" |
  sed -E 's/pub fn (.*)/int \1(void) { return 999; }/' > "$root/stubs/libcuda.c"
cat >> "$root/stubs/libcuda.c" <<'STUB'
int cuGetErrorString(int e, const char **s) { (void)e; *s = "no CUDA driver (the build-time stub libcuda)"; return 0; }
int cuGetErrorName(int e, const char **s) { (void)e; *s = "CUDA_ERROR_STUB"; return 0; }
STUB
gcc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$root/stubs/libcuda.so.1" "$root/stubs/libcuda.c"
ln -sf libcuda.so.1 "$root/stubs/libcuda.so"

# 4. The environment for cargo.
cat > "$root/env.sh" <<EOF
# source this before cargo build --features cuda
export CUDA_ROOT=$cuda
export CUDA_COMPUTE_CAP=$cap
export PATH=$root/bin:$cuda/bin:\$PATH
export LIBRARY_PATH=$root/stubs:$cuda/lib\${LIBRARY_PATH:+:\$LIBRARY_PATH}
# The same baseline as .cargo/config.toml, which a RUSTFLAGS variable replaces.
export RUSTFLAGS="-C target-cpu=x86-64-v3 -L native=$root/stubs -L native=$cuda/lib\${RUSTFLAGS:+ \$RUSTFLAGS}"
# A target folder of its own: other flags and features would rebuild everything in target/.
export CARGO_TARGET_DIR=$PWD/target/cuda
EOF
"$cuda/bin/nvcc" --version | tail -2
echo "setup_cuda: done; now: source .cuda/env.sh && cargo build --release --features cuda"
