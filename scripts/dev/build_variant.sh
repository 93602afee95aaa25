#!/usr/bin/env bash
# Kernel variant for experiments / a fallback: recompiles some kernel sources of build/gpu with
# extra -D flags and links build/NAME/libnvfp4_kernels.so from them plus build/gpu's other objects.
# Usage: build_variant.sh NAME "-DFOO=1 ..." ["nvfp4Gemv nvfp4Tiled"] [ARCHS]
# (nvcc splits -D values at commas: one macro per value.)
set -euo pipefail
cd "$(dirname "$0")/../.."
name=$1; defs=$2; files=${3:-"nvfp4Gemv nvfp4Tiled"}; archs=${4:-90a}
out=build/$name; mkdir -p "$out/obj"
gencode=(); for a in $archs; do gencode+=("-gencode=arch=compute_${a},code=sm_${a}"); done
src=trt_plugin_src/nvfp4Linear/kernels
for b in $files; do
  nvcc -O3 -std=c++17 -Xcompiler -fPIC,-fvisibility=hidden,-ffp-contract=off "${gencode[@]}" $defs -Xptxas -v -I$src \
    -c $src/$b.cu -o "$out/obj/$b.o" 2> "$out/obj/$b.log" &
done
wait
objs=()
for b in $files; do objs+=("$out/obj/$b.o"); done
for o in build/gpu/obj/*.o; do
  case " $files " in *" $(basename "$o" .o) "*) ;; *) objs+=("$o");; esac
done
nvcc -shared "${gencode[@]}" "${objs[@]}" -o "$out/libnvfp4_kernels.so"
grep -h -E "spill stores" "$out"/obj/*.log | sort | uniq -c || true
echo "built $out/libnvfp4_kernels.so ($defs; recompiled: $files)"
