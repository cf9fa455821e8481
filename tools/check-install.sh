#!/usr/bin/env bash
# Installs descent into a temporary prefix, then builds the examples against the installed
# package (examples/consumer, find_package) from projects of each language combination a user
# may have (C++ only, C and C++, Fortran, all three; C only or Fortran only for a shared
# descent) and runs each example briefly, checking that the test loss falls and an accuracy is
# printed. When the installed descent has MPI, its data-parallel examples run the same way under
# mpirun on 2 ranks, of which only one may print. Run once per descent build of the matrix
# (static/shared, with/without MPI: .ci/run).
#   tools/check-install.sh [cmake options for descent, e.g. -DBUILD_SHARED_LIBS=ON]
# BUILD_DIR: descent's build folder (default: a fresh one in the temporary folder; an existing
# build, e.g. build/, is reused). DATA: Fashion-MNIST folder. EPOCHS, LIMIT: a short run.
set -euo pipefail
cd "$(dirname "$0")/.."
data=${DATA:-/usr/share/datasets/fashion-mnist}
epochs=${EPOCHS:-1}
limit=${LIMIT:-3000}
work=$(mktemp -d "${TMPDIR:-/tmp}/descent-install.XXXXXX")
trap 'rm -rf "$work"' EXIT
build=${BUILD_DIR:-$work/build}
jobs=$(nproc)

echo "== build descent ($build) and install it into $work/prefix"
fresh=()
# A fresh build needs only what is installed; an existing one (e.g. build/) keeps its options.
[ -z "${BUILD_DIR:-}" ] && fresh=(-DDESCENT_BUILD_TESTS=OFF -DDESCENT_BUILD_BENCHMARKS=OFF)
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release "${fresh[@]}" "$@" >/dev/null
cmake --build "$build" -j "$jobs"
cmake --install "$build" --prefix "$work/prefix" >/dev/null
"$work/prefix/bin/descent" --help >/dev/null

# A shared libdescent exports its public API (C and C++) and nothing of its internals.
so=$(find "$work/prefix" -name 'libdescent.so' -print -quit)
if [ -n "$so" ]; then
  exported=$(nm -DC --defined-only "$so")
  for want in 'descent_version' 'descent_trainer_step' 'descent::Mlp::forward' \
              'descent::save_checkpoint' 'typeinfo for descent::Error'; do
    grep -qF "$want" <<<"$exported" || { echo "FAILED: $so does not export $want" >&2; exit 1; }
  done
  if grep -E 'descent::(cpu|cuda|c_api)::|descent::detail::(InputFile|cpu_backend|cuda_backend|backend_of)' <<<"$exported"; then
    echo "FAILED: $so exports the internal symbols above (-fvisibility=hidden)" >&2
    exit 1
  fi
  echo "== $so: the public API exported, no internals ($(wc -l <<<"$exported") symbols)"
fi

# The test loss after the last epoch must be below the loss before training.
loss_falls() {
  awk '/^initial: test loss/ { first = $4 + 0 }
       /^epoch .*test loss/ { last = $0; sub(/.*test loss /, "", last); last += 0; acc = $0 }
       END { if (first == "" || last == "" || acc !~ /test accuracy [0-9.]+%/ || !(last < first))
               exit 1 }' "$1"
}

config=$(find "$work/prefix" -name descentConfig.cmake -print -quit)
with_mpi=0
grep -q 'set(descent_WITH_MPI ON)' "$config" && with_mpi=1
static=0
grep -q 'set(descent_LIBRARY_TYPE "STATIC_LIBRARY")' "$config" && static=1

status=0
fail() { echo "FAILED: $*" >&2; status=1; }

