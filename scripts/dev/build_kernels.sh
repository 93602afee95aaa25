#!/usr/bin/env bash
# Quick stand-alone build of libnvfp4_kernels.so with nvcc (no CMake), for kernel development and
# the GPU device runs: scripts/dev/build_kernels.sh [OUT_DIR] [ARCHS]
#   OUT_DIR default build/gpu (git-ignored); ARCHS default "90a" (e.g. "75 80 86 89 90a");
#   $KERNELS_SRC: another copy of the kernel sources (build_variant.sh), default the tree's.
# The product build is the root CMakeLists.txt (same sources, same flags that matter: no fast math).
# cuBLASLt headers (native FP4 path, docs/kernels.md): $CUBLASLT_INCLUDE_DIR, else the
# folder scripts/dev/fetch_cublas_headers.sh fills; without them that path is compiled out.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-build/gpu}
archs=${2:-90a}
mkdir -p "$out/obj"
gencode=()
for a in $archs; do gencode+=("-gencode=arch=compute_${a},code=sm_${a}"); done
lt_inc=${CUBLASLT_INCLUDE_DIR:-$(ls -d "$HOME"/.cache/nvfp4-export/cublas-*/include 2>/dev/null | tail -1)}
lt_flags=""
if [[ -n "$lt_inc" && -f "$lt_inc/cublasLt.h" ]]; then
    lt_flags="-DNVFP4_HAVE_CUBLASLT -I$lt_inc"
else
    echo "no cublasLt.h (CUBLASLT_INCLUDE_DIR): the native FP4 path is compiled out"
fi
src=${KERNELS_SRC:-trt_plugin_src/nvfp4Linear/kernels}
ls $src/*.cu | xargs -P "$(nproc)" -I{} sh -c \
  'f={}; b=$(basename $f .cu); nvcc -O3 -std=c++17 -Xcompiler -fPIC,-fvisibility=hidden,-ffp-contract=off '"${gencode[*]}"' -Xptxas -v -I'"$src"' '"$lt_flags"' -c $f -o '"$out"'/obj/$b.o 2> '"$out"'/obj/$b.log || { cat '"$out"'/obj/$b.log; exit 1; }'
nvcc -shared "${gencode[@]}" "$out"/obj/*.o -o "$out/libnvfp4_kernels.so" -ldl
grep -h -E "spill stores|error" "$out"/obj/*.log | sort | uniq -c
echo "built $out/libnvfp4_kernels.so for: $archs"
