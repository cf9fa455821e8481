#!/usr/bin/env bash
# Installs what a fresh Debian 12 machine lacks to build, test and train with descent; does
# nothing when everything is already there. Needs root (or sudo) only when something is missing.
#   tools/setup.sh          what building, testing and training need
#   tools/setup.sh --bench  also Debian's PyTorch (the CPU peer) with OpenBLAS as its BLAS
#   tools/setup.sh --fuzz   also clang with libFuzzer (tools/fuzz.sh)
set -euo pipefail

# Everything is named, recommended or not (apt runs with --no-install-recommends): Debian's
# dnnl-config.cmake calls find_package(OpenCL), which libdnnl-dev only recommends
# (ocl-icd-opencl-dev). tools/check-fresh-debian.sh proves this list on a fresh Debian 12 root.
# libopenmpi-dev and openmpi-bin (mpirun): data-parallel training over MPI and its tests.
# nlohmann-json3-dev: the JSON header of safetensors files (header-only, used inside src/).
packages=(g++ cmake ninja-build libgtest-dev libgmock-dev googletest libbenchmark-dev zlib1g-dev
          libdnnl-dev ocl-icd-opencl-dev libcli11-dev nlohmann-json3-dev dataset-fashion-mnist
          python3 libopenmpi-dev openmpi-bin)
case "${1:-}" in
  --bench)
    # Without an optimised BLAS, Debian's PyTorch multiplies matrices with the reference BLAS.
    packages+=(python3-torch libopenblas0-pthread) ;;
  --fuzz)
    # tools/fuzz.sh: clang's libFuzzer and sanitizer runtimes, OpenMP for clang.
    packages+=(clang libclang-rt-14-dev libomp-14-dev) ;;
  "") ;;
  *) echo "usage: tools/setup.sh [--bench|--fuzz]" >&2; exit 2 ;;
esac
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "setup: installing ${missing[*]}"
as_root=()
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "setup: need root (or sudo) to install: ${missing[*]}" >&2; exit 1; }
  as_root=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive
"${as_root[@]}" apt-get update -qq
"${as_root[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