# consumer NAME LANGUAGES LIMIT EXAMPLE...: a project of only those languages (examples/consumer
# with DESCENT_EXAMPLES_LANGUAGES) finds the installed descent, builds every example its languages
# allow (exactly the ones listed), and runs each on LIMIT samples; the MPI ones on 2 ranks.
consumer() {
  local name=$1 languages=$2 n=$3
  shift 3
  local dir="$work/consumer-$name"
  echo "== consumer [$languages]: find_package(descent), build, run $*"
  if ! cmake -S examples/consumer -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=Release \
       -DCMAKE_PREFIX_PATH="$work/prefix" "-DDESCENT_EXAMPLES_LANGUAGES=$languages" \
       >"$dir.configure.log" 2>&1; then
    cat "$dir.configure.log" >&2
    fail "a project of languages [$languages] cannot find descent"
    return
  fi
  grep 'descent ' "$dir.configure.log" || true
  cmake --build "$dir" -j "$jobs" >"$dir.build.log" 2>&1 || { cat "$dir.build.log" >&2;
    fail "[$languages]: the examples do not build"; return; }
  local built
  built=$(cd "$dir" && find . -maxdepth 1 -type f -name 'train_fmnist*' ! -name '*.*' -printf '%f\n' |
          sort | tr '\n' ' ')
  local want
  want=$(printf '%s\n' "$@" | sort | tr '\n' ' ')
  [ "$built" = "$want" ] || fail "[$languages] built [$built], expected [$want]"
  local example
  for example in "$@"; do
    [ -x "$dir/$example" ] || continue
    local log="$dir/$example.log"
    if [[ $example == *_mpi* ]]; then
      echo "-- mpirun -np 2 $example $data $epochs $n"
      if ! (cd "$work" && OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 \
            OMPI_MCA_mpi_yield_when_idle=1 timeout 600 mpirun --oversubscribe -np 2 \
            "$dir/$example" "$data" "$epochs" "$n") >"$log" 2>&1; then
        cat "$log" >&2
        fail "[$languages] $example: mpirun failed or timed out"
      fi
      # Every rank computes the same statistics; only rank 0 prints them, once an epoch.
      local printed
      printed=$(grep -c '^epoch ' "$log" || true)
      if [ "$printed" != "$epochs" ] || ! grep -q ', 2 ranks,' "$log"; then
        fail "[$languages] $example: $printed epoch lines for $epochs epochs, or not on 2 ranks"
      fi
    else
      echo "-- $example $data $epochs $n"
      (cd "$work" && "$dir/$example" "$data" "$epochs" "$n") >"$log" 2>&1 || {
        cat "$log" >&2; fail "[$languages] $example failed"; }
    fi
    tail -n 1 "$log"
    loss_falls "$log" || fail "[$languages] $example: no falling test loss and printed accuracy"
  done
  # The physics-informed example of each language built, and the in-situ one on 2 ranks: each
  # exits non-zero unless it learned.
  for example in poisson poisson_c poisson_f heat_insitu_f; do
    [ -x "$dir/$example" ] || continue
    local log="$dir/$example.log"
    if [ "$example" = heat_insitu_f ]; then
      echo "-- mpirun -np 2 $example 48 1000 50 100"
      (cd "$work" && OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 \
        OMPI_MCA_mpi_yield_when_idle=1 timeout 600 mpirun --oversubscribe -np 2 \
        "$dir/$example" 48 1000 50 100 "$work/heat.safetensors") >"$log" 2>&1 || {
        cat "$log" >&2; fail "[$languages] $example failed"; }
    else
      echo "-- $example 400 256 64"
      (cd "$work" && timeout 600 "$dir/$example" 400 256 64) >"$log" 2>&1 || {
        cat "$log" >&2; fail "[$languages] $example failed"; }
    fi
    tail -n 1 "$log"
  done
}

# Every consumer a user may write: C++ only (the common case), C and C++, Fortran; a static
# descent needs C++ in the project (libstdc++), a shared one does not. The full project (C, C++,
# Fortran) runs on $limit samples, the others on a third of them.
cxx=(train_fmnist)
c=(train_fmnist_c)
f=(train_fmnist_f)
if [ "$with_mpi" = 1 ]; then
  cxx+=(train_fmnist_mpi)
  c+=(train_fmnist_mpi_c)
  f+=(train_fmnist_mpi_f)
fi
short=$((limit / 3))
consumer all "C;CXX;Fortran" "$limit" "${cxx[@]}" "${c[@]}" "${f[@]}"
consumer cxx "CXX" "$short" "${cxx[@]}"
if [ "$static" = 1 ]; then
  consumer c-cxx "C;CXX" "$short" "${cxx[@]}" "${c[@]}"
  consumer fortran-cxx "CXX;Fortran" "$short" "${cxx[@]}" "${f[@]}"
  # A C-only project and a static descent: a clear message, not a linker error.
  if cmake -S examples/consumer -B "$work/consumer-c" -G Ninja -DCMAKE_PREFIX_PATH="$work/prefix" \
       -DDESCENT_EXAMPLES_LANGUAGES=C >"$work/consumer-c.log" 2>&1 ||
     ! grep -q 'descent is a static C++ library: enable CXX' "$work/consumer-c.log"; then
    cat "$work/consumer-c.log" >&2
    fail "a C-only project did not get the message asking for CXX with a static descent"
  else
    echo "== consumer [C] with a static descent: refused with the message asking for CXX"
  fi
else
  consumer c "C" "$short" "${c[@]}"
  consumer fortran "Fortran" "$short" "${f[@]}"
fi
[ "$status" = 0 ] && echo "== install check passed (${*:-default options})"
exit "$status"
