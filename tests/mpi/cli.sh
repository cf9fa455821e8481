#!/usr/bin/env bash
# The descent command under mpirun (ctest mpi.command): rank 0 alone prints and writes files,
# --batch is the global batch, a checkpoint written on 2 ranks resumes on 1 and on 4, a rank
# that fails (a bad data file on that rank only) ends the whole job within seconds with its
# message, ranks given different seeds or different options that change the collective calls
# are refused, and a SIGTERM during checkpoint saves leaves no temporary file.
#   tests/mpi/cli.sh DESCENT MPIRUN [MPIRUN OPTIONS...]
set -uo pipefail
descent=$(realpath "$1")
shift
mpirun=("$@")
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_mpi_yield_when_idle=1
work=$(mktemp -d "${TMPDIR:-/tmp}/descent-mpi-cli.XXXXXX")
trap 'rm -rf "$work"' EXIT
cd "$work" || exit 1
failures=0
fail() { echo "FAILED: $*" >&2; failures=$((failures + 1)); }
expect() {  # expect FILE PATTERN COUNT WHAT
  local n
  n=$(grep -c -- "$2" "$1")
  [ "$n" -eq "$3" ] || { fail "$4: '$2' appears $n times in $1, expected $3"; sed 's/^/  | /' "$1" >&2; }
}
small=(--limit 2000 --hidden 32 --batch 100 --no-progress)

echo "== 2 ranks: one summary, one line per epoch, the files written once"
timeout 120 "${mpirun[@]}" -np 2 "$descent" train "${small[@]}" --epochs 2 --checkpoint c.ckpt \
  --metrics m.csv >two.out 2>two.err || fail "2 ranks: exit status $?"
expect two.out '^descent train: 2000 training' 1 "2 ranks: the summary"
expect two.out '2 MPI ranks (mpi)' 1 "2 ranks: the summary names the ranks"
expect two.out 'batch 100, 2 epochs' 1 "2 ranks: --batch is the global batch"
expect two.out '^epoch [12]/2 ' 2 "2 ranks: the epoch lines"
expect two.out '^done: 2 epochs' 1 "2 ranks: the last line"
[ -s c.ckpt ] && [ -s m.csv ] && [ -s m.svg ] || fail "2 ranks: the checkpoint, metrics or curves are missing"
[ "$(find . -name '*.tmp*' | wc -l)" -eq 0 ] || fail "2 ranks: temporary files left"

echo "== the checkpoint of 2 ranks resumed on 1 (no mpirun) and on 4"
timeout 120 "$descent" train "${small[@]}" --epochs 3 --resume c.ckpt >one.out 2>one.err ||
  fail "resume on 1 process: exit status $?"
expect one.out 'resumed at step 40' 1 "resume on 1: the summary"
expect one.out '^epoch 3/3 ' 1 "resume on 1: the third epoch"
timeout 120 "${mpirun[@]}" -np 4 "$descent" train "${small[@]}" --epochs 3 --resume c.ckpt \
  >four.out 2>four.err || { fail "resume on 4 ranks: exit status $?"; cat four.err >&2; }
expect four.out '4 MPI ranks (mpi)' 1 "resume on 4: the summary"
expect four.out '^epoch 3/3 ' 1 "resume on 4: the third epoch, once"
acc_one=$(sed -n 's/.*test acc \([0-9.]*\)%.*/\1/p' one.out)
acc_four=$(sed -n 's/.*test acc \([0-9.]*\)%.*/\1/p' four.out)
[ -n "$acc_one" ] && [ "$acc_one" = "$acc_four" ] ||
  fail "resume: test accuracy on 1 process ($acc_one) and on 4 ranks ($acc_four) differ"

echo "== a bad data file on rank 1 only ends the job with rank 1's message"
printf 'not an IDX file at all' >bad-images
cp bad-images bad-labels
start=$(date +%s)
# shellcheck disable=SC2016  # the inner shell expands the rank
timeout 60 "${mpirun[@]}" -np 2 sh -c 'if [ "${OMPI_COMM_WORLD_RANK:-${PMIX_RANK:-0}}" = 1 ]; then
    exec "$0" train --train-images bad-images --train-labels bad-labels --limit 2000 --epochs 50 \
      --no-progress
  else exec "$0" train --limit 2000 --epochs 50 --no-progress; fi' "$descent" \
  >bad.out 2>bad.err
status=$?
elapsed=$(($(date +%s) - start))
[ "$status" -ne 0 ] && [ "$status" -ne 124 ] || fail "bad file on rank 1: exit status $status"
[ "$elapsed" -le 30 ] || fail "bad file on rank 1: the job took $elapsed s to end"
expect bad.err 'descent train: rank 1 of 2: error: .*bad-images' 1 "bad file on rank 1: the message"

echo "== different seeds on the ranks are refused"
# shellcheck disable=SC2016
timeout 60 "${mpirun[@]}" -np 2 sh -c 'exec "$0" train --limit 200 --epochs 1 --no-progress \
  --seed "$((1 + ${OMPI_COMM_WORLD_RANK:-${PMIX_RANK:-0}}))"' "$descent" >seed.out 2>seed.err
status=$?
[ "$status" -ne 0 ] && [ "$status" -ne 124 ] || fail "different seeds: exit status $status"
grep -q "differs between the ranks" seed.err || { fail "different seeds: no refusal"; cat seed.err >&2; }

echo "== options that change the collective calls differ between the ranks: refused at once"
# shellcheck disable=SC2016
for differing in '--epochs "$((1 + rank))"' '--schedule "$([ "$rank" = 0 ] && echo cosine || echo step)"' \
                 '$([ "$rank" = 1 ] && echo --resume c.ckpt)' '--clip-grad-norm "$((1 + rank))"'; do
  option=$(sed 's/^[^-]*\(--[a-z-]*\).*/\1/' <<<"$differing")
  start=$(date +%s)
  timeout 60 "${mpirun[@]}" -np 2 sh -c 'rank=${OMPI_COMM_WORLD_RANK:-${PMIX_RANK:-0}}; eval "set -- $1";
    exec "$0" train --limit 200 --epochs 3 --no-progress "$@"' "$descent" "$differing" \
    >differ.out 2>differ.err
  status=$?
  [ "$status" -ne 0 ] && [ "$status" -ne 124 ] || fail "different $option: exit status $status"
  [ $(($(date +%s) - start)) -le 30 ] || fail "different $option: the job took too long to end"
  grep -q -- "$option.*differs between the ranks" differ.err ||
    { fail "different $option: no refusal naming it"; cat differ.err >&2; }
done

echo "== SIGTERM to every rank while rank 0 saves checkpoints: no temporary file left"
mkdir -p sig && cd sig || exit 1
# 2 x 2.4 M parameters with momentum: each save writes about 38 MB, once an epoch.
timeout 120 "${mpirun[@]}" -np 2 "$descent" train --limit 400 --hidden 2048,1024 --batch 200 \
  --epochs 1000 --no-progress --checkpoint s.ckpt >sig.out 2>sig.err &
job=$!
for _ in $(seq 1 300); do [ -s s.ckpt ] && break; sleep 0.1; done
sleep 0.3
kill -TERM "$job" 2>/dev/null
wait "$job"
[ -s s.ckpt ] || fail "SIGTERM on 2 ranks: no checkpoint was written before the signal"
leftover=$(find . -name '*.tmp*')
[ -z "$leftover" ] || fail "SIGTERM on 2 ranks: temporary files left: $leftover"
cd .. || exit 1

[ "$failures" -eq 0 ] && echo "== all passed" || echo "== $failures failed"
[ "$failures" -eq 0 ]
