#!/usr/bin/env bash
# The one prepared GPU check (docs: ../shared/GPU-CHECK.md): on the GPU machine, builds descent
# for the card, runs the tests with DESCENT_REQUIRE_GPU=1 (and the MPI tests on one rank over
# NCCL, when MPI and NCCL are there), the op tests under compute-sanitizer, the benchmarks and the
# PyTorch peers, writes logs under $OUT and prints a summary table last.
#
# Before: tools/prepare-gpu-deps.sh on the development machine, then carry .deps (and optionally
# build-gpu, to skip most of the build on a warm machine).
#
#   OUT=./gpu-out                   where logs go (default ./gpu-out); at most 7 files are written
#   GPU_CHECK_BUDGET=420            seconds for the whole script; each stage gets what is left
#   GPU_ARCH=90                     CMAKE_CUDA_ARCHITECTURES
#   GPU_FILTER='*:-...'             gtest filter for memcheck (over the GPU test executables)
#   RACE_FILTER='*LossTest*:...'    gtest filter for
#                                   racecheck and synccheck (the same executables)
#   MEMCHECK_ARGS='--leak-check full'   extra compute-sanitizer memcheck options
#   EXTRA_CMAKE_ARGS='...'          more cmake configure options
#   SKIP_SANITIZER=1 / SKIP_BENCH=1 / SKIP_MPI=1 / SKIP_EXAMPLES=1 / SKIP_CPU_TESTS=1   skip those
#                                   stages (the CPU test executables run last, after the benchmarks)
#   DESCENT_COMMIT=<hash>           the commit to report where the copy has no .git
#   MPI_CAP=90                      seconds for the MPI tests (one rank, NCCL on cuda:0)
#   BENCH_ARGS='--descent_device=cuda:0'   arguments of every bench binary (add --descent_quick)
#   PEERS_ARGS='--quick'            arguments of bench/peers/torch_peer.py (set empty for full runs)
#   PEERS_CMD                       replaces the whole peer command
#   BENCHES='bench_descent'         run only these benchmark binaries (default: every one)
set -uo pipefail

start=$(date +%s)
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root" || exit 1
OUT=${OUT:-./gpu-out}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
budget_total=${GPU_CHECK_BUDGET:-420}
arch=${GPU_ARCH:-90}
build=${GPU_BUILD_DIR:-$root/build-gpu}
# TrainerTest.UncapturableStreamFallsBackToEagerSteps provokes a refused stream capture on
# purpose: memcheck would count the CUDA API error it handles.
gpu_filter=${GPU_FILTER:-'*:-*UncapturableStreamFallsBackToEagerSteps*'}
# (the fused MLP's whole-model comparison takes minutes under racecheck, the jets' repeat-bits
# test 10 s: their kernels are in the other tests of the set already; run 8 finished 34 tests in
# 70 s and stopped inside JetTest.PdeResidualStepMatchesTheThreeCallsItStandsFor)
race_filter=${RACE_FILTER:-'*LossTest*:*DenseTest.Backward*:*Clip*:*Fused*:*JetTest*:-*MlpWithFusedLayersMatchesTheLayerByLayerModel*:*TheSameBitsWhenRunAgain*'}
deps=$root/.deps
deplib=$deps/lib/x86_64-linux-gnu
jobs=$(nproc 2>/dev/null || echo 8)
export PATH="$PATH:/usr/local/cuda/bin"
export LD_LIBRARY_PATH="$deplib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export DESCENT_REQUIRE_GPU=1
memcheck_args=${MEMCHECK_ARGS:---leak-check no}

summary=$OUT/summary.txt
: >"$summary"
declare -A stage_status stage_secs
stages=()

# Seconds left for a stage: its own cap, but never past the overall budget (minus a reserve
# for the stages after it and the summary).
left() {
  local cap=$1 reserve=${2:-20} now remain
  now=$(date +%s)
  remain=$((budget_total - (now - start) - reserve))
  [ "$remain" -lt "$cap" ] && cap=$remain
  [ "$cap" -lt 5 ] && cap=5
  echo "$cap"
}

