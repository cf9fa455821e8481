#!/usr/bin/env bash
# The CPU benchmark: builds descent, installs the PyTorch peer (the pinned wheel from PyPI, into
# .venv-peer, which git ignores) when missing, runs bench_descent and the peer on this machine's
# CPU with every core, alternating, BENCH_ROUNDS times, and writes this machine's section of
# docs/benchmarks.md (bench/report.py: the median round and the spread of all rounds).
#
#   tools/bench.sh [bench_descent options...] [-- torch_peer.py options...]
#   e.g. tools/bench.sh --benchmark_filter='fmnist|op/' -- --only fmnist,sgd_momentum
#
#   BENCH_THREADS=N      threads for both (default: nproc)
#   BENCH_ROUNDS=N       alternating rounds of descent and the peer (default 3)
#   BENCH_BUILD=build    build folder; the JSON goes to BUILD/bench-cpu-rN.json, BUILD/peers-cpu-rN.json
#   BENCH_REPORT=path    the markdown to update (default docs/benchmarks.md)
#   PEER_TORCH=torch==2.15.0  the pinned wheel the peer's environment gets from PyPI
#   PEER_VENV=.venv-peer      that environment (created with python3 -m venv when missing)
#   PEER_PIP_ARGS="--index-url https://download.pytorch.org/whl/cpu"  e.g. the CPU-only wheel
#   PYTHON=path          an interpreter with torch to use instead (e.g. /usr/bin/python3 with
#                        Debian's python3-torch 1.13, for the historical row)
#   SKIP_BUILD=1 / SKIP_PEERS=1   reuse the binary / the last peers JSON
#
# Run it on an otherwise idle machine: the numbers are only as good as the machine's quiet.
# For the GPU section see `bench/report.py --help`.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
threads=${BENCH_THREADS:-$(nproc)}
build=${BENCH_BUILD:-build}
rounds=${BENCH_ROUNDS:-3}
peer_venv=${PEER_VENV:-.venv-peer}
peer_torch=${PEER_TORCH:-torch==2.15.0}
python=${PYTHON:-$peer_venv/bin/python}
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

# The peer: current PyTorch from PyPI in its own environment, never the system's.
if [ -z "${SKIP_PEERS:-}" ] && [ -z "${PYTHON:-}" ]; then
  want=${peer_torch#torch==}
  have=$("$python" -c 'import torch; print(torch.__version__.split("+")[0])' 2>/dev/null || true)
  if [ "$have" != "$want" ]; then
    echo "== installing the peer: $peer_torch into $peer_venv (have: ${have:-none})"
    [ -x "$peer_venv/bin/python" ] || python3 -m venv "$peer_venv"
    # shellcheck disable=SC2086  # PEER_PIP_ARGS is a list of options
    "$peer_venv/bin/python" -m pip install --quiet ${PEER_PIP_ARGS:-} "$peer_torch" numpy
  fi
fi

model=$(sed -n 's/^model name[[:space:]]*: *//p' /proc/cpuinfo | head -1)
# The widest vector/matrix units in the label: one model name covers CPUs with and without
# AVX-512 or AMX, whose figures must not replace each other's section.
flags=" $(sed -n 's/^flags[[:space:]]*: *//p' /proc/cpuinfo | head -1) "
case "$flags" in
  *" amx_bf16 "*) isa=AMX ;;
  *" avx512f "*) isa=AVX-512 ;;
  *" avx2 "*) isa=AVX2 ;;
  *) isa=$(uname -m) ;;
esac
machine="CPU: ${model:-$(uname -m)} ($isa), $threads threads"
echo "== $machine; load average: $(cut -d' ' -f1-3 /proc/loadavg)"

# Alternating rounds: a machine that slows down part-way slows both sides of some round, and the
# spread of the rounds shows it.
descent_json=()
peer_json=()
for round in $(seq 1 "$rounds"); do
  echo "== round $round of $rounds; load average: $(cut -d' ' -f1-3 /proc/loadavg)"
  "$build/bench/bench_descent" --descent_device=cpu --descent_threads="$threads" \
    --benchmark_out="$build/bench-cpu-r$round.json" --benchmark_out_format=json "${bench_args[@]}"
  descent_json+=(--descent "$build/bench-cpu-r$round.json")
  if [ -z "${SKIP_PEERS:-}" ]; then
    "$python" bench/peers/torch_peer.py --device cpu --threads "$threads" \
      --out "$build/peers-cpu-r$round.json" "${peer_args[@]}"
  fi
  if [ -s "$build/peers-cpu-r$round.json" ]; then
    peer_json+=(--peers "$build/peers-cpu-r$round.json")
  fi
done

python3 bench/report.py --machine "$machine" "${descent_json[@]}" "${peer_json[@]}" --out "$report"
