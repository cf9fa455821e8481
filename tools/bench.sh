#!/usr/bin/env bash
# The CPU benchmark: builds descent, runs bench_descent and the PyTorch peer on this machine's CPU
# with every core, and writes this machine's section of docs/benchmarks.md (bench/report.py).
#
#   tools/bench.sh [bench_descent options...] [-- torch_peer.py options...]
#   e.g. tools/bench.sh --benchmark_filter='fmnist|op/' -- --only fmnist,sgd_momentum
#
#   BENCH_THREADS=N      threads for both (default: nproc)
#   BENCH_BUILD=build    build folder; the JSON goes to BUILD/bench-cpu.json, BUILD/peers-cpu.json
#   BENCH_REPORT=path    the markdown to update (default docs/benchmarks.md)
#   PYTHON=/usr/bin/python3   the interpreter with torch (Debian's python3-torch)
#   SKIP_BUILD=1 / SKIP_PEERS=1   reuse the binary / the last peers JSON
#
# Run it on an otherwise idle machine: the numbers are only as good as the machine's quiet.
# For the GPU section see `bench/report.py --help`.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
threads=${BENCH_THREADS:-$(nproc)}
build=${BENCH_BUILD:-build}
python=${PYTHON:-/usr/bin/python3}
report=${BENCH_REPORT:-docs/benchmarks.md}

bench_args=()
peer_args=()
while [ $# -gt 0 ] && [ "$1" != -- ]; do
  bench_args+=("$1")
  shift
done
[ $# -gt 0 ] && shift
peer_args=("$@")

if [ -z "${SKIP_BUILD:-}" ]; then
  bash tools/setup.sh --bench
  if [ -f "$build/CMakeCache.txt" ]; then
    cmake -S . -B "$build"
  else
    cmake -S . -B "$build" -G Ninja
  fi
  cmake --build "$build"
fi

model=$(sed -n 's/^model name[[:space:]]*: *//p' /proc/cpuinfo | head -1)
machine="CPU: ${model:-$(uname -m)}, $threads threads"
echo "== $machine; load average: $(cut -d' ' -f1-3 /proc/loadavg)"

"$build/bench/bench_descent" --descent_device=cpu --descent_threads="$threads" \
  --benchmark_out="$build/bench-cpu.json" --benchmark_out_format=json "${bench_args[@]}"

if [ -z "${SKIP_PEERS:-}" ]; then
  "$python" bench/peers/torch_peer.py --device cpu --threads "$threads" \
    --out "$build/peers-cpu.json" "${peer_args[@]}"
fi

peers=()
[ -s "$build/peers-cpu.json" ] && peers=(--peers "$build/peers-cpu.json")
python3 bench/report.py --machine "$machine" --descent "$build/bench-cpu.json" "${peers[@]}" \
  --out "$report"