# run_stage NAME CAP LOG cmd...: runs under timeout, appends to LOG, records status and time.
run_stage() {
  local name=$1 cap=$2 log=$3 t0 rc lim
  shift 3
  lim=$(left "$cap")
  t0=$(date +%s)
  {
    echo "=== $name: $* (timeout ${lim}s)"
  } >>"$log"
  timeout --kill-after=10 "$lim" "$@" >>"$log" 2>&1
  rc=$?
  stages+=("$name")
  stage_secs[$name]=$(($(date +%s) - t0))
  if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
    stage_status[$name]="TIMEOUT(${lim}s)"
  elif [ $rc -eq 0 ]; then
    stage_status[$name]=ok
  else
    stage_status[$name]="rc=$rc"
  fi
  echo "=== $name: ${stage_status[$name]} in ${stage_secs[$name]}s" >>"$log"
  return $rc
}

# ---------------------------------------------------------------- the machine
{
  echo "=== gpu-check $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "commit: ${DESCENT_COMMIT:-$(git rev-parse HEAD 2>/dev/null || echo unknown)}" \
    "(dirty files: $(git status --porcelain 2>/dev/null | wc -l))"
  nvidia-smi || echo "nvidia-smi failed"
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv || true
  nvcc --version | tail -2
  cmake --version | head -1
  echo "cores: $jobs"
} >"$OUT/build.log" 2>&1
card=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)
driver=$(nvidia-smi --query-gpu=driver_version --format=csv,noheader 2>/dev/null | head -1)

# ---------------------------------------------------------------- dependencies from .deps
cmake_deps=()
if [ -d "$deps" ]; then
  if [ -f "$deplib/libdnnl.so.2.xz" ] && [ ! -f "$deplib/libdnnl.so.2" ]; then
    if command -v xz >/dev/null; then
      xz -dc "$deplib/libdnnl.so.2.xz" >"$deplib/libdnnl.so.2"
    else
      python3 -c 'import lzma,sys; sys.stdout.buffer.write(lzma.open(sys.argv[1]).read())' \
        "$deplib/libdnnl.so.2.xz" >"$deplib/libdnnl.so.2"
    fi
  fi
  cmake_deps=(-DCMAKE_PREFIX_PATH="$deps" -DDESCENT_GTEST_SOURCE_DIR="$deps/googletest")
  [ -f "$deplib/cmake/dnnl/dnnl-config.cmake" ] && cmake_deps+=(-Ddnnl_DIR="$deplib/cmake/dnnl")
  [ -d "$deplib/cmake/benchmark" ] && cmake_deps+=(-Dbenchmark_DIR="$deplib/cmake/benchmark")
  [ -d "$deplib/cmake/GTest" ] && cmake_deps+=(-DGTest_DIR="$deplib/cmake/GTest")
  [ -d "$deps/share/cmake/CLI11" ] && cmake_deps+=(-DCLI11_DIR="$deps/share/cmake/CLI11")
else
  echo "no .deps folder: relying on the machine's own GoogleTest/oneDNN/benchmark" >>"$OUT/build.log"
fi

# ---------------------------------------------------------------- MPI and NCCL (data parallel)
# MPI: the machine's own (mpicc and mpirun on PATH), else the relocatable OpenMPI that
# tools/prepare-gpu-deps.sh may have packed as .deps/openmpi.tar.xz (OPAL_PREFIX moves it, and
# PMIX_MCA_mca_base_component_path its PMIx plugins).
# NCCL: the toolkit's (/usr/local/cuda), else the one PyTorch's image has as a wheel
# (nvidia-nccl-cu13: include/nccl.h and lib/libnccl.so.2 under site-packages/nvidia/nccl);
# libnccl is too large to carry. With both, the build turns DESCENT_NCCL on outright (a stale
# cache cannot leave it off), and should that configure fail, configures again with AUTO so the
# rest of the check still runs; otherwise it stays AUTO, and the MPI stage is skipped.
mpi_args=()
if ! command -v mpicc >/dev/null && [ -f "$deps/openmpi.tar.xz" ] && [ ! -d "$deps/openmpi" ]; then
  python3 -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' \
    "$deps/openmpi.tar.xz" "$deps" 2>>"$OUT/build.log"
