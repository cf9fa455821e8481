#!/usr/bin/env bash
# Installs descent into a temporary prefix, builds the C++, C and Fortran examples against the
# installed package (examples/consumer, find_package) and runs each briefly, checking that the
# test loss falls and an accuracy is printed. When the installed descent has MPI, its three
# data-parallel examples run the same way under mpirun on 2 ranks, of which only one may print.
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

echo "== build the examples against the installed package"
cmake -S examples/consumer -B "$work/consumer" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_PREFIX_PATH="$work/prefix" -DDESCENT_EXAMPLES_REQUIRE_FORTRAN=ON | grep 'descent '
cmake --build "$work/consumer" -j "$jobs"

# The test loss after the last epoch must be below the loss before training.
loss_falls() {
  awk '/^initial: test loss/ { first = $4 + 0 }
       /^epoch .*test loss/ { last = $0; sub(/.*test loss /, "", last); last += 0; acc = $0 }
       END { if (first == "" || last == "" || acc !~ /test accuracy [0-9.]+%/ || !(last < first))
               exit 1 }' "$1"
}

status=0
for example in train_fmnist train_fmnist_c train_fmnist_f; do
  echo "== $example $data $epochs $limit"
  (cd "$work" && "$work/consumer/$example" "$data" "$epochs" "$limit") | tee "$work/$example.log"
  if ! loss_falls "$work/$example.log"; then
    echo "FAILED: $example: no falling test loss and printed accuracy" >&2
    status=1
  fi
done

# Data parallel on 2 ranks (oversubscribed: there may be one core), as root where need be.
config=$(find "$work/prefix" -name descentConfig.cmake -print -quit)
if grep -q 'set(descent_WITH_MPI ON)' "$config"; then
  for example in train_fmnist_mpi train_fmnist_mpi_c train_fmnist_mpi_f; do
    echo "== mpirun -np 2 $example $data $epochs $limit"
    if [ ! -x "$work/consumer/$example" ]; then
      echo "FAILED: $example was not built, though descent has MPI" >&2
      status=1
      continue
    fi
    if ! (cd "$work" && OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 \
          OMPI_MCA_mpi_yield_when_idle=1 timeout 600 mpirun --oversubscribe -np 2 \
          "$work/consumer/$example" "$data" "$epochs" "$limit") | tee "$work/$example.log"; then
      echo "FAILED: $example: mpirun failed or timed out" >&2
      status=1
    fi
    if ! loss_falls "$work/$example.log"; then
      echo "FAILED: $example: no falling test loss and printed accuracy" >&2
      status=1
    fi
    # Every rank computes the same statistics; only rank 0 prints them, once an epoch.
    printed=$(grep -c '^epoch ' "$work/$example.log" || true)
    if [ "$printed" != "$epochs" ] || ! grep -q ', 2 ranks,' "$work/$example.log"; then
      echo "FAILED: $example: $printed epoch lines for $epochs epochs, or not on 2 ranks" >&2
      status=1
    fi
  done
else
  echo "== descent without MPI: no data-parallel examples"
fi
[ "$status" = 0 ] && echo "== install check passed (${*:-default options})"
exit "$status"
