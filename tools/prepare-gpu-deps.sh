#!/usr/bin/env bash
# Fills ./.deps (git-ignored) on the development machine with what a build on the GPU machine
# needs and that machine may lack: GoogleTest, oneDNN (the CPU backend's GEMM), Google
# Benchmark, CLI11, nlohmann/json, zlib and OpenMPI. Carry .deps to the GPU machine; tools/gpu-check.sh finds
# it there. (NCCL does not travel, 200 MB: gpu-check uses the machine's.)
#
# Layout (a relocatable prefix; nothing refers to /usr):
#   .deps/googletest/                      GoogleTest + GoogleMock sources (add_subdirectory)
#   .deps/include/                         GoogleTest, oneDNN, benchmark, CLI11, nlohmann/json and
#                                          zlib headers
#   .deps/share/cmake/CLI11/, nlohmann_json/  their package configs (relocatable)
#   .deps/lib/x86_64-linux-gnu/            libgtest/libgmock (static), libbenchmark, libz,
#                                          libOpenCL (libdnnl links it);
#                                          libdnnl.so.2.xz (unpacked by gpu-check.sh: 7 MB
#                                          instead of 40 MB to carry)
#   .deps/lib/x86_64-linux-gnu/cmake/      package configs: dnnl (our shim), GTest, benchmark
#   .deps/openmpi.tar.xz                   OpenMPI as a relocatable prefix (OPAL_PREFIX)
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
deps="$root/.deps"
sys=/usr/lib/x86_64-linux-gnu
lib="$deps/lib/x86_64-linux-gnu"

need() { [ -e "$1" ] || { echo "prepare-gpu-deps: missing $1 ($2)" >&2; exit 1; }; }
need /usr/src/googletest/CMakeLists.txt "apt-get install googletest"
need "$sys/libdnnl.so.2" "apt-get install libdnnl-dev"
need /usr/include/oneapi/dnnl/dnnl.h "apt-get install libdnnl-dev"
need "$sys/cmake/benchmark/benchmarkConfig.cmake" "apt-get install libbenchmark-dev"
need /usr/include/zlib.h "apt-get install zlib1g-dev"
command -v xz >/dev/null || { echo "prepare-gpu-deps: xz not found" >&2; exit 1; }

rm -rf "$deps"
mkdir -p "$deps/include" "$lib/cmake"

# GoogleTest: the built static libraries with Debian's relocatable package config (found by
# find_package(GTest), nothing to compile there), and the sources for tests/CMakeLists.txt's
# add_subdirectory fallback.
cp -a /usr/src/googletest "$deps/googletest"
if [ -f "$sys/cmake/GTest/GTestConfig.cmake" ]; then
  cp -a /usr/include/gtest /usr/include/gmock "$deps/include/"
  cp -a "$sys/cmake/GTest" "$lib/cmake/"
  cp -L "$sys"/libgtest*.a "$sys"/libgmock*.a "$lib/"
fi

# oneDNN: headers and the library. Files are copied under their soname (cp -L) because symlinks
# may not survive the trip to the GPU machine.
cp -a /usr/include/oneapi "$deps/include/"
cp -L /usr/include/dnnl*.h /usr/include/dnnl*.hpp "$deps/include/" 2>/dev/null || true
xz -T0 -6 -c <"$(readlink -f "$sys/libdnnl.so.2")" >"$lib/libdnnl.so.2.xz"
cp -L "$(readlink -f /lib/x86_64-linux-gnu/libOpenCL.so.1)" "$lib/libOpenCL.so.1"
dnnl_version=$(sed -n 's/^set(PACKAGE_VERSION "\(.*\)")/\1/p' "$sys/cmake/dnnl/dnnl-config-version.cmake")
dnnl_version=${dnnl_version:-2.6.3}
# Debian's dnnl config pins its prefix to /usr when loaded from there and requires OpenCL's
# headers through find_package; the CPU backend uses neither, so a shim defines the target.
mkdir -p "$lib/cmake/dnnl"
cat >"$lib/cmake/dnnl/dnnl-config.cmake" <<EOF
# Relocatable stand-in for oneDNN's package config, written by tools/prepare-gpu-deps.sh.
get_filename_component(_descent_deps "\${CMAKE_CURRENT_LIST_DIR}/../../../.." ABSOLUTE)
set(dnnl_VERSION $dnnl_version)
if(NOT EXISTS "\${_descent_deps}/lib/x86_64-linux-gnu/libdnnl.so.2")
  set(dnnl_FOUND FALSE)
  set(dnnl_NOT_FOUND_MESSAGE "libdnnl.so.2 not unpacked; run tools/gpu-check.sh, which unpacks it")
  return()
endif()
if(NOT TARGET DNNL::dnnl)
  add_library(DNNL::dnnl SHARED IMPORTED)
  set_target_properties(DNNL::dnnl PROPERTIES
    IMPORTED_LOCATION "\${_descent_deps}/lib/x86_64-linux-gnu/libdnnl.so.2"
    IMPORTED_SONAME "libdnnl.so.2"
    INTERFACE_INCLUDE_DIRECTORIES "\${_descent_deps}/include"
    INTERFACE_LINK_LIBRARIES "dl")
