#!/usr/bin/env bash
# Compiles every kernels/cuda/*.cu with ptxas -v for each target arch, prints a table of kernels with
# their registers and spills, and exits 1 if any kernel spills (a register spill on a hot kernel
# is a silent slowdown that nothing else in CI would notice).
#
#   tools/spill-report.sh                 # archs 80 90 (CMake's defaults)
#   SPILL_ARCHS="90" tools/spill-report.sh
#   NVCC=/path/to/nvcc tools/spill-report.sh
set -uo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
nvcc=${NVCC:-$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)}
archs=${SPILL_ARCHS:-80 90}
jobs=${JOBS:-$(nproc 2>/dev/null || echo 2)}
filt=$(command -v cu++filt || command -v "$(dirname "$nvcc")/cu++filt" || command -v c++filt || echo cat)
[ -x "$nvcc" ] || { echo "spill-report: nvcc not found (set NVCC)" >&2; exit 2; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The same flags CMake gives the library's CUDA sources (CMakeLists.txt), plus ptxas -v.
# shellcheck disable=SC2054  # the commas belong to -Xcompiler
flags=(-std=c++20 -O3 -DNDEBUG -DDESCENT_HAS_CUDA=1 -I"$root/include" -I"$root/src" -I"$root"
       --expt-relaxed-constexpr -lineinfo -Xcompiler=-Wall,-Wextra,-Werror
       --Werror=cross-execution-space-call -Xptxas=-v)

compile() {  # file arch -> $work/<name>.<arch>.log, nonzero status on a compile error
  local f=$1 a=$2 base
  base=$(basename "$f" .cu)
  "$nvcc" "${flags[@]}" -gencode="arch=compute_$a,code=sm_$a" -c "$f" -o "$work/$base.$a.o" \
    >"$work/$base.$a.log" 2>&1 || { echo "FAILED" >>"$work/$base.$a.log"; return 1; }
}
status=0
pids=()
for f in "$root"/kernels/cuda/*.cu; do
  for a in $archs; do
    compile "$f" "$a" &
    pids+=($!)
    while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do sleep 0.2; done
  done
done
for p in "${pids[@]}"; do wait "$p" || status=2; done

if [ $status -ne 0 ]; then
  echo "spill-report: compilation failed:" >&2
  grep -l FAILED "$work"/*.log | while read -r l; do echo "== $l" >&2; cat "$l" >&2; done
  exit 2
fi

# ptxas -v prints, per entry function:
#   ptxas info : Compiling entry function 'NAME' for 'sm_90'
#   ptxas info : Function properties for NAME
#       0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
#   ptxas info : Used 32 registers, ...
cat "$work"/*.log | awk '
  /Compiling entry function/ { match($0, /function .[^'"'"']*/); name = substr($0, RSTART + 10, RLENGTH - 10);
                               match($0, /for .sm_[0-9a-z]+/); arch = substr($0, RSTART + 5, RLENGTH - 5); entry = 1; next }
  /Function properties for/ { split($0, w, "for "); fname = w[2]; next }
  /bytes spill stores/ { if (entry && fname == name) { st = $5; ld = $9; have = 1 } next }
  /Used [0-9]+ registers/ { if (entry) { match($0, /Used [0-9]+/); regs = substr($0, RSTART + 5, RLENGTH - 5);
                             printf "%s\t%s\t%s\t%s\t%s\n", arch, regs, (have ? st : 0), (have ? ld : 0), name;
                             entry = 0; have = 0 } }
' >"$work/table.tsv"

[ -s "$work/table.tsv" ] || { echo "spill-report: no ptxas output parsed" >&2; exit 2; }

cut -f5 "$work/table.tsv" | $filt >"$work/names.txt"
paste "$work/table.tsv" "$work/names.txt" | sort -t$'\t' -k6,6 -k1,1 >"$work/rows.tsv"

printf '%-7s %5s %12s %11s  %s\n' arch regs spill-stores spill-loads kernel
spilled=0
while IFS=$'\t' read -r arch regs st ld _mangled name; do
  # Drop namespaces, the return type and the parameter list: the kernel and its template arguments.
  short=$(sed -e 's/(anonymous namespace):://g' -e 's/descent::\(cuda\|detail\):://g' \
              -e 's/^void //' -e 's/([^()]*)$//' <<<"$name")
  [ ${#short} -gt 90 ] && short="${short:0:87}..."
  printf '%-7s %5s %12s %11s  %s\n' "$arch" "$regs" "$st" "$ld" "$short"
  if [ "$st" != 0 ] || [ "$ld" != 0 ]; then spilled=$((spilled + 1)); fi
done <"$work/rows.tsv"

echo
kernels=$(wc -l <"$work/rows.tsv")
if [ $spilled -ne 0 ]; then
  echo "spill-report: $spilled of $kernels kernel builds spill registers:"
  awk -F'\t' '$3 != 0 || $4 != 0' "$work/rows.tsv" | cut -f1,3,4,6 | sed 's/^/  /'
  exit 1
fi
echo "spill-report: no spills in $kernels kernel builds (archs: $archs)"
