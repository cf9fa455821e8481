#!/usr/bin/env bash
# The data-parallel CPU benchmarks (bench/bench_mpi.cpp) under mpirun: the 1-rank overhead of the
# MPI path, the overlap of the gradient sums with the backward pass on 2 ranks, and 2 ranks x 1
# thread against 1 rank x 2 threads. Prints the tables; the JSON lines go to a file if asked.
# Builds nothing: build the bench_mpi target first (cmake --build BUILD --target bench_mpi).
#
#   tools/bench-mpi.sh [--json FILE] [--quick] [overhead] [overlap] [scaling]
#     (no measurement named: all three)
#
#   BUILD_DIR=build          the build folder holding bench/bench_mpi
#   THREADS=N                threads of the 1-rank runs (default: nproc); 2-rank runs use 1 each
#   ROUNDS=3                 scaling: rounds of (2 ranks x 1 thread, 1 rank x 2 threads)
#   BUCKETS=1,4,16,64,all    overlap: bucket sizes in MB (CommOptions::bucket_bytes)
#   MPIRUN=mpirun            the launcher; MPIRUN_ARGS its options (Open MPI default:
#                            "--bind-to none --oversubscribe", so a 1-rank run may use every core)
#   SKIP_RING=1              Open MPI: do not rerun the overlap with the ring algorithm for
#                            MPI_Iallreduce (OMPI_MCA_coll_libnbc_iallreduce_algorithm=1)
#
# Run it on an otherwise idle machine: every number is only as good as the machine's quiet (each
# JSON line records the 1-minute load average).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
build=${BUILD_DIR:-build}
threads=${THREADS:-$(nproc)}
rounds=${ROUNDS:-3}
buckets=${BUCKETS:-1,4,16,64,all}
mpirun=${MPIRUN:-mpirun}
bench="$build/bench/bench_mpi"

json=""
quick=()
measures=()
while [ $# -gt 0 ]; do
  case "$1" in
    --json) json=$2; shift 2 ;;
    --json=*) json=${1#--json=}; shift ;;
    --quick) quick=(--reps=3 --steps=2); rounds=1; shift ;;
    overhead|overlap|scaling) measures+=("$1"); shift ;;
    *) echo "bench-mpi.sh: unknown argument '$1' (see the comment at the top of $0)" >&2; exit 2 ;;
  esac
done
[ ${#measures[@]} -gt 0 ] || measures=(overhead overlap scaling)

if [ ! -x "$bench" ]; then
  echo "bench-mpi.sh: $bench not found: build it first (cmake --build $build --target bench_mpi;" \
    "it needs a descent configured with MPI)" >&2
  exit 1
fi

if [ -n "${MPIRUN_ARGS+set}" ]; then
  read -r -a launch <<<"$MPIRUN_ARGS"
elif "$mpirun" --version 2>/dev/null | grep -q 'Open MPI'; then
  launch=(--bind-to none --oversubscribe)
  openmpi=1
  # Waiting ranks yield their core instead of spinning: the ranks share the machine's cores.
  export OMPI_MCA_mpi_yield_when_idle=${OMPI_MCA_mpi_yield_when_idle:-1}
  if [ "$(id -u)" = 0 ]; then
    export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
  fi
else
  launch=()
fi
openmpi=${openmpi:-0}

[ -z "$json" ] || : >"$json"
out=$(mktemp)
trap 'rm -f "$out"' EXIT

# run RANKS ARGS...: prints the table lines, keeps the JSON lines (in $out, and in the file).
run() {
  local ranks=$1
  shift
  echo "\$ $mpirun -np $ranks ${launch[*]} $bench $*"
  "$mpirun" -np "$ranks" "${launch[@]}" "$bench" "$@" >"$out"
  grep -v '^{' "$out" || true
  [ -z "$json" ] || grep '^{' "$out" >>"$json" || true
}

# field NAME: the value of "NAME" in the latest JSON line of $out.
field() {
  grep '^{' "$out" | tail -1 | sed -n "s/.*\"$1\": \"\{0,1\}\([^,\"}]*\).*/\1/p"
}

model=$(sed -n 's/^model name[[:space:]]*: *//p' /proc/cpuinfo | head -1)
echo "== bench_mpi on ${model:-$(uname -m)}, $(nproc) CPUs; load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "== $("$mpirun" --version 2>/dev/null | head -1)"

for m in "${measures[@]}"; do
  echo
  case "$m" in
    overhead)
      run 1 overhead --threads="$threads" "${quick[@]}"
      ;;
    overlap)
      run 2 overlap --threads=1 --bucket-mb="$buckets" "${quick[@]}"
      # Open MPI's own choice of non-blocking all-reduce for an in-place sum (descent's) or
      # fewer than 4 ranks is a binomial tree, the whole buffer each way; the ring sends half.
      # The same measurement with the ring, unless an algorithm was chosen.
      if [ "$openmpi" = 1 ] && [ -z "${OMPI_MCA_coll_libnbc_iallreduce_algorithm:-}" ] &&
        [ -z "${SKIP_RING:-}" ]; then
        echo
        echo "-- the same with OMPI_MCA_coll_libnbc_iallreduce_algorithm=1 (ring):"
        (
          export OMPI_MCA_coll_libnbc_iallreduce_algorithm=1
          run 2 overlap --threads=1 --bucket-mb="$buckets" "${quick[@]}"
        )
      fi
      ;;
    scaling)
      # Alternated, so that a change in the machine's load touches both alike.
      ratios=()
      for ((r = 1; r <= rounds; r++)); do
        run 2 scaling --threads=1 "${quick[@]}"
        t21=$(field step_ms)
        run 1 scaling --threads=2 "${quick[@]}"
        t12=$(field step_ms)
        ratio=$(awk -v a="$t21" -v b="$t12" 'BEGIN { printf "%.3f", a / b }')
        ratios+=("$ratio")
        echo "round $r: 2x1 $t21 ms / 1x2 $t12 ms = $ratio"
        line="{\"bench\": \"mpi\", \"measure\": \"scaling_ratio\", \"round\": $r, \"t_2x1_ms\": $t21,"
        line+=" \"t_1x2_ms\": $t12, \"ratio\": $ratio, \"loadavg_1m\": \"$(cut -d' ' -f1 /proc/loadavg)\"}"
        [ -z "$json" ] || echo "$line" >>"$json"
      done
      median=$(printf '%s\n' "${ratios[@]}" | sort -g |
        awk '{ v[NR] = $1 } END { print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }')
      echo "scaling ratio (2 ranks x 1 thread time / 1 rank x 2 threads time), median of $rounds: $median"
      ;;
  esac
done
if [ -n "$json" ]; then
  echo
  echo "JSON lines written to $json"
fi
