#!/usr/bin/env bash
# Builds the libFuzzer targets of the IDX, CSV and checkpoint readers with clang (AddressSanitizer,
# UBSan) in build-fuzz/ and runs each for FUZZ_SECONDS; exits non-zero on any crash, leak,
# timeout, out-of-memory or sanitizer report, and prints the input that caused it.
#
#   tools/fuzz.sh                      # every target, 60 s each
#   FUZZ_SECONDS=20 tools/fuzz.sh csv  # one target, briefly
#
# Needs: clang, libclang-rt-14-dev (libFuzzer and the sanitizer runtimes), libomp-14-dev
# (OpenMP for clang), cmake, ninja, zlib and descent's GEMM library (oneDNN or a CBLAS).
# New inputs the fuzzer finds stay in build-fuzz/run/<target>/corpus; the seed corpus in
# tests/fuzz/corpus/ is never written to, and crash files go to build-fuzz/run/<target>/.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${FUZZ_BUILD:-$root/build-fuzz}
seconds=${FUZZ_SECONDS:-60}
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(idx csv checkpoint safetensors)

# Largest input per target: enough for every structure the format has, small enough that an
# input runs in milliseconds (a gzip input of n bytes may still inflate to n * 1032).
declare -A max_len=([idx]=16384 [csv]=8192 [checkpoint]=8192 [safetensors]=8192)

for t in "${targets[@]}"; do
  [ -n "${max_len[$t]:-}" ] || { echo "fuzz.sh: unknown target '$t' (idx, csv, checkpoint, safetensors)" >&2; exit 2; }
done

cmake -S "$root/tests/fuzz" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_C_COMPILER="${CC:-clang}" -DCMAKE_CXX_COMPILER="${CXX:-clang++}" >/dev/null
cmake --build "$build" -j"$(nproc)" --target "${targets[@]/#/fuzz_}"

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:allocator_may_return_null=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
failed=()
for t in "${targets[@]}"; do
  work="$build/run/$t"
  rm -rf "$work"
  mkdir -p "$work/corpus"
  echo "== fuzz_$t: ${seconds}s, max_len ${max_len[$t]}"
  # The first corpus folder receives new inputs: a scratch one, with the seeds read after it.
  if (cd "$work" && "$build/fuzz_$t" -max_total_time="$seconds" \
        -max_len="${max_len[$t]}" -rss_limit_mb=2048 -malloc_limit_mb=2048 -timeout=10 \
        -print_final_stats=1 -artifact_prefix="$work/" \
        "$work/corpus" "$root/tests/fuzz/corpus/$t") >"$work/log" 2>&1; then
    tail -n 12 "$work/log" | grep -E "^(stat::number_of_executed_units|stat::peak_rss_mb|Done)" || true
  else
    failed+=("$t")
    echo "fuzz_$t FAILED; the end of its log ($work/log):"
    tail -n 60 "$work/log"
    for a in "$work"/crash-* "$work"/leak-* "$work"/timeout-* "$work"/oom-* "$work"/slow-unit-*; do
      [ -e "$a" ] || continue
      echo "-- input $a (base64):"
      base64 -w 0 "$a"
      echo
    done
  fi
done

if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz.sh: failures in: ${failed[*]}" >&2
  exit 1
fi
echo "fuzz.sh: ${targets[*]}: no crash, leak or sanitizer report in ${seconds}s each"
