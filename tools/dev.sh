#!/usr/bin/env bash
# One command for a newcomer: set up the machine, build descent, then train or test.
#   tools/dev.sh train [descent train options]   trains Fashion-MNIST (GPU if present, else CPU)
#   tools/dev.sh test                            runs the whole test suite (ctest)
# BUILD_DIR (default: build) picks the build folder.
set -euo pipefail
cd "$(dirname "$0")/.."
what=${1:-}
shift || true
build=${BUILD_DIR:-build}

bash tools/setup.sh
# The "default" preset of CMakePresets.json (Ninja, Release, CUDA when nvcc is found), in $build.
cmake --preset default -B "$build" >/dev/null
cmake --build "$build" -j "$(nproc)"

case "$what" in
  train) exec "$build/apps/descent" train "$@" ;;
  test) cd "$build" && exec ctest --output-on-failure -j "$(nproc)" "$@" ;;
  *) echo "usage: tools/dev.sh train|test [options]" >&2; exit 2 ;;
esac