endif()
set(dnnl_FOUND TRUE)
EOF
cat >"$lib/cmake/dnnl/dnnl-config-version.cmake" <<EOF
set(PACKAGE_VERSION "$dnnl_version")
if(PACKAGE_FIND_VERSION VERSION_GREATER PACKAGE_VERSION)
  set(PACKAGE_VERSION_COMPATIBLE FALSE)
else()
  set(PACKAGE_VERSION_COMPATIBLE TRUE)
  if(PACKAGE_FIND_VERSION STREQUAL PACKAGE_VERSION)
    set(PACKAGE_VERSION_EXACT TRUE)
  endif()
endif()
EOF

# Google Benchmark: Debian's package config is relocatable (it finds its prefix from its own
# location) as long as the prefix keeps the lib/x86_64-linux-gnu layout.
cp -a /usr/include/benchmark "$deps/include/"
cp -a "$sys/cmake/benchmark" "$lib/cmake/"
bench_lib=$(readlink -f "$sys/libbenchmark.so")
bench_soname=$(objdump -p "$bench_lib" | awk '/SONAME/ {print $2}')
cp -L "$bench_lib" "$lib/$(basename "$bench_lib")"
[ -n "$bench_soname" ] && cp -L "$bench_lib" "$lib/$bench_soname"
cp -L "$sys/libbenchmark_main.a" "$lib/"

# CLI11 (the descent command's option parser; header-only): Debian's package config finds its
# prefix from its own location, three folders up.
need /usr/share/cmake/CLI11/CLI11Config.cmake "apt-get install libcli11-dev"
cp -a /usr/include/CLI "$deps/include/"
mkdir -p "$deps/share/cmake"
cp -a /usr/share/cmake/CLI11 "$deps/share/cmake/"

# nlohmann/json (safetensors' JSON header; header-only): Debian's package config finds its
# prefix from its own location, three folders up, like CLI11's.
need /usr/share/cmake/nlohmann_json/nlohmann_jsonConfig.cmake "apt-get install nlohmann-json3-dev"
cp -a /usr/include/nlohmann "$deps/include/"
cp -a /usr/share/cmake/nlohmann_json "$deps/share/cmake/"

# zlib (the data loaders read gzip): tiny, and the GPU image may lack the -dev package.
cp -L /usr/include/zlib.h /usr/include/zconf.h "$deps/include/"
cp -L "$(readlink -f "$sys/libz.so")" "$lib/libz.so.1"
cp -L "$lib/libz.so.1" "$lib/libz.so"

# OpenMPI (tools/gpu-check.sh's mpi_nccl stage) for a GPU machine without its own: mpirun,
# mpicc, the libraries, MCA components, headers and help files, and PMIx's plugins, as a prefix
# that OPAL_PREFIX relocates; packed, 5 MB instead of 33. gpu-check.sh unpacks it.
if [ -x /usr/bin/orterun ] && [ -d "$sys/openmpi/lib" ] && [ -d "$sys/pmix2/lib" ]; then
  stage=$(mktemp -d)
  ompi=$stage/openmpi
  mkdir -p "$ompi/bin" "$ompi/lib/x86_64-linux-gnu/openmpi" "$ompi/lib/x86_64-linux-gnu/pmix2" \
    "$ompi/share"
  cp -L /usr/bin/orterun "$ompi/bin/mpirun"
  cp -L /usr/bin/orted "$ompi/bin/orted"
  cp -L /usr/bin/opal_wrapper "$ompi/bin/mpicc"
  for l in libmpi.so.40 libopen-pal.so.40 libopen-rte.so.40 libpmix.so.2 libhwloc.so.15 \
    libevent-2.1.so.7 libevent_core-2.1.so.7 libevent_pthreads-2.1.so.7 libudev.so.1; do
    cp -L "$sys/$l" "$ompi/lib/"
  done
  for l in "$sys"/libmca_common_*.so.*; do  # under their sonames: libmca_common_sm.so.40
    case $l in *.so.*.*) ;; *) cp -L "$l" "$ompi/lib/" ;; esac
  done
  cp -rL "$sys/openmpi/lib" "$sys/openmpi/include" "$ompi/lib/x86_64-linux-gnu/openmpi/"
  cp -rL "$sys/pmix2/lib" "$sys/pmix2/share" "$ompi/lib/x86_64-linux-gnu/pmix2/"
  cp -rL /usr/share/openmpi "$ompi/share/"
  tar -C "$stage" -cJf "$deps/openmpi.tar.xz" openmpi
  rm -rf "$stage"
else
  echo "prepare-gpu-deps: no OpenMPI (apt-get install libopenmpi-dev openmpi-bin): the GPU" \
    "check runs its MPI tests only where the machine has MPI" >&2
fi

# Fashion-MNIST (30 MB of gzip), so gpu-check can run the main job, `descent train`, there.
if [ -d /usr/share/datasets/fashion-mnist ]; then
  cp -L -r /usr/share/datasets/fashion-mnist "$deps/fashion-mnist"
fi

# No symlinks may remain (see above).
find "$deps" -type l -print | while read -r l; do
  t=$(readlink -f "$l"); rm "$l"; cp -a "$t" "$l"
done

echo "prepare-gpu-deps: $(du -sh "$deps" | cut -f1) in $deps"
echo "  carry: .deps   (then run: bash tools/gpu-check.sh)"