fi
if ! command -v mpicc >/dev/null && [ -x "$deps/openmpi/bin/mpirun" ]; then
  export OPAL_PREFIX=$deps/openmpi
  export PMIX_MCA_mca_base_component_path=$deps/openmpi/lib/x86_64-linux-gnu/pmix2/lib/pmix
  export PATH="$deps/openmpi/bin:$PATH"
  export LD_LIBRARY_PATH="$deps/openmpi/lib:$LD_LIBRARY_PATH"
  mpi_args=(-DMPI_C_COMPILER="$deps/openmpi/bin/mpicc")
fi
nccl_args=()
nccl_found=0
nccl_forced=0
if [ -f /usr/local/cuda/include/nccl.h ] &&
  compgen -G '/usr/local/cuda/lib*/libnccl.so*' >/dev/null; then
  nccl_found=1
else
  nccl_dir=$(python3 -c 'import nvidia.nccl as m; print(list(m.__path__)[0])' 2>/dev/null)
  if [ -n "$nccl_dir" ] && [ -f "$nccl_dir/include/nccl.h" ] &&
    [ -f "$nccl_dir/lib/libnccl.so.2" ]; then
    nccl_found=1
    nccl_args=(-DDESCENT_NCCL_INCLUDE_DIR="$nccl_dir/include"
      -DDESCENT_NCCL_LIBRARY="$nccl_dir/lib/libnccl.so.2")
    export LD_LIBRARY_PATH="$nccl_dir/lib:$LD_LIBRARY_PATH"
  fi
fi
if [ $nccl_found = 1 ] && command -v mpicc >/dev/null && command -v mpirun >/dev/null; then
  nccl_forced=1
fi
{
  echo "MPI: $(command -v mpirun || echo 'no mpirun')${OPAL_PREFIX:+ (OPAL_PREFIX=$OPAL_PREFIX)}"
  echo "NCCL: $([ $nccl_found = 1 ] && echo "found ${nccl_dir:-in /usr/local/cuda}" || echo 'not found')"
} >>"$OUT/build.log"

# Fashion-MNIST travels in .deps/fashion-mnist (tools/prepare-gpu-deps.sh) when the machine
# has no copy of its own; the examples' tests (examples/CMakeLists.txt) read it too.
data_dir=/usr/share/datasets/fashion-mnist
[ -d "$data_dir" ] || data_dir=$deps/fashion-mnist

# ---------------------------------------------------------------- build
configure() {  # configure STAGE NCCL: the cmake configure step, with DESCENT_NCCL=NCCL
  # shellcheck disable=SC2086  # EXTRA_CMAKE_ARGS is a list of options
  run_stage "$1" 90 "$OUT/build.log" \
    cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DDESCENT_CUDA=ON \
    -DCMAKE_CUDA_ARCHITECTURES="$arch" "${cmake_deps[@]}" "${mpi_args[@]}" "${nccl_args[@]}" \
    -DDESCENT_NCCL="$2" -DDESCENT_FMNIST_DIR="$data_dir" ${EXTRA_CMAKE_ARGS:-}
}
configured=0
if [ $nccl_forced = 1 ]; then
  configure configure ON && configured=1
  [ $configured = 0 ] && configure configure_no_nccl AUTO && configured=1
else
  configure configure AUTO && configured=1
fi
built=0
if [ $configured = 1 ]; then
  # -k 0: a broken app or benchmark must not keep the tests from being built and run (a test
  # binary relinked in this run counts, a stale one from an earlier run does not).
  touch "$build/.gpu-check-build-start"
  run_stage build 240 "$OUT/build.log" cmake --build "$build" -j "$jobs" -- -k 0 && built=1
