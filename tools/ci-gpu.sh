#!/usr/bin/env bash
# The GPU CI job (.github/workflows/gpu.yml, .gitlab-ci.yml) on a runner with an NVIDIA GPU:
# builds descent for the runner's GPU architecture (the "cuda" preset), runs the gpu-labelled
# tests with DESCENT_REQUIRE_GPU=1 (a skipped CUDA test fails) and the quick CPU tests, the CUDA
# tests under compute-sanitizer (memcheck, racecheck), and the step benchmarks, compared with the
# stored baseline of the same card (tools/bench-compare.py). Every stage runs even after another
# failed; the exit status is non-zero when any failed. Artifacts in $CI_OUT (default ci-out):
#   junit-gpu.xml, junit-cpu.xml   ctest --output-junit
#   sanitizer.log                  compute-sanitizer's reports
#   bench-<card>.json              bench_descent's JSON (docs/bench-json.md)
#   bench-compare.txt              the comparison with the baseline
# Environment:
#   CUDA_ARCH=90               the architecture (default: the first GPU's compute capability)
#   BUILD_DIR=build-ci-gpu     the build folder
#   BENCH_BASELINE_DIR=bench/baselines   baselines, one per card: <card slug>.json, e.g.
#                              nvidia-h100-80gb-hbm3.json; with none for this card the run's JSON
#                              is the artifact to store as one, and the check is skipped
#   BENCH_MAX_REGRESSION=10    percent a step may slow down
#   SKIP_SANITIZER=1, SKIP_BENCH=1   leave a stage out
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
root=$PWD
out=${CI_OUT:-ci-out}
mkdir -p "$out"
out=$(cd "$out" && pwd)
build=${BUILD_DIR:-build-ci-gpu}
export PATH=$PATH:/usr/local/cuda/bin

if ! command -v nvidia-smi >/dev/null || ! nvidia-smi -L >/dev/null 2>&1; then
  echo "ci-gpu: no NVIDIA GPU visible (nvidia-smi); this job needs a GPU runner" >&2
  exit 1
fi
card=$(nvidia-smi --query-gpu=name --format=csv,noheader -i 0 | head -n1)
arch=${CUDA_ARCH:-$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader -i 0 | head -n1 | tr -d '.')}
slug=$(printf '%s' "$card" | tr '[:upper:]' '[:lower:]' | tr -cs 'a-z0-9' '-' | sed 's/^-//; s/-$//')
echo "== GPU: $card (sm_$arch), driver $(nvidia-smi --query-gpu=driver_version --format=csv,noheader -i 0)"

failed=()
stage() {  # stage NAME COMMAND...: runs it, records a failure, goes on
  local name=$1
  shift
  echo "== $name"
  if ! "$@"; then
    echo "ci-gpu: stage '$name' FAILED" >&2
    failed+=("$name")
  fi
}

stage configure cmake --preset cuda -B "$build" -DCMAKE_CUDA_ARCHITECTURES="$arch" \
  -DDESCENT_BUILD_BENCHMARKS=ON
stage build cmake --build "$build" -j "$(nproc)"
[ -x "$build/tests/descent_gpu_tests" ] || { echo "ci-gpu: the build failed; nothing to test" >&2; exit 1; }

stage "tests (gpu)" env DESCENT_REQUIRE_GPU=1 ctest --test-dir "$build" -L gpu \
  --output-on-failure --output-junit "$out/junit-gpu.xml"
stage "tests (cpu, not slow)" ctest --test-dir "$build" -L cpu -LE slow -j "$(nproc)" \
  --output-on-failure --output-junit "$out/junit-cpu.xml"

if [ -z "${SKIP_SANITIZER:-}" ]; then
  tests_dir=$root/$build/tests
  [ "${build:0:1}" = / ] && tests_dir=$build/tests
  # The GPU test executables (tests/CMakeLists.txt): the cuda0 cases and the tests that need CUDA.
  for tests in descent_gpu_tests descent_slow_gpu_tests; do
    stage "compute-sanitizer memcheck ($tests)" compute-sanitizer --tool memcheck --leak-check no \
      --error-exitcode 99 --log-file "$out/sanitizer-memcheck-$tests.log" "$tests_dir/$tests" \
      --gtest_color=no --gtest_filter='*cuda0*:FillUniformAcrossBackends.*:CrossBackend.*'
    stage "compute-sanitizer racecheck ($tests)" compute-sanitizer --tool racecheck \
      --racecheck-report all --error-exitcode 99 --log-file "$out/sanitizer-racecheck-$tests.log" \
      "$tests_dir/$tests" --gtest_color=no --gtest_filter='*LossTest*:*DenseTest.Backward*'
  done
  cat "$out"/sanitizer-*.log >"$out/sanitizer.log" 2>/dev/null
fi

if [ -z "${SKIP_BENCH:-}" ]; then
  bench_json=$out/bench-$slug.json
  stage benchmarks "$build/bench/bench_descent" --descent_device=cuda:0 \
    --benchmark_filter='^(ceiling|step)/' --benchmark_repetitions=3 \
    --benchmark_report_aggregates_only=true \
    --benchmark_out="$bench_json" --benchmark_out_format=json
  baseline=${BENCH_BASELINE_DIR:-bench/baselines}/$slug.json
  if [ -f "$baseline" ]; then
    # shellcheck disable=SC2016  # the inner script's own arguments
    stage "benchmark regression (> ${BENCH_MAX_REGRESSION:-10}% vs $baseline)" \
      bash -c 'python3 tools/bench-compare.py "$1" "$2" --max-regression "$3" 2>&1 | tee "$4"; exit "${PIPESTATUS[0]}"' \
      _ "$baseline" "$bench_json" "${BENCH_MAX_REGRESSION:-10}" "$out/bench-compare.txt"
  else
    echo "no baseline for this card ($baseline): store the artifact bench-$slug.json there" \
      "to enable the regression check" | tee "$out/bench-compare.txt"
  fi
fi

if [ ${#failed[@]} -gt 0 ]; then
  printf 'ci-gpu: FAILED stages:%s\n' "$(printf ' [%s]' "${failed[@]}")" >&2
  exit 1
fi
echo "ci-gpu: all stages passed ($card)"