fi
# The test executables (tests/CMakeLists.txt): the GPU ones (the cuda0 cases, and the tests that
# need CUDA), then the CPU ones.
gpu_tests="$build/tests/descent_gpu_tests $build/tests/descent_slow_gpu_tests"
cpu_tests="$build/tests/descent_tests $build/tests/descent_slow_tests"
cpu_tests="$cpu_tests $build/tests/descent_hostile_tests"
tests_bin=$build/tests/descent_gpu_tests
[ -x "$tests_bin" ] && [ "$tests_bin" -nt "$build/.gpu-check-build-start" ] && built=1
[ -x "$tests_bin" ] || built=0
# A command for run_stage (which runs one) that runs `PREFIX... EXE ARGS...` for every EXE of a
# list, in turn, and fails when one did: "${each[@]}" "EXE1 EXE2" PREFIX... -- ARGS...
# shellcheck disable=SC2016  # the inner script's own variables
each=(bash -c 'exes=$1; shift; pre=(); while [ "$1" != -- ]; do pre+=("$1"); shift; done; shift
rc=0; for e in $exes; do "${pre[@]}" "$e" "$@" || rc=$?; done; exit $rc' each)

# ---------------------------------------------------------------- tests
if [ $built = 1 ]; then
  run_stage tests 150 "$OUT/tests.log" \
    "${each[@]}" "$gpu_tests" env DESCENT_TEST_DATA="$root/tests/data" -- --gtest_color=no
  # The C API's own test (plain C, its training part repeated on cuda:0).
  if [ -x "$build/tests/descent_c_api_test" ]; then
    run_stage c_api_test 60 "$OUT/tests.log" "$build/tests/descent_c_api_test"
  fi
else
  echo "build failed: no tests run (see build.log)" >"$OUT/tests.log"
fi

# ---------------------------------------------------------------- MPI tests over NCCL
# One rank on cuda:0: the NCCL communicator's bootstrap, its captured gradient sums and the
# data-parallel Trainer step, on the one GPU there is. Only when descent was built with NCCL
# (src/comm/nccl.cpp compiled) and mpirun exists; the machine runs everything as root.
mpi_tests=$build/tests/descent_mpi_tests
if [ $built = 1 ]; then
  if [ -n "${SKIP_MPI:-}" ]; then
    echo "--- mpi_nccl skipped: SKIP_MPI is set" >>"$OUT/tests.log"
  elif [ -z "$(find "$build" -name 'nccl.cpp.o' -print -quit 2>/dev/null)" ]; then
    echo "--- mpi_nccl skipped: descent was built without NCCL (see build.log)" >>"$OUT/tests.log"
  elif ! command -v mpirun >/dev/null; then
    echo "--- mpi_nccl skipped: no mpirun" >>"$OUT/tests.log"
  elif [ ! -x "$mpi_tests" ]; then
    echo "--- mpi_nccl skipped: no $mpi_tests" >>"$OUT/tests.log"
  else
    run_stage mpi_nccl "${MPI_CAP:-90}" "$OUT/tests.log" \
      env OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 \
      DESCENT_MPI_TEST_DEVICE=cuda DESCENT_TEST_DATA="$root/tests/data" \
      mpirun -np 1 --bind-to none "$mpi_tests" --gtest_color=no
  fi
fi

# ---------------------------------------------------------------- the main job on the GPU
if [ $built = 1 ] && [ -x "$build/apps/descent" ] && [ -d "$data_dir" ] && [ -z "${SKIP_TRAIN:-}" ]; then
  run_stage train "${TRAIN_CAP:-120}" "$OUT/tests.log" "$build/apps/descent" train \
    --data "$data_dir" --device cuda:0 --no-progress
fi

# ---------------------------------------------------------------- the examples on the GPU
# The C++, C and Fortran examples pick cuda:0 when there is one: their ctest cases (not the
# multi-rank ones), with the checks examples/CMakeLists.txt puts on their output.
if [ $built = 1 ] && [ -z "${SKIP_EXAMPLES:-}" ]; then
  run_stage examples "${EXAMPLES_CAP:-120}" "$OUT/tests.log" \
    ctest --test-dir "$build" -R '^example_' -LE mpi -j 4 --timeout 100 --output-on-failure
fi

# ---------------------------------------------------------------- sanitizers
if [ $built = 1 ] && [ -z "${SKIP_SANITIZER:-}" ]; then
  if command -v compute-sanitizer >/dev/null; then
    # shellcheck disable=SC2086  # memcheck_args is a list of options
    run_stage memcheck 120 "$OUT/sanitizer.log" "${each[@]}" "$gpu_tests" \
      compute-sanitizer --tool memcheck $memcheck_args --error-exitcode 99 \
      -- --gtest_color=no --gtest_filter="$gpu_filter"
    run_stage racecheck "${RACE_CAP:-150}" "$OUT/sanitizer.log" "${each[@]}" "$gpu_tests" \
      compute-sanitizer --tool racecheck --racecheck-report all --error-exitcode 99 \
      -- --gtest_color=no --gtest_filter="$race_filter"
    run_stage synccheck 45 "$OUT/sanitizer.log" "${each[@]}" "$gpu_tests" \
      compute-sanitizer --tool synccheck --error-exitcode 99 \
      -- --gtest_color=no --gtest_filter="$race_filter"
  else
    echo "compute-sanitizer not found: sanitizer stages skipped" >>"$OUT/sanitizer.log"
  fi
fi

# ---------------------------------------------------------------- benchmarks and peers
if [ $built = 1 ] && [ -z "${SKIP_BENCH:-}" ]; then
  mapfile -t benches < <(find "$build/bench" -maxdepth 2 -type f -executable -name '*bench*' \
    2>/dev/null | sort)
  if [ -n "${BENCHES:-}" ]; then  # BENCHES='bench_descent ...': only these binaries
    kept=()
    for b in "${benches[@]}"; do
      case " $BENCHES " in *" $(basename "$b") "*) kept+=("$b") ;; esac
    done
    benches=("${kept[@]}")
  fi
  if [ ${#benches[@]} -eq 0 ]; then
    echo "no benchmark binaries under $build/bench: skipped" >>"$OUT/bench.log"
  fi
  parts=()
  for b in "${benches[@]}"; do
    name=$(basename "$b")
    # shellcheck disable=SC2086  # BENCH_ARGS is a list of options
    run_stage "$name" "${BENCH_CAP:-90}" "$OUT/bench.log" "$b" ${BENCH_ARGS:---descent_device=cuda:0} \
      --benchmark_format=console \
      --benchmark_out="$OUT/.$name.json" --benchmark_out_format=json
    [ -s "$OUT/.$name.json" ] && parts+=("$OUT/.$name.json")
  done
  # One bench.json for all binaries (only a few files come back from the machine).
  if [ ${#parts[@]} -gt 0 ]; then
    python3 - "$OUT/bench.json" "${parts[@]}" <<'EOF' >>"$OUT/bench.log" 2>&1 || cp "${parts[0]}" "$OUT/bench.json"
import json, os, sys
out = {}
for path in sys.argv[2:]:
    with open(path) as f:
        out[os.path.basename(path)[1:-5]] = json.load(f)
with open(sys.argv[1], "w") as f:
    json.dump(out, f, indent=1)
EOF
    rm -f "${parts[@]}"
  fi
  if [ -n "${PEERS_CMD:-}" ]; then
    run_stage peers 90 "$OUT/bench.log" bash -c "$PEERS_CMD"
  elif [ -f "$root/bench/peers/torch_peer.py" ]; then
    # shellcheck disable=SC2086  # PEERS_ARGS is a list of options
    run_stage peers "${PEERS_CAP:-90}" "$OUT/bench.log" python3 "$root/bench/peers/torch_peer.py" \
      --device cuda --out "$OUT/peers.json" ${PEERS_ARGS---quick}
  else
    echo "no bench/peers/torch_peer.py: peers skipped" >>"$OUT/bench.log"
  fi
fi

# ---------------------------------------------------------------- the CPU tests, last
if [ $built = 1 ] && [ -z "${SKIP_CPU_TESTS:-}" ]; then
  run_stage cpu_tests "${CPU_TESTS_CAP:-150}" "$OUT/tests.log" \
    "${each[@]}" "$cpu_tests" env DESCENT_TEST_DATA="$root/tests/data" -- --gtest_color=no
fi

# ---------------------------------------------------------------- summary (printed last)
section() {  # section STAGE FILE: what run_stage wrote to FILE for STAGE
  sed -n "/^=== $1: /,/^=== $1: .* in [0-9]*s\$/p" "$2" 2>/dev/null
}
count() {  # count PATTERN STAGE FILE: the sum of the numbers in the stage's gtest summary lines
  # (one per test executable), or -
  section "$2" "$3" | grep -E "$1" |
    awk '{ for (i = 1; i <= NF; i++) if ($i ~ /^[0-9]+$/) { n += $i; found = 1; break } }
         END { print found ? n : "-" }'
}
tests_passed=$(count '^\[  PASSED  \] [0-9]+ test' tests "$OUT/tests.log")
tests_failed=$(count '^\[  FAILED  \] [0-9]+ test' tests "$OUT/tests.log")
tests_skipped=$(count '^\[  SKIPPED \] [0-9]+ test' tests "$OUT/tests.log")
[ "$tests_failed" = - ] && [ "$tests_passed" != - ] && tests_failed=0
cpu_passed=$(count '^\[  PASSED  \] [0-9]+ test' cpu_tests "$OUT/tests.log")
cpu_failed=$(count '^\[  FAILED  \] [0-9]+ test' cpu_tests "$OUT/tests.log")
[ "$cpu_failed" = - ] && [ "$cpu_passed" != - ] && cpu_failed=0
mpi_passed=$(count '^\[  PASSED  \] [0-9]+ test' mpi_nccl "$OUT/tests.log")
mpi_failed=$(count '^\[  FAILED  \] [0-9]+ test' mpi_nccl "$OUT/tests.log")
[ "$mpi_failed" = - ] && [ "$mpi_passed" != - ] && mpi_failed=0
mpi_skip=$(grep -E '^--- mpi_nccl skipped' "$OUT/tests.log" 2>/dev/null | tail -1 | cut -c5-)
mem_errors=$(count 'ERROR SUMMARY: [0-9]+' memcheck "$OUT/sanitizer.log")
[ "$mem_errors" = - ] && mem_errors=
race_line=$(grep -E 'RACECHECK SUMMARY' "$OUT/sanitizer.log" 2>/dev/null | sort -u | paste -sd ';')
sync_errors=$(count 'ERROR SUMMARY: [0-9]+' synccheck "$OUT/sanitizer.log")
[ "$sync_errors" = - ] && sync_errors=

{
  echo
  echo "failed tests:"
  grep -E '^\[  FAILED  \] [^ ]+\.' "$OUT/tests.log" 2>/dev/null | grep -v ' ms)$' | sort -u |
    head -30 | sed 's/^/  /'
  echo
  echo "================ gpu-check summary"
  printf '%-22s %s\n' card "${card:-unknown}" driver "${driver:-unknown}" \
    commit "${DESCENT_COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}" arch "sm_$arch"
  for s in "${stages[@]}"; do
    printf '%-22s %-16s %5ss\n' "$s" "${stage_status[$s]}" "${stage_secs[$s]}"
  done
  printf '%-22s %s\n' "tests passed" "$tests_passed" "tests failed" "$tests_failed" \
    "tests skipped" "$tests_skipped" "cpu tests" "passed $cpu_passed, failed $cpu_failed" \
    "mpi tests (nccl)" \
    "${mpi_skip:-passed $mpi_passed, failed $mpi_failed}" "memcheck errors" "${mem_errors:--}" \
    "racecheck" "${race_line:--}" "synccheck errors" "${sync_errors:--}" "total time" "$(($(date +%s) - start))s" "logs" "$OUT"
} >>"$summary"
cat "$summary"

[ "$tests_failed" = 0 ] && { [ "$cpu_failed" = 0 ] || [ "$cpu_failed" = - ]; } &&
  [ "${stage_status[examples]:-ok}" = ok ] && [ "${mem_errors:-0}" = 0 ] && [ "${sync_errors:-0}" = 0 ] &&
  [ "${stage_status[build]:-}" = ok ] &&
  [ "${stage_status[mpi_nccl]:-ok}" = ok ]
